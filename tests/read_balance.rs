//! Reads served by any replica (docs/api.md, "Read modes"): follower ReadIndex is
//! linearizable, bounded-staleness reads respect their bound and the client's
//! session, and the client's balancer spreads reads and avoids a slow replica.

mod common;

use common::{wait_for, wait_for_explained, Isolate, TestCluster, WAIT};
use ctxstore::proto::kv_client::KvClient;
use ctxstore::proto::{GetRequest, ReadMode as WireMode, RequestHeader};
use ctxstore::{MessageFilter, NodeId};
use ctxstore_client::{Client, ClientOptions, Error, ReadBalance, ReadMode};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn opts(read_mode: ReadMode, read_balance: ReadBalance) -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(15),
        read_mode,
        read_balance,
        ..Default::default()
    }
}

/// A client over every node of `cluster` reading in `mode`, balanced by `policy`.
async fn client_in(cluster: &TestCluster, mode: ReadMode, policy: ReadBalance) -> Client {
    Client::connect_with(&cluster.addrs(), opts(mode, policy))
        .await
        .expect("client")
}

/// Reads each node has served so far.
fn served(cluster: &TestCluster) -> Vec<u64> {
    cluster
        .nodes
        .iter()
        .map(|n| n.as_ref().map_or(0, |n| n.reads_served()))
        .collect()
}

fn delta(after: &[u64], before: &[u64]) -> Vec<u64> {
    after.iter().zip(before).map(|(a, b)| a - b).collect()
}

/// Writes `n` keys `key-0..n` (through the leader) and returns the client used.
async fn preload(cluster: &TestCluster, n: usize) -> Client {
    let c = cluster.client().await;
    for i in 0..n {
        c.put(format!("key-{i}"), format!("v{i}"))
            .await
            .expect("preload put");
    }
    c
}

/// A raw `Get` of `key` sent to node `i` only, in `mode`.
async fn get_at(
    cluster: &TestCluster,
    i: usize,
    key: &str,
    mode: WireMode,
    max_staleness_ms: u64,
    min_version: u64,
) -> Result<Option<u64>, Error> {
    let mut kv = KvClient::connect(format!("http://{}", cluster.addrs()[i]))
        .await
        .map_err(|e| Error::Transport(e.to_string()))?;
    let req = GetRequest {
        header: Some(RequestHeader {
            read_mode: mode as i32,
            max_staleness_ms,
            min_version,
            ..Default::default()
        }),
        key: key.as_bytes().to_vec().into(),
        stale: false,
    };
    match kv.get(req).await {
        Ok(r) => Ok(r.into_inner().kv.map(|kv| kv.version)),
        Err(s) => Err(Error::from(s)),
    }
}

/// Index of a node whose replica of shard 1 follows.
async fn a_follower(cluster: &TestCluster) -> usize {
    let leader = cluster.wait_leader().await;
    (leader + 1) % cluster.nodes.len()
}

/// Follower reads are linearizable and move reads off the leader.
///
/// 1. 3 nodes, one shard replicated on all three.
/// 2. 60 times: a writer puts a key, then a separate client (no shared session)
///    reads it in `follower` mode, replicas picked round-robin.
/// 3. Every read returns the write just acknowledged (version and value), and every
///    node served at least 10 of the reads (round-robin over 3 gives 20 each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_reads_see_every_acknowledged_write_and_every_replica_serves_them() {
    let cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    let writer = cluster.client().await;
    let reader = client_in(&cluster, ReadMode::Follower, ReadBalance::RoundRobin).await;
    let before = served(&cluster);
    for i in 0..60u64 {
        let key = format!("lin-{}", i % 6);
        let w = writer.put(key.clone(), i.to_string()).await.expect("put");
        let kv = reader
            .get(key.clone())
            .await
            .expect("follower read")
            .expect("the key was just written");
        assert_eq!(
            (kv.version, kv.value.as_ref()),
            (w.version, i.to_string().as_bytes()),
            "a follower read of {key} after its write was acknowledged"
        );
    }
    let d = delta(&served(&cluster), &before);
    assert!(
        d.iter().all(|n| *n >= 10),
        "every replica serves follower reads: {d:?}"
    );
    cluster.shutdown().await;
}

