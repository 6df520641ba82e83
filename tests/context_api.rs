//! The agent context API (issue: conversations, checkpoints, model registry, TTL,
//! watch) against real in-process clusters.

mod common;

use common::{wait_for, TestCluster, WAIT};
use ctxstore::proto::{
    prune_checkpoints_request::Keep, read_request::Select, AppendRequest, ChannelBlob, ChatMessage,
    Checkpoint, CompactRequest, ConversationRef, GetCheckpointRequest, ListCheckpointsRequest,
    Model, PendingWrite, PruneCheckpointsRequest, PutCheckpointRequest, PutWritesRequest,
    ReadRequest, SeqRange, SetConversationMetadataRequest, ThreadRef, TokenBudget, TrimRequest,
};
use ctxstore::Error;
use ctxstore_client::Client;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

fn conv(id: &str) -> ConversationRef {
    ConversationRef {
        namespace: "agents".into(),
        id: id.into(),
    }
}

fn msg(content: impl Into<String>, tokens: u64) -> ChatMessage {
    ChatMessage {
        role: "user".into(),
        content: content.into(),
        token_count: tokens,
        ..Default::default()
    }
}

fn with_meta(mut m: ChatMessage, role: &str, pairs: &[(&str, &str)]) -> ChatMessage {
    m.role = role.into();
    for (k, v) in pairs {
        m.metadata.insert(k.to_string(), v.to_string());
    }
    m
}

fn append_req(c: &ConversationRef, msgs: Vec<ChatMessage>) -> AppendRequest {
    AppendRequest {
        conversation: Some(c.clone()),
        messages: msgs,
        ..Default::default()
    }
}

/// Every message of a conversation, paging through range reads.
async fn read_all(client: &Client, c: &ConversationRef) -> Vec<ChatMessage> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let r = client
            .read(ReadRequest {
                conversation: Some(c.clone()),
                select: Some(Select::Range(SeqRange::default())),
                after_seq: after,
                limit: 500,
                ..Default::default()
            })
            .await
            .expect("read");
        out.extend(r.messages);
        if r.next_seq == 0 {
            return out;
        }
        after = r.next_seq - 1;
    }
}

/// A 3-node cluster whose leadership stays where a transfer puts it.
async fn cluster_without_balance() -> TestCluster {
    TestCluster::start_with(3, |c| c.raft.leader_balance = false).await
}

/// Moves shard 1's leadership off its current leader and waits for the change.
async fn change_leader(cluster: &TestCluster, client: &Client) -> usize {
    let old = cluster.wait_leader().await;
    let target = (old + 1) % cluster.nodes.len();
    wait_for("leadership to move", WAIT, || async {
        let _ = client.transfer_shard_leader(1, target as u64 + 1).await;
        (cluster.wait_leader().await != old).then_some(())
    })
    .await;
    cluster.wait_leader().await
}

/// 32 concurrent appenders × 200 appends to one conversation: seqs are exactly
/// 1..=6400, each append's seq unique, and every message is read back in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_gap_free() {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client().await;
    let c = conv("busy");
    let tasks: Vec<_> = (0..32)
        .map(|w| {
            let client = client.clone();
            let c = c.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..200 {
                    let r = client
                        .append(append_req(&c, vec![msg(format!("w{w}-{i}"), 1)]))
                        .await
                        .expect("append");
                    assert_eq!(r.first_seq, r.last_seq);
                    seqs.push((r.first_seq, format!("w{w}-{i}")));
                }
                seqs
            })
        })
        .collect();
    let mut by_seq = HashMap::new();
    for t in tasks {
        for (seq, content) in t.await.expect("appender") {
            assert!(
                by_seq.insert(seq, content).is_none(),
                "seq {seq} assigned twice"
            );
        }
    }
    let seqs: BTreeSet<u64> = by_seq.keys().copied().collect();
    assert_eq!(
        seqs,
        (1..=6400).collect::<BTreeSet<u64>>(),
        "gap-free 1..=6400"
    );
    let all = read_all(&client, &c).await;
    assert_eq!(all.len(), 6400);
    for (i, m) in all.iter().enumerate() {
        assert_eq!(m.seq, i as u64 + 1, "read in order");
        assert_eq!(
            by_seq[&m.seq], m.content,
            "message {} is the one appended",
            m.seq
        );
    }
    // Each appender's own messages appear in the order it appended them.
    let mut last_of: HashMap<String, u64> = HashMap::new();
    for m in &all {
        let (w, i) = m.content.split_once('-').expect("w-i");
        let i: u64 = i.parse().expect("number");
        if let Some(prev) = last_of.insert(w.to_string(), i) {
            assert_eq!(i, prev + 1);
        }
    }
    let info = client.conversation(c).await.expect("info").expect("exists");
    assert_eq!(
        (info.message_count, info.last_seq, info.token_total),
        (6400, 6400, 6400)
    );
    cluster.shutdown().await;
}

/// Two appenders with the same `expected_last_seq`: exactly one wins, the other is
/// told the actual last seq, twenty rounds in a row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_last_seq_race_has_one_winner() {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client().await;
    let c = conv("race");
    for round in 0..20u64 {
        let last = round;
        let attempt = |who: &str| {
            let mut req = append_req(&c, vec![msg(format!("{who} {round}"), 1)]);
            req.expected_last_seq = Some(last);
            client.append(req)
        };
        let (a, b) = tokio::join!(attempt("a"), attempt("b"));
        let (won, lost) = match (a, b) {
            (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
            other => panic!("round {round}: expected one winner, got {other:?}"),
        };
        assert_eq!(won.first_seq, last + 1);
        match lost {
            Error::SequenceMismatch {
                expected, actual, ..
            } => assert_eq!((expected, actual), (last, last + 1)),
            e => panic!("round {round}: loser got {e}"),
        }
    }
    assert_eq!(read_all(&client, &c).await.len(), 20);
    cluster.shutdown().await;
}

/// Replaying an append with its idempotency key returns the first result and
/// appends nothing, also after the shard's leader changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_append_survives_leader_change() {
    let cluster = cluster_without_balance().await;
    let client = cluster.client().await;
    let c = conv("idem");
    client
        .append(append_req(&c, vec![msg("first", 1)]))
        .await
        .expect("append");
    let mut req = append_req(&c, vec![msg("step-1", 2), msg("step-1b", 3)]);
    req.idempotency_key = "run-7/step-1".into();
    let first = client.append(req.clone()).await.expect("append");
    assert_eq!(
        (first.first_seq, first.last_seq, first.replayed),
        (2, 3, false)
    );
    let again = client.append(req.clone()).await.expect("replay");
    assert_eq!(
        (again.first_seq, again.last_seq, again.replayed),
        (2, 3, true)
    );
    change_leader(&cluster, &client).await;
    // A fresh client (new request ids): only the idempotency key protects it.
    let other = cluster.client_of(0).await;
    let after = other.append(req).await.expect("replay after leader change");
    assert_eq!(
        (after.first_seq, after.last_seq, after.replayed),
        (2, 3, true)
    );
    assert_eq!(after.version, first.version, "the original result");
    let all = read_all(&other, &c).await;
    assert_eq!(
        all.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(),
        vec!["first", "step-1", "step-1b"]
    );
    let info = other.conversation(c).await.expect("info").expect("exists");
    assert_eq!(
        (info.message_count, info.last_seq, info.token_total),
        (3, 3, 6)
    );
    cluster.shutdown().await;
}

