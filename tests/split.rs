//! Online resharding: a shard splits in two while it serves, without copying data.
//! In-process clusters through the shared harness.

mod common;

use common::{wait_for, TestCluster, WAIT};
use ctxstore::proto::{AppendRequest, ChatMessage, ConversationRef, ReadRequest, SeqRange};
use ctxstore::ranges::RangeMap;
use ctxstore::Error;
use std::collections::BTreeMap;

/// Bytes all running nodes have written to RocksDB since they started.
fn bytes_written(cluster: &TestCluster) -> u64 {
    cluster
        .nodes
        .iter()
        .flatten()
        .map(|n| n.bytes_written())
        .sum()
}

/// The routing table's data shards partition the hash space exactly once.
fn assert_partition(t: &ctxstore::proto::RoutingTable) {
    let mut m = RangeMap::new();
    let mut total = 0u128;
    for d in t.shards.iter().filter_map(|r| r.descriptor.as_ref()) {
        m.insert_descriptor(d);
        total += ctxstore::ranges::width(&ctxstore::ranges::arcs_of(d));
    }
    assert!(m.covers_everything(), "a hash has no owner: {t:?}");
    assert_eq!(total, 1u128 << 64, "arcs overlap: {t:?}");
}

fn message(text: &str) -> ChatMessage {
    ChatMessage {
        role: "user".into(),
        content: text.into(),
        token_count: 1,
        ..Default::default()
    }
}

/// A manual split at the size midpoint: the data stays where it is and every key,
/// conversation and version reads back; writes after the split go to the new shard,
/// with versions above the split's index; a CAS with a pre-split version succeeds.
///
/// 1. 3 nodes, 1 shard: 400 keys, a CAS'd key, a 20-message conversation.
/// 2. Split shard 1 through the client (no cut given: the size midpoint).
/// 3. Parent and child arcs partition the space; the node's RocksDB took only a few
///    KiB of writes for the split; the meta shard's table lists the child.
/// 4. Every key reads back with its old version, the conversation whole.
/// 5. A key that moved: CAS on its pre-split version succeeds, and its new version is
///    above the split's index.
/// 6. Replica digests agree per shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_keeps_every_key_and_copies_nothing() {
    let cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    let client = cluster.client().await;
    let mut versions = BTreeMap::new();
    for i in 0..400 {
        let k = format!("key-{i}");
        let w = client.put(k.clone(), format!("v{i}")).await.expect("put");
        versions.insert(k, w.version);
    }
    let conv = ConversationRef {
        namespace: "demo".into(),
        id: "chat".into(),
    };
    for i in 0..20 {
        client
            .append(AppendRequest {
                conversation: Some(conv.clone()),
                messages: vec![message(&format!("m{i}"))],
                ..Default::default()
            })
            .await
            .expect("append");
    }
    cluster.wait_converged_all().await;
    let written_before = bytes_written(&cluster);
    let (parent, child) = client.split_shard(1, None).await.expect("split");
    let written = bytes_written(&cluster) - written_before;
    eprintln!(
        "split of shard 1 into {} wrote {written} bytes on 3 nodes; parent arcs {:?}, child arcs {:?}",
        child.shard_id, parent.arcs, child.arcs
    );
    assert_eq!(parent.ring_ver, 2);
    assert_eq!(child.ring_ver, 2);
    assert_eq!(child.split_from, 1);
    assert!(written < 1 << 20, "the split wrote {written} bytes");
    let table = wait_for("the meta shard to list the new shard", WAIT, || async {
        let t = client.routing_table().await.ok()?;
        let has = t
            .shards
            .iter()
            .filter_map(|r| r.descriptor.as_ref())
            .any(|d| d.shard_id == child.shard_id);
        has.then_some(t)
    })
    .await;
    assert_partition(&table);
    cluster.wait_all_leaders().await;
    for (k, v) in &versions {
        let kv = client.get(k.clone()).await.expect("get").expect("kept");
        assert_eq!(kv.version, *v, "{k} kept its version");
    }
    let read = client
        .read(ReadRequest {
            conversation: Some(conv.clone()),
            select: Some(ctxstore::proto::read_request::Select::Range(
                SeqRange::default(),
            )),
            ..Default::default()
        })
        .await
        .expect("read");
    assert_eq!(read.messages.len(), 20, "the conversation stays whole");
    // A key the split moved to the new shard.
    let child_arcs = ctxstore::ranges::arcs_of(&child);
    let moved = versions
        .iter()
        .find(|(k, _)| {
            ctxstore::ranges::contains(&child_arcs, ctxstore::keys::key_hash(k.as_bytes()))
        })
        .map(|(k, v)| (k.clone(), *v))
        .expect("some key moved");
    let w = client
        .compare_and_swap(moved.0.clone(), moved.1, "after-split")
        .await
        .expect("CAS with the pre-split version");
    assert!(
        w.version > child.split_index,
        "{} > {}",
        w.version,
        child.split_index
    );
    assert_eq!(w.create_version, moved.1, "create version kept");
    common::assert_replicas_agree(&cluster).await;
    cluster.shutdown().await;
}

