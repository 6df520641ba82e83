//! Upgrading in place: data directories written by the version before shards owned
//! explicit arcs (`tests/fixtures/v0-data.tar.gz`, made by
//! `scripts/make-upgrade-fixture.sh` with the binaries of commit d53b219) start under
//! this version and keep working.

mod common;

use common::{fast_config, must_read, wait_for, WAIT};
use ctxstore::proto::{ConversationRef, ReadRequest, SeqRange};
use ctxstore::ranges::RangeMap;
use ctxstore::{Node, NodeConfig};
use std::process::Command;
use tokio::net::TcpListener;

/// Unpacks the fixture into `dir` (node1..node3).
fn unpack(dir: &std::path::Path) {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v0-data.tar.gz");
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(dir)
        .status()
        .expect("run tar");
    assert!(status.success(), "unpacking {}", fixture.display());
}

/// Starts the three nodes of the fixture on new loopback ports (the operator's
/// `--initial-cluster` addresses win over the ones the data remembers).
async fn start(dir: &std::path::Path) -> (Vec<Node>, Vec<String>) {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    }
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").to_string())
        .collect();
    let initial = ctxstore::config::format_initial_cluster(&addrs);
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let mut cfg = NodeConfig {
            node_id: i as u64 + 1,
            listen: addrs[i].clone(),
            data_dir: dir.join(format!("node{}", i + 1)),
            initial_cluster: initial.clone(),
            initial_shards: 4,
            ..Default::default()
        };
        fast_config(&mut cfg);
        nodes.push(Node::start_with_listener(cfg, l).await.expect("start"));
    }
    (nodes, addrs)
}

/// Everything the fixture's writer acknowledged reads back.
async fn check_fixture_data(client: &ctxstore_client::Client) {
    for i in 0..200 {
        must_read(
            client,
            &format!("k{i:03}"),
            format!("v{i:03}").as_bytes(),
            false,
        )
        .await;
    }
    for (x, v) in ["a", "b", "c", "d", "e"].iter().zip(1..) {
        must_read(
            client,
            &format!("{{tag}}:{x}"),
            v.to_string().as_bytes(),
            false,
        )
        .await;
    }
    must_read(client, "cas", b"second", false).await;
    let read = client
        .read(ReadRequest {
            conversation: Some(ConversationRef {
                namespace: "demo".into(),
                id: "chat".into(),
            }),
            select: Some(ctxstore::proto::read_request::Select::Range(
                SeqRange::default(),
            )),
            ..Default::default()
        })
        .await
        .expect("read");
    let contents: Vec<&str> = read.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["m1", "m2", "m3", "m4", "m5"]);
}

/// A data dir written by the previous version: the 4 shards' descriptors get the arcs
/// their `ring_shards` gave them on the old ring (the same on every replica), every
/// key and the conversation read back, new writes and a split work, and a second
/// restart changes nothing.
///
/// 1. Unpack the fixture; start its 3 nodes on new ports.
/// 2. Everything the old version acknowledged reads back.
/// 3. The routing table's data shards own arcs that partition the hash space, and
///    the old ring's ownership is kept (every fixture key is on the shard the old ring
///    named).
/// 4. Write; split shard 1; everything still reads back.
/// 5. Restart every node; everything still reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_the_previous_version_upgrades_in_place() {
    common::init_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    unpack(dir.path());
    let (nodes, addrs) = start(dir.path()).await;
    let client = ctxstore_client::Client::connect(&addrs)
        .await
        .expect("client");
    wait_for("the upgraded cluster to serve", WAIT, || async {
        client.get("k000").await.ok().flatten()
    })
    .await;
    check_fixture_data(&client).await;
    let table = wait_for("descriptors with arcs", WAIT, || async {
        let t = client.routing_table().await.ok()?;
        let data: Vec<_> = t
            .shards
            .iter()
            .filter_map(|r| r.descriptor.as_ref())
            .filter(|d| d.shard_id != 0)
            .collect();
        (data.len() == 4 && data.iter().all(|d| !d.arcs.is_empty())).then_some(t)
    })
    .await;
    let mut m = RangeMap::new();
    for d in table.shards.iter().filter_map(|r| r.descriptor.as_ref()) {
        m.insert_descriptor(d);
    }
    assert!(
        m.covers_everything(),
        "the upgraded arcs partition the space"
    );
    let old_ring = ctxstore::ring::Ring::from_ring_shards(&[1, 2, 3, 4]).expect("ring");
    for i in 0..200 {
        let k = format!("k{i:03}");
        let h = ctxstore::keys::key_hash(k.as_bytes());
        assert_eq!(
            m.shard_for_hash(h),
            old_ring.shard_for_hash(h),
            "{k} stays on the shard the old ring named"
        );
    }
    for i in 0..50 {
        client.put(format!("new-{i}"), "n").await.expect("put");
    }
    client
        .split_shard(1, None)
        .await
        .expect("split an upgraded shard");
    check_fixture_data(&client).await;
    for i in 0..50 {
        must_read(&client, &format!("new-{i}"), b"n", false).await;
    }
    for n in nodes {
        n.shutdown().await;
    }
    let (nodes, addrs) = start(dir.path()).await;
    let client = ctxstore_client::Client::connect(&addrs)
        .await
        .expect("client");
    check_fixture_data(&client).await;
    for i in 0..50 {
        must_read(&client, &format!("new-{i}"), b"n", false).await;
    }
    for n in nodes {
        n.shutdown().await;
    }
}
