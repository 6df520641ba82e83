//! TLS on the gRPC port: a mutual-TLS cluster elects, replicates and serves clients
//! that trust its CA; plaintext clients, clients trusting another CA and (under
//! `require`) clients without a certificate are refused; node-only calls need a peer
//! certificate; rotated files are picked up for new connections without a restart,
//! and a half-written pair leaves the previous one in use.

mod common;

use common::*;
use ctxstore::config::{ClientCertAuth, SecurityConfig};
use ctxstore::pki::{Ca, DevPki, DEV_NODE_CN};
use ctxstore::NodeConfig;
use ctxstore_client::{Client, ClientOptions, ClientTls};
use std::path::Path;
use std::time::Duration;

fn secure(cfg: &mut NodeConfig, pki: &DevPki, mode: ClientCertAuth) {
    cfg.security = SecurityConfig {
        client_cert_auth: mode,
        ..pki.node_security()
    };
    cfg.status.listen = Some("127.0.0.1:0".into());
}

/// A 3-node cluster serving mutual TLS in `mode`, with its certificates (in the
/// returned directory, which must outlive the cluster).
async fn tls_cluster(mode: ClientCertAuth) -> (tempfile::TempDir, DevPki, TestCluster) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = DevPki::write(dir.path()).expect("pki");
    let p = pki.clone();
    let cluster = TestCluster::start_with(3, move |cfg| secure(cfg, &p, mode)).await;
    (dir, pki, cluster)
}

/// The sum over the cluster's nodes of the metric sample `name` (a full sample name
/// with labels, as the status port prints it).
async fn metric_sum(cluster: &TestCluster, name: &str) -> f64 {
    let mut sum = 0.0;
    for n in cluster.nodes.iter().flatten() {
        let addr = n.status_addr().expect("status listener");
        let (code, body) = http_get(addr, "/metrics").await;
        assert_eq!(code, 200);
        sum += body
            .lines()
            .filter_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .sum::<f64>();
    }
    sum
}

async fn client(addrs: &[String], tls: Option<ClientTls>, timeout: Duration) -> Client {
    Client::connect_with(
        addrs,
        ClientOptions {
            timeout,
            connect_timeout: Duration::from_millis(500),
            tls,
            ..Default::default()
        },
    )
    .await
    .expect("connect is lazy")
}

/// A put through a fresh client (so a new connection, made with the files on disk
/// now). Calls expected to fail give up after 3 s; the others get 15 s, for a loaded
/// machine.
async fn fresh_put(addrs: &[String], tls: Option<ClientTls>, key: &str) -> ctxstore::Result<()> {
    let refused = key.starts_with("refused-");
    let timeout = Duration::from_secs(if refused { 3 } else { 15 });
    let c = client(addrs, tls, timeout).await;
    c.put(key.to_string(), "v").await.map(|_| ())
}