/// Bad input: splitting an unknown shard, the meta shard, at a hash outside the
/// shard's arcs or at an arc's first hash is refused with a specific error, and
/// nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_splits_are_refused_and_change_nothing() {
    let cluster = TestCluster::start_with(3, |c| c.initial_shards = 2).await;
    cluster.wait_all_leaders().await;
    let client = cluster.client().await;
    let before = client.routing_table().await.expect("table");
    let arcs1 = ctxstore::ranges::even_arcs(2)[0];
    let cases: Vec<(u64, Option<u64>, &str)> = vec![
        (99, None, "unknown shard"),
        (0, None, "meta shard"),
        (1, Some(arcs1.1 + 10), "outside the arcs"),
        (1, Some(arcs1.0), "an arc's first hash"),
    ];
    for (shard, at, what) in cases {
        let e = client.split_shard(shard, at).await.expect_err(what);
        let specific = matches!(
            e,
            Error::NotFound(_) | Error::InvalidArgument { .. } | Error::FailedPrecondition(_)
        );
        assert!(specific, "{what}: {e}");
    }
    let after = client.routing_table().await.expect("table");
    assert_eq!(after.shards.len(), before.shards.len(), "no shard was made");
    assert_eq!(after.routing_version, before.routing_version);
    cluster.shutdown().await;
}

/// What one load client saw acknowledged.
#[derive(Default)]
struct Acks {
    /// Keys put once each, with their value.
    puts: Vec<(String, String)>,
    /// This client's CAS key and the value of its last acknowledged CAS.
    cas: Option<(String, String)>,
    /// Conversation → contents of the messages acknowledged in it.
    appended: BTreeMap<String, Vec<String>>,
    /// Client-visible errors (there must be none).
    errors: Vec<String>,
}

/// One load client: puts of new keys, a CAS chain on its own key, and appends to one
/// of four shared conversations, until `stop`.
async fn load_client(
    client: ctxstore_client::Client,
    i: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Acks {
    let mut acks = Acks::default();
    let cas_key = format!("{{cas-{i}}}");
    let mut version = 0;
    let conv = format!("c{}", i % 4);
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        let key = format!("load-{i}-{n}");
        let value = format!("v{i}-{n}");
        match client.put(key.clone(), value.clone()).await {
            Ok(_) => acks.puts.push((key, value.clone())),
            Err(e) => acks.errors.push(format!("put {key}: {e}")),
        }
        match client
            .compare_and_swap(cas_key.clone(), version, value.clone())
            .await
        {
            Ok(w) => {
                version = w.version;
                acks.cas = Some((cas_key.clone(), value.clone()));
            }
            Err(e) => acks.errors.push(format!("cas {cas_key}: {e}")),
        }
        let r = client
            .append(AppendRequest {
                conversation: Some(ConversationRef {
                    namespace: "load".into(),
                    id: conv.clone(),
                }),
                messages: vec![message(&value)],
                ..Default::default()
            })
            .await;
        match r {
            Ok(_) => acks.appended.entry(conv.clone()).or_default().push(value),
            Err(e) => acks.errors.push(format!("append {conv}: {e}")),
        }
    }
    acks
}

