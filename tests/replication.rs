//! Replication through a 3-node cluster: writes via any node, leader failover, and a
//! full-cluster restart.

mod common;

use common::{must_read, wait_for, TestCluster, WAIT};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Puts sent through any node land, and reads return them with versions.
///
/// 1. Start 3 nodes.
/// 2. Through a client that knows only node i, put key-i (for every i).
/// 3. Through a client of another node, read each key back: same value and version;
///    versions increase with write order; a rewrite keeps create_version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_through_any_node_land() {
    let cluster = TestCluster::start(3).await;
    let mut versions = Vec::new();
    for i in 0..3 {
        let c = cluster.client_of(i).await;
        let w = c
            .put(format!("key-{i}"), format!("value-{i}"))
            .await
            .expect("put");
        assert_eq!(
            w.version, w.create_version,
            "a new key is created at its version"
        );
        versions.push(w.version);
    }
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "versions increase: {versions:?}"
    );
    for (i, version) in versions.iter().enumerate() {
        let reader = cluster.client_of((i + 1) % 3).await;
        let kv = reader
            .get(format!("key-{i}"))
            .await
            .expect("get")
            .expect("found");
        assert_eq!(kv.value.as_ref(), format!("value-{i}").as_bytes());
        assert_eq!(kv.version, *version);
    }
    let c = cluster.client().await;
    let w = c.put("key-0", "again").await.expect("rewrite");
    assert!(w.version > versions[2]);
    assert_eq!(
        w.create_version, versions[0],
        "rewrites keep create_version"
    );
    assert!(c.get("missing").await.expect("get").is_none());
    cluster.shutdown().await;
}

/// Killing the leader: a new leader is elected, the client keeps working, and every
/// write acknowledged before the kill is readable after.
///
/// 1. Start 3 nodes; a writer task puts sequential keys through a client of all nodes,
///    recording every acknowledged write.
/// 2. After some writes, stop the leader node (in-process crash).
/// 3. Measure the time from the kill to the first write acknowledged after it.
/// 4. Stop the writer; read every acknowledged key back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover_keeps_acknowledged_writes() {
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client().await;
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let kill_time: Arc<Mutex<Option<Instant>>> = Arc::default();
    let first_after_kill: Arc<Mutex<Option<Duration>>> = Arc::default();
    let writer = {
        let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
        let (kill_time, first_after_kill) = (kill_time.clone(), first_after_kill.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (k, v) = (format!("fo-{i:06}"), format!("v{i}"));
                let started = Instant::now();
                if client.put(k.clone(), v.clone()).await.is_ok() {
                    acked.lock().unwrap().insert(k, v);
                    let killed = *kill_time.lock().unwrap();
                    if let Some(t) = killed {
                        // Only writes issued after the kill count.
                        if started >= t {
                            let mut f = first_after_kill.lock().unwrap();
                            if f.is_none() {
                                *f = Some(t.elapsed());
                            }
                        }
                    }
                }
                i += 1;
            }
        })
    };
    wait_for("200 acknowledged writes", WAIT, || async {
        (acked.lock().unwrap().len() >= 200).then_some(())
    })
    .await;
    let leader = cluster.wait_leader().await;
    *kill_time.lock().unwrap() = Some(Instant::now());
    cluster.stop(leader).await;
    let failover = wait_for("a write acknowledged after the kill", WAIT, || async {
        *first_after_kill.lock().unwrap()
    })
    .await;
    eprintln!("failover: kill -> first acknowledged write took {failover:?}");
    let before = acked.lock().unwrap().len();
    wait_for("more writes after failover", WAIT, || async {
        (acked.lock().unwrap().len() >= before + 100).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    let new_leader = cluster.wait_leader().await;
    assert_ne!(new_leader, leader);
    let acked = acked.lock().unwrap().clone();
    for (k, v) in &acked {
        must_read(&client, k, v.as_bytes(), false).await;
    }
    cluster.shutdown().await;
}

/// All three nodes restarted from their data dirs keep all acknowledged data.
///
/// 1. Start 3 nodes; write 300 keys (some overwritten, some deleted).
/// 2. Stop all nodes; start them again with the same configs.
/// 3. Every surviving key reads back with its value and version; deleted keys stay gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_restart_keeps_data() {
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client().await;
    let mut expect = BTreeMap::new();
    for i in 0..300u32 {
        let w = client
            .put(format!("r-{i}"), format!("v{i}"))
            .await
            .expect("put");
        expect.insert(format!("r-{i}"), (format!("v{i}"), w.version));
    }
    for i in (0..300u32).step_by(10) {
        assert!(client.delete(format!("r-{i}")).await.expect("delete"));
        expect.remove(&format!("r-{i}"));
    }
    cluster.restart_all().await;
    let client = cluster.client().await;
    for i in 0..300u32 {
        let k = format!("r-{i}");
        let got = client.get(k.clone()).await.expect("get");
        match expect.get(&k) {
            Some((v, ver)) => {
                let kv = got.unwrap_or_else(|| panic!("{k} lost"));
                assert_eq!(kv.value.as_ref(), v.as_bytes());
                assert_eq!(kv.version, *ver);
            }
            None => assert!(got.is_none(), "{k} was deleted"),
        }
    }
    // The restarted cluster still takes writes.
    client
        .put("after-restart", "ok")
        .await
        .expect("put after restart");
    cluster.shutdown().await;
}