/// 64 clients, each with its own balancer in `policy`, read 40 random keys each
/// with `bounded:5s`; the reads each node served (counted on the servers).
async fn spread(cluster: &TestCluster, policy: ReadBalance) -> Vec<u64> {
    let mode = ReadMode::Bounded(Duration::from_secs(5));
    let mut clients = Vec::new();
    for _ in 0..64 {
        let c = client_in(cluster, mode, policy).await;
        // Learn the routing before counting.
        c.get("key-0").await.expect("first read");
        clients.push(c);
    }
    let before = served(cluster);
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(n, c)| {
            tokio::spawn(async move {
                for j in 0..40 {
                    let key = format!("key-{}", (n * 7 + j * 13) % 200);
                    let kv = c.get(key).await.expect("bounded read");
                    assert!(kv.is_some(), "every preloaded key is there");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("reader");
    }
    let d = delta(&served(cluster), &before);
    assert_eq!(
        d.iter().sum::<u64>(),
        64 * 40,
        "every read counted once: {d:?}"
    );
    d
}

fn shares(d: &[u64]) -> Vec<f64> {
    let total: u64 = d.iter().sum();
    d.iter().map(|n| *n as f64 / total as f64).collect()
}

/// Bounded-staleness reads from 64 clients spread over the 3 nodes.
///
/// 1. 3 nodes, one shard on all three, 200 keys.
/// 2. 64 clients read 40 random keys each with `bounded:5s`, once balanced
///    round-robin and once by the default p2c-peak-ewma.
/// 3. Counted on the servers: round-robin gives each node 33 % ± 10 %; p2c, which
///    favours whichever replica answers faster, still gives every node at least
///    15 % (the leader does not take the reads over). Both are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_reads_from_many_clients_spread_over_every_node() {
    let cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    preload(&cluster, 200).await;
    let rr = spread(&cluster, ReadBalance::RoundRobin).await;
    let p2c = spread(&cluster, ReadBalance::P2cPeakEwma).await;
    let leader = cluster.wait_leader().await + 1;
    println!(
        "bounded reads per node (shard leader: node {leader}): round-robin {rr:?} {:.3?}, p2c-peak-ewma {p2c:?} {:.3?}",
        shares(&rr),
        shares(&p2c)
    );
    assert!(
        shares(&rr).iter().all(|s| (0.233..=0.433).contains(s)),
        "round-robin: each node serves 33 % ± 10 %: {rr:?}"
    );
    assert!(
        shares(&p2c).iter().all(|s| *s >= 0.15),
        "p2c: every node serves at least 15 %: {p2c:?}"
    );
    cluster.shutdown().await;
}

/// The weighted policy follows the nodes' `read-weight`s from the routing table.
///
/// 1. 3 nodes with read weights 100, 200 and 300.
/// 2. Wait until the meta leader's routing table shows every weight (heartbeats).
/// 3. A client balancing by weight does 1200 bounded reads: the nodes serve about
///    1/6, 2/6 and 3/6 of them (± 8 points).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_weighted_policy_follows_the_nodes_read_weights() {
    let cluster = TestCluster::start_with(3, |c| c.read_weight = c.node_id as u32 * 100).await;
    cluster.wait_all_leaders().await;
    let admin = preload(&cluster, 50).await;
    wait_for(
        "every node's read weight in the routing table",
        WAIT,
        || async {
            let t = common::meta_table(&admin).await?;
            let mut weights: Vec<(u64, u32)> = t
                .nodes
                .iter()
                .map(|n| (n.node_id, n.stats.as_ref().map_or(0, |s| s.read_weight)))
                .collect();
            weights.sort_unstable();
            (weights == [(1, 100), (2, 200), (3, 300)]).then_some(())
        },
    )
    .await;
    let c = client_in(
        &cluster,
        ReadMode::Bounded(Duration::from_secs(5)),
        ReadBalance::Weighted,
    )
    .await;
    c.get("key-0").await.expect("first read");
    let before = served(&cluster);
    for j in 0..1200 {
        c.get(format!("key-{}", j % 50))
            .await
            .expect("bounded read");
    }
    let d = delta(&served(&cluster), &before);
    let got = shares(&d);
    println!("weighted reads per node: {d:?} {got:.3?}");
    for (share, want) in got.iter().zip([1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0]) {
        assert!(
            (share - want).abs() < 0.08,
            "shares {got:.3?} follow the weights 1:2:3"
        );
    }
    cluster.shutdown().await;
}

/// The 99th percentile of `lat`.
fn p99(lat: &mut [Duration]) -> Duration {
    lat.sort_unstable();
    lat[(lat.len() * 99 / 100).min(lat.len() - 1)]
}

/// 4 concurrent readers of one client in `policy` do 200 bounded reads each, after
/// 100 reads that warm the client's latency estimates; the latencies.
async fn read_phase(cluster: &TestCluster, policy: ReadBalance) -> Vec<Duration> {
    let c = client_in(cluster, ReadMode::Bounded(Duration::from_secs(5)), policy).await;
    for j in 0..100 {
        c.get(format!("key-{j}")).await.expect("warm-up read");
    }
    let tasks: Vec<_> = (0..4)
        .map(|n| {
            let c = c.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                for j in 0..200 {
                    let t = Instant::now();
                    c.get(format!("key-{}", (n * 11 + j) % 100))
                        .await
                        .expect("bounded read");
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("reader"));
    }
    all
}

/// A replica made slow (20 ms on every read it serves) is avoided by
/// p2c-peak-ewma and not by round-robin.
///
/// 1. 3 nodes, one shard on all three, 100 keys.
/// 2. p2c without delay: the baseline p99.
/// 3. One follower's reads delayed by 20 ms: round-robin, then p2c, each 800 reads
///    from 4 concurrent readers of a client whose estimates were warmed by 100 reads.
/// 4. p2c's p99 is below round-robin's, and round-robin's is at least the delay (a
///    third of its reads go to the slow node). The three p99s are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_replica_is_avoided_by_p2c_but_not_by_round_robin() {
    let cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    preload(&cluster, 100).await;
    let baseline = p99(&mut read_phase(&cluster, ReadBalance::P2cPeakEwma).await);
    let slow = a_follower(&cluster).await;
    let delay = Duration::from_millis(20);
    cluster.nodes[slow]
        .as_ref()
        .expect("running")
        .set_read_delay(Some(delay));
    let rr = p99(&mut read_phase(&cluster, ReadBalance::RoundRobin).await);
    let p2c = p99(&mut read_phase(&cluster, ReadBalance::P2cPeakEwma).await);
    println!(
        "bounded-read p99: no delay (p2c) {baseline:?}; node {} slowed by {delay:?}: round-robin {rr:?}, p2c-peak-ewma {p2c:?}",
        slow + 1
    );
    assert!(
        rr >= delay,
        "round-robin keeps sending to the slow node: {rr:?}"
    );
    assert!(
        p2c < rr,
        "p2c avoids the slow node: p2c {p2c:?} vs round-robin {rr:?}"
    );
    cluster.shutdown().await;
}

/// A partitioned follower refuses bounded reads once the bound has passed, and a
/// follower never serves a read below the client's `min_version`.
///
/// 1. 3 nodes; write a key. A follower answers a bounded (300 ms) read of it.
/// 2. The same follower with `min_version` above anything applied: `ReplicaTooStale`.
/// 3. Partition the follower: within a deadline it answers `ReplicaTooStale` with a
///    contact age above 300 ms; a stale-mode read is still served (no bound).
/// 4. A write acknowledged by the majority meanwhile; the client with that write in
///    its session, reading in bounded mode, gets the new value (from a replica that
///    has it).
/// 5. Heal: the follower catches up and answers bounded reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_follower_refuses_bounded_reads_once_the_bound_has_passed() {
    let cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    let writer = cluster.client().await;
    let w = writer.put("bk", "one").await.expect("put");
    let f = a_follower(&cluster).await;
    let version = wait_for("the follower to serve a bounded read", WAIT, || async {
        get_at(&cluster, f, "bk", WireMode::Bounded, 300, w.version)
            .await
            .ok()
            .flatten()
    })
    .await;
    assert_eq!(version, w.version);
    match get_at(
        &cluster,
        f,
        "bk",
        WireMode::Bounded,
        300,
        w.version + 1_000_000,
    )
    .await
    {
        Err(Error::ReplicaTooStale { applied, .. }) => assert!(applied >= w.version),
        other => panic!("a floor above the applied index is refused: {other:?}"),
    }
    for n in cluster.nodes.iter().flatten() {
        n.set_message_filter(Some(Arc::new(Isolate(NodeId(f as u64 + 1)))));
    }
    let age = wait_for_explained("the partitioned follower to refuse", WAIT, || async {
        match get_at(&cluster, f, "bk", WireMode::Bounded, 300, 0).await {
            Err(Error::ReplicaTooStale {
                contact_age_ms: Some(age),
                ..
            }) => Ok(age),
            Err(Error::ReplicaTooStale {
                contact_age_ms: None,
                ..
            }) => Ok(u64::MAX),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // Whole milliseconds: an age of 300.4 ms is over the bound and shows as 300.
    assert!(
        age >= 300,
        "refused only after the bound: contact age {age} ms"
    );
    assert_eq!(
        get_at(&cluster, f, "bk", WireMode::Stale, 0, 0)
            .await
            .expect("stale reads have no bound"),
        Some(w.version)
    );
    // The majority goes on; a bounded reader that wrote sees its write.
    let reader = client_in(
        &cluster,
        ReadMode::Bounded(Duration::from_millis(300)),
        ReadBalance::RoundRobin,
    )
    .await;
    let w2 = reader
        .put("bk", "two")
        .await
        .expect("put on the majority side");
    for _ in 0..12 {
        let kv = reader
            .get("bk")
            .await
            .expect("bounded read")
            .expect("found");
        assert_eq!(
            kv.version, w2.version,
            "never older than what this client wrote"
        );
    }
    for n in cluster.nodes.iter().flatten() {
        n.set_message_filter(None);
    }
    wait_for(
        "the healed follower to serve bounded reads",
        WAIT,
        || async {
            get_at(&cluster, f, "bk", WireMode::Bounded, 300, w2.version)
                .await
                .ok()
                .flatten()
                .filter(|v| *v == w2.version)
        },
    )
    .await;
    cluster.shutdown().await;
}

/// A follower removed from its shard while it serves an admitted read refuses the
/// read instead of answering from its deleted data.
///
/// 1. 3 nodes; write a key. Slow the follower's reads by 3 s (the delay comes after
///    the read's barrier, before it reads).
/// 2. Send it a follower read; once the read is admitted (counted), remove the
///    follower's replica from the shard and wait until the node no longer hosts it.
/// 3. The read answers `ShardUnavailable`, not "absent".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_removed_during_a_read_refuses_it() {
    let cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    let admin = cluster.client().await;
    admin.put("gone", "v").await.expect("put");
    let f = a_follower(&cluster).await;
    let node = cluster.nodes[f].as_ref().expect("running");
    // The follower must have applied the write before the read is sent, so the read
    // is admitted at once.
    wait_for("the follower to have the key", WAIT, || async {
        get_at(&cluster, f, "gone", WireMode::Stale, 0, 0)
            .await
            .ok()
            .flatten()
    })
    .await;
    node.set_read_delay(Some(Duration::from_secs(3)));
    let before = node.reads_served();
    let addr = cluster.addrs()[f].clone();
    let read = tokio::spawn(async move {
        let mut kv = KvClient::connect(format!("http://{addr}"))
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        let req = GetRequest {
            header: Some(RequestHeader {
                read_mode: WireMode::Follower as i32,
                ..Default::default()
            }),
            key: b"gone".to_vec().into(),
            stale: false,
        };
        kv.get(req)
            .await
            .map(|r| r.into_inner().kv.map(|kv| kv.version))
            .map_err(Error::from)
    });
    wait_for("the follower read to be admitted", WAIT, || async {
        (node.reads_served() > before).then_some(())
    })
    .await;
    admin
        .remove_shard_member(Some(1), f as u64 + 1)
        .await
        .expect("remove the follower");
    wait_for("the follower's replica to go", WAIT, || async {
        common::shard(&node.status().await, 1)
            .is_none()
            .then_some(())
    })
    .await;
    match read.await.expect("read task") {
        Err(Error::ShardUnavailable { reason, .. }) => {
            assert!(reason.contains("removed"), "{reason}")
        }
        other => panic!("a read admitted by a replica removed before it read: {other:?}"),
    }
    node.set_read_delay(None);
    cluster.shutdown().await;
}

/// Conversation reads follow the client's read mode, and a bounded reader reads its
/// own appends.
///
/// 1. 3 nodes whose Raft messages take 30 ms (so a follower applies an append well
///    after it is acknowledged); a client reading in `bounded:300ms`, replicas picked
///    round-robin (two reads in three go to followers).
/// 2. 30 times: append one message, then read the newest message: it is the one just
///    appended (the session floor sends a lagging follower's read elsewhere).
/// 3. Lagging followers refused some of those reads (`ReplicaTooStale`, counted as
///    errors by the client's balancer). Without the floor they answer without the
///    append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_reader_reads_its_own_conversation_appends() {
    use ctxstore::proto::{
        read_request::Select, AppendRequest, ChatMessage, ConversationRef, ReadRequest,
    };
    let cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    let c = client_in(
        &cluster,
        ReadMode::Bounded(Duration::from_millis(300)),
        ReadBalance::RoundRobin,
    )
    .await;
    let conv = ConversationRef {
        namespace: "agents".into(),
        id: "ryw".into(),
    };
    struct Slow;
    impl MessageFilter for Slow {
        fn allow(&self, _: NodeId, _: NodeId) -> bool {
            true
        }
        fn delay(&self, _: NodeId, _: NodeId) -> Option<Duration> {
            Some(Duration::from_millis(30))
        }
    }
    for n in cluster.nodes.iter().flatten() {
        n.set_message_filter(Some(Arc::new(Slow)));
    }
    let before = served(&cluster);
    for i in 0..30u64 {
        let a = c
            .append(AppendRequest {
                conversation: Some(conv.clone()),
                messages: vec![ChatMessage {
                    role: "user".into(),
                    content: format!("step {i}"),
                    token_count: 3,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await
            .expect("append");
        let r = c
            .read(ReadRequest {
                conversation: Some(conv.clone()),
                select: Some(Select::LastN(1)),
                ..Default::default()
            })
            .await
            .expect("bounded read");
        let last: Vec<(u64, String)> = r.messages.into_iter().map(|m| (m.seq, m.content)).collect();
        assert_eq!(
            last,
            vec![(a.last_seq, format!("step {i}"))],
            "read {i} sees its append"
        );
    }
    // Followers were asked and refused while they lagged (the floor at work).
    let refused: u64 = c.endpoint_loads().iter().map(|l| l.errors).sum();
    let d = delta(&served(&cluster), &before);
    assert!(refused > 0, "no lagging follower was asked: served {d:?}");
    cluster.shutdown().await;
}

/// A read mode the server does not know, or a bounded read without its bound, is
/// refused with `InvalidArgument` naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_read_modes_are_refused_by_name() {
    let cluster = TestCluster::start(1).await;
    cluster.wait_all_leaders().await;
    match get_at(&cluster, 0, "k", WireMode::Bounded, 0, 0).await {
        Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "header.max_staleness_ms"),
        other => panic!("bounded without a bound: {other:?}"),
    }
    let mut kv = KvClient::connect(format!("http://{}", cluster.addrs()[0]))
        .await
        .expect("connect");
    let req = GetRequest {
        header: Some(RequestHeader {
            read_mode: 42,
            ..Default::default()
        }),
        key: b"k".to_vec().into(),
        stale: false,
    };
    match kv.get(req).await.map_err(Error::from) {
        Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "header.read_mode"),
        other => panic!("an unknown read mode: {other:?}"),
    }
    cluster.shutdown().await;
}

/// 3 nodes with lease reads; `k` written at v1 and read back at the leader (by its
/// lease): the cluster, the leader's index and v1.
async fn lease_cluster_with_k() -> (TestCluster, usize, u64) {
    let cluster = TestCluster::start_with(3, |c| c.raft.lease_reads = true).await;
    let client = cluster.client().await;
    let old = cluster.wait_leader().await;
    let v1 = client.put("k", "v1").await.expect("put").version;
    assert_eq!(
        get_at(&cluster, old, "k", WireMode::Leader, 0, 0)
            .await
            .expect("read"),
        Some(v1)
    );
    (cluster, old, v1)
}

/// Cuts node `old` (the leader when `k` was written at `v1`) off from the others'
/// Raft traffic, writes `k` again through them, and until `old` stops answering as
/// leader checks that every leader-mode read it serves returns the new version.
async fn cut_off_and_check_no_stale_read(cluster: TestCluster, old: usize, v1: u64) {
    for n in cluster.nodes.iter().flatten() {
        n.set_message_filter(Some(Arc::new(Isolate(NodeId(old as u64 + 1)))));
    }
    let others: Vec<String> = (0..3)
        .filter(|i| *i != old)
        .map(|i| cluster.addrs()[i].clone())
        .collect();
    let majority = Client::connect(&others).await.expect("client");
    let v2 = majority
        .put("k", "v2")
        .await
        .expect("put on the majority")
        .version;
    assert!(v2 > v1);
    let served = std::sync::atomic::AtomicU32::new(0);
    wait_for("the old leader to stop serving", WAIT, || async {
        match get_at(&cluster, old, "k", WireMode::Leader, 0, 0).await {
            Ok(got) => {
                assert_eq!(got, Some(v2), "the old leader served a stale read");
                served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                None
            }
            Err(_) => Some(()),
        }
    })
    .await;
    eprintln!(
        "reads the old leader answered after the new write: {}",
        served.into_inner()
    );
    for n in cluster.nodes.iter().flatten() {
        n.set_message_filter(None);
    }
    cluster.shutdown().await;
}

/// With lease reads, a leader cut off from its followers never serves a read older
/// than a write the new leader acknowledged.
///
/// 1. 3 nodes with lease reads; write `k` (version v1) through the leader L.
/// 2. Cut L's Raft traffic. Write `k` again through the client (the others elect a
///    new leader; version v2 > v1).
/// 3. Until L stops answering as leader: every leader-mode read sent to L returns
///    v2 or an error — never v1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_serves_no_stale_lease_read() {
    let (cluster, old, v1) = lease_cluster_with_k().await;
    cut_off_and_check_no_stale_read(cluster, old, v1).await;
}

/// With lease reads, a leader that handed its leadership over and was cut off before
/// hearing of the new term serves no stale read (a transfer's campaign does not wait
/// out the followers' lease, so the old leader's lease must end with the transfer).
///
/// 1. 3 nodes with lease reads; write `k` (v1) through the leader L.
/// 2. Ask L to hand leadership to node B, and cut L's Raft traffic right after.
/// 3. If B becomes leader: write `k` (v2) through B and C; until L stops answering
///    as leader, every leader-mode read at L returns v2 or an error, never v1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_transferred_serves_no_stale_lease_read() {
    use ctxstore::proto::cluster_client::ClusterClient;
    use ctxstore::proto::TransferLeaderRequest;
    let (cluster, old, v1) = lease_cluster_with_k().await;
    let to = (old + 1) % 3;
    let mut admin = ClusterClient::connect(format!("http://{}", cluster.addrs()[old]))
        .await
        .expect("connect");
    admin
        .transfer_leader(TransferLeaderRequest {
            shard_id: Some(1),
            node_id: to as u64 + 1,
        })
        .await
        .expect("transfer");
    cut_off_and_check_no_stale_read(cluster, old, v1).await;
}