/// Reads back everything the load acknowledged.
async fn verify_acks(client: &ctxstore_client::Client, all: &[Acks]) {
    let errors: Vec<&String> = all.iter().flat_map(|a| &a.errors).collect();
    assert!(errors.is_empty(), "client-visible errors: {errors:?}");
    let puts: usize = all.iter().map(|a| a.puts.len()).sum();
    assert!(puts > 0, "the load made progress");
    for a in all {
        for (k, v) in &a.puts {
            let kv = client
                .get(k.clone())
                .await
                .expect("get")
                .unwrap_or_else(|| panic!("{k} lost"));
            assert_eq!(kv.value.as_ref(), v.as_bytes(), "{k}");
        }
        if let Some((k, v)) = &a.cas {
            let kv = client.get(k.clone()).await.expect("get").expect("cas key");
            assert_eq!(kv.value.as_ref(), v.as_bytes(), "{k}");
        }
    }
    let mut convs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in all {
        for (c, m) in &a.appended {
            convs
                .entry(c.clone())
                .or_default()
                .extend(m.iter().cloned());
        }
    }
    for (c, mut acked) in convs {
        let mut got = Vec::new();
        let mut after = 0;
        loop {
            let r = client
                .read(ReadRequest {
                    conversation: Some(ConversationRef {
                        namespace: "load".into(),
                        id: c.clone(),
                    }),
                    select: Some(ctxstore::proto::read_request::Select::Range(
                        SeqRange::default(),
                    )),
                    after_seq: after,
                    ..Default::default()
                })
                .await
                .expect("read");
            got.extend(r.messages.iter().map(|m| m.content.clone()));
            if r.next_seq == 0 {
                break;
            }
            after = r.next_seq - 1;
        }
        got.sort();
        acked.sort();
        assert_eq!(
            got, acked,
            "conversation {c}: exactly the acknowledged appends, once each"
        );
    }
}

/// Splits the widest shard in the middle of its widest arc, `splits` times, checking
/// after each that the meta shard's table partitions the hash space.
async fn split_repeatedly(client: &ctxstore_client::Client, splits: usize) {
    for _ in 0..splits {
        // Right after start the client's table may come from a node's empty cache.
        let routes = wait_for("a routing table with data shards", WAIT, || async {
            let r = client.routing().await;
            r.iter().any(|(d, _)| d.shard_id != 0).then_some(r)
        })
        .await;
        let (d, _) = routes
            .iter()
            .filter(|(d, _)| d.shard_id != 0)
            .max_by_key(|(d, _)| ctxstore::ranges::width(&ctxstore::ranges::arcs_of(d)))
            .expect("a data shard");
        let arc = ctxstore::ranges::arcs_of(d)
            .into_iter()
            .max_by_key(|(lo, hi)| hi - lo)
            .expect("an arc");
        let at = arc.0 + (arc.1 - arc.0) / 2 + 1;
        let (_, child) = client
            .split_shard(d.shard_id, Some(at))
            .await
            .expect("split");
        let table = wait_for("the meta shard to list the new shard", WAIT, || async {
            let t = client.routing_table().await.ok()?;
            t.shards
                .iter()
                .filter_map(|r| r.descriptor.as_ref())
                .any(|x| x.shard_id == child.shard_id)
                .then_some(t)
        })
        .await;
        assert_partition(&table);
    }
}

/// Runs 32 load clients while `split_repeatedly` grows 1 shard to 16, then checks
/// that no client saw an error, every acknowledged write reads back, and replicas
/// agree.
async fn grow_under_load(client: ctxstore_client::Client, addrs: Vec<String>) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks: Vec<_> = (0..32)
        .map(|i| tokio::spawn(load_client(client.clone(), i, stop.clone())))
        .collect();
    split_repeatedly(&client, 15).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await.expect("load client"));
    }
    let shards = client
        .routing()
        .await
        .iter()
        .filter(|(d, _)| d.shard_id != 0)
        .count();
    assert_eq!(shards, 16);
    let ops: usize = all.iter().map(|a| a.puts.len()).sum();
    eprintln!("{ops} load rounds (put, CAS, append) while splitting 1 shard into 16");
    verify_acks(&client, &all).await;
    let shards = common::assert_process_replicas_agree(&client, &addrs).await;
    assert_eq!(shards, 17, "16 data shards and the meta shard");
}

/// Split under load, in-process: 3 nodes, 1 shard grown to 16 by repeated splits
/// while 32 clients do puts, CAS and conversation appends.
///
/// 1. Start the load. 2. Split 15 times (the widest shard, in its middle), checking
///    the arc partition after each. 3. Stop the load: zero client-visible errors,
///    every acknowledged write reads back (puts, the last CAS of each chain, each
///    acknowledged append exactly once), every shard's replicas hold the same data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_one_shard_into_sixteen_under_load() {
    let cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    let client = cluster.client().await;
    grow_under_load(client, cluster.addrs()).await;
    common::assert_replicas_agree(&cluster).await;
    cluster.shutdown().await;
}

