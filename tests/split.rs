//! Online resharding: a shard splits in two while it serves, without copying data.
//! In-process clusters through the shared harness.

mod common;

use common::{wait_for, TestCluster, WAIT};
use ctxstore::proto::{AppendRequest, ChatMessage, ConversationRef, ReadRequest, SeqRange};
use ctxstore::ranges::RangeMap;
use ctxstore::Error;
use std::collections::BTreeMap;

/// Every node's per-shard `(applied index, digest)` agrees among replicas of a shard.
async fn assert_digests_equal(cluster: &TestCluster) {
    cluster.wait_converged_all().await;
    let mut by_shard: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    for n in cluster.nodes.iter().flatten() {
        for (shard, d) in n.shard_digests().expect("digests") {
            by_shard.entry(shard).or_default().push(d);
        }
    }
    for (shard, ds) in by_shard {
        assert!(
            ds.windows(2).all(|w| w[0] == w[1]),
            "shard {shard}: replicas disagree: {ds:?}"
        );
    }
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
    let written_before: u64 = cluster.nodes.iter().flatten().map(|n| n.bytes_written()).sum();
    let (parent, child) = client.split_shard(1, None).await.expect("split");
    let written = cluster.nodes.iter().flatten().map(|n| n.bytes_written()).sum::<u64>()
        - written_before;
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
            select: Some(ctxstore::proto::read_request::Select::Range(SeqRange::default())),
            ..Default::default()
        })
        .await
        .expect("read");
    assert_eq!(read.messages.len(), 20, "the conversation stays whole");
    // A key the split moved to the new shard.
    let child_arcs = ctxstore::ranges::arcs_of(&child);
    let moved = versions
        .iter()
        .find(|(k, _)| ctxstore::ranges::contains(&child_arcs, ctxstore::keys::key_hash(k.as_bytes())))
        .map(|(k, v)| (k.clone(), *v))
        .expect("some key moved");
    let w = client
        .compare_and_swap(moved.0.clone(), moved.1, "after-split")
        .await
        .expect("CAS with the pre-split version");
    assert!(w.version > child.split_index, "{} > {}", w.version, child.split_index);
    assert_eq!(w.create_version, moved.1, "create version kept");
    assert_digests_equal(&cluster).await;
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
        match client.compare_and_swap(cas_key.clone(), version, value.clone()).await {
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
            let kv = client.get(k.clone()).await.expect("get").unwrap_or_else(|| panic!("{k} lost"));
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
            convs.entry(c.clone()).or_default().extend(m.iter().cloned());
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
                    select: Some(ctxstore::proto::read_request::Select::Range(SeqRange::default())),
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
        assert_eq!(got, acked, "conversation {c}: exactly the acknowledged appends, once each");
    }
}

/// Splits the widest shard in the middle of its widest arc, `splits` times, checking
/// after each that the meta shard's table partitions the hash space.
async fn split_repeatedly(client: &ctxstore_client::Client, splits: usize) {
    for _ in 0..splits {
        let routes = client.routing().await;
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
        let (_, child) = client.split_shard(d.shard_id, Some(at)).await.expect("split");
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

/// Per shard, the replicas' `(digest index, digest)` from every node, waiting until
/// they agree (the load has stopped, so every replica reaches the same index).
async fn wait_digests_equal(client: &ctxstore_client::Client, addrs: &[String]) -> usize {
    wait_for("every shard's replicas to hold the same data", WAIT, || async {
        let mut by_shard: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
        for a in addrs {
            let s = client.node_status_with(a, true).await.ok()?;
            for sh in s.shards {
                let id = sh.descriptor.as_ref().map_or(0, |d| d.shard_id);
                by_shard.entry(id).or_default().push((sh.digest_index, sh.digest?));
            }
        }
        by_shard
            .values()
            .all(|ds| ds.windows(2).all(|w| w[0] == w[1]))
            .then_some(by_shard.len())
    })
    .await
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
    let shards = client.routing().await.iter().filter(|(d, _)| d.shard_id != 0).count();
    assert_eq!(shards, 16);
    let ops: usize = all.iter().map(|a| a.puts.len()).sum();
    eprintln!("{ops} load rounds (put, CAS, append) while splitting 1 shard into 16");
    verify_acks(&client, &all).await;
    let shards = wait_digests_equal(&client, &addrs).await;
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
    assert_digests_equal(&cluster).await;
    cluster.shutdown().await;
}

/// The same with real `ctxd` processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_one_shard_into_sixteen_under_load_processes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_procs, addrs) = common::procs::start_cluster(dir.path(), 3, &[]);
    let client = ctxstore_client::Client::connect(&addrs).await.expect("client");
    wait_for("the cluster to serve", WAIT, || async {
        client.put("probe", "x").await.ok()
    })
    .await;
    grow_under_load(client, addrs).await;
}
