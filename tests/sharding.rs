//! Sharding: keys spread over many Raft groups by the ring, the smart client routes
//! to shard leaders, and node-wide batching keeps fsyncs shared across shards.

mod common;

use common::{wait_for, TestCluster, WAIT};
use ctxstore::proto::cluster_client::ClusterClient;
use ctxstore::proto::kv_client::KvClient;
use ctxstore::proto::{
    GetRequest, NodeHeartbeat, NodeState, RequestHeader, RoutingTable, RoutingTableRequest,
};
use ctxstore::ranges::{even_arcs, RangeMap};
use ctxstore::Error;
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Whether the data shards' arcs in a routing table partition the hash space.
fn arcs_tile_the_space(t: &ctxstore::proto::RoutingTable) -> bool {
    let mut m = RangeMap::new();
    for d in t.shards.iter().filter_map(|r| r.descriptor.as_ref()) {
        m.insert_descriptor(d);
    }
    m.covers_everything()
}

/// The shard owning `key` in a new cluster of `shards` data shards (equal
/// contiguous arcs, shard `i` owning the `i`-th).
fn initial_owner(shards: u64, key: &[u8]) -> u64 {
    let h = ctxstore::keys::key_hash(key);
    even_arcs(shards)
        .iter()
        .position(|(lo, hi)| *lo <= h && h <= *hi)
        .map_or(0, |i| i as u64 + 1)
}

async fn put_many(client: &ctxstore_client::Client, prefix: &str, n: usize) -> Vec<String> {
    futures::stream::iter(0..n)
        .map(|i| {
            let c = client.clone();
            let k = format!("{prefix}-{i:05}");
            async move {
                c.put(k.clone(), format!("v-{k}")).await.expect("put");
                k
            }
        })
        .buffer_unordered(64)
        .collect()
        .await
}

/// 5 nodes, 16 shards × 3 replicas: every key lives exactly on the replicas of the
/// shard the ring names, checked on the servers' own storage.
///
/// 1. Start 5 nodes with 16 shards; wait for every shard to have a leader.
/// 2. Write 10,000 keys through the client.
/// 3. For every node, list the keys in its RocksDB; each key must be on exactly the 3
///    nodes hosting its ring shard, and nowhere else.
/// 4. Leaders are spread: no node leads every shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_live_on_the_replicas_of_their_ring_shard() {
    let cluster = TestCluster::start_with(5, |c| c.initial_shards = 16).await;
    cluster.wait_all_leaders().await;
    let client = cluster.client().await;
    let keys = put_many(&client, "place", 10_000).await;
    cluster.wait_converged_all().await;
    // Which nodes host which shard, from the nodes themselves.
    let mut hosts: BTreeMap<u64, BTreeSet<usize>> = BTreeMap::new();
    let mut leaders: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, n) in cluster.nodes.iter().enumerate() {
        for sh in n.as_ref().expect("running").status().await.shards {
            let id = sh.descriptor.as_ref().expect("descriptor").shard_id;
            hosts.entry(id).or_default().insert(i);
            if sh.role == "leader" && id != 0 {
                *leaders.entry(i).or_default() += 1;
            }
        }
    }
    // The meta shard 0 lives on the first three nodes and holds no user data.
    assert_eq!(hosts.remove(&0), Some(BTreeSet::from([0, 1, 2])));
    assert_eq!(hosts.len(), 16);
    assert!(hosts.values().all(|h| h.len() == 3), "{hosts:?}");
    assert!(
        leaders.values().all(|n| *n < 16),
        "one node leads every shard: {leaders:?}"
    );
    let mut holders: BTreeMap<Vec<u8>, BTreeSet<usize>> = BTreeMap::new();
    for (i, n) in cluster.nodes.iter().enumerate() {
        for k in n.as_ref().expect("running").data_keys().expect("scan") {
            holders.entry(k).or_default().insert(i);
        }
    }
    for k in &keys {
        let shard = initial_owner(16, k.as_bytes());
        let on = holders.get(k.as_bytes()).cloned().unwrap_or_default();
        assert_eq!(
            on, hosts[&shard],
            "key {k} of shard {shard} is on nodes {on:?}"
        );
    }
    cluster.shutdown().await;
}