/// The same with real `ctxd` processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_one_shard_into_sixteen_under_load_processes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_procs, addrs) = common::procs::start_cluster(dir.path(), 3, &[]);
    let client = ctxstore_client::Client::connect(&addrs)
        .await
        .expect("client");
    wait_for("the cluster to serve", WAIT, || async {
        client.put("probe", "x").await.ok()
    })
    .await;
    grow_under_load(client, addrs).await;
}

/// The leader of `shard` as the client's routing table knows it, as a node index.
async fn leader_index(cluster: &TestCluster, shard: u64) -> usize {
    wait_for("a leader", WAIT, || async {
        for (i, n) in cluster.nodes.iter().enumerate() {
            let Some(n) = n else { continue };
            let s = n.status().await;
            if common::shard(&s, shard).is_some_and(|s| s.role == "leader") {
                return Some(i);
            }
        }
        None
    })
    .await
}

/// A write whose reply was lost just before the split, retried with the same request
/// id after the split moved its key, is applied exactly once: the old shard answers
/// with the stored result instead of sending the retry on to the new owner.
///
/// 1. Raw gRPC: put key K with request id R to shard 1 (it applies; the test ignores
///    the reply, as if it were lost).
/// 2. Split shard 1 so that K moves to the new shard.
/// 3. Retry the put with request id R at shard 1 (as the client does: pinned to the
///    shard, ring_ver 0): the answer is the first put's version.
/// 4. K's version is still that version: the write applied once.
/// 5. The same request id with another key that moved gets `StaleEpoch` (never applied
///    here, and never will be), carrying the new shard's descriptor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_across_the_split_applies_exactly_once() {
    use ctxstore::proto::kv_client::KvClient;
    use ctxstore::proto::{PutRequest, RequestHeader};
    let cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    let leader = leader_index(&cluster, 1).await;
    let mut kv = KvClient::connect(format!("http://{}", cluster.addrs()[leader]))
        .await
        .expect("connect");
    let at = 1u64 << 63;
    let key = (0..)
        .map(|i| format!("moving-{i}"))
        .find(|k| ctxstore::keys::key_hash(k.as_bytes()) >= at)
        .expect("a key above the cut");
    let other = (0..)
        .map(|i| format!("other-{i}"))
        .find(|k| ctxstore::keys::key_hash(k.as_bytes()) >= at)
        .expect("another key above the cut");
    let rid = bytes::Bytes::from_static(b"retried-request-1");
    let put = |k: &str| PutRequest {
        header: Some(RequestHeader {
            shard_id: 1,
            ..Default::default()
        }),
        key: k.to_string().into(),
        value: "v".into(),
        ttl_ms: 0,
        request_id: rid.clone(),
        lease_id: 0,
    };
    let first = kv.put(put(&key)).await.expect("first put").into_inner();
    let client = cluster.client().await;
    let (_, child) = client.split_shard(1, Some(at)).await.expect("split");
    assert!(ctxstore::ranges::contains(
        &ctxstore::ranges::arcs_of(&child),
        ctxstore::keys::key_hash(key.as_bytes())
    ));
    let leader = leader_index(&cluster, 1).await;
    let mut kv = KvClient::connect(format!("http://{}", cluster.addrs()[leader]))
        .await
        .expect("connect");
    let retry = kv.put(put(&key)).await.expect("retry").into_inner();
    assert_eq!(
        retry.version, first.version,
        "the stored result, not a second write"
    );
    let kv_now = client.get(key.clone()).await.expect("get").expect("exists");
    assert_eq!(kv_now.version, first.version, "applied exactly once");
    let e = kv
        .put(PutRequest {
            request_id: bytes::Bytes::from_static(b"never-applied"),
            ..put(&other)
        })
        .await
        .expect_err("moved key, no stored result");
    match Error::from(e) {
        Error::StaleEpoch { current, .. } => assert!(
            current
                .iter()
                .filter_map(|r| r.descriptor.as_ref())
                .any(|d| d.shard_id == child.shard_id),
            "the answer names the new shard"
        ),
        e => panic!("expected StaleEpoch, got {e}"),
    }
    cluster.shutdown().await;
}