/// Replaces `path` in one step, as an operator's `mv` would.
fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mutual_tls_cluster_serves_its_clients_and_refuses_everyone_else() {
    // Electing a leader means the nodes' Raft traffic goes over mutual TLS.
    let (_dir, pki, cluster) = tls_cluster(ClientCertAuth::Optional).await;
    let addrs = cluster.addrs();
    let with_cert = pki.client();

    let c = client(&addrs, Some(with_cert.clone()), Duration::from_secs(15)).await;
    let w = c.put("greeting", "hello").await.expect("put over TLS");
    assert!(w.version > 0);
    let kv = c.get("greeting").await.expect("get").expect("present");
    assert_eq!(&kv.value[..], b"hello");
    assert_replicas_agree(&cluster).await;

    // `optional`: a client without a certificate is served.
    fresh_put(&addrs, Some(ClientTls::new(&pki.ca)), "no-cert")
        .await
        .expect("a client without a certificate under `optional`");

    // Plaintext against TLS, and TLS trusting another CA: refused, nothing written.
    fresh_put(&addrs, None, "refused-plaintext")
        .await
        .expect_err("plaintext client");
    let other = tempfile::tempdir().expect("tempdir");
    let other_pki = DevPki::write(other.path()).expect("other pki");
    fresh_put(
        &addrs,
        Some(ClientTls::new(&other_pki.ca)),
        "refused-wrong-ca",
    )
    .await
    .expect_err("a client trusting another CA");
    for k in ["refused-plaintext", "refused-wrong-ca"] {
        assert!(
            c.get(k).await.expect("get").is_none(),
            "{k} must not be written"
        );
    }
    assert!(
        metric_sum(&cluster, "ctxstore_tls_handshake_failures_total").await >= 1.0,
        "refused handshakes are counted"
    );

    // Node-only calls: a client certificate gets PERMISSION_DENIED, a node one passes
    // the check.
    let ep = |tls: &ClientTls| {
        ctxstore_client::tls::endpoint(&addrs[0], Some(tls))
            .expect("endpoint")
            .connect_lazy()
    };
    let mut as_client = ctxstore::proto::cluster_client::ClusterClient::new(ep(&with_cert));
    let s = as_client
        .heartbeat(ctxstore::proto::NodeHeartbeat::default())
        .await
        .expect_err("a client may not send node heartbeats");
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    let mut raft = ctxstore::proto::raft_client::RaftClient::new(ep(&with_cert));
    let s = raft
        .send(tokio_stream::iter(vec![
            ctxstore::proto::RaftBatch::default(),
        ]))
        .await
        .expect_err("a client may not speak Raft");
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    let as_node = ClientTls::new(&pki.ca).with_identity(&pki.node_cert, &pki.node_key);
    let mut node = ctxstore::proto::cluster_client::ClusterClient::new(ep(&as_node));
    if let Err(s) = node
        .heartbeat(ctxstore::proto::NodeHeartbeat::default())
        .await
    {
        assert_ne!(
            s.code(),
            tonic::Code::PermissionDenied,
            "a node certificate: {s:?}"
        );
    }
    // Public calls stay open to clients.
    let mut status = ctxstore::proto::cluster_client::ClusterClient::new(ep(&with_cert));
    status
        .status(ctxstore::proto::StatusRequest::default())
        .await
        .expect("Status is public");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn require_mode_refuses_clients_without_a_certificate() {
    let (_dir, pki, cluster) = tls_cluster(ClientCertAuth::Require).await;
    let addrs = cluster.addrs();
    fresh_put(&addrs, Some(ClientTls::new(&pki.ca)), "refused-no-cert")
        .await
        .expect_err("no client certificate under `require`");
    // A certificate from another CA is no better.
    let other = tempfile::tempdir().expect("tempdir");
    let other_pki = DevPki::write(other.path()).expect("other pki");
    let foreign =
        ClientTls::new(&pki.ca).with_identity(&other_pki.client_cert, &other_pki.client_key);
    fresh_put(&addrs, Some(foreign), "refused-foreign")
        .await
        .expect_err("a client certificate the CA did not sign");
    let ok = pki.client();
    fresh_put(&addrs, Some(ok.clone()), "k")
        .await
        .expect("a signed client certificate");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotated_files_are_used_for_new_connections_and_a_half_written_pair_is_not() {
    let (dir, pki, cluster) = tls_cluster(ClientCertAuth::Optional).await;
    let addrs = cluster.addrs();
    let ca1 = std::fs::read_to_string(&pki.ca).expect("ca1");
    // The nodes' CA file becomes a bundle below; this client keeps trusting CA1 only.
    let ca1_file = dir.path().join("ca1.crt");
    std::fs::write(&ca1_file, &ca1).expect("write ca1");
    let ca1_only = ClientTls::new(&ca1_file);
    fresh_put(&addrs, Some(ca1_only.clone()), "before")
        .await
        .expect("CA1");

    // Rotate every node (they share the files) to a certificate of CA2; the nodes
    // trust both CAs meanwhile, as an operator rotating a CA would set it up.
    let ca2 = Ca::new("second CA").expect("ca2");
    let ca2_file = dir.path().join("ca2.crt");
    ca2.write(&ca2_file).expect("write ca2");
    let node2 = ca2.issue(DEV_NODE_CN, true).expect("node cert of CA2");
    replace(&pki.ca, &format!("{ca1}{}", ca2.pem()));
    replace(&pki.node_key, &node2.key_pem());
    replace(&pki.node_cert, &node2.cert_pem());
    let ca2_only = ClientTls::new(&ca2_file);
    fresh_put(&addrs, Some(ca2_only.clone()), "after")
        .await
        .expect("a client trusting only CA2 reaches the rotated nodes");
    fresh_put(&addrs, Some(ca1_only), "refused-stale-trust")
        .await
        .expect_err("a client trusting only CA1 no longer does");

    // Half-written: the new certificate is there, its key is not yet. The node keeps
    // serving the pair it has.
    let ca3 = Ca::new("third CA").expect("ca3");
    let node3 = ca3.issue(DEV_NODE_CN, true).expect("node cert of CA3");
    replace(&pki.node_cert, &node3.cert_pem());
    fresh_put(&addrs, Some(ca2_only.clone()), "half-written")
        .await
        .expect("the previous pair stays in use");
    // The cluster still replicates: peers dial each other with the files on disk.
    assert_replicas_agree(&cluster).await;
    assert!(metric_sum(&cluster, "ctxstore_tls_reloads_total{result=\"ok\"}").await >= 1.0);
    assert!(
        metric_sum(&cluster, "ctxstore_tls_reloads_total{result=\"failed\"}").await >= 1.0,
        "the half-written pair is a failed reload"
    );
    // The key arrives: the CA3 pair is used (trusted once CA3 is in the bundle).
    replace(&pki.node_key, &node3.key_pem());
    let ca3_file = dir.path().join("ca3.crt");
    ca3.write(&ca3_file).expect("write ca3");
    fresh_put(&addrs, Some(ClientTls::new(&ca3_file)), "third")
        .await
        .expect("the completed CA3 pair is served");
    cluster.shutdown().await;
}

#[tokio::test]
async fn bad_tls_settings_are_refused_at_startup_naming_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = DevPki::write(&dir.path().join("tls")).expect("pki");
    let base = NodeConfig {
        node_id: 1,
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().join("data"),
        initial_cluster: "1=127.0.0.1:1".into(),
        ..Default::default()
    };
    let mut half = base.clone();
    half.security.ca_path = Some(pki.ca.clone());
    half.security.cert_path = Some(pki.node_cert.clone());
    let e = ctxstore::Node::start(half).await.err().expect("no key");
    assert!(e.to_string().contains("security.key-path"), "{e}");

    let mut garbage = base.clone();
    secure(&mut garbage, &pki, ClientCertAuth::Optional);
    let bad = dir.path().join("bad.crt");
    std::fs::write(&bad, "not a certificate").expect("write");
    garbage.security.cert_path = Some(bad);
    let e = ctxstore::Node::start(garbage)
        .await
        .err()
        .expect("bad cert");
    assert!(e.to_string().contains("security.cert-path"), "{e}");

    let mut require = base;
    require.security.client_cert_auth = ClientCertAuth::Require;
    let e = ctxstore::Node::start(require)
        .await
        .err()
        .expect("require without TLS");
    assert!(e.to_string().contains("security.client-cert-auth"), "{e}");
    assert!(
        !dir.path().join("data").exists(),
        "a refused configuration must not create the data dir"
    );
}
