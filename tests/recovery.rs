//! Recovery: a lagging follower catches up through a snapshot after log compaction,
//! and a node whose data dir was wiped is refused, then comes back as a new replica.

mod common;

use common::{fast_config, wait_for, TestCluster, WAIT};
use ctxstore::proto::ReplicaRole;
use ctxstore::Node;
use ctxstore::{Error, NodeConfig};
use futures::StreamExt;
use tokio::net::TcpListener;

const WRITES: usize = 20_000;

async fn write_many(client: &ctxstore_client::Client, prefix: &str, n: usize) {
    futures::stream::iter(0..n)
        .map(|i| {
            let c = client.clone();
            let prefix = prefix.to_string();
            async move {
                c.put(format!("{prefix}-{i:05}"), format!("value-{i}"))
                    .await
                    .expect("put");
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
}

/// A follower stopped while 20,000 writes go through and the log is compacted catches
/// up via a snapshot and serves the same data.
///
/// 1. Start 3 nodes with a small log-GC threshold.
/// 2. Stop a follower; write 20,000 keys through the others.
/// 3. Check the leader compacted its log past the follower's last index.
/// 4. Restart the follower; wait until it applied the leader's commit index.
/// 5. Its log starts above the old compaction point (it was rebuilt from a snapshot),
///    and stale reads served by it alone return every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_follower_catches_up_via_snapshot() {
    let mut cluster = TestCluster::start_with(3, |c| {
        c.raft.log_gc_threshold = 2_000;
        c.raft.log_gc_keep = 100;
    })
    .await;
    let leader = cluster.wait_leader().await;
    let follower = (leader + 1) % 3;
    let follower_last = common::shard1(&cluster.status(follower).await).last_index;
    cluster.stop(follower).await;
    let client = cluster.client().await;
    write_many(&client, "snap", WRITES).await;
    let leader = cluster.wait_leader().await;
    let leader_first = wait_for("the leader to compact its log", WAIT, || async {
        let s = cluster.status(leader).await;
        let first = common::shard1(&s).first_index;
        (first > follower_last + 1).then_some(first)
    })
    .await;
    cluster.restart(follower).await;
    cluster.wait_converged().await;
    let s = cluster.status(follower).await;
    assert!(
        common::shard1(&s).first_index > follower_last + 1,
        "the follower's log starts at {} (it had {} entries before, the leader compacted to {}): \
         it must have been rebuilt from a snapshot",
        common::shard1(&s).first_index,
        follower_last,
        leader_first
    );
    let reader = cluster.client_of(follower).await;
    for i in (0..WRITES).step_by(7) {
        let kv = reader
            .get_stale(format!("snap-{i:05}"))
            .await
            .expect("stale get")
            .unwrap_or_else(|| panic!("snap-{i:05} missing on the caught-up follower"));
        assert_eq!(kv.value.as_ref(), format!("value-{i}").as_bytes());
    }
    cluster.shutdown().await;
}

/// Starts node 4 with `join` on a port the OS picks (`peers`: running members it
/// reports to; empty: it waits for `member add`); the node and its address.
/// A counter of `node`'s metrics (0 until it is first counted).
async fn counter(node: &Node, name: &str) -> u64 {
    let Some(addr) = node.status_addr() else {
        return 0;
    };
    let (_, body) = common::http_get(addr, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn start_node4(cluster: &TestCluster, peers: &str) -> (Node, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let mut cfg = NodeConfig {
        node_id: 4,
        listen: addr.clone(),
        data_dir: cluster.dir.path().join("node4"),
        join: true,
        peers: peers.to_string(),
        ..Default::default()
    };
    fast_config(&mut cfg);
    cfg.status.listen = Some("127.0.0.1:0".into());
    let node = Node::start_with_listener(cfg, listener)
        .await
        .expect("node 4 starts");
    (node, addr)
}

/// A node whose data dir was wiped is refused, then rejoins as a new replica.
///
/// 1. Start 3 nodes, write keys, wait until all replicas applied them (so every
///    replica is recorded as started).
/// 2. Stop node 3 and delete its data dir; starting it again with the same flags fails
///    with a config error naming `data-dir` that says what to do.
/// 3. Remove node 3 from the membership; start a fresh node 4 with `join`; add it.
/// 4. Node 4 becomes a voter, was rebuilt from a snapshot, and serves the same data
///    through stale reads; the cluster keeps taking writes.
/// 5. Node 4 also replaces node 3 in the meta shard (state shipped by snapshot), leads
///    it, and serves a routing table with the new membership and a higher version.
/// 6. Node 3, no longer in any descriptor, is still refused: the meta shard records
///    that it ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_node_is_refused_then_rejoins_as_new_replica() {
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client().await;
    write_many(&client, "wipe", 500).await;
    cluster.wait_converged().await;
    // Every replica has persisted entries, so the leader marks them started.
    wait_for("all replicas marked started", WAIT, || async {
        let l = cluster.wait_leader().await;
        let s = cluster.status(l).await;
        let d = common::shard1(&s).descriptor.clone()?;
        d.replicas.iter().all(|r| r.started).then_some(())
    })
    .await;
    // Make node 3 a follower so removing it does not disturb leadership.
    let victim = 2;
    if cluster.wait_leader().await == victim {
        client.transfer_leader(1).await.expect("transfer");
        wait_for("leadership to move", WAIT, || async {
            (cluster.wait_leader().await != victim).then_some(())
        })
        .await;
    }
    cluster.stop(victim).await;
    std::fs::remove_dir_all(&cluster.configs[victim].data_dir).expect("wipe");
    match cluster.try_restart(victim).await {
        Err(Error::Config { field, reason }) => {
            assert_eq!(field, "data-dir");
            assert!(
                reason.contains("member --shard") && reason.contains("remove 3"),
                "says what to do: {reason}"
            );
        }
        Ok(_) => panic!("a wiped node must not rejoin under its old identity"),
        Err(e) => panic!("unexpected error: {e}"),
    }
    let d = client.remove_member(3).await.expect("remove node 3");
    assert!(d.replicas.iter().all(|r| r.node_id != 3));
    // A fresh node with a new id joins (waiting to be added).
    let (node4, addr) = start_node4(&cluster, "").await;
    let r = client.add_member(4, &addr).await.expect("add node 4");
    let rep = r.replica.expect("replica");
    assert!(
        rep.replica_id > 3,
        "replica ids are never reused: got {}",
        rep.replica_id
    );
    wait_for("node 4 to become a voter", WAIT, || async {
        let s = node4.status().await;
        let d = common::shard(&s, 1)?.descriptor.clone()?;
        d.replicas
            .iter()
            .any(|r| r.node_id == 4 && r.role == ReplicaRole::Voter as i32)
            .then_some(())
    })
    .await;
    client
        .put("after-join", "yes")
        .await
        .expect("write after join");
    let reader = ctxstore_client::Client::connect(std::slice::from_ref(&addr))
        .await
        .expect("client");
    wait_for("node 4 to serve the new write", WAIT, || async {
        reader
            .get_stale("after-join")
            .await
            .ok()
            .flatten()
            .map(|_| ())
    })
    .await;
    for i in 0..500 {
        let kv = reader
            .get_stale(format!("wipe-{i:05}"))
            .await
            .expect("stale get")
            .unwrap_or_else(|| panic!("wipe-{i:05} missing on node 4"));
        assert_eq!(kv.value.as_ref(), format!("value-{i}").as_bytes());
    }
    let s = node4.status().await;
    assert!(
        common::shard1(&s).first_index > 6,
        "node 4 started from a snapshot"
    );
    // The meta shard too: replace node 3's meta replica with one on node 4 (it gets
    // the meta state by snapshot), then make it the meta leader and read the routing
    // table it serves.
    let before = client.routing_table().await.expect("table");
    client
        .remove_shard_member(Some(0), 3)
        .await
        .expect("remove node 3 from the meta shard");
    let added = client
        .add_shard_member(Some(0), 4, &addr)
        .await
        .expect("add node 4 to the meta shard");
    assert!(added
        .replica
        .is_some_and(|r| r.role == ReplicaRole::Voter as i32));
    client
        .transfer_shard_leader(0, 4)
        .await
        .expect("meta leadership to node 4");
    let table = wait_for(
        "node 4 to serve the routing table as meta leader",
        WAIT,
        || async {
            let t = reader.routing_table().await.ok()?;
            let meta = t
                .shards
                .iter()
                .find(|r| r.descriptor.as_ref().is_some_and(|d| d.shard_id == 0))?;
            (t.source == "meta-leader" && meta.leader.as_ref()?.node_id == 4).then_some(t)
        },
    )
    .await;
    assert!(
        table.routing_version > before.routing_version,
        "membership changes bump the routing version ({} -> {})",
        before.routing_version,
        table.routing_version
    );
    let shard1 = table
        .shards
        .iter()
        .find_map(|r| r.descriptor.clone().filter(|d| d.shard_id == 1))
        .expect("shard 1 in the table");
    let nodes: Vec<u64> = shard1.replicas.iter().map(|r| r.node_id).collect();
    assert_eq!(
        nodes,
        vec![1, 2, 4],
        "the table carries shard 1's membership"
    );
    assert!(table.nodes.iter().any(|n| n.node_id == 4));
    // No descriptor lists node 3 any more, but the meta shard remembers it ran: its
    // wiped data dir still may not bootstrap a cluster of its own.
    assert!(table
        .shards
        .iter()
        .filter_map(|r| r.descriptor.as_ref())
        .all(|d| d.replicas.iter().all(|r| r.node_id != 3)));
    match cluster.try_restart(victim).await {
        Err(Error::Config { field, reason }) => {
            assert_eq!(field, "data-dir");
            assert!(reason.contains("meta shard"), "{reason}");
        }
        Ok(_) => panic!("a wiped node with no replica left must not bootstrap again"),
        Err(e) => panic!("unexpected error: {e}"),
    }
    node4.shutdown().await;
    cluster.shutdown().await;
}

/// A replica created on a node by a message sent before its removal, delivered after
/// it (a queue flushed when a node comes back), never gets a snapshot; the meta
/// shard's descriptor, which already reflects the removal, makes the node drop it.
///
/// 1. 3 nodes; node 4 joins with `--join --peers` (it reports to the meta shard).
/// 2. Raft messages to node 4 are held for 2 s. Add node 4 to shard 1 (in the
///    background: it cannot catch up), then remove it; the descriptor no longer
///    lists it.
/// 3. The held messages arrive: node 4 creates an empty replica of shard 1.
/// 4. Node 4 drops that replica (it is not in the meta shard's descriptor, whose
///    `next_replica_id` is above its id), and the shard keeps its three replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_created_after_its_removal_is_collected() {
    use ctxstore::{MessageFilter, NodeId};
    use std::time::Duration;
    struct Hold;
    impl MessageFilter for Hold {
        fn allow(&self, _: NodeId, _: NodeId) -> bool {
            true
        }
        fn delay(&self, _: NodeId, to: NodeId) -> Option<Duration> {
            (to == NodeId(4)).then_some(Duration::from_secs(2))
        }
    }
    let cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    let client = cluster.client().await;
    client.put("k", "v").await.expect("put");
    let (node4, addr) = start_node4(&cluster, &cluster.addrs().join(",")).await;
    for n in cluster.nodes.iter().flatten() {
        n.set_message_filter(Some(std::sync::Arc::new(Hold)));
    }
    let adder = {
        let (client, addr) = (client.clone(), addr.clone());
        tokio::spawn(async move { client.add_member(4, &addr).await })
    };
    wait_for("node 4 to be added to shard 1", WAIT, || async {
        let s = cluster.status(cluster.wait_leader().await).await;
        let d = common::shard1(&s).descriptor.clone()?;
        d.replicas.iter().any(|r| r.node_id == 4).then_some(())
    })
    .await;
    let d = client.remove_member(4).await.expect("remove node 4");
    assert!(d.replicas.iter().all(|r| r.node_id != 4));
    adder.abort();
    // Counted, not looked for: node 4 may collect the replica within a heartbeat of
    // creating it, before a status call could see it.
    wait_for(
        "the held messages to create a replica on node 4",
        WAIT,
        || async { (counter(&node4, "ctxstore_replicas_created_total").await >= 1).then_some(()) },
    )
    .await;
    for n in cluster.nodes.iter().flatten() {
        n.set_message_filter(None);
    }
    wait_for("node 4 to collect its stale replica", WAIT, || async {
        let collected = counter(&node4, "ctxstore_stale_replicas_collected_total").await >= 1;
        let gone = common::shard(&node4.status().await, 1).is_none();
        (collected && gone).then_some(())
    })
    .await;
    node4.shutdown().await;
    cluster.shutdown().await;
}
