//! Hibernation of idle shards (`raft.hibernate`): idle shards fall asleep on every
//! replica and stop advancing their Raft state; a request wakes its shard and is
//! served; a leader that dies while its shard sleeps is replaced with no request
//! coming, and no acknowledged write is lost.

mod common;

use common::{http_get, must_read, wait_for, TestCluster, WAIT};
use std::collections::BTreeMap;

const SHARDS: u64 = 4;

async fn hibernating_cluster() -> TestCluster {
    TestCluster::start_with(3, |c| {
        c.initial_shards = SHARDS;
        c.raft.hibernate = true;
        c.status.listen = Some("127.0.0.1:0".into());
    })
    .await
}

/// Node `i`'s metric `name` (a gauge or counter without labels).
async fn metric(cluster: &TestCluster, i: usize, name: &str) -> Option<u64> {
    let addr = cluster.nodes[i].as_ref()?.status_addr()?;
    let (_, body) = http_get(addr, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Every node's count of woken replicas.
async fn wakes(cluster: &TestCluster, nodes: &[usize]) -> Vec<Option<u64>> {
    let mut out = Vec::new();
    for &i in nodes {
        out.push(metric(cluster, i, "ctxstore_replica_wakes_total").await);
    }
    out
}

/// (shard, role, term, commit index, hibernating) of every data-shard replica of the
/// running nodes, by (node index, shard).
async fn replicas(
    cluster: &TestCluster,
    nodes: &[usize],
) -> BTreeMap<(usize, u64), (String, u64, u64, bool)> {
    let mut out = BTreeMap::new();
    for &i in nodes {
        for sh in cluster.status(i).await.shards {
            let id = sh.descriptor.as_ref().map_or(0, |d| d.shard_id);
            if id != 0 {
                out.insert(
                    (i, id),
                    (sh.role.clone(), sh.term, sh.commit_index, sh.hibernating),
                );
            }
        }
    }
    out
}

/// Waits until every data-shard replica on `nodes` hibernates.
async fn wait_all_asleep(cluster: &TestCluster, nodes: &[usize]) {
    wait_for(
        "every data shard to hibernate on every node",
        WAIT,
        || async {
            let r = replicas(cluster, nodes).await;
            (r.len() == nodes.len() * SHARDS as usize && r.values().all(|v| v.3)).then_some(())
        },
    )
    .await;
}

/// Idle shards sleep on every replica and their Raft state stands still; a write
/// wakes its shard only, is served and read back, and the shard sleeps again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_shards_sleep_and_a_request_wakes_its_shard() {
    let cluster = hibernating_cluster().await;
    let client = cluster.client().await;
    for i in 0..16 {
        client.put(format!("k{i}"), "v").await.expect("put");
    }
    let all = [0, 1, 2];
    wait_all_asleep(&cluster, &all).await;
    for i in all {
        assert_eq!(
            metric(&cluster, i, "ctxstore_replicas_hibernating").await,
            Some(SHARDS),
            "node {i}'s gauge"
        );
    }
    let asleep = replicas(&cluster, &all).await;
    let woken = wakes(&cluster, &all).await;
    assert!(woken.iter().all(Option::is_some), "{woken:?}");
    // Asleep, they stay asleep and nothing moves. This is an observation window for
    // something that must not happen (not a wait for something that should): five
    // election timeouts (30 ms ticks, 10 to a timeout); the wake counters catch a
    // replica that woke and fell asleep again meanwhile.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert_eq!(
        replicas(&cluster, &all).await,
        asleep,
        "a sleeping shard woke or moved"
    );
    assert_eq!(wakes(&cluster, &all).await, woken, "no replica woke");
    // A write wakes the shard it goes to, and is served.
    let (shard, _) = client.route(b"wake-me").await;
    client
        .put("wake-me", "now")
        .await
        .expect("put to a sleeping shard");
    let kv = client
        .get("wake-me")
        .await
        .expect("get")
        .expect("the value");
    assert_eq!(kv.value.as_ref(), b"now");
    let awake = replicas(&cluster, &all).await;
    assert!(
        all.iter()
            .any(|&i| awake.get(&(i, shard)).is_some_and(|v| !v.3)),
        "the written shard woke: {awake:?}"
    );
    // And it falls asleep again.
    wait_all_asleep(&cluster, &all).await;
    cluster.shutdown().await;
}

/// The leader of a sleeping shard dies: once the meta shard misses its node, the
/// followers wake and elect a new leader, with no request to wake them; every earlier
/// write is still there, and the shards serve again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_shards_dead_leader_is_replaced() {
    let mut cluster = hibernating_cluster().await;
    let client = cluster.client().await;
    for i in 0..32 {
        client
            .put(format!("k{i}"), format!("v{i}"))
            .await
            .expect("put");
    }
    let all = [0, 1, 2];
    wait_all_asleep(&cluster, &all).await;
    // The node leading the most data shards goes.
    let r = replicas(&cluster, &all).await;
    let mut led = [0usize; 3];
    for ((i, _), v) in &r {
        if v.0 == "leader" {
            led[*i] += 1;
        }
    }
    let victim = (0..3).max_by_key(|i| led[*i]).expect("a node");
    assert!(led[victim] > 0, "someone leads a data shard: {r:?}");
    cluster.stop(victim).await;
    let survivors: Vec<usize> = all.into_iter().filter(|i| *i != victim).collect();
    // No request: only the lost node's heartbeats wake the orphaned shards (status
    // queries do not wake a replica).
    wait_for(
        "a leader on a live node for every data shard",
        WAIT,
        || async {
            let r = replicas(&cluster, &survivors).await;
            (1..=SHARDS)
                .all(|shard| {
                    survivors
                        .iter()
                        .any(|i| r.get(&(*i, shard)).is_some_and(|v| v.0 == "leader"))
                })
                .then_some(())
        },
    )
    .await;
    let client = cluster.client_of(survivors[0]).await;
    for i in 0..32 {
        must_read(&client, &format!("k{i}"), format!("v{i}").as_bytes(), false).await;
    }
    // Every key, on every shard, is written again and read back linearizably.
    for i in 0..32 {
        client
            .put(format!("k{i}"), format!("w{i}"))
            .await
            .expect("put after the leader died");
    }
    for i in 0..32 {
        must_read(&client, &format!("k{i}"), format!("w{i}").as_bytes(), false).await;
    }
    cluster.shutdown().await;
}
