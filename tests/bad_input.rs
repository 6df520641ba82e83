//! Bad input gets a specific error and changes nothing.

mod common;

use common::TestCluster;
use ctxstore::proto::{batch_op, BatchOp, PutOp};
use ctxstore::{Error, NodeConfig};
use ctxstore_client::{Client, ClientOptions};
use std::time::Duration;

fn put_op(k: &str) -> BatchOp {
    BatchOp {
        op: Some(batch_op::Op::Put(PutOp {
            key: k.as_bytes().to_vec().into(),
            value: "v".into(),
            ttl_ms: 0,
            lease_id: 0,
        })),
    }
}

async fn snapshot_of(client: &Client) -> Vec<(Vec<u8>, Vec<u8>, u64)> {
    client
        .scan("", "", 10_000)
        .await
        .expect("scan")
        .kvs
        .into_iter()
        .map(|kv| (kv.key.to_vec(), kv.value.to_vec(), kv.version))
        .collect()
}

/// Each kind of bad request gets its specific error, and the data is unchanged.
///
/// 1. Start 3 nodes; write a few keys; record a scan of everything.
/// 2. Send oversized key, oversized value, oversized batch, empty key, empty batch,
///    CAS with a wrong version, create-only CAS on an existing key.
/// 3. Check each error's variant and the limit/field it names.
/// 4. Scan again: identical to before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_specific_errors_and_change_nothing() {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client().await;
    let base = client.put("existing", "1").await.expect("put");
    client.put("other", "2").await.expect("put");
    let before = snapshot_of(&client).await;

    let e = client.put(vec![b'k'; 5000], "v").await.unwrap_err();
    assert!(
        matches!(&e, Error::LimitExceeded { limit, max: 4096, actual: 5000 } if limit == "max-key-size"),
        "{e}"
    );

    let e = client
        .put("big", vec![0u8; (4 << 20) + 1])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::LimitExceeded { limit, .. } if limit == "max-value-size"),
        "{e}"
    );

    let ops: Vec<BatchOp> = (0..1001).map(|i| put_op(&format!("b{i}"))).collect();
    let e = client.batch(ops).await.unwrap_err();
    assert!(
        matches!(&e, Error::LimitExceeded { limit, max: 1000, actual: 1001 } if limit == "max-batch-ops"),
        "{e}"
    );

    // A batch with one bad operation writes none of the good ones.
    let e = client
        .batch(vec![put_op("good"), put_op("")])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument { field, .. } if field == "key"),
        "{e}"
    );

    let e = client.put("", "v").await.unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument { field, .. } if field == "key"),
        "{e}"
    );

    let e = client.batch(vec![]).await.unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument { field, .. } if field == "ops"),
        "{e}"
    );

    let e = client
        .compare_and_swap("existing", base.version + 100, "x")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::VersionMismatch { expected, actual, .. } if *expected == base.version + 100 && *actual == base.version),
        "{e}"
    );

    let e = client
        .compare_and_swap("existing", 0, "x")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::VersionMismatch { actual, .. } if *actual == base.version),
        "{e}"
    );

    let e = client.get(vec![b'k'; 5000]).await.unwrap_err();
    assert!(matches!(&e, Error::LimitExceeded { .. }), "{e}");

    let after = snapshot_of(&client).await;
    assert_eq!(before, after, "rejected requests changed nothing");

    // A CAS with the right version works.
    client
        .compare_and_swap("existing", base.version, "2")
        .await
        .expect("cas with the current version");
    cluster.shutdown().await;
}

/// A client pointed at an address where nothing listens fails with a transport or
/// timeout error within its deadline.
#[tokio::test]
async fn unknown_endpoint_fails_within_deadline() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    drop(l);
    let client = Client::connect_with(
        &[addr],
        ClientOptions {
            timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(200),
            ..Default::default()
        },
    )
    .await
    .expect("connect is lazy");
    let e = client.get("k").await.unwrap_err();
    assert!(matches!(e, Error::Timeout(..)), "{e}");
    let e = Client::connect(&[""; 0]).await.err().expect("no endpoints");
    assert!(matches!(e, Error::InvalidArgument { .. }));
}

/// Malformed configs are rejected at startup with the field named.
#[tokio::test]
async fn malformed_config_names_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = NodeConfig {
        node_id: 1,
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().join("n1"),
        initial_cluster: "1=127.0.0.1:1".into(),
        ..Default::default()
    };
    let cases: Vec<(NodeConfig, &str)> = vec![
        (
            NodeConfig {
                node_id: 0,
                ..good.clone()
            },
            "node-id",
        ),
        (
            NodeConfig {
                listen: "localhost".into(),
                ..good.clone()
            },
            "listen",
        ),
        (
            NodeConfig {
                initial_cluster: "1=nohost".into(),
                ..good.clone()
            },
            "initial-cluster",
        ),
        (
            NodeConfig {
                initial_cluster: "2=127.0.0.1:1".into(),
                ..good.clone()
            },
            "initial-cluster",
        ),
        (
            NodeConfig {
                initial_cluster: String::new(),
                ..good.clone()
            },
            "initial-cluster",
        ),
    ];
    for (cfg, field) in cases {
        match ctxstore::Node::start(cfg).await {
            Err(Error::Config { field: f, .. }) => assert_eq!(f, field),
            Err(e) => panic!("expected a config error on {field}, got {e}"),
            Ok(n) => {
                n.shutdown().await;
                panic!("expected a config error on {field}");
            }
        }
    }
    // A data dir belongs to one node id.
    let path = dir.path().join("owned");
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    let cfg = NodeConfig {
        node_id: 1,
        listen: addr.clone(),
        data_dir: path.clone(),
        initial_cluster: format!("1={addr}"),
        ..Default::default()
    };
    let n = ctxstore::Node::start_with_listener(cfg.clone(), l)
        .await
        .expect("starts");
    n.shutdown().await;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let other = NodeConfig {
        node_id: 2,
        initial_cluster: format!("2={addr}"),
        ..cfg
    };
    match ctxstore::Node::start_with_listener(other, l).await {
        Err(Error::Config { field, reason }) => {
            assert_eq!(field, "node-id");
            assert!(reason.contains("belongs to node 1"), "{reason}");
        }
        Err(e) => panic!("unexpected {e}"),
        Ok(n) => {
            n.shutdown().await;
            panic!("a data dir must not change owners");
        }
    }
}
