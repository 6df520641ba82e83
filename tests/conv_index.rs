//! The node's listing indexes (`storage::index`: `keys::CONV_INDEX_PREFIX`,
//! `keys::THREAD_INDEX_PREFIX`): they follow every conversation and checkpoint thread
//! created, deleted and expired, through a snapshot install, a full restart, a replica
//! removal and the indexing of a data directory written before the indexes existed;
//! `ListConversations` and `ListThreads` page through them in id order.

mod common;

use common::{wait_for_explained, TestCluster, WAIT};
use ctxstore::proto::{
    AppendRequest, ChatMessage, Checkpoint, ConversationRef, PutCheckpointRequest, ThreadRef,
    TrimRequest,
};
use ctxstore_client::Client;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::Duration;

const NAMESPACES: [&str; 2] = ["alpha", "beta"];

/// Tenant namespaces of threads: the default one too (its threads have no prefix).
const THREAD_NAMESPACES: [&str; 2] = ["", "alpha"];

/// What a model entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Conversation,
    Thread,
}

/// (kind, namespace, id) → TTL of the live conversation or thread; absent: deleted.
type Model = BTreeMap<(Kind, String, String), Ttl>;

/// Conversation and thread ids: ones whose order as strings differs from the order of
/// their record keys (`a` < `a/b` < `a0`, while the keys end in `}`; a thread's `}` is
/// stored as 0x02; conversation ids may hold none), and 24 plain ones.
fn ids(kind: Kind) -> Vec<String> {
    let mut ids: Vec<String> = ["a", "a/b", "a0", "a~"].map(String::from).to_vec();
    if kind == Kind::Thread {
        ids.push("a}".into());
    }
    ids.extend((0..24).map(|i| format!("c{i:02}")));
    ids
}

/// A conversation's idle TTL as the workload last set it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ttl {
    None,
    /// Expires during the test: its record is purged.
    Short,
    /// Outlives the test.
    Long,
}

fn conv(ns: &str, id: &str) -> ConversationRef {
    ConversationRef {
        namespace: ns.into(),
        id: id.into(),
    }
}

/// One random change to a conversation or a thread (`short_only`: no TTL but a short
/// one), recorded in `model`.
async fn random_change(c: &Client, rng: &mut StdRng, model: &mut Model, short_only: bool) {
    let kind = if rng.random_bool(0.5) {
        Kind::Conversation
    } else {
        Kind::Thread
    };
    let ids = ids(kind);
    let id = &ids[rng.random_range(0..ids.len())];
    let ns = match kind {
        Kind::Conversation => NAMESPACES[rng.random_range(0..NAMESPACES.len())],
        Kind::Thread => THREAD_NAMESPACES[rng.random_range(0..THREAD_NAMESPACES.len())],
    };
    let key = (kind, ns.to_string(), id.clone());
    let roll = rng.random_range(0..10);
    if roll == 0 {
        match kind {
            Kind::Conversation => drop(c.delete_conversation(conv(ns, id)).await.expect("delete")),
            Kind::Thread => drop(c.delete_thread_in(ns, id).await.expect("delete thread")),
        }
        model.remove(&key);
        return;
    }
    // Rewrites the record without touching the index entry (a short-lived one may
    // have expired: changing it would fail or make it again).
    let rewrite = roll == 1 && model.get(&key).is_some_and(|t| *t != Ttl::Short);
    let ttl = match roll {
        _ if rewrite => model.get(&key).copied().unwrap_or(Ttl::None),
        _ if short_only => Ttl::Short,
        1..=5 => Ttl::None,
        6..=7 => Ttl::Short,
        _ => Ttl::Long,
    };
    let idle_ttl_ms = match ttl {
        _ if rewrite => None,
        Ttl::None => Some(0),
        Ttl::Short => Some(rng.random_range(200..800)),
        Ttl::Long => Some(3_600_000),
    };
    match kind {
        Kind::Conversation if rewrite => {
            c.trim(TrimRequest {
                conversation: Some(conv(ns, id)),
                before_seq: 2,
                ..Default::default()
            })
            .await
            .expect("trim");
        }
        Kind::Conversation => {
            c.append(AppendRequest {
                conversation: Some(conv(ns, id)),
                messages: vec![ChatMessage {
                    role: "user".into(),
                    content: format!("m{roll}"),
                    token_count: 1,
                    ..Default::default()
                }],
                idle_ttl_ms,
                ..Default::default()
            })
            .await
            .expect("append");
        }
        Kind::Thread => {
            c.put_checkpoint(PutCheckpointRequest {
                thread: Some(ThreadRef {
                    thread: id.clone(),
                    ns: String::new(),
                    namespace: ns.into(),
                }),
                checkpoint: Some(Checkpoint {
                    checkpoint_id: format!("{:016x}", rng.random::<u64>()),
                    ..Default::default()
                }),
                idle_ttl_ms,
                ..Default::default()
            })
            .await
            .expect("put checkpoint");
        }
    }
    model.insert(key, ttl);
}

