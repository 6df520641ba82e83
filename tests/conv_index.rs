//! The node's conversation index (`storage::index`, `keys::CONV_INDEX_PREFIX`): it
//! follows every conversation created, deleted and expired, through a snapshot install,
//! a full restart, a replica removal and the indexing of a data directory written
//! before the index existed; `ListConversations` pages through it in id order.

mod common;

use common::{wait_for_explained, TestCluster, WAIT};
use ctxstore::proto::{AppendRequest, ChatMessage, ConversationRef, TrimRequest};
use ctxstore_client::Client;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::Duration;

const NAMESPACES: [&str; 2] = ["alpha", "beta"];

/// Conversation ids: ones whose order as strings differs from the order of their
/// record keys (`a` < `a/b` < `a0`, while the keys end in `}`), and 24 plain ones.
fn ids() -> Vec<String> {
    let mut ids: Vec<String> = ["a", "a/b", "a0", "a~"].map(String::from).to_vec();
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

/// One random change (`short_only`: no TTL but a short one), recorded in `model`
/// ((namespace, id) → TTL of the live conversation; absent: deleted).
async fn random_change(
    c: &Client,
    rng: &mut StdRng,
    model: &mut BTreeMap<(String, String), Ttl>,
    short_only: bool,
) {
    let ids = ids();
    let ns = NAMESPACES[rng.random_range(0..NAMESPACES.len())];
    let id = &ids[rng.random_range(0..ids.len())];
    let key = (ns.to_string(), id.clone());
    let roll = rng.random_range(0..10);
    if roll == 0 {
        c.delete_conversation(conv(ns, id)).await.expect("delete");
        model.remove(&key);
        return;
    }
    if roll == 1 && model.get(&key).is_some_and(|t| *t != Ttl::Short) {
        // Rewrites the record without touching the index entry (a short-lived one
        // may have expired: trimming it would fail).
        c.trim(TrimRequest {
            conversation: Some(conv(ns, id)),
            before_seq: 2,
            ..Default::default()
        })
        .await
        .expect("trim");
        return;
    }
    let ttl = match roll {
        _ if short_only => Ttl::Short,
        2..=5 => Ttl::None,
        6..=7 => Ttl::Short,
        _ => Ttl::Long,
    };
    let idle_ttl_ms = match ttl {
        Ttl::None => 0,
        Ttl::Short => rng.random_range(200..800),
        Ttl::Long => 3_600_000,
    };
    c.append(AppendRequest {
        conversation: Some(conv(ns, id)),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: format!("m{roll}"),
            token_count: 1,
            ..Default::default()
        }],
        idle_ttl_ms: Some(idle_ttl_ms),
        ..Default::default()
    })
    .await
    .expect("append");
    model.insert(key, ttl);
}

/// Every conversation id of `ns`, listed `page` at a time.
async fn list_all(c: &Client, ns: &str, page: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let r = c
            .list_conversations(ns, &after, page)
            .await
            .expect("list conversations");
        for info in &r.conversations {
            let id = info
                .conversation
                .as_ref()
                .map(|c| c.id.clone())
                .unwrap_or_default();
            out.push(id);
        }
        match (r.more, out.last()) {
            (true, Some(last)) => after = last.clone(),
            _ => return out,
        }
    }
}

/// Waits until every running node's index matches its conversation records exactly
/// and holds one entry per live conversation of the model (the short ones purged),
/// then checks that listing each namespace, 5 at a time, gives the model's ids in
/// order.
async fn wait_exact(cluster: &TestCluster, model: &BTreeMap<(String, String), Ttl>, when: &str) {
    let kept = model.values().filter(|t| **t != Ttl::Short).count();
    wait_for_explained(&format!("every index to be exact {when}"), WAIT, || async {
        for (i, n) in cluster.nodes.iter().enumerate() {
            let Some(n) = n else { continue };
            let check = n.check_conv_index().map_err(|e| e.to_string())?;
            if check.missing != 0 || check.extra != 0 || check.records != kept {
                return Err(format!(
                    "node {}: {check:?}, {kept} conversations kept",
                    i + 1
                ));
            }
        }
        Ok(())
    })
    .await;
    let c = cluster.client().await;
    for ns in NAMESPACES {
        let mut want: Vec<String> = model
            .iter()
            .filter(|((n, _), t)| n == ns && **t != Ttl::Short)
            .map(|((_, id), _)| id.clone())
            .collect();
        want.sort();
        assert_eq!(list_all(&c, ns, 5).await, want, "namespace {ns} {when}");
    }
}