/// Leadership of several shards moves while a client writes: no error reaches the
/// client, and every acknowledged write is readable afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_transfers_are_invisible_to_the_client() {
    // Manual moves only: automatic balancing would move leaders back.
    let cluster = TestCluster::start_with(3, |c| {
        c.initial_shards = 8;
        c.raft.leader_balance = false;
    })
    .await;
    cluster.wait_all_leaders().await;
    let client = cluster.client().await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let writer = {
        let (client, stop, acked) = (client.clone(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let k = format!("move-{i:05}");
                client
                    .put(k.clone(), "v")
                    .await
                    .expect("no error reaches the client");
                acked.lock().expect("lock").push(k);
                i += 1;
            }
        })
    };
    let mut moved = 0;
    for (desc, leader) in client.routing().await.into_iter().take(4) {
        let target = desc
            .replicas
            .iter()
            .find(|r| Some(&r.addr) != leader.as_ref())
            .expect("another replica")
            .node_id;
        client
            .transfer_shard_leader(desc.shard_id, target)
            .await
            .expect("transfer");
        let shard = desc.shard_id;
        wait_for("the leadership to move", WAIT, || async {
            let (_, l) = client
                .routing()
                .await
                .into_iter()
                .find(|(d, _)| d.shard_id == shard)?;
            let moved_to = desc.replicas.iter().find(|r| r.node_id == target)?;
            (l.as_deref() == Some(moved_to.addr.as_str())).then_some(())
        })
        .await;
        moved += 1;
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer finished without errors");
    assert_eq!(moved, 4);
    let acked = acked.lock().expect("lock").clone();
    assert!(!acked.is_empty());
    for k in acked {
        assert!(
            client.get(k.clone()).await.expect("get").is_some(),
            "{k} lost"
        );
    }
    cluster.shutdown().await;
}

/// A node is killed: the shards it led elect new leaders, the client follows within
/// seconds (measured), and every key stays readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_follows_shards_after_a_node_dies() {
    let mut cluster = TestCluster::start_with(3, |c| c.initial_shards = 8).await;
    cluster.wait_all_leaders().await;
    let client = cluster.client().await;
    let keys = put_many(&client, "die", 500).await;
    cluster.stop(0).await;
    let t = Instant::now();
    for (i, k) in keys.iter().enumerate() {
        client
            .put(k.clone(), "after")
            .await
            .expect("put after the kill");
        if i == 0 {
            eprintln!("node killed: first write served after {:?}", t.elapsed());
        }
    }
    eprintln!(
        "node killed: all {} keys rewritten after {:?}",
        keys.len(),
        t.elapsed()
    );
    let got = client.get_many(keys.clone()).await.expect("get_many");
    assert_eq!(got.len(), keys.len());
    for (k, kv) in keys.iter().zip(got) {
        let kv = kv.unwrap_or_else(|| panic!("{k} missing"));
        assert_eq!(
            kv.key.as_ref(),
            k.as_bytes(),
            "results follow the order of the keys"
        );
        assert_eq!(kv.value.as_ref(), b"after");
    }
    cluster.shutdown().await;
}