/// Every conversation (or thread) id of `ns`, listed `page` at a time.
async fn list_all(c: &Client, kind: Kind, ns: &str, page: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let more = match kind {
            Kind::Conversation => {
                let r = c
                    .list_conversations(ns, &after, page)
                    .await
                    .expect("list conversations");
                out.extend(r.conversations.iter().map(|info| {
                    info.conversation
                        .as_ref()
                        .map(|c| c.id.clone())
                        .unwrap_or_default()
                }));
                r.more
            }
            Kind::Thread => {
                let r = c
                    .list_threads(ns, &after, page)
                    .await
                    .expect("list threads");
                assert!(r.threads.iter().all(|t| t.namespace == ns), "{r:?}");
                out.extend(r.threads.into_iter().map(|t| t.thread));
                r.more
            }
        };
        match (more, out.last()) {
            (true, Some(last)) => after = last.clone(),
            _ => return out,
        }
    }
}

/// The live ids of `kind` in `ns` of the model, sorted.
fn model_ids(model: &Model, kind: Kind, ns: &str) -> Vec<String> {
    let mut want: Vec<String> = model
        .iter()
        .filter(|((k, n, _), t)| *k == kind && n == ns && **t != Ttl::Short)
        .map(|((_, _, id), _)| id.clone())
        .collect();
    want.sort();
    want
}

/// Waits until every running node's indexes match its conversation and thread records
/// exactly and hold one entry per live conversation and thread of the model (the short
/// ones purged), then checks that listing each namespace, 5 at a time, gives the
/// model's ids in order.
async fn wait_exact(cluster: &TestCluster, model: &Model, when: &str) {
    let kept = model.values().filter(|t| **t != Ttl::Short).count();
    wait_for_explained(&format!("every index to be exact {when}"), WAIT, || async {
        for (i, n) in cluster.nodes.iter().enumerate() {
            let Some(n) = n else { continue };
            let check = n.check_listing_index().map_err(|e| e.to_string())?;
            if check.missing != 0 || check.extra != 0 || check.records != kept {
                return Err(format!("node {}: {check:?}, {kept} records kept", i + 1));
            }
        }
        Ok(())
    })
    .await;
    let c = cluster.client().await;
    for (kind, namespaces) in [
        (Kind::Conversation, NAMESPACES),
        (Kind::Thread, THREAD_NAMESPACES),
    ] {
        for ns in namespaces {
            let want = model_ids(model, kind, ns);
            let got = list_all(&c, kind, ns, 5).await;
            assert_eq!(got, want, "{kind:?} namespace {ns:?} {when}");
        }
    }
}

/// 1. Two shards on 3 nodes (small log GC thresholds, purge every 100 ms). Node 3
///    stops.
/// 2. 400 random changes over 2 namespaces × 28 conversations and 2 namespaces × 29
///    threads (appends and checkpoints setting no idle TTL, a short one that passes
///    during the test or an hour; trims and checkpoints keeping the TTL; deletes);
///    shard 1's leader compacts its log past node 3.
/// 3. Node 3 restarts and catches up by snapshot.
/// 4. Every node's indexes are exact (one entry per conversation and thread record,
///    none without one) and, once the short TTLs have passed and the purge ran, hold
///    exactly the model's conversations and threads; listing each namespace 5 at a
///    time gives them in id order.
/// 5. The same after a full restart.
/// 6. All stop; node 1's indexes are wiped with their "indexed" markers (a data dir of
///    the version before them), node 2's thread index alone (a data dir of the version
///    before it); at start each is indexed again, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_indexes_stay_exact_through_changes_a_snapshot_and_restarts() {
    let mut cluster = TestCluster::start_with(3, |c| {
        c.initial_shards = 2;
        c.raft.log_gc_threshold = 100;
        c.raft.log_gc_keep = 10;
        c.context.purge_interval = Duration::from_millis(100);
    })
    .await;
    cluster.wait_all_leaders().await;
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::new();
    let c = cluster.client().await;
    // Before node 3 stops: conversations that expire during the test only, so what
    // the snapshot later replaces on node 3 is purged in time.
    for _ in 0..40 {
        random_change(&c, &mut rng, &mut model, true).await;
    }
    cluster
        .catch_up_by_snapshot(2, async {
            for _ in 0..400 {
                random_change(&c, &mut rng, &mut model, false).await;
            }
        })
        .await;
    wait_exact(&cluster, &model, "after the snapshot").await;
    cluster.restart_all().await;
    wait_exact(&cluster, &model, "after a full restart").await;

    for i in 0..3 {
        cluster.stop(i).await;
    }
    wipe_index(&cluster.dir.path().join("node1"), true);
    wipe_index(&cluster.dir.path().join("node2"), false);
    for i in 0..3 {
        cluster.restart(i).await;
    }
    for i in 0..2 {
        let check = cluster.nodes[i]
            .as_ref()
            .expect("the node runs")
            .check_listing_index()
            .expect("check");
        assert_eq!(
            (check.missing, check.extra),
            (0, 0),
            "node {}: {check:?}",
            i + 1
        );
    }
    wait_exact(&cluster, &model, "after indexing an older data dir").await;
    cluster.shutdown().await;
}