/// Token-budget reads over the wire: newest first within the budget, tool calls
/// and their results together, pinned messages included on request; last-n and
/// range reads; trim and compact keep the conversation consistent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_trim_and_compact() {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client().await;
    let c = conv("budget");
    let msgs = vec![
        with_meta(msg("you are helpful", 5), "system", &[]), // 1 (pinned)
        msg("hi", 10),                                       // 2
        with_meta(
            msg("call tools", 20),
            "assistant",
            &[("tool_call_id", "t1,t2")],
        ), // 3
        with_meta(msg("result 1", 5), "tool", &[("tool_call_id", "t1")]), // 4
        with_meta(msg("result 2", 5), "tool", &[("tool_call_id", "t2")]), // 5
        msg("answer", 10),                                   // 6
    ];
    client.append(append_req(&c, msgs)).await.expect("append");
    let budget = |max_tokens: u64, include_pinned: bool| {
        client.read(ReadRequest {
            conversation: Some(c.clone()),
            select: Some(Select::TokenBudget(TokenBudget {
                max_tokens,
                include_pinned,
            })),
            ..Default::default()
        })
    };
    let seqs =
        |r: ctxstore::proto::ReadResponse| r.messages.iter().map(|m| m.seq).collect::<Vec<_>>();
    let cases: Vec<(u64, bool, Vec<u64>)> = vec![
        (10, false, vec![6]),
        (39, false, vec![6]),          // the tool unit (30) does not fit in 29
        (40, false, vec![3, 4, 5, 6]), // it does in 30
        (50, false, vec![2, 3, 4, 5, 6]),
        (55, false, vec![1, 2, 3, 4, 5, 6]),
        (15, true, vec![1, 6]), // pinned first, then the newest that fit
        (3, true, vec![1]),     // pinned even over budget
    ];
    for (max, pinned, want) in cases {
        let r = budget(max, pinned).await.expect("budget read");
        assert_eq!(seqs(r), want, "budget {max} pinned {pinned}");
    }
    let r = client
        .read(ReadRequest {
            conversation: Some(c.clone()),
            select: Some(Select::LastN(2)),
            ..Default::default()
        })
        .await
        .expect("last n");
    assert_eq!(seqs(r), vec![5, 6]);
    // Compact 2..5 into a summary; a stale expectation is refused first.
    let mut compact = CompactRequest {
        conversation: Some(c.clone()),
        from_seq: 2,
        to_seq: 5,
        summary: Some(msg("summary of 2-4", 4)),
        expected_last_seq: Some(5),
        ..Default::default()
    };
    match client.compact(compact.clone()).await {
        Err(Error::SequenceMismatch { actual: 6, .. }) => {}
        other => panic!("expected a sequence mismatch, got {other:?}"),
    }
    compact.expected_last_seq = Some(6);
    let r = client.compact(compact).await.expect("compact");
    assert_eq!((r.removed, r.summary_seq), (3, 2));
    let all = read_all(&client, &c).await;
    assert_eq!(
        all.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 5, 6]
    );
    assert_eq!(all[1].content, "summary of 2-4");
    let info = client
        .conversation(c.clone())
        .await
        .expect("info")
        .expect("exists");
    assert_eq!((info.message_count, info.token_total), (4, 5 + 4 + 5 + 10));
    // Appends continue after the last seq ever assigned.
    let r = client
        .append(append_req(&c, vec![msg("more", 1)]))
        .await
        .expect("append");
    assert_eq!(r.first_seq, 7);
    let t = client
        .trim(TrimRequest {
            conversation: Some(c.clone()),
            before_seq: 6,
            ..Default::default()
        })
        .await
        .expect("trim");
    assert_eq!(t.removed, 3);
    let all = read_all(&client, &c).await;
    assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![6, 7]);
    let info = client
        .conversation(c.clone())
        .await
        .expect("info")
        .expect("exists");
    assert_eq!(
        (info.first_seq, info.last_seq, info.message_count),
        (6, 7, 2)
    );
    // Metadata CAS on its own version.
    let set = |expected: Option<u64>, v: &str| SetConversationMetadataRequest {
        conversation: Some(c.clone()),
        metadata: [("title".to_string(), v.to_string())].into(),
        expected_metadata_version: expected,
        ..Default::default()
    };
    let i1 = client
        .set_conversation_metadata(set(Some(0), "a"))
        .await
        .expect("first set");
    assert!(matches!(
        client.set_conversation_metadata(set(Some(0), "b")).await,
        Err(Error::VersionMismatch { .. })
    ));
    let i2 = client
        .set_conversation_metadata(set(Some(i1.metadata_version), "b"))
        .await
        .expect("cas");
    assert_eq!(i2.metadata["title"], "b");
    assert!(
        client
            .delete_conversation(c.clone())
            .await
            .expect("delete")
            .deleted
    );
    assert!(client
        .conversation(c.clone())
        .await
        .expect("info")
        .is_none());
    assert!(read_all(&client, &c).await.is_empty());
    cluster.shutdown().await;
}

/// Conversations of a namespace are listed in id order across 4 shards, paged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_conversations_gathers_every_shard() {
    let cluster = TestCluster::start_with(3, |c| c.initial_shards = 4).await;
    cluster.wait_all_leaders().await;
    let client = cluster.client().await;
    let mut want = Vec::new();
    for i in 0..25 {
        let id = format!("c{i:02}");
        client
            .append(append_req(&conv(&id), vec![msg("x", 1)]))
            .await
            .expect("append");
        want.push(id);
    }
    let other = ConversationRef {
        namespace: "other".into(),
        id: "c00".into(),
    };
    client
        .append(append_req(&other, vec![msg("x", 1)]))
        .await
        .expect("append");
    let mut got = Vec::new();
    let mut after = String::new();
    loop {
        let page = client
            .list_conversations("agents", &after, 10)
            .await
            .expect("list");
        got.extend(
            page.conversations
                .iter()
                .map(|i| i.conversation.as_ref().expect("ref").id.clone()),
        );
        if !page.more {
            break;
        }
        after = got.last().cloned().expect("a page with more is not empty");
    }
    assert_eq!(got, want);
    // The ids really are on several shards.
    let shards: BTreeSet<u64> = futures::future::join_all(want.iter().map(|id| {
        let key = [b"\0C{c/agents/".as_slice(), id.as_bytes(), b"}"].concat();
        let client = client.clone();
        async move { client.route(&key).await.0 }
    }))
    .await
    .into_iter()
    .collect();
    assert!(shards.len() > 1, "conversations spread over {shards:?}");
    cluster.shutdown().await;
}