/// A watch across the split sees every change once, in order: the old shard sends the
/// changes up to the split and a moved notice, and the client's `Watcher` resumes on
/// the new shard from the split's version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_follows_its_tag_across_the_split() {
    let cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    let client = cluster.client().await;
    let at = 1u64 << 63;
    let tag = (0..)
        .map(|i| format!("tag{i}"))
        .find(|t| ctxstore::keys::tag_hash(t.as_bytes()) >= at)
        .expect("a tag above the cut");
    let prefix = format!("{{{tag}}}:");
    let mut watcher = client
        .watch(prefix.clone(), true, None)
        .await
        .expect("watch");
    let mut written = Vec::new();
    for i in 0..20 {
        let w = client
            .put(format!("{prefix}{i}"), format!("before-{i}"))
            .await
            .expect("put");
        written.push(w.version);
    }
    client.split_shard(1, Some(at)).await.expect("split");
    for i in 0..20 {
        let w = client
            .put(format!("{prefix}{i}"), format!("after-{i}"))
            .await
            .expect("put");
        written.push(w.version);
    }
    let mut seen = Vec::new();
    while seen.len() < written.len() {
        let ev = tokio::time::timeout(WAIT, watcher.next())
            .await
            .expect("an event in time")
            .expect("the watch goes on")
            .expect("no error");
        seen.push(ev.version);
    }
    assert_eq!(
        seen, written,
        "every change once, in order, across the split"
    );
    cluster.shutdown().await;
}

/// A node that misses the split (isolated, then stopped) and restarts comes back
/// consistent: it applies the split from its log, creates the new shard's replica,
/// and every shard's replicas agree. Messages of the new shard that reach it before its
/// parent replica applied the split are dropped, not turned into an empty replica.
///
/// 1. Isolate node 3 (Raft traffic cut both ways); write; split shard 1 on the others;
///    write to both shards.
/// 2. Stop node 3, heal, restart it.
/// 3. It hosts the new shard, and digests agree per shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_the_split_comes_back_consistent() {
    use common::Isolate;
    use ctxstore::NodeId;
    let mut cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    let client = cluster.client().await;
    // Keep node 3 from leading anything, then cut it off.
    for s in [0u64, 1] {
        if leader_index(&cluster, s).await == 2 {
            client.transfer_shard_leader(s, 1).await.expect("transfer");
            wait_for("leadership to move", WAIT, || async {
                (leader_index(&cluster, s).await != 2).then_some(())
            })
            .await;
        }
    }
    for n in cluster.nodes.iter().flatten() {
        n.set_message_filter(Some(std::sync::Arc::new(Isolate(NodeId(3)))));
    }
    for i in 0..50 {
        client.put(format!("pre-{i}"), "x").await.expect("put");
    }
    let (_, child) = client
        .split_shard(1, Some(1u64 << 63))
        .await
        .expect("split");
    for i in 0..50 {
        client.put(format!("post-{i}"), "y").await.expect("put");
    }
    cluster.stop(2).await;
    for n in cluster.nodes.iter().flatten() {
        n.set_message_filter(None);
    }
    cluster.restart(2).await;
    wait_for("node 3 to host the new shard", WAIT, || async {
        let s = cluster.status(2).await;
        common::shard(&s, child.shard_id).map(|_| ())
    })
    .await;
    cluster.wait_all_leaders().await;
    common::assert_replicas_agree(&cluster).await;
    for i in 0..50 {
        common::must_read(&client, &format!("pre-{i}"), b"x", false).await;
        common::must_read(&client, &format!("post-{i}"), b"y", false).await;
    }
    cluster.shutdown().await;
}

