//! Durable watch history (issue 20, item 3): each replica keeps its change log in
//! RocksDB, written with the apply batch and bounded by `context.watch-retain-bytes`,
//! and a snapshot carries the sender's log. A watcher resumes from an old version
//! after the replica that serves it installed a snapshot and after every node
//! restarted, receiving every change once, in order; `WatchCompacted` only for
//! versions past the retention.

mod common;

use common::{shard1, wait_for, TestCluster, WAIT};
use ctxstore_client::{Client, Error};
use std::collections::BTreeMap;

/// The puts a watcher of prefix `{w}` must see: (version, key, value).
type History = Vec<(u64, String, Vec<u8>)>;

async fn put_all(c: &Client, history: &mut History, from: usize, to: usize, size: usize) {
    for i in from..to {
        let key = format!("{{w}}k{:03}", i % 40);
        let value = format!("{i:0size$}").into_bytes();
        let version = c
            .put(key.clone(), value.clone())
            .await
            .expect("put")
            .version;
        history.push((version, key, value));
    }
}

/// Watches `{w}` from `after` until it has seen every put of `history` after it;
/// fails on a missing, repeated or reordered change.
async fn resume(c: &Client, after: u64, history: &History, when: &str) {
    let want: Vec<_> = history
        .iter()
        .filter(|(v, _, _)| *v > after)
        .cloned()
        .collect();
    let mut w = c
        .watch("{w}", true, Some(after))
        .await
        .unwrap_or_else(|e| panic!("{when}: watch from {after}: {e}"));
    let mut got: History = Vec::new();
    while got.len() < want.len() {
        let e = tokio::time::timeout(WAIT, w.next())
            .await
            .unwrap_or_else(|_| {
                panic!("{when}: {} of {} changes, then none", got.len(), want.len())
            })
            .expect("the watch is open")
            .unwrap_or_else(|e| panic!("{when}: watch error after {} changes: {e}", got.len()));
        let kv = e.kv.expect("a put carries its key and value");
        got.push((
            e.version,
            String::from_utf8_lossy(&kv.key).into_owned(),
            kv.value.to_vec(),
        ));
    }
    assert_eq!(
        got, want,
        "{when}: every change after {after} once, in order"
    );
}