/// 1. Two shards on 3 nodes (small log GC thresholds, purge every 100 ms). Node 3
///    stops.
/// 2. 300 random changes over 2 namespaces × 28 conversations (appends setting no
///    idle TTL, a short one that passes during the test or an hour; trims; deletes);
///    shard 1's leader compacts its log past node 3.
/// 3. Node 3 restarts and catches up by snapshot.
/// 4. Every node's index is exact (one entry per conversation record, none without
///    one) and, once the short TTLs have passed and the purge ran, holds exactly the
///    model's conversations; listing each namespace 5 at a time gives them in id
///    order.
/// 5. The same after a full restart.
/// 6. All stop; node 1's index is wiped with its "indexed" marker (a data dir of the
///    version before the index); at start it is indexed again, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conversation_index_stays_exact_through_changes_a_snapshot_and_restarts() {
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
    let mut model = BTreeMap::new();
    let c = cluster.client().await;
    // Before node 3 stops: conversations that expire during the test only, so what
    // the snapshot later replaces on node 3 is purged in time.
    for _ in 0..40 {
        random_change(&c, &mut rng, &mut model, true).await;
    }
    cluster
        .catch_up_by_snapshot(2, async {
            for _ in 0..300 {
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
    wipe_index(&cluster.dir.path().join("node1"));
    for i in 0..3 {
        cluster.restart(i).await;
    }
    let check = cluster.nodes[0]
        .as_ref()
        .expect("node 1 runs")
        .check_conv_index()
        .expect("check");
    assert_eq!((check.missing, check.extra), (0, 0), "{check:?}");
    wait_exact(&cluster, &model, "after indexing an older data dir").await;
    cluster.shutdown().await;
}

/// Deletes every conversation index entry and the "indexed" marker of a stopped
/// node's data dir: what a data dir written before the index looks like.
fn wipe_index(dir: &std::path::Path) {
    let cfs = ["raft", "data", "meta"];
    let db =
        rocksdb::DB::open_cf(&rocksdb::Options::default(), dir, cfs).expect("open the data dir");
    let meta = db.cf_handle("meta").expect("meta cf");
    let mut batch = rocksdb::WriteBatch::default();
    for (from, to) in [
        (&b"\xff\xffconvs/"[..], &b"\xff\xffconvs0"[..]),
        (b"\xff\xffconvk/", b"\xff\xffconvk0"),
    ] {
        batch.delete_range_cf(meta, from, to);
    }
    batch.delete_cf(meta, b"\xff\xffconvs-indexed");
    db.write(batch).expect("wipe");
    let left = db
        .iterator_cf(
            meta,
            rocksdb::IteratorMode::From(b"\xff\xffconv", rocksdb::Direction::Forward),
        )
        .filter_map(|kv| kv.ok())
        .take_while(|(k, _)| k.starts_with(b"\xff\xffconv"))
        .count();
    assert_eq!(left, 0, "the index is wiped");
}

/// A replica removed from a node takes its conversations' index entries with it:
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
    let mut model = BTreeMap::new();
    for ns in NAMESPACES {
        for id in ids() {
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
            model.insert((ns.to_string(), id), Ttl::None);
        }
    }
    cluster.wait_converged().await;
    let before = cluster.nodes[2]
        .as_ref()
        .expect("node 3 runs")
        .check_conv_index()
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
        "node 3 to index only shard 2's conversations",
        WAIT,
        || async {
            let n = cluster.nodes[2].as_ref().expect("node 3 runs");
            let check = n.check_conv_index().map_err(|e| e.to_string())?;
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
    for ns in NAMESPACES {
        let want: Vec<String> = model
            .keys()
            .filter(|(n, _)| n == ns)
            .map(|(_, id)| id.clone())
            .collect();
        assert_eq!(list_all(&c, ns, 7).await, want, "namespace {ns}");
    }
    cluster.shutdown().await;
}