/// Speaking gRPC directly: a request naming a shard that does not own its key gets
/// `StaleEpoch` carrying that shard's current descriptor, one naming a shard the node
/// does not host gets `WrongShard`, and one sent to a follower gets `NotLeader` with a
/// hint.
/// A raw gRPC `Kv.Get` (no smart client) that must fail; returns its status.
async fn raw_get(addr: &str, header: RequestHeader, key: &[u8], stale: bool) -> tonic::Status {
    let mut kv = KvClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    kv.get(GetRequest {
        header: Some(header),
        key: key.to_vec().into(),
        stale,
    })
    .await
    .expect_err("the request must be refused")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_grpc_gets_typed_routing_errors() {
    let cluster = TestCluster::start_with(3, |c| c.initial_shards = 4).await;
    cluster.wait_all_leaders().await;
    let key = b"some-key".to_vec();
    let owner = initial_owner(4, &key);
    let wrong = owner % 4 + 1;
    let addrs = cluster.addrs();
    let wrong_header = RequestHeader {
        shard_id: wrong,
        ..Default::default()
    };
    let status = raw_get(&addrs[0], wrong_header, &key, false).await;
    match Error::from(status) {
        Error::StaleEpoch { shard, current, .. } => {
            assert_eq!(shard.0, wrong);
            let d = current
                .iter()
                .filter_map(|r| r.descriptor.as_ref())
                .find(|d| d.shard_id == wrong)
                .expect("the answer carries the named shard's descriptor");
            let h = ctxstore::keys::key_hash(&key);
            assert!(
                !d.arcs.iter().any(|a| a.lo <= h && h <= a.hi),
                "and its arcs, which do not hold the key"
            );
        }
        e => panic!("expected StaleEpoch, got {e}"),
    }
    let unhosted = RequestHeader {
        shard_id: 99,
        ..Default::default()
    };
    let status = raw_get(&addrs[0], unhosted, &key, false).await;
    assert!(
        matches!(Error::from(status), Error::WrongShard { shard } if shard.0 == 99),
        "a shard the node does not host is WrongShard"
    );
    // Find a node that hosts the owner shard, does not lead it, and has heard from
    // its leader (a follower that has not yet had a heartbeat answers Unavailable).
    let f = wait_for(
        "a follower of the owner shard that knows its leader",
        WAIT,
        || async {
            for (i, n) in cluster.nodes.iter().enumerate() {
                for sh in n.as_ref().expect("running").status().await.shards {
                    if sh.descriptor.as_ref().map(|d| d.shard_id) == Some(owner)
                        && sh.role == "follower"
                        && sh.leader_id != 0
                    {
                        return Some(i);
                    }
                }
            }
            None
        },
    )
    .await;
    let owner_header = RequestHeader {
        shard_id: owner,
        ..Default::default()
    };
    let status = raw_get(&addrs[f], owner_header, &key, false).await;
    match Error::from(status) {
        Error::NotLeader { shard, leader } => {
            assert_eq!(shard.0, owner);
            assert!(
                leader.is_some_and(|l| !l.addr.is_empty()),
                "the hint names the leader"
            );
        }
        e => panic!("expected NotLeader, got {e}"),
    }
    cluster.shutdown().await;
}

/// Node-wide group commit: 16 shards under the same write load do not multiply WAL
/// syncs by 16 compared with one shard.
///
/// 1. One cluster with 1 shard and one with 16 shards (3 nodes each).
/// 2. Each takes 2,000 writes from 64 concurrent writers.
/// 3. Compare WAL syncs per write summed over the nodes: the 16-shard cluster does
///    less than half of the 16 times as many that per-shard syncing would cost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_syncs_are_shared_across_shards() {
    let mut per_write = Vec::new();
    for shards in [1u64, 16] {
        let cluster = TestCluster::start_with(3, |c| c.initial_shards = shards).await;
        cluster.wait_all_leaders().await;
        let client = cluster.client().await;
        let before: u64 = cluster.nodes.iter().flatten().map(|n| n.wal_syncs()).sum();
        put_many(&client, "sync", 2_000).await;
        let after: u64 = cluster.nodes.iter().flatten().map(|n| n.wal_syncs()).sum();
        let ratio = (after - before) as f64 / 2_000.0;
        eprintln!(
            "{shards} shard(s): {} WAL syncs for 2000 writes ({ratio:.3} per write)",
            after - before
        );
        per_write.push(ratio);
        cluster.shutdown().await;
    }
    // Without node-wide group commit each shard would sync on its own: 16 times the
    // single-shard rate. Shared rounds keep it well under half of that.
    assert!(
        per_write[1] < per_write[0] * 8.0,
        "16 shards sync {:.3} per write vs {:.3} with one shard",
        per_write[1],
        per_write[0]
    );
}

/// Leaders spread over the nodes: after bootstrap, after all leaders were piled onto
/// one node, and after a full restart.
///
/// 1. Start 3 nodes with 9 shards; wait until no node leads more than 3 shards.
/// 2. Transfer every shard's leadership to node 1; wait until balancing spreads them
///    again (no node above 3).
/// 3. Restart all nodes; wait for the same condition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_spread_over_nodes() {
    let mut cluster = TestCluster::start_with(3, |c| c.initial_shards = 9).await;
    cluster.wait_all_leaders().await;
    wait_for("leaders spread after bootstrap", WAIT, || {
        leaders_spread(&cluster, 9)
    })
    .await;
    let client = cluster.client().await;
    for shard in 1..=9 {
        // Some shards have no replica on node 1; transfers there are refused.
        let _ = client.transfer_shard_leader(shard, 1).await;
    }
    wait_for("leaders spread again after piling them up", WAIT, || {
        leaders_spread(&cluster, 9)
    })
    .await;
    cluster.restart_all().await;
    cluster.wait_all_leaders().await;
    wait_for("leaders spread after a restart", WAIT, || {
        leaders_spread(&cluster, 9)
    })
    .await;
    cluster.shutdown().await;
}