/// Node `i`'s replica of shard 1 leads.
async fn leads(cluster: &TestCluster, i: usize) -> bool {
    let s = cluster.status(i).await;
    let sh = shard1(&s);
    sh.leader_id != 0 && sh.leader_id == sh.replica_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_after_a_snapshot_install_and_a_full_restart() {
    let mut cluster = TestCluster::start_with(3, |c| {
        c.initial_shards = 1;
        c.raft.log_gc_threshold = 100;
        c.raft.log_gc_keep = 10;
    })
    .await;
    cluster.wait_all_leaders().await;
    let c = cluster.client().await;
    let mut history = History::new();
    put_all(&c, &mut history, 0, 30, 8).await;
    let start = history[0].0 - 1;

    // Node 3 misses 200 puts and catches up by snapshot.
    cluster
        .catch_up_by_snapshot(2, put_all(&c, &mut history, 30, 230, 8))
        .await;

    // Node 3 serves the watch: what it knows from before the snapshot came with it.
    c.transfer_leader(3).await.expect("transfer to node 3");
    wait_for("node 3 to lead", WAIT, || async {
        leads(&cluster, 2).await.then_some(())
    })
    .await;
    // A new client: its first routing table names node 3 as the leader.
    let c3 = cluster.client_of(2).await;
    resume(
        &c3,
        start,
        &history,
        "on a replica that installed a snapshot",
    )
    .await;
    assert!(leads(&cluster, 2).await, "node 3 led throughout");

    // Every node restarts: no replica has anything in memory.
    cluster.restart_all().await;
    cluster.wait_all_leaders().await;
    let c = cluster.client().await;
    put_all(&c, &mut history, 230, 240, 8).await;
    resume(&c, start, &history, "after a full restart").await;
    resume(
        &c,
        history[100].0,
        &history,
        "from the middle, after a full restart",
    )
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_only_versions_past_the_retention_are_compacted() {
    let mut cluster = TestCluster::start_with(3, |c| {
        c.initial_shards = 1;
        c.context.watch_retain_bytes = 8 << 10;
    })
    .await;
    cluster.wait_all_leaders().await;
    let c = cluster.client().await;
    let mut history = History::new();
    // 60 changes of about 600 bytes each: about 36 KiB, over four times the budget.
    put_all(&c, &mut history, 0, 60, 512).await;
    let start = history[0].0 - 1;
    cluster.wait_converged().await;
    cluster.restart_all().await;
    cluster.wait_all_leaders().await;
    let c = cluster.client().await;
    let retained_after = match c.watch("{w}", true, Some(start)).await {
        Err(Error::WatchCompacted {
            requested,
            retained_after,
        }) => {
            assert_eq!(requested, start);
            retained_after
        }
        other => panic!("expected WatchCompacted, got {:?}", other.map(|_| ())),
    };
    let kept = history
        .iter()
        .filter(|(v, _, _)| *v > retained_after)
        .count();
    // The budget holds about 13 of these changes; the log on disk kept them through
    // the restart (in memory, a restart left none).
    assert!(
        (8..=20).contains(&kept),
        "{kept} changes retained after version {retained_after}"
    );
    resume(
        &c,
        retained_after,
        &history,
        "from the oldest retained version",
    )
    .await;
    cluster.shutdown().await;
}

/// `context.watch-retain-age`, set on a running cluster: once the first changes are
/// older than the bound, the next writes trim them; a resume from before them gets
/// `WatchCompacted`, no change younger than the bound is dropped, and the rest are all
/// still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_age_bound_set_while_running_drops_only_the_old_changes() {
    const AGE_MS: u64 = 2_000;
    let cluster = TestCluster::start_with(3, |c| c.initial_shards = 1).await;
    cluster.wait_all_leaders().await;
    let c = cluster.client().await;
    let mut history = History::new();
    // When each put was sent, by the wall clock the servers stamp changes with: a
    // change is never older than its put.
    let mut sent_ms = BTreeMap::new();
    async fn put(c: &Client, history: &mut History, sent_ms: &mut BTreeMap<u64, u64>, i: usize) {
        let sent = ctxstore::util::now_ms();
        put_all(c, history, i, i + 1, 16).await;
        sent_ms.insert(history[history.len() - 1].0, sent);
    }
    for i in 0..10 {
        put(&c, &mut history, &mut sent_ms, i).await;
    }
    let start = history[0].0 - 1;
    resume(&c, start, &history, "before any age bound").await;
    c.set_config(vec![ctxstore::proto::ConfigChange {
        key: "context.watch-retain-age".into(),
        value: format!("{AGE_MS}ms"),
        unset: false,
    }])
    .await
    .expect("set the age bound");
    // Keep writing until the first changes have aged out on the replica the client
    // watches (the bound applies at each applied round).
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut n = 10;
    let (retained_after, asked_ms) = loop {
        put(&c, &mut history, &mut sent_ms, n).await;
        n += 1;
        let asked = ctxstore::util::now_ms();
        match c.watch("{w}", true, Some(start)).await {
            Err(Error::WatchCompacted { retained_after, .. }) => break (retained_after, asked),
            Ok(_) => assert!(
                tokio::time::Instant::now() < deadline,
                "the first changes never aged out ({n} puts)"
            ),
            Err(e) => panic!("watch from {start}: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let newest = history.last().map_or(0, |h| h.0);
    assert!(
        retained_after < newest,
        "the newest change ({newest}) is younger than the bound and stays"
    );
    // The newest dropped change was made before `asked - AGE_MS`.
    let dropped = sent_ms
        .range(..=retained_after)
        .next_back()
        .map(|(_, &t)| t)
        .expect("a dropped change");
    assert!(
        dropped + AGE_MS <= asked_ms,
        "a change {} ms old was dropped",
        asked_ms - dropped
    );
    resume(
        &c,
        retained_after,
        &history,
        "from the oldest retained version",
    )
    .await;
    cluster.shutdown().await;
}
