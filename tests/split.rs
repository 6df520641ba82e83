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