/// Leaders per node when all `shards` have one and no node leads more than a third.
async fn leaders_spread(cluster: &TestCluster, shards: usize) -> Option<Vec<usize>> {
    let mut per_node = Vec::new();
    for n in cluster.nodes.iter().flatten() {
        let s = n.status().await;
        // Data shards only: the meta shard's leadership is not balanced.
        per_node.push(
            s.shards
                .iter()
                .filter(|s| {
                    s.role == "leader" && s.descriptor.as_ref().map(|d| d.shard_id) != Some(0)
                })
                .count(),
        );
    }
    let total: usize = per_node.iter().sum();
    let fair = shards.div_ceil(3);
    (total == shards && per_node.iter().all(|c| *c <= fair)).then_some(per_node)
}

/// A heartbeat that names the hash of the routes it holds gets the rest of the table
/// without them while they have not changed, and every route otherwise; the nodes,
/// which heartbeat that way, keep routing every shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_carry_the_routes_only_when_they_changed() {
    let cluster = TestCluster::start_with(3, |c| c.initial_shards = 4).await;
    let mut nodes = Vec::new();
    for a in cluster.addrs() {
        nodes.push(
            ClusterClient::connect(format!("http://{a}"))
                .await
                .expect("connect"),
        );
    }
    // Only the meta leader answers a heartbeat (the others say `NotLeader`), and
    // which node leads the meta shard is up to its election: the first answer of any.
    let ask = |known: u64| {
        let nodes = nodes.clone();
        async move {
            for mut c in nodes {
                let hb = NodeHeartbeat {
                    known_shards_hash: known,
                    ..Default::default()
                };
                if let Ok(r) = c.heartbeat(hb).await {
                    return Some(r.into_inner());
                }
            }
            None
        }
    };
    let full = wait_for("a table with every shard", WAIT, || async {
        ask(0).await.filter(|t| t.shards.len() == 5)
    })
    .await;
    assert!(!full.shards_unchanged && full.shards_hash != 0, "{full:?}");
    // The routes may still change (leader hints) while the cluster settles: each
    // answer either leaves them out, or carries them all with their new hash.
    let known = std::sync::Mutex::new(full.shards_hash);
    let short = wait_for("an answer without the routes", WAIT, || async {
        let k = *known.lock().expect("lock");
        let t = ask(k).await?;
        if t.shards_unchanged {
            assert_eq!(t.shards_hash, k, "the hash the heartbeat named");
            return Some(t);
        }
        assert_eq!(t.shards.len(), 5, "a changed table carries every route");
        assert_ne!(t.shards_hash, k, "changed routes get a new hash");
        *known.lock().expect("lock") = t.shards_hash;
        None
    })
    .await;
    assert!(short.shards.is_empty(), "{:?}", short.shards);
    assert_eq!(short.nodes.len(), 3, "the rest of the table is there");
    assert!(short.routing_version > 0, "{short:?}");
    let other = ask(short.shards_hash ^ 1).await.expect("answer");
    assert!(!other.shards_unchanged, "another hash gets the routes");
    assert_eq!(other.shards.len(), 5);
    // The nodes hold their routes across such answers: a client reaches every shard.
    let client = cluster.client().await;
    let keys = put_many(&client, "hb", 40).await;
    for k in &keys {
        let got = client.get(k.clone()).await.expect("get");
        assert!(got.is_some(), "{k}");
    }
    // Closes every node's RocksDB before the process exits: a database still open
    // then can abort the exit ("pthread lock: Invalid argument").
    cluster.shutdown().await;
}

/// Every node's routing table, fetched with raw gRPC.
async fn tables(cluster: &TestCluster) -> Vec<Option<RoutingTable>> {
    let mut out = Vec::new();
    for (i, n) in cluster.nodes.iter().enumerate() {
        if n.is_none() {
            out.push(None);
            continue;
        }
        let addr = format!("http://{}", cluster.addrs()[i]);
        let t = match ClusterClient::connect(addr).await {
            Ok(mut c) => c
                .get_routing_table(RoutingTableRequest {})
                .await
                .ok()
                .map(|r| r.into_inner()),
            Err(_) => None,
        };
        out.push(t);
    }
    out
}

/// Shard → node id of its leader, from the nodes' own status.
async fn actual_leaders(cluster: &TestCluster) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    for n in cluster.nodes.iter().flatten() {
        let s = n.status().await;
        for sh in s.shards.iter().filter(|s| s.role == "leader") {
            if let Some(d) = &sh.descriptor {
                out.insert(d.shard_id, s.node_id);
            }
        }
    }
    out
}

fn hinted_leaders(t: &RoutingTable) -> BTreeMap<u64, u64> {
    t.shards
        .iter()
        .filter_map(|r| Some((r.descriptor.as_ref()?.shard_id, r.leader.as_ref()?.node_id)))
        .collect()
}