/// TTL: an idle conversation and a key expire (invisible at once), their space is
/// reclaimed by the leader's purge, unexpired data is untouched, and expiry times
/// survive a restart of every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_expires_purges_and_survives_restart() {
    let mut cluster = TestCluster::start_with(3, |c| {
        c.context.purge_interval = Duration::from_millis(200);
    })
    .await;
    let client = cluster.client().await;
    let short = conv("short-lived");
    let long = conv("long-lived");
    let mut req = append_req(&short, vec![msg("a", 1), msg("b", 1)]);
    req.idle_ttl_ms = Some(600);
    client.append(req).await.expect("append");
    let mut req = append_req(&long, vec![msg("keep", 1)]);
    req.idle_ttl_ms = Some(3_600_000);
    client.append(req).await.expect("append");
    client
        .put_with_ttl("{t}tmp", "x", Some(Duration::from_millis(600)))
        .await
        .expect("put");
    // A checkpoint thread with an idle TTL expires as a whole.
    client
        .put_checkpoint(PutCheckpointRequest {
            thread: Some(tref("idle-thread")),
            checkpoint: Some(checkpoint("0001", "", &[("a", "1")], &[])),
            blobs: vec![blob("a", "1", "x")],
            idle_ttl_ms: Some(600),
            ..Default::default()
        })
        .await
        .expect("checkpoint");
    // A read with refresh_ttl pushes a conversation's expiry forward.
    let before_refresh = client
        .conversation(long.clone())
        .await
        .expect("info")
        .expect("live");
    let refreshed = wait_for("a later expiry after a refreshing read", WAIT, || async {
        client
            .read(ReadRequest {
                conversation: Some(long.clone()),
                select: Some(Select::LastN(1)),
                refresh_ttl: true,
                ..Default::default()
            })
            .await
            .expect("read");
        let info = client
            .conversation(long.clone())
            .await
            .expect("info")
            .expect("live");
        (info.expires_at_ms > before_refresh.expires_at_ms).then_some(info)
    })
    .await;
    assert_eq!(refreshed.message_count, 1, "a refresh changes no data");
    client.put("{t}forever", "y").await.expect("put");
    let durable = client
        .put_with_ttl("{t}restart", "z", Some(Duration::from_secs(3600)))
        .await
        .expect("put");
    assert!(client
        .conversation(short.clone())
        .await
        .expect("info")
        .is_some());
    wait_for("the short conversation and key to expire", WAIT, || async {
        let gone = client
            .conversation(short.clone())
            .await
            .expect("info")
            .is_none()
            && client.get("{t}tmp").await.expect("get").is_none()
            && client
                .get_checkpoint(GetCheckpointRequest {
                    thread: Some(tref("idle-thread")),
                    ..Default::default()
                })
                .await
                .expect("get")
                .is_none();
        gone.then_some(())
    })
    .await;
    assert!(
        read_all(&client, &short).await.is_empty(),
        "expired messages are invisible"
    );
    let on_disk = |node: &ctxstore::Node, needle: &[u8]| {
        node.data_keys()
            .expect("keys")
            .iter()
            .any(|k| k.windows(needle.len()).any(|w| w == needle))
    };
    wait_for(
        "purge to reclaim the expired records on every node",
        WAIT,
        || async {
            let all_gone = cluster.nodes.iter().flatten().all(|n| {
                !on_disk(n, b"c/agents/short-lived")
                    && !on_disk(n, b"{t}tmp")
                    && !on_disk(n, b"t/idle-thread")
            });
            all_gone.then_some(())
        },
    )
    .await;
    for n in cluster.nodes.iter().flatten() {
        assert!(
            on_disk(n, b"c/agents/long-lived"),
            "unexpired conversation kept"
        );
        assert!(on_disk(n, b"{t}forever"), "key without TTL kept");
    }
    let before = client.get("{t}restart").await.expect("get").expect("live");
    let info_before = client
        .conversation(long.clone())
        .await
        .expect("info")
        .expect("live");
    cluster.restart_all().await;
    let client = cluster.client().await;
    let after = client
        .get("{t}restart")
        .await
        .expect("get")
        .expect("still live");
    assert_eq!(after.expires_at_ms, before.expires_at_ms);
    assert_eq!(after.version, durable.version);
    let info_after = client
        .conversation(long.clone())
        .await
        .expect("info")
        .expect("live");
    assert_eq!(info_after.expires_at_ms, info_before.expires_at_ms);
    assert!(client.conversation(short).await.expect("info").is_none());
    assert_eq!(read_all(&client, &long).await.len(), 1);
    cluster.shutdown().await;
}

/// A watch delivers every change once and in order across a leader change: the
/// client's watcher resumes by itself, and a watch reopened from the last version
/// seen gets exactly the rest. A version the replica no longer retains is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_across_leader_change() {
    let mut cluster = cluster_without_balance().await;
    let client = cluster.client().await;
    let start = client.put("{w}start", "0").await.expect("put").version;
    let mut w = client
        .watch("{w}k", true, Some(start))
        .await
        .expect("watch");
    let mut manual_last = start;
    let mut seen = Vec::new();
    let write = |i: usize| {
        let client = client.clone();
        async move {
            if i % 10 == 9 {
                client
                    .delete(format!("{{w}}k{}", i - 1))
                    .await
                    .expect("delete");
            } else {
                client
                    .put(format!("{{w}}k{i}"), format!("v{i}"))
                    .await
                    .expect("put");
            }
        }
    };
    for i in 0..40 {
        write(i).await;
    }
    let next = next_event;
    for _ in 0..40 {
        let e = next(&mut w).await;
        seen.push((e.version, e.kind, e.kv.expect("kv").key));
    }
    manual_last = manual_last.max(seen.last().expect("events").0);
    // Leader transfer, then a crash of the new leader: the watcher follows.
    change_leader(&cluster, &client).await;
    for i in 40..60 {
        write(i).await;
    }
    let leader = cluster.wait_leader().await;
    cluster.stop(leader).await;
    cluster.wait_leader().await;
    for i in 60..100 {
        write(i).await;
    }
    for _ in 40..100 {
        let e = next(&mut w).await;
        seen.push((e.version, e.kind, e.kv.expect("kv").key));
    }
    let versions: Vec<u64> = seen.iter().map(|s| s.0).collect();
    assert!(
        versions.windows(2).all(|p| p[0] < p[1]),
        "strictly increasing: {versions:?}"
    );
    let deletes = seen.iter().filter(|s| s.1 == 1).count();
    assert_eq!((seen.len(), deletes), (100, 10));
    // Reopen from a version seen before the leader changes: exactly the rest.
    let mut again = client
        .watch("{w}k", true, Some(manual_last))
        .await
        .expect("resume");
    for expect in &seen[40..] {
        let e = next(&mut again).await;
        assert_eq!((e.version, &e.kv.expect("kv").key), (expect.0, &expect.2));
    }
    // Open watches would follow the nodes as they shut down.
    drop((w, again));
    cluster.shutdown().await;
}

async fn next_event(
    w: &mut ctxstore_client::Watcher<ctxstore::proto::WatchEvent>,
) -> ctxstore::proto::WatchEvent {
    tokio::time::timeout(WAIT, w.next())
        .await
        .expect("an event within the deadline")
        .expect("stream open")
        .expect("event")
}

/// With a tiny retention, a watch from an old version is refused with
/// `WatchCompacted` naming the oldest retained version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_compacted_version_is_refused() {
    let cluster = TestCluster::start_with(3, |c| c.context.watch_retain_bytes = 4 << 10).await;
    let client = cluster.client().await;
    let first = client.put("{w}a", "0").await.expect("put").version;
    for i in 0..50 {
        client.put("{w}a", vec![b'x'; 512 + i]).await.expect("put");
    }
    match client.watch("{w}a", false, Some(first)).await {
        Err(Error::WatchCompacted {
            requested,
            retained_after,
        }) => {
            assert_eq!(requested, first);
            assert!(retained_after > first);
            // Watching from the retained point works.
            let mut w = client
                .watch("{w}a", false, Some(retained_after))
                .await
                .expect("watch");
            client.put("{w}a", "new").await.expect("put");
            let e = tokio::time::timeout(WAIT, w.next())
                .await
                .expect("event")
                .expect("open")
                .expect("ok");
            assert!(e.version > retained_after);
        }
        other => panic!("expected WatchCompacted, got {:?}", other.map(|_| ())),
    }
    cluster.shutdown().await;
}

fn tref(thread: &str) -> ThreadRef {
    ThreadRef {
        thread: thread.into(),
        ns: String::new(),
        namespace: String::new(),
    }
}

fn checkpoint(
    id: &str,
    parent: &str,
    versions: &[(&str, &str)],
    meta: &[(&str, &str)],
) -> Checkpoint {
    Checkpoint {
        checkpoint_id: id.into(),
        parent_id: parent.into(),
        checkpoint: format!("state {id}").into_bytes().into(),
        metadata: meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        channel_versions: versions
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        created_at_ms: 0,
        metadata_json: String::new(),
    }
}