/// A split proposed while a membership change of the shard is in progress (a learner
/// not yet promoted) is refused with a clear error and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_during_a_membership_change_is_refused() {
    let cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    let client = cluster.client().await;
    // A learner on an address nobody serves: it never catches up, so it stays a
    // learner and the change stays in progress.
    let dead = format!("127.0.0.1:{}", common::procs::free_port());
    let adder = client.clone();
    let add = tokio::spawn(async move { adder.add_shard_member(Some(1), 9, &dead).await });
    wait_for("the learner to be added", WAIT, || async {
        let s = cluster.status(0).await;
        let d = common::shard(&s, 1)?.descriptor.clone()?;
        d.replicas.iter().any(|r| r.node_id == 9).then_some(())
    })
    .await;
    let e = client
        .split_shard(1, Some(1u64 << 63))
        .await
        .expect_err("refused");
    assert!(
        matches!(&e, Error::FailedPrecondition(why) if why.contains("membership change")),
        "{e}"
    );
    let shards = client
        .routing()
        .await
        .iter()
        .filter(|(d, _)| d.shard_id != 0)
        .count();
    assert_eq!(shards, 1, "nothing was split");
    add.abort();
    cluster.shutdown().await;
}

/// A second split of a shard whose first split has not applied yet is refused with a
/// clear error and changes nothing; the first one completes.
///
/// 5 nodes, 2 shards (shard 2 on nodes 2, 3, 4; the meta shard on 1, 2, 3), long
/// election timeouts. Shard 2's leader is node 2; nodes 3 and 4 stop, so its split
/// proposal cannot commit (the meta shard still works on nodes 1 and 2). Once node 2
/// reports the split in progress, a second split gets `FailedPrecondition`. Restarting
/// nodes 3 and 4 lets the first split apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_split_while_one_is_pending_is_refused() {
    let mut cluster = TestCluster::start_with(5, |c| {
        c.initial_shards = 2;
        c.raft.election_ticks = 300;
        c.raft.leader_balance = false;
    })
    .await;
    cluster.wait_all_leaders().await;
    let client = cluster.client().await;
    for (shard, node) in [(0u64, 1u64), (2, 2)] {
        if leader_index(&cluster, shard).await as u64 + 1 != node {
            client
                .transfer_shard_leader(shard, node)
                .await
                .expect("transfer");
            wait_for("leadership to move", WAIT, || async {
                (leader_index(&cluster, shard).await as u64 + 1 == node).then_some(())
            })
            .await;
        }
    }
    cluster.stop(2).await;
    cluster.stop(3).await;
    let arcs = ctxstore::ranges::even_arcs(2)[1];
    let first_at = arcs.0 + (arcs.1 - arcs.0) / 2;
    let on_node2 = cluster.client_of(1).await;
    let splitter = on_node2.clone();
    let first = tokio::spawn(async move { splitter.split_shard(2, Some(first_at)).await });
    wait_for("node 2 to report the split in progress", WAIT, || async {
        let s = cluster.status(1).await;
        common::shard(&s, 2)
            .is_some_and(|s| s.splitting)
            .then_some(())
    })
    .await;
    let e = on_node2
        .split_shard(2, Some(first_at + 1000))
        .await
        .expect_err("refused");
    assert!(
        matches!(&e, Error::FailedPrecondition(why) if why.contains("already in progress")),
        "{e}"
    );
    cluster.restart(2).await;
    cluster.restart(3).await;
    let (parent, child) = first.await.expect("join").expect("the first split applies");
    assert_eq!(parent.ring_ver, 2, "one split, not two");
    assert_eq!(child.arcs[0].lo, first_at);
    cluster.shutdown().await;
}

/// Automatic splits by key count: with `split.max-keys` at 300, a shard that grows
/// past it splits by itself (at the middle of its keys) until every shard is below,
/// without a command; the arcs stay a partition and every key reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_split_by_themselves_when_they_grow() {
    let cluster = TestCluster::start_with(3, |c| {
        c.split.enabled = true;
        c.split.max_keys = 300;
        c.split.check_interval = std::time::Duration::from_millis(200);
        c.split.min_interval = std::time::Duration::from_millis(500);
    })
    .await;
    cluster.wait_all_leaders().await;
    let client = cluster.client().await;
    for i in 0..1200 {
        client.put(format!("grow-{i}"), "g").await.expect("put");
    }
    let table = wait_for("the shard to split into 4 or more", WAIT, || async {
        let t = client.routing_table().await.ok()?;
        (t.shards.len() >= 5).then_some(t)
    })
    .await;
    assert_partition(&table);
    for i in 0..1200 {
        must_read_any(&client, &format!("grow-{i}"), b"g").await;
    }
    cluster.shutdown().await;
}

/// Reads a key and checks its value.
async fn must_read_any(client: &ctxstore_client::Client, key: &str, value: &[u8]) {
    common::must_read(client, key, value, false).await;
}