/// Waits until the table of every running node but `skip` satisfies `ok`.
async fn wait_tables(
    cluster: &TestCluster,
    what: &str,
    skip: Option<usize>,
    ok: impl Fn(&RoutingTable) -> bool,
) {
    wait_for(what, WAIT, || async {
        let tables = tables(cluster).await;
        let all = tables
            .iter()
            .enumerate()
            .all(|(i, t)| Some(i) == skip || t.as_ref().is_some_and(&ok));
        all.then_some(())
    })
    .await;
}

/// The meta shard (shard 0) holds the routing table, and every node serves it.
///
/// 1. 5 nodes, 8 shards: every node (meta replica or not) answers `GetRoutingTable`
///    from the meta leader with the same `routing_version`, the ring, all 9 shards,
///    all 5 nodes up, and leader hints equal to the shards' actual leaders.
/// 2. A leader transfer is reflected in every node's table; `routing_version` does not
///    change (hints are not routing changes).
/// 3. The meta leader's node is stopped: a new meta leader is elected, every remaining
///    node still answers from it, the stopped node is reported down, and the client
///    keeps reading and writing.
/// 4. The stopped node restarts and is up again in every table; the version is
///    unchanged throughout (no membership or ring change happened).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_shard_serves_the_routing_table() {
    let mut cluster = TestCluster::start_with(5, |c| {
        c.initial_shards = 8;
        // Leadership stays where the test puts it.
        c.raft.leader_balance = false;
    })
    .await;
    cluster.wait_all_leaders().await;
    let version = wait_for(
        "every node to serve the meta leader's table",
        WAIT,
        || async {
            let leaders = actual_leaders(&cluster).await;
            let tables = tables(&cluster).await;
            let first = tables.first()?.as_ref()?.clone();
            for t in &tables {
                let t = t.as_ref()?;
                let ok = t.source == "meta-leader"
                    && t.routing_version == first.routing_version
                    && arcs_tile_the_space(t)
                    && t.shards.len() == 9
                    && t.nodes.len() == 5
                    && t.nodes.iter().all(|n| n.state == NodeState::Up as i32)
                    && hinted_leaders(t) == leaders;
                if !ok {
                    return None;
                }
            }
            Some(first.routing_version)
        },
    )
    .await;
    // 2. Move shard 3's leader; hints follow, the version stays.
    let leaders = actual_leaders(&cluster).await;
    let from = leaders[&3];
    let to = if from == 4 { 5 } else { 4 };
    let table = tables(&cluster).await[0].clone().expect("table");
    let hosts: Vec<u64> = table.shards[3]
        .descriptor
        .as_ref()
        .expect("descriptor")
        .replicas
        .iter()
        .map(|r| r.node_id)
        .collect();
    let to = if hosts.contains(&to) {
        to
    } else {
        *hosts.iter().find(|n| **n != from).expect("another replica")
    };
    let client = cluster.client().await;
    client.transfer_shard_leader(3, to).await.expect("transfer");
    wait_tables(
        &cluster,
        "every table to name the new leader of shard 3",
        None,
        |t| hinted_leaders(t).get(&3) == Some(&to) && t.routing_version == version,
    )
    .await;
    // 3. Stop the meta leader's node.
    let meta_leader = actual_leaders(&cluster).await[&0];
    let stopped = (meta_leader - 1) as usize;
    cluster.stop(stopped).await;
    let started = Instant::now();
    wait_tables(
        &cluster,
        "a new meta leader serving every remaining node",
        Some(stopped),
        |t| {
            t.source == "meta-leader"
                && hinted_leaders(t).get(&0).is_some_and(|l| *l != meta_leader)
                && t.nodes
                    .iter()
                    .any(|n| n.node_id == meta_leader && n.state == NodeState::Disconnected as i32)
        },
    )
    .await;
    eprintln!(
        "meta leader node {meta_leader} stopped: new meta leader serving, node reported disconnected after {:?}",
        started.elapsed()
    );
    client.put("after-meta-failover", "ok").await.expect("put");
    common::must_read(&client, "after-meta-failover", b"ok", false).await;
    // 4. The stopped node comes back: its meta replica reloads the state from disk,
    //    the node is up again, and nothing bumped the routing version.
    cluster.restart(stopped).await;
    wait_tables(
        &cluster,
        "the restarted node to be up in every table",
        None,
        |t| t.routing_version == version && t.nodes.iter().all(|n| n.state == NodeState::Up as i32),
    )
    .await;
    cluster.shutdown().await;
}