/// Stores task `task`'s (at `path`) pending writes `(channel, value)` for
/// checkpoint `id` of `t`.
async fn put_task_writes(
    client: &Client,
    t: &ThreadRef,
    id: &str,
    (task, path): (&str, &str),
    writes: Vec<(String, Vec<u8>)>,
) {
    client
        .put_writes(PutWritesRequest {
            thread: Some(t.clone()),
            checkpoint_id: id.into(),
            task_id: task.into(),
            task_path: path.into(),
            writes: writes
                .into_iter()
                .map(|(channel, value)| PendingWrite {
                    channel,
                    value: value.into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .await
        .expect("writes");
}

fn blob(channel: &str, version: &str, value: &str) -> ChannelBlob {
    ChannelBlob {
        channel: channel.into(),
        version: version.into(),
        value: value.as_bytes().to_vec().into(),
    }
}

/// `ListAllCheckpoints` lists the checkpoints of every thread (paging through each
/// shard), with metadata filters, and names each thread with its namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_listed_across_threads() {
    let cluster = TestCluster::start_with(3, |c| c.initial_shards = 3).await;
    let client = cluster.client().await;
    // About 120 a shard: more than one page (100) in each.
    for i in 0..360u32 {
        let run = if i % 150 == 0 { "special" } else { "plain" };
        client
            .put_checkpoint(PutCheckpointRequest {
                thread: Some(ThreadRef {
                    thread: format!("t{i:03}"),
                    ns: String::new(),
                    namespace: if i == 0 { "acme".into() } else { String::new() },
                }),
                checkpoint: Some(checkpoint("0001", "", &[], &[("run_id", run)])),
                ..Default::default()
            })
            .await
            .expect("put");
    }
    // Every checkpoint once, paging through every shard.
    let all = client
        .list_all_checkpoints(Default::default(), "", 0)
        .await
        .expect("list");
    let threads: std::collections::BTreeSet<String> = all
        .iter()
        .map(|t| t.thread.clone().expect("thread").thread)
        .collect();
    assert_eq!((all.len(), threads.len()), (360, 360));
    let special = client
        .list_all_checkpoints(
            [("run_id".to_string(), "special".to_string())].into(),
            "",
            0,
        )
        .await
        .expect("list");
    let mut names: Vec<(String, String)> = special
        .iter()
        .map(|t| {
            let r = t.thread.clone().expect("thread");
            (r.namespace, r.thread)
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("".to_string(), "t150".to_string()),
            ("".into(), "t300".into()),
            ("acme".into(), "t000".into())
        ]
    );
    assert_eq!(
        client
            .list_all_checkpoints(Default::default(), "", 7)
            .await
            .expect("list")
            .len(),
        7
    );
    cluster.shutdown().await;
}

/// `ListCheckpointNamespaces` lists the namespaces holding a checkpoint, sorted, per
/// tenant namespace; deep LangGraph namespaces (up to the configured limit, here
/// raised to 2 KiB) and thread ids with `}` work; names over the limits are refused
/// and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threads_checkpoint_namespaces_are_listed() {
    let cluster = TestCluster::start_with(3, |c| {
        c.limits.max_checkpoint_ns_size = 2048;
        c.limits.max_thread_id_size = 100;
    })
    .await;
    let client = cluster.client().await;
    // 45 levels of subgraphs: 1,844 bytes.
    let deep = ["node:0123456789abcdef0123456789abcdef0123"; 45].join("|");
    let put = |ns: &str, thread: &str, tenant: &str| PutCheckpointRequest {
        thread: Some(ThreadRef {
            thread: thread.into(),
            ns: ns.into(),
            namespace: tenant.into(),
        }),
        checkpoint: Some(checkpoint("0001", "", &[], &[])),
        ..Default::default()
    };
    for ns in ["sub", "", deep.as_str(), "a|b"] {
        client
            .put_checkpoint(put(ns, "t}1", ""))
            .await
            .expect("put");
    }
    client
        .put_checkpoint(put("other", "t}1", "acme"))
        .await
        .expect("put");
    let listed = client.checkpoint_namespaces("", "t}1").await.expect("list");
    let mut want = vec!["".to_string(), "a|b".into(), deep.clone(), "sub".into()];
    want.sort();
    assert_eq!(listed, want);
    assert_eq!(
        client
            .checkpoint_namespaces("acme", "t}1")
            .await
            .expect("list"),
        vec!["other".to_string()]
    );
    // The thread `t` is another thread than `t}1`.
    assert!(client
        .checkpoint_namespaces("", "t")
        .await
        .expect("list")
        .is_empty());
    // Over the limits: refused, nothing written.
    let too_deep = "n".repeat(2049);
    match client.put_checkpoint(put(&too_deep, "t}1", "")).await {
        Err(ctxstore::Error::LimitExceeded { limit, max, actual }) => {
            assert_eq!(
                (limit.as_str(), max, actual),
                ("max-checkpoint-ns-size", 2048, 2049)
            )
        }
        other => panic!("expected RESOURCE_EXHAUSTED, got {other:?}"),
    }
    match client.put_checkpoint(put("", &"t".repeat(101), "")).await {
        Err(ctxstore::Error::LimitExceeded { limit, .. }) => {
            assert_eq!(limit, "max-thread-id-size")
        }
        other => panic!("expected RESOURCE_EXHAUSTED, got {other:?}"),
    }
    // Past what any configuration allows, the clients refuse before sending.
    match client
        .put_checkpoint(put(&"n".repeat(16 * 1024 + 1), "t}1", ""))
        .await
    {
        Err(ctxstore::Error::InvalidArgument { field, .. }) => assert_eq!(field, "thread.ns"),
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
    assert!(client
        .checkpoint_namespaces("", &"x".repeat(101))
        .await
        .is_err());
    assert!(client.checkpoint_namespaces("a/b", "t}1").await.is_err());
    assert_eq!(
        client.checkpoint_namespaces("", "t}1").await.expect("list"),
        want
    );
    client.delete_thread("t}1").await.expect("delete");
    assert!(client
        .checkpoint_namespaces("", "t}1")
        .await
        .expect("list")
        .is_empty());
    assert_eq!(
        client
            .checkpoint_namespaces("acme", "t}1")
            .await
            .expect("list")
            .len(),
        1,
        "deleting the default namespace's thread leaves acme's"
    );
    cluster.shutdown().await;
}

/// The LangGraph checkpointer contract: put stores only the changed channels and
/// get reassembles every channel; get-latest, list (newest first, before, limit,
/// metadata filter), idempotent put_writes, prune and delete_thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_follow_the_langgraph_contract() {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client().await;
    let t = tref("thread-1");
    assert!(client
        .get_checkpoint(GetCheckpointRequest {
            thread: Some(t.clone()),
            ..Default::default()
        })
        .await
        .expect("get")
        .is_none());
    let put = |cp: Checkpoint, blobs: Vec<ChannelBlob>| {
        client.put_checkpoint(PutCheckpointRequest {
            thread: Some(t.clone()),
            checkpoint: Some(cp),
            blobs,
            ..Default::default()
        })
    };
    put(
        checkpoint(
            "0001",
            "",
            &[("messages", "1"), ("plan", "1")],
            &[("source", "input"), ("step", "-1")],
        ),
        vec![blob("messages", "1", "[hi]"), blob("plan", "1", "p1")],
    )
    .await
    .expect("put 1");
    // Only `messages` changed: only its blob is sent.
    put(
        checkpoint(
            "0002",
            "0001",
            &[("messages", "2"), ("plan", "1")],
            &[("source", "loop"), ("step", "0")],
        ),
        vec![blob("messages", "2", "[hi, hello]")],
    )
    .await
    .expect("put 2");
    put(
        checkpoint(
            "0003",
            "0002",
            &[("messages", "3"), ("plan", "1")],
            &[("source", "loop"), ("step", "1")],
        ),
        vec![blob("messages", "3", "[hi, hello, bye]")],
    )
    .await
    .expect("put 3");
    let get = |id: Option<&str>| {
        client.get_checkpoint(GetCheckpointRequest {
            thread: Some(t.clone()),
            checkpoint_id: id.map(String::from),
            ..Default::default()
        })
    };
    let latest = get(None).await.expect("get latest").expect("exists");
    let cp = latest.checkpoint.clone().expect("checkpoint");
    assert_eq!(
        (cp.checkpoint_id.as_str(), cp.parent_id.as_str()),
        ("0003", "0002")
    );
    let values: HashMap<String, String> = latest
        .blobs
        .iter()
        .map(|b| {
            (
                b.channel.clone(),
                String::from_utf8(b.value.to_vec()).expect("utf8"),
            )
        })
        .collect();
    assert_eq!(values["messages"], "[hi, hello, bye]");
    assert_eq!(
        values["plan"], "p1",
        "unchanged channel comes from the first put"
    );
    let first = get(Some("0001")).await.expect("get").expect("exists");
    assert_eq!(first.blobs.len(), 2);
    assert!(get(Some("9999")).await.expect("get").is_none());
    // Another namespace of the same thread is separate.
    let other_ns = ThreadRef {
        thread: "thread-1".into(),
        ns: "child".into(),
        namespace: String::new(),
    };
    assert!(client
        .get_checkpoint(GetCheckpointRequest {
            thread: Some(other_ns.clone()),
            ..Default::default()
        })
        .await
        .expect("get")
        .is_none());
    // list: newest first, before, limit, metadata filter.
    let list = |before: Option<&str>, limit: u32, filter: &[(&str, &str)]| {
        client.list_checkpoints(ListCheckpointsRequest {
            thread: Some(t.clone()),
            before: before.map(String::from),
            limit,
            filter: filter
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        })
    };
    let ids = |tuples: Vec<ctxstore::proto::CheckpointTuple>| {
        tuples
            .into_iter()
            .map(|t| t.checkpoint.expect("cp").checkpoint_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(list(None, 0, &[]).await.expect("list")),
        vec!["0003", "0002", "0001"]
    );
    assert_eq!(
        ids(list(Some("0003"), 0, &[]).await.expect("list")),
        vec!["0002", "0001"]
    );
    assert_eq!(ids(list(None, 1, &[]).await.expect("list")), vec!["0003"]);
    assert_eq!(
        ids(list(None, 0, &[("source", "loop")]).await.expect("list")),
        vec!["0003", "0002"]
    );
    assert_eq!(
        ids(list(None, 0, &[("source", "loop"), ("step", "0")])
            .await
            .expect("list")),
        vec!["0002"]
    );
    // put_writes is idempotent per (task, idx); special channels are replaced.
    let writes = |a: &str, err: &str| PutWritesRequest {
        thread: Some(t.clone()),
        checkpoint_id: "0003".into(),
        task_id: "task-a".into(),
        task_path: "~__pregel_pull, agent".into(),
        writes: vec![
            PendingWrite {
                channel: "messages".into(),
                value: a.as_bytes().to_vec().into(),
                ..Default::default()
            },
            PendingWrite {
                channel: "__error__".into(),
                value: err.as_bytes().to_vec().into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    assert_eq!(
        client
            .put_writes(writes("w1", "e1"))
            .await
            .expect("writes")
            .stored,
        2
    );
    assert_eq!(
        client
            .put_writes(writes("w2", "e2"))
            .await
            .expect("repeat")
            .stored,
        1
    );
    // A task whose id sorts first but whose path sorts last.
    let mut other = writes("w3", "e3");
    other.task_id = "task-0".into();
    other.task_path = "~__pregel_pull, zed".into();
    other.writes.truncate(1);
    client.put_writes(other).await.expect("other task");
    let tuple = get(Some("0003")).await.expect("get").expect("exists");
    let pending: Vec<(String, String, String)> = tuple
        .pending_writes
        .iter()
        .map(|w| {
            (
                w.task_id.clone(),
                w.channel.clone(),
                String::from_utf8(w.value.to_vec()).expect("utf8"),
            )
        })
        .collect();
    // LangGraph's order: task path, task id, idx (special channels first).
    assert_eq!(
        pending,
        vec![
            ("task-a".into(), "__error__".into(), "e2".into()),
            ("task-a".into(), "messages".into(), "w1".into()),
            ("task-0".into(), "messages".to_string(), "w3".to_string()),
        ]
    );
    // prune: keep the latest one; blobs it still uses stay.
    let pruned = client
        .prune_checkpoints(PruneCheckpointsRequest {
            thread: Some(t.clone()),
            keep: Some(Keep::KeepLatest(1)),
            ..Default::default()
        })
        .await
        .expect("prune");
    assert_eq!((pruned.removed_checkpoints, pruned.removed_blobs), (2, 2));
    assert_eq!(ids(list(None, 0, &[]).await.expect("list")), vec!["0003"]);
    let latest = get(None).await.expect("get").expect("exists");
    assert_eq!(
        latest.blobs.len(),
        2,
        "plan@1 survives the prune of its writer"
    );
    assert_eq!(latest.pending_writes.len(), 3);
    // remove_id: one checkpoint by id; an unknown id removes nothing, a bad one is
    // refused.
    let remove = |id: &str| PruneCheckpointsRequest {
        thread: Some(t.clone()),
        keep: Some(Keep::RemoveId(id.into())),
        ..Default::default()
    };
    let none = client
        .prune_checkpoints(remove("nope"))
        .await
        .expect("prune");
    assert_eq!((none.removed_checkpoints, none.removed_blobs), (0, 0));
    assert!(matches!(
        client.prune_checkpoints(remove("")).await,
        Err(Error::InvalidArgument { field, .. }) if field == "remove_id"
    ));
    assert_eq!(ids(list(None, 0, &[]).await.expect("list")), vec!["0003"]);
    let one = client
        .prune_checkpoints(remove("0003"))
        .await
        .expect("prune");
    assert_eq!((one.removed_checkpoints, one.removed_blobs), (1, 2));
    assert!(list(None, 0, &[]).await.expect("list").is_empty());
    assert!(
        client
            .delete_thread("thread-1")
            .await
            .expect("delete")
            .deleted
    );
    assert!(get(None).await.expect("get").is_none());
    assert!(list(None, 0, &[]).await.expect("list").is_empty());
    cluster.shutdown().await;
}

/// The model registry: CAS writes, stale reads from every node, listing, and a watch
/// that sees puts and deletes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_registry_reads_anywhere_and_watches() {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client().await;
    let mut w = client.watch_models(None).await.expect("watch");
    let model = |name: &str, window: u64| Model {
        name: name.into(),
        provider: "acme".into(),
        context_window: window,
        tokenizer: "bpe".into(),
        input_price_per_mtok: 1.5,
        output_price_per_mtok: 6.0,
        endpoint: "https://models.example/v1".into(),
        metadata: [("tier".to_string(), "fast".to_string())].into(),
        version: 0,
    };
    let v1 = client
        .put_model(model("small", 8192), Some(0))
        .await
        .expect("create");
    assert!(matches!(
        client.put_model(model("small", 1), Some(0)).await,
        Err(Error::VersionMismatch { .. })
    ));
    let v2 = client
        .put_model(model("small", 16384), Some(v1))
        .await
        .expect("cas");
    client
        .put_model(model("large", 200_000), None)
        .await
        .expect("put");
    for i in 0..3 {
        let node = cluster.client_of(i).await;
        let m = wait_for("the model on every replica", WAIT, || async {
            node.get_model("small", false)
                .await
                .expect("get")
                .filter(|m| m.version == v2)
        })
        .await;
        assert_eq!(m.context_window, 16384);
    }
    let names: Vec<String> = client
        .list_models(true)
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, vec!["large", "small"]);
    assert!(client.delete_model("large").await.expect("delete"));
    let mut events = Vec::new();
    for _ in 0..4 {
        let e = tokio::time::timeout(WAIT, w.next())
            .await
            .expect("event")
            .expect("open")
            .expect("ok");
        events.push((e.name, e.model.map(|m| m.context_window)));
    }
    assert_eq!(
        events,
        vec![
            ("small".to_string(), Some(8192)),
            ("small".to_string(), Some(16384)),
            ("large".to_string(), Some(200_000)),
            ("large".to_string(), None),
        ]
    );
    cluster.shutdown().await;
}

/// Limits and bad input get specific errors and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_context_input_is_refused() {
    let cluster = TestCluster::start_with(1, |c| {
        c.limits.max_messages_per_append = 4;
        c.limits.max_message_size = 1024;
        c.limits.max_blobs_per_checkpoint = 2;
    })
    .await;
    let client = cluster.client().await;
    let c = conv("limits");
    let too_many = append_req(&c, (0..5).map(|i| msg(format!("{i}"), 1)).collect());
    assert!(
        matches!(client.append(too_many).await, Err(Error::LimitExceeded { ref limit, .. }) if limit == "max-messages-per-append")
    );
    let too_big = append_req(&c, vec![msg("x".repeat(2000), 1)]);
    assert!(
        matches!(client.append(too_big).await, Err(Error::LimitExceeded { ref limit, .. }) if limit == "max-message-size")
    );
    assert!(matches!(
        client.append(append_req(&c, vec![])).await,
        Err(Error::InvalidArgument { .. })
    ));
    let bad_name = append_req(
        &ConversationRef {
            namespace: "a/b".into(),
            id: "x".into(),
        },
        vec![msg("x", 1)],
    );
    assert!(
        matches!(client.append(bad_name).await, Err(Error::InvalidArgument { ref field, .. }) if field == "conversation.namespace")
    );
    let blobs = PutCheckpointRequest {
        thread: Some(tref("t")),
        checkpoint: Some(checkpoint("1", "", &[], &[])),
        blobs: vec![
            blob("a", "1", "x"),
            blob("b", "1", "x"),
            blob("c", "1", "x"),
        ],
        ..Default::default()
    };
    assert!(
        matches!(client.put_checkpoint(blobs).await, Err(Error::LimitExceeded { ref limit, .. }) if limit == "max-blobs-per-checkpoint")
    );
    assert!(matches!(
        client
            .compact(CompactRequest {
                conversation: Some(c.clone()),
                from_seq: 1,
                to_seq: 2,
                summary: Some(msg("s", 1)),
                ..Default::default()
            })
            .await,
        Err(Error::NotFound(_))
    ));
    // Reserved keys are out of reach of the Kv API.
    assert!(matches!(
        client.put(&b"\0C{c/agents/limits}"[..], "x").await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(
        client
            .conversation(c.clone())
            .await
            .expect("info")
            .is_none(),
        "nothing was created"
    );
    assert!(client
        .get_checkpoint(GetCheckpointRequest {
            thread: Some(tref("t")),
            ..Default::default()
        })
        .await
        .expect("get")
        .is_none());
    // Untagged scans do not show context records.
    client
        .append(append_req(&c, vec![msg("ok", 1)]))
        .await
        .expect("append");
    assert!(client.scan("", "", 100).await.expect("scan").kvs.is_empty());
    cluster.shutdown().await;
}

/// A conversation watch sees every append (one event per message, a multi-message
/// append under one version) and every removal, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_watch_sees_appends_and_removals() {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client().await;
    let c = conv("watched");
    let mut w = client
        .watch_conversation(c.clone(), None)
        .await
        .expect("watch");
    let first = client
        .append(append_req(&c, vec![msg("a", 1), msg("b", 1), msg("c", 1)]))
        .await
        .expect("append");
    let second = client
        .append(append_req(&c, vec![msg("d", 1)]))
        .await
        .expect("append");
    client
        .trim(TrimRequest {
            conversation: Some(c.clone()),
            before_seq: 2,
            ..Default::default()
        })
        .await
        .expect("trim");
    let mut got = Vec::new();
    for _ in 0..5 {
        let e = tokio::time::timeout(WAIT, w.next())
            .await
            .expect("an event within the deadline")
            .expect("stream open")
            .expect("event");
        got.push((e.version, e.seq, e.message.map(|m| m.content)));
    }
    let v1 = first.version;
    let v2 = second.version;
    assert_eq!(
        got[..4],
        [
            (v1, 1, Some("a".to_string())),
            (v1, 2, Some("b".to_string())),
            (v1, 3, Some("c".to_string())),
            (v2, 4, Some("d".to_string())),
        ]
    );
    assert!(
        got[4].0 > v2 && got[4].1 == 1 && got[4].2.is_none(),
        "{:?}",
        got[4]
    );
    drop(w);
    cluster.shutdown().await;
}

/// A tool call far older than a budget read's window is found and kept with its
/// result, or both are left out; never one without the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_reads_keep_distant_tool_pairs() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let c = conv("distant");
    let mut msgs = vec![with_meta(
        msg("call", 10),
        "assistant",
        &[("tool_call_id", "t1")],
    )];
    msgs.extend((0..100).map(|i| msg(format!("chat {i}"), 1)));
    msgs.push(with_meta(
        msg("result", 5),
        "tool",
        &[("tool_call_id", "t1")],
    ));
    msgs.extend((0..3).map(|i| msg(format!("after {i}"), 1)));
    client.append(append_req(&c, msgs)).await.expect("append");
    for budget in [5, 10, 17, 18, 30, 200] {
        let r = client
            .read(ReadRequest {
                conversation: Some(c.clone()),
                select: Some(Select::TokenBudget(TokenBudget {
                    max_tokens: budget,
                    include_pinned: false,
                })),
                ..Default::default()
            })
            .await
            .expect("read");
        let seqs: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs.contains(&1),
            seqs.contains(&102),
            "budget {budget}: call and result split: {seqs:?}"
        );
        assert!(
            r.total_tokens <= budget,
            "budget {budget}: {}",
            r.total_tokens
        );
        // The newest three always fit; the pair fits from 3 + 15 = 18 tokens on.
        assert!(
            seqs.ends_with(&[103, 104, 105]),
            "budget {budget}: {seqs:?}"
        );
        assert_eq!(
            seqs.contains(&102),
            budget >= 18,
            "budget {budget}: {seqs:?}"
        );
    }
    cluster.shutdown().await;
}

/// A version with more changes than one watch response holds (deleting a 5,000-message
/// conversation) arrives in parts, every change exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_version_arrives_in_parts() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let c = conv("large");
    for batch in 0..5 {
        let msgs = (0..1000).map(|i| msg(format!("{batch}-{i}"), 1)).collect();
        client.append(append_req(&c, msgs)).await.expect("append");
    }
    let info = client
        .conversation(c.clone())
        .await
        .expect("info")
        .expect("exists");
    assert_eq!(info.last_seq, 5000);
    let mut w = client
        .watch_conversation(c.clone(), None)
        .await
        .expect("watch");
    // The same watch over raw gRPC, to see how the server splits the version.
    let mut raw = ctxstore::proto::agent_context_client::AgentContextClient::connect(format!(
        "http://{}",
        cluster.addrs()[0]
    ))
    .await
    .expect("connect")
    .watch_conversation(ctxstore::proto::WatchConversationRequest {
        header: None,
        conversation: Some(c.clone()),
        from_version: None,
    })
    .await
    .expect("raw watch")
    .into_inner();
    let deleted = client.delete_conversation(c.clone()).await.expect("delete");
    let mut parts = Vec::new();
    let mut raw_events = 0;
    while raw_events < 5000 {
        let resp = tokio::time::timeout(WAIT, raw.message())
            .await
            .expect("a response within the deadline")
            .expect("stream ok")
            .expect("stream open");
        if !resp.events.is_empty() {
            raw_events += resp.events.len();
            parts.push((resp.events.len(), resp.progress_version));
        }
    }
    // Parts of 4,096; progress reaches the version only with its last part.
    let sizes: Vec<usize> = parts.iter().map(|p| p.0).collect();
    assert_eq!(sizes, vec![4096, 904]);
    assert!(parts[0].1 < deleted.version, "{parts:?}");
    assert_eq!(parts[1].1, deleted.version);
    let mut seqs = BTreeSet::new();
    while seqs.len() < 5000 {
        let e = tokio::time::timeout(WAIT, w.next())
            .await
            .expect("an event within the deadline")
            .expect("stream open")
            .expect("event");
        assert_eq!(e.version, deleted.version);
        assert!(e.message.is_none());
        assert!(seqs.insert(e.seq), "seq {} delivered twice", e.seq);
    }
    assert_eq!(seqs, (1..=5000).collect::<BTreeSet<u64>>());
    drop(w);
    cluster.shutdown().await;
}

/// A checkpoint with JSON metadata (and no string pairs).
fn json_checkpoint(id: &str, versions: &[(&str, &str)], meta: &str) -> Checkpoint {
    Checkpoint {
        metadata_json: meta.into(),
        ..checkpoint(id, "", versions, &[])
    }
}

/// Metadata filters compare JSON values (numbers by value, nested objects), also
/// against checkpoints that have only the older string map; a filter or metadata that
/// is not a JSON object is INVALID_ARGUMENT and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_metadata_is_filtered_as_json() {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client().await;
    let t = tref("json-meta");
    let put = |cp: Checkpoint| PutCheckpointRequest {
        thread: Some(t.clone()),
        checkpoint: Some(cp),
        ..Default::default()
    };
    for cp in [
        json_checkpoint(
            "0001",
            &[],
            r#"{"step": 1, "source": "input", "writes": null}"#,
        ),
        json_checkpoint(
            "0002",
            &[],
            r#"{"step": 2.0, "source": "loop", "writes": {"agent": [1, "a"]}}"#,
        ),
        // As the earlier Python saver wrote metadata: JSON text in the map.
        checkpoint("0003", "", &[], &[("step", "2"), ("source", "\"loop\"")]),
    ] {
        client.put_checkpoint(put(cp)).await.expect("put");
    }
    let list = |filter_json: &str| ListCheckpointsRequest {
        thread: Some(t.clone()),
        filter_json: filter_json.into(),
        ..Default::default()
    };
    let ids = |tuples: Vec<ctxstore::proto::CheckpointTuple>| -> Vec<String> {
        tuples
            .into_iter()
            .map(|t| t.checkpoint.expect("checkpoint").checkpoint_id)
            .collect()
    };
    let got = |f: &'static str| {
        let client = client.clone();
        let req = list(f);
        async move { ids(client.list_checkpoints(req).await.expect("list")) }
    };
    assert_eq!(got(r#"{"step": 2}"#).await, ["0003", "0002"]);
    assert_eq!(got(r#"{"step": 1.0, "source": "input"}"#).await, ["0001"]);
    assert_eq!(got(r#"{"writes": {"agent": [1.0, "a"]}}"#).await, ["0002"]);
    assert_eq!(got(r#"{"writes": null}"#).await, ["0001"]);
    assert!(got(r#"{"step": "2"}"#).await.is_empty());
    assert_eq!(got("{}").await.len(), 3);
    // Across threads too.
    let all = client
        .list_all_checkpoints(Default::default(), r#"{"source": "loop"}"#, 0)
        .await
        .expect("list all");
    assert_eq!(ids(all), ["0002", "0003"]);
    // Bad JSON: a specific error, nothing written.
    for bad in ["{", "[1]", "\"step\""] {
        match client.list_checkpoints(list(bad)).await {
            Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "filter_json"),
            other => panic!("{bad}: expected INVALID_ARGUMENT, got {other:?}"),
        }
        match client
            .put_checkpoint(put(json_checkpoint("0009", &[], bad)))
            .await
        {
            Err(Error::InvalidArgument { field, .. }) => {
                assert_eq!(field, "checkpoint.metadata_json")
            }
            other => panic!("{bad}: expected INVALID_ARGUMENT, got {other:?}"),
        }
    }
    assert_eq!(got("").await, ["0003", "0002", "0001"]);
    cluster.shutdown().await;
}

/// `DeleteForRuns` removes, in every shard, the checkpoints of the given runs with
/// their writes and the blobs only they named, and nothing else; asking again removes
/// nothing; bad input is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_for_runs_removes_only_those_runs() {
    let cluster = TestCluster::start_with(3, |c| c.initial_shards = 3).await;
    let client = cluster.client().await;
    for i in 0..24u32 {
        let t = tref(&format!("runs-{i:02}"));
        // Checkpoint 1 of run "keep", 2 of run "r-<i % 3>", 3 of run "keep" again.
        let runs = [
            "keep".to_string(),
            format!("r-{}", i % 3),
            "keep".to_string(),
        ];
        for (n, run) in runs.iter().enumerate() {
            let id = format!("{:04}", n + 1);
            let v = format!("{}", n + 1);
            client
                .put_checkpoint(PutCheckpointRequest {
                    thread: Some(t.clone()),
                    checkpoint: Some(json_checkpoint(
                        &id,
                        &[("ch", &v), ("base", "1")],
                        &format!(r#"{{"run_id": "{run}", "step": {n}}}"#),
                    )),
                    blobs: vec![blob("ch", &v, "x"), blob("base", "1", "b")],
                    ..Default::default()
                })
                .await
                .expect("put");
            put_task_writes(
                &client,
                &t,
                &id,
                ("task", ""),
                vec![("c".into(), b"w".to_vec())],
            )
            .await;
        }
    }
    let of_run = |run: &str| {
        let client = client.clone();
        let f = format!(r#"{{"run_id": "{run}"}}"#);
        async move {
            client
                .list_all_checkpoints(Default::default(), &f, 0)
                .await
                .expect("list")
                .len()
        }
    };
    assert_eq!(of_run("r-0").await, 8);
    let (removed, blobs) = client
        .delete_for_runs(&["r-0".into(), "r-1".into(), "nobody".into()])
        .await
        .expect("delete");
    // 16 checkpoints, each the only one naming its `ch` version.
    assert_eq!((removed, blobs), (16, 16));
    assert_eq!(of_run("r-0").await, 0);
    assert_eq!(of_run("r-1").await, 0);
    assert_eq!(of_run("r-2").await, 8);
    assert_eq!(of_run("keep").await, 48);
    // What stays is whole: blobs and writes of the kept checkpoints.
    let t = client
        .get_checkpoint(GetCheckpointRequest {
            thread: Some(tref("runs-00")),
            checkpoint_id: Some("0003".into()),
            ..Default::default()
        })
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(t.blobs.len(), 2);
    assert_eq!(t.pending_writes.len(), 1);
    assert_eq!(
        client
            .delete_for_runs(&["r-0".into()])
            .await
            .expect("again"),
        (0, 0)
    );
    for bad in [vec![], vec![String::new()], vec!["x".repeat(129)]] {
        match client.delete_for_runs(&bad).await {
            Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "run_ids"),
            other => panic!("{bad:?}: expected INVALID_ARGUMENT, got {other:?}"),
        }
    }
    assert_eq!(of_run("keep").await, 48);
    cluster.shutdown().await;
}

/// Every checkpoint namespace of a thread, as the server returns it, without the
/// thread's name and the write times: what a copy must reproduce.
async fn thread_contents(
    client: &Client,
    namespace: &str,
    thread: &str,
) -> Vec<(String, Vec<ctxstore::proto::CheckpointTuple>)> {
    let mut out = Vec::new();
    for ns in client
        .checkpoint_namespaces(namespace, thread)
        .await
        .expect("namespaces")
    {
        // Every page (100 to a page, newest first).
        let mut tuples: Vec<ctxstore::proto::CheckpointTuple> = Vec::new();
        loop {
            let before = tuples
                .last()
                .and_then(|t| t.checkpoint.as_ref())
                .map(|c| c.checkpoint_id.clone());
            let page = client
                .list_checkpoints(ListCheckpointsRequest {
                    thread: Some(ThreadRef {
                        thread: thread.into(),
                        ns: ns.clone(),
                        namespace: namespace.into(),
                    }),
                    before,
                    ..Default::default()
                })
                .await
                .expect("list");
            let done = page.len() < 100;
            tuples.extend(page);
            if done {
                break;
            }
        }
        for t in &mut tuples {
            t.thread = None;
            if let Some(cp) = t.checkpoint.as_mut() {
                cp.created_at_ms = 0;
            }
        }
        out.push((ns, tuples));
    }
    out
}

/// `CopyThread` copies every namespace of a thread, blobs and writes (special slots
/// included), to a thread on another shard and into another tenant namespace; asking
/// again finishes a copy that lost part of its work; bad targets are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_is_copied_on_the_server() {
    let cluster = TestCluster::start_with(3, |c| c.initial_shards = 3).await;
    let client = cluster.client().await;
    let shard_of = |thread: &str| {
        let client = client.clone();
        let key = ctxstore::context::thread_key(thread);
        async move { client.route(&key).await.0 }
    };
    let source = "copy-src";
    let mut target = None;
    for i in 0..64 {
        let name = format!("copy-dst-{i}");
        if shard_of(&name).await != shard_of(source).await {
            target = Some(name);
            break;
        }
    }
    let target = target.expect("a target thread on another shard");
    for ns in ["", "child:1", "child:1|grandchild:2"] {
        let t = ThreadRef {
            thread: source.into(),
            ns: ns.into(),
            namespace: String::new(),
        };
        for n in 1..=5u32 {
            let id = format!("{n:04}");
            let v = n.to_string();
            client
                .put_checkpoint(PutCheckpointRequest {
                    thread: Some(t.clone()),
                    checkpoint: Some(Checkpoint {
                        parent_id: if n > 1 {
                            format!("{:04}", n - 1)
                        } else {
                            String::new()
                        },
                        ..json_checkpoint(
                            &id,
                            &[("messages", &v), ("static", "1")],
                            &format!(r#"{{"step": {n}}}"#),
                        )
                    }),
                    blobs: if n == 1 {
                        vec![blob("messages", &v, "m1"), blob("static", "1", "s")]
                    } else {
                        vec![blob("messages", &v, &format!("m{n}"))]
                    },
                    ..Default::default()
                })
                .await
                .expect("put");
            for task in ["task-a", "task-b"] {
                let writes = ["messages", "__interrupt__", "other"]
                    .iter()
                    .map(|ch| (ch.to_string(), format!("{task}/{ch}").into_bytes()))
                    .collect();
                let path = format!("path-{task}");
                put_task_writes(&client, &t, &id, (task, &path), writes).await;
            }
        }
    }
    let want = thread_contents(&client, "", source).await;
    assert_eq!(want.len(), 3);
    let r = client
        .copy_thread_in("", source, "", &target)
        .await
        .expect("copy");
    assert_eq!((r.copied_checkpoints, r.copied_writes), (15, 90));
    assert_eq!(thread_contents(&client, "", &target).await, want);
    // Into another tenant namespace, and again after losing part of the copy.
    client
        .copy_thread_in("", source, "acme", source)
        .await
        .expect("copy to a tenant");
    assert_eq!(thread_contents(&client, "acme", source).await, want);
    client
        .prune_checkpoints(PruneCheckpointsRequest {
            thread: Some(ThreadRef {
                thread: target.clone(),
                ns: "child:1".into(),
                namespace: String::new(),
            }),
            keep: Some(Keep::KeepLatest(1)),
            ..Default::default()
        })
        .await
        .expect("prune");
    assert_ne!(thread_contents(&client, "", &target).await, want);
    client
        .copy_thread_in("", source, "", &target)
        .await
        .expect("copy again");
    assert_eq!(thread_contents(&client, "", &target).await, want);
    // The source is untouched; bad targets change nothing.
    assert_eq!(thread_contents(&client, "", source).await, want);
    match client.copy_thread_in("", source, "", source).await {
        Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "target_thread"),
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
    match client.copy_thread_in("", source, "a/b", "x").await {
        Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "target_namespace"),
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
    // A thread that does not exist copies nothing.
    let r = client
        .copy_thread_in("", "no-such-thread", "", "copy-nothing")
        .await
        .expect("copy nothing");
    assert_eq!(r.copied_checkpoints, 0);
    assert!(client
        .checkpoint_namespaces("", "copy-nothing")
        .await
        .expect("namespaces")
        .is_empty());
    cluster.shutdown().await;
}

/// Thread ids and checkpoint namespaces may hold any character, the ones the key
/// layout uses included (0x00 ends a namespace in a key, 0x01 separates a tenant,
/// 0x02 stands for `}`): each name is its own thread, listed and copied by its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_ids_and_namespaces_may_hold_any_character() {
    let cluster = TestCluster::start_with(3, |c| c.initial_shards = 3).await;
    let client = cluster.client().await;
    let threads = ["a\0b", "acme\u{1}t", "c\u{2}", "c}", "d\u{3}B", "e\u{3}"];
    let namespaces = ["", "n\0", "n\u{3}@", "n"];
    for (i, thread) in threads.iter().enumerate() {
        for ns in namespaces {
            client
                .put_checkpoint(PutCheckpointRequest {
                    thread: Some(ThreadRef {
                        thread: thread.to_string(),
                        ns: ns.into(),
                        namespace: String::new(),
                    }),
                    checkpoint: Some(checkpoint(&format!("{i:04}"), "", &[], &[])),
                    ..Default::default()
                })
                .await
                .expect("put");
        }
    }
    // The thread "acme\x01t" of the default namespace is not thread "t" of tenant
    // namespace "acme".
    assert!(client
        .checkpoint_namespaces("acme", "t")
        .await
        .expect("list")
        .is_empty());
    for (i, thread) in threads.iter().enumerate() {
        let mut listed = client
            .checkpoint_namespaces("", thread)
            .await
            .expect("list");
        listed.sort();
        let mut want: Vec<String> = namespaces.iter().map(|n| n.to_string()).collect();
        want.sort();
        assert_eq!(listed, want, "{thread:?}");
        for ns in namespaces {
            let t = client
                .get_checkpoint(GetCheckpointRequest {
                    thread: Some(ThreadRef {
                        thread: thread.to_string(),
                        ns: ns.into(),
                        namespace: String::new(),
                    }),
                    ..Default::default()
                })
                .await
                .expect("get")
                .expect("the checkpoint");
            let r = t.thread.expect("thread");
            assert_eq!((r.thread.as_str(), r.ns.as_str()), (*thread, ns));
            assert_eq!(
                t.checkpoint.expect("checkpoint").checkpoint_id,
                format!("{i:04}")
            );
        }
    }
    let all = client
        .list_all_checkpoints(Default::default(), "", 0)
        .await
        .expect("list all");
    assert_eq!(all.len(), threads.len() * namespaces.len());
    client
        .copy_thread_in("", "a\0b", "", "a\0b\0copy")
        .await
        .expect("copy");
    assert_eq!(
        thread_contents(&client, "", "a\0b\0copy").await,
        thread_contents(&client, "", "a\0b").await
    );
    client.delete_thread("c\u{2}").await.expect("delete");
    assert!(
        client
            .checkpoint_namespaces("", "c}")
            .await
            .expect("list")
            .len()
            == namespaces.len()
    );
    cluster.shutdown().await;
}

/// A copy cut short (its caller gave up: the server drops the call) leaves only whole
/// checkpoints on the target, each with all its writes and blobs, and asking again
/// completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_copy_leaves_whole_checkpoints_and_finishes_when_asked_again() {
    let cluster = TestCluster::start_with(3, |c| c.initial_shards = 3).await;
    let client = cluster.client().await;
    let source = "big-src";
    for n in 1..=120u32 {
        let id = format!("{n:04}");
        let t = tref(source);
        client
            .put_checkpoint(PutCheckpointRequest {
                thread: Some(t.clone()),
                checkpoint: Some(checkpoint(&id, "", &[("ch", &n.to_string())], &[])),
                blobs: vec![blob("ch", &n.to_string(), &"x".repeat(512))],
                ..Default::default()
            })
            .await
            .expect("put");
        let writes = (0..3).map(|i| (format!("c{i}"), b"w".to_vec())).collect();
        put_task_writes(&client, &t, &id, ("task", ""), writes).await;
    }
    let want = thread_contents(&client, "", source).await;
    // Callers that give up sooner or later: the first that leaves part of the copy
    // behind (a new target each time) is the one finished below.
    let mut cut_short = None;
    let mut timeout = Duration::from_millis(5);
    for attempt in 0..16 {
        let hasty = Client::connect_with(
            &cluster.addrs(),
            ctxstore_client::ClientOptions {
                timeout,
                ..Default::default()
            },
        )
        .await
        .expect("client");
        let target = format!("big-dst-{attempt}");
        let _ = hasty.copy_thread_in("", source, "", &target).await;
        let partial = thread_contents(&client, "", &target).await;
        let copied: usize = partial.iter().map(|(_, t)| t.len()).sum();
        if 0 < copied && copied < 120 {
            cut_short = Some((target, partial));
            break;
        }
        timeout = timeout * 3 / 2;
    }
    let (target, partial) = cut_short.expect("one of the hasty copies was cut short");
    // Whatever got there is whole: the same tuple as the source's.
    let source_tuples: HashMap<String, ctxstore::proto::CheckpointTuple> = want
        .iter()
        .flat_map(|(_, ts)| ts.iter())
        .map(|t| (t.checkpoint.clone().expect("cp").checkpoint_id, t.clone()))
        .collect();
    for (_, tuples) in &partial {
        for t in tuples {
            let id = t.checkpoint.clone().expect("cp").checkpoint_id;
            assert_eq!(Some(t), source_tuples.get(&id), "checkpoint {id} is whole");
        }
    }
    let r = client
        .copy_thread_in("", source, "", &target)
        .await
        .expect("copy again");
    assert_eq!(r.copied_checkpoints, 120);
    assert_eq!(thread_contents(&client, "", &target).await, want);
    cluster.shutdown().await;
}