/// Deletes the thread index of a stopped node's data dir, its reverse entries and its
/// "indexed" marker (what a data dir of the version before it looks like), and with
/// `convs` the conversation index too (a data dir of the version before both).
fn wipe_index(dir: &std::path::Path, convs: bool) {
    let cfs = ["raft", "data", "meta"];
    let db =
        rocksdb::DB::open_cf(&rocksdb::Options::default(), dir, cfs).expect("open the data dir");
    let meta = db.cf_handle("meta").expect("meta cf");
    let mut batch = rocksdb::WriteBatch::default();
    let mut wiped: Vec<&[u8]> = vec![b"\xff\xffthrds/"];
    batch.delete_cf(meta, b"\xff\xffthrds-indexed");
    if convs {
        wiped.push(b"\xff\xffconvs/");
        batch.delete_cf(meta, b"\xff\xffconvs-indexed");
    }
    let listing = |from: &'static [u8]| {
        db.iterator_cf(
            meta,
            rocksdb::IteratorMode::From(from, rocksdb::Direction::Forward),
        )
        .filter_map(|kv| kv.ok())
        .take_while(move |(k, _)| k.starts_with(from))
    };
    for (k, v) in listing(b"\xff\xffconvk/") {
        if wiped.iter().any(|p| v.starts_with(p)) {
            batch.delete_cf(meta, k);
        }
    }
    let mut entries = 0;
    for prefix in [&b"\xff\xffthrds/"[..], b"\xff\xffconvs/"] {
        for (k, _) in listing(prefix) {
            entries += 1;
            if wiped.contains(&prefix) {
                batch.delete_cf(meta, k);
            }
        }
    }
    assert!(entries > 0, "there was an index to wipe");
    db.write(batch).expect("wipe");
    for prefix in wiped {
        assert_eq!(listing(prefix).count(), 0, "the index is wiped");
    }
}

/// A replica removed from a node takes its conversations' and threads' index entries
/// with it:
/// with 2 shards on 3 nodes and the placement driver paused, removing node 3 from
/// shard 1 leaves node 3 indexing exactly shard 2's conversations, and listings are
/// unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_replica_leaves_no_index_entries_behind() {
    let cluster = TestCluster::start_with(3, |c| {
        c.initial_shards = 2;
        c.context.purge_interval = Duration::from_millis(100);
    })
    .await;
    cluster.wait_all_leaders().await;
    let c = cluster.client().await;
    c.set_pd_paused(true)
        .await
        .expect("pause the placement driver");
    let mut model = Model::new();
    for ns in NAMESPACES {
        for id in ids(Kind::Conversation) {
            c.append(AppendRequest {
                conversation: Some(conv(ns, &id)),
                messages: vec![ChatMessage {
                    content: "hello".into(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await
            .expect("append");
            model.insert((Kind::Conversation, ns.to_string(), id), Ttl::None);
        }
    }
    for id in ids(Kind::Thread) {
        c.put_checkpoint(PutCheckpointRequest {
            thread: Some(ThreadRef {
                thread: id.clone(),
                ns: String::new(),
                namespace: "alpha".into(),
            }),
            checkpoint: Some(Checkpoint {
                checkpoint_id: "1".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("put checkpoint");
        model.insert((Kind::Thread, "alpha".to_string(), id), Ttl::None);
    }
    cluster.wait_converged().await;
    let before = cluster.nodes[2]
        .as_ref()
        .expect("node 3 runs")
        .check_listing_index()
        .expect("check");
    assert_eq!(
        (before.records, before.missing, before.extra),
        (model.len(), 0, 0),
        "node 3 hosts both shards"
    );
    c.remove_shard_member(Some(1), 3)
        .await
        .expect("remove node 3 from shard 1");
    wait_for_explained(
        "node 3 to index only shard 2's conversations and threads",
        WAIT,
        || async {
            let n = cluster.nodes[2].as_ref().expect("node 3 runs");
            let check = n.check_listing_index().map_err(|e| e.to_string())?;
            let hosted = common::shard(&n.status().await, 1).is_some();
            let ok = !hosted
                && check.missing == 0
                && check.extra == 0
                && check.records > 0
                && check.records < model.len();
            ok.then_some(())
                .ok_or(format!("shard 1 hosted: {hosted}, {check:?}"))
        },
    )
    .await;
    for (kind, ns) in [
        (Kind::Conversation, "alpha"),
        (Kind::Conversation, "beta"),
        (Kind::Thread, "alpha"),
    ] {
        let want = model_ids(&model, kind, ns);
        assert_eq!(list_all(&c, kind, ns, 7).await, want, "{kind:?} {ns}");
    }
    cluster.shutdown().await;
}