/// Partitions and delays through the transport seam: a minority cut off cannot stop
/// the majority, and slow links only slow writes down.
///
/// 1. Start 3 nodes; delay every message by 20 ms; writes still succeed.
/// 2. Isolate the leader's node (drop all its traffic both ways); the other two elect
///    a leader and take writes.
/// 3. Heal; the isolated node catches up and serves every write (stale reads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_and_delays_through_the_transport_seam() {
    use ctxstore::{MessageFilter, NodeId};

    struct Delay;
    impl MessageFilter for Delay {
        fn allow(&self, _: NodeId, _: NodeId) -> bool {
            true
        }
        fn delay(&self, _: NodeId, _: NodeId) -> Option<Duration> {
            Some(Duration::from_millis(20))
        }
    }
    use common::Isolate;

    let cluster = TestCluster::start(3).await;
    let client = cluster.client().await;
    for n in cluster.nodes.iter().flatten() {
        n.set_message_filter(Some(Arc::new(Delay)));
    }
    for i in 0..20 {
        client
            .put(format!("slow-{i}"), "v")
            .await
            .expect("put over slow links");
    }
    let leader = cluster.wait_leader().await;
    let isolated = NodeId(leader as u64 + 1);
    for n in cluster.nodes.iter().flatten() {
        n.set_message_filter(Some(Arc::new(Isolate(isolated))));
    }
    wait_for("a leader on the majority side", WAIT, || async {
        for (i, n) in cluster.nodes.iter().enumerate() {
            if i == leader {
                continue;
            }
            let s = n.as_ref()?.status().await;
            if common::shard(&s, 1).is_some_and(|s| s.role == "leader") {
                return Some(());
            }
        }
        None
    })
    .await;
    let majority: Vec<String> = (0..3)
        .filter(|i| *i != leader)
        .map(|i| cluster.configs[i].listen.clone())
        .collect();
    let majority_client = ctxstore_client::Client::connect(&majority)
        .await
        .expect("client");
    for i in 0..20 {
        majority_client
            .put(format!("part-{i}"), "v")
            .await
            .expect("majority keeps taking writes");
    }
    for n in cluster.nodes.iter().flatten() {
        n.set_message_filter(None);
    }
    // The healed node may still think it leads until it hears the new term; wait for
    // it to catch up rather than for "a" leader.
    let healed = cluster.client_of(leader).await;
    wait_for("the healed node to serve every write", WAIT, || async {
        for i in 0..20 {
            healed.get_stale(format!("part-{i}")).await.ok()??;
        }
        Some(())
    })
    .await;
    cluster.shutdown().await;
}

/// A node that restarted and has not heard from a shard's leader yet redirects
/// requests to the leader the meta shard recorded, instead of answering "no leader"
/// through an election that is not happening.
///
/// 1. 3 nodes; shard 1 led by node 1 (moved there if needed); every replica has
///    applied the meta shard's record of that leader.
/// 2. Nodes 1 and 2 drop all Raft traffic with node 3; restart node 3: it hears from
///    no leader (and with pre-vote never raises its term).
/// 3. A read sent to node 3 answers `NotLeader` naming node 1.
/// 4. Heal: node 3 learns the leader and the read goes through via the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_redirects_to_the_leader_the_meta_shard_knows() {
    use ctxstore::proto::kv_client::KvClient;
    use ctxstore::proto::{GetRequest, RequestHeader};
    use ctxstore::NodeId;
    let mut cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    let client = cluster.client().await;
    client.put("k", "v").await.expect("put");
    wait_for(
        "node 1 to lead shard 1, as the meta shard records",
        WAIT,
        || async {
            let s = cluster.status(0).await;
            if common::shard(&s, 1).is_none_or(|s| s.role != "leader") {
                let _ = client.transfer_shard_leader(1, 1).await;
                return None;
            }
            let t = common::meta_table(&client).await?;
            let route = t
                .shards
                .iter()
                .find(|r| r.descriptor.as_ref().map(|d| d.shard_id) == Some(1))?;
            (route.leader.as_ref()?.node_id == 1).then_some(())
        },
    )
    .await;
    cluster.wait_converged_all().await;
    for i in 0..2 {
        if let Some(n) = &cluster.nodes[i] {
            n.set_message_filter(Some(Arc::new(common::Isolate(NodeId(3)))));
        }
    }
    cluster.stop(2).await;
    cluster.restart(2).await;
    let mut kv = KvClient::connect(format!("http://{}", cluster.addrs()[2]))
        .await
        .expect("connect to node 3");
    let req = GetRequest {
        header: Some(RequestHeader::default()),
        key: b"k".to_vec().into(),
        stale: false,
    };
    match kv.get(req).await.map_err(ctxstore_client::Error::from) {
        Err(ctxstore_client::Error::NotLeader {
            leader: Some(l), ..
        }) => {
            assert_eq!(l.node_id, 1, "the hint names shard 1's leader");
            assert_eq!(l.addr, cluster.addrs()[0]);
        }
        other => panic!("a leaderless restarted replica should redirect: {other:?}"),
    }
    for n in cluster.nodes.iter().flatten() {
        n.set_message_filter(None);
    }
    let only3 = cluster.client_of(2).await;
    must_read(&only3, "k", b"v", false).await;
    cluster.shutdown().await;
}