/// Automatic splits by write load: a shard taking more writes per second than
/// `split.max-writes-per-sec`, spread over many keys, splits where the sampled writes
/// divide. A shard whose writes all go to one hash tag is not split: its status names
/// the hot partition key instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_shard_splits_by_load_but_a_hot_key_does_not() {
    let cluster = TestCluster::start_with(3, |c| {
        c.initial_shards = 2;
        c.split.enabled = true;
        c.split.max_writes_per_sec = 40;
        c.split.load_window = std::time::Duration::from_millis(500);
        c.split.check_interval = std::time::Duration::from_millis(300);
        c.split.min_interval = std::time::Duration::from_secs(60);
    })
    .await;
    cluster.wait_all_leaders().await;
    let client = cluster.client().await;
    let arcs = ctxstore::ranges::even_arcs(2);
    // Shard 1: writes spread over many keys. Shard 2: every write to one hash tag.
    let spread: Vec<String> = (0..)
        .map(|i| format!("spread-{i}"))
        .filter(|k| ctxstore::keys::key_hash(k.as_bytes()) <= arcs[0].1)
        .take(400)
        .collect();
    let hot_tag = (0..)
        .map(|i| format!("hot{i}"))
        .find(|t| ctxstore::keys::tag_hash(t.as_bytes()) >= arcs[1].0)
        .expect("a tag on shard 2");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (client, stop, spread, tag) = (
            client.clone(),
            stop.clone(),
            spread.clone(),
            hot_tag.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = if w % 2 == 0 {
                    spread[i % spread.len()].clone()
                } else {
                    format!("{{{tag}}}:{}", i % 50)
                };
                client.put(key, "x").await.expect("put");
                i += 8;
            }
        }));
    }
    let hot = wait_for("shard 2 to report its hot key", WAIT, || async {
        for n in cluster.nodes.iter().flatten() {
            let s = n.status().await;
            if let Some(h) = common::shard(&s, 2).and_then(|s| s.hot_hash) {
                return Some(h);
            }
        }
        None
    })
    .await;
    assert_eq!(hot, ctxstore::keys::tag_hash(hot_tag.as_bytes()));
    let table = wait_for("shard 1 to split by load", WAIT, || async {
        let t = client.routing_table().await.ok()?;
        t.shards
            .iter()
            .filter_map(|r| r.descriptor.as_ref())
            .any(|d| d.split_from == 1)
            .then_some(t)
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.expect("writer");
    }
    assert_partition(&table);
    let split_from_2 = table
        .shards
        .iter()
        .filter_map(|r| r.descriptor.as_ref())
        .any(|d| d.split_from == 2);
    assert!(!split_from_2, "one hot partition key is not split");
    cluster.shutdown().await;
}

/// No data is copied: splitting a shard that holds 256 MiB writes less than 1 MiB to
/// RocksDB (counted over every batch the three nodes write during the split).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splitting_a_256_mib_shard_writes_under_one_mib() {
    let cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    let client = cluster.client().await;
    let value = bytes::Bytes::from(vec![7u8; 128 << 10]);
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (client, value) = (client.clone(), value.clone());
            tokio::spawn(async move {
                for i in 0..256 {
                    client
                        .put(format!("big-{w}-{i}"), value.clone())
                        .await
                        .expect("put");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    cluster.wait_converged_all().await;
    let before = bytes_written(&cluster);
    let (parent, child) = client.split_shard(1, None).await.expect("split");
    cluster.wait_all_leaders().await;
    let written = bytes_written(&cluster) - before;
    eprintln!(
        "split of a 256 MiB shard: {written} bytes written on 3 nodes; cut at {:?}",
        child.arcs.first()
    );
    assert!(written < 1 << 20, "the split wrote {written} bytes");
    // Both halves hold data: the cut was inside the data.
    let (mut left, mut right) = (0, 0);
    for w in 0..8 {
        for i in 0..256 {
            let h = ctxstore::keys::key_hash(format!("big-{w}-{i}").as_bytes());
            if ctxstore::ranges::contains(&ctxstore::ranges::arcs_of(&parent), h) {
                left += 1;
            } else {
                right += 1;
            }
        }
    }
    eprintln!("keys: {left} stay, {right} moved");
    assert!(left > 0 && right > 0);
    cluster.shutdown().await;
}
