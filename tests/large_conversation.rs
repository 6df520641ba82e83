//! A conversation of 100,000 messages (issue 20, item 4): trimming half of it and
//! deleting it are each one small Raft entry (the command names the conversation and
//! a seq, never the keys it removes), and afterwards no replica holds any of it.

mod common;

use common::{http_get, wait_for_explained, TestCluster, WAIT};
use ctxstore::proto::{AppendRequest, ChatMessage, ConversationRef, TrimRequest};
use prometheus_parse::{Scrape, Value};

const MESSAGES: u64 = 100_000;
const PER_APPEND: u64 = 1_000;

/// Entries over this size after the fill fail the test: the delete of every message
/// key in one entry would be megabytes (100,000 keys of about 40 bytes).
const ENTRY_BOUND: f64 = 64.0 * 1024.0;

fn conv() -> ConversationRef {
    ConversationRef {
        namespace: "big".into(),
        id: "long-chat".into(),
    }
}

/// Over all nodes: (proposals, proposals of at most `ENTRY_BOUND` bytes).
async fn proposal_sizes(cluster: &TestCluster) -> (f64, f64) {
    let (mut all, mut small) = (0.0, 0.0);
    for n in cluster.nodes.iter().flatten() {
        let addr = n.status_addr().expect("the node serves a status listener");
        let (code, body) = http_get(addr, "/metrics").await;
        assert_eq!(code, 200, "{body}");
        let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("metrics");
        let buckets = scrape
            .samples
            .iter()
            .find_map(|s| match &s.value {
                Value::Histogram(h) if s.metric == "ctxstore_proposal_size_bytes" => Some(h),
                _ => None,
            })
            .expect("the proposal size histogram");
        all += buckets.last().map_or(0.0, |b| b.count);
        small += buckets
            .iter()
            .filter(|b| b.less_than <= ENTRY_BOUND)
            .map(|b| b.count)
            .fold(0.0, f64::max);
    }
    (all, small)
}

/// Keys of the conversation (its record, messages and pinned set) on node `i`.
fn keys_on(cluster: &TestCluster, i: usize) -> usize {
    let c = conv();
    let record = ctxstore::context::conv_key(&c);
    let prefixes = ctxstore::context::conv_data_prefixes(&c);
    cluster.nodes[i]
        .as_ref()
        .expect("node running")
        .data_keys()
        .expect("data keys")
        .iter()
        .filter(|k| **k == record || prefixes.iter().any(|p| k.starts_with(p)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_100k_message_conversation_is_trimmed_and_deleted_in_small_entries() {
    let cluster = TestCluster::start_with(3, |c| {
        c.initial_shards = 1;
        c.status.listen = Some("127.0.0.1:0".into());
    })
    .await;
    let client = cluster.client().await;
    for _ in 0..MESSAGES / PER_APPEND {
        let messages = (0..PER_APPEND)
            .map(|i| ChatMessage {
                role: "user".into(),
                content: format!("message {i}"),
                token_count: 3,
                ..Default::default()
            })
            .collect();
        client
            .append(AppendRequest {
                conversation: Some(conv()),
                messages,
                ..Default::default()
            })
            .await
            .expect("append");
    }
    let info = client
        .conversation(conv())
        .await
        .expect("info")
        .expect("the conversation exists");
    assert_eq!(info.message_count, MESSAGES);
    // Every replica holds the record and every message before the cuts.
    for i in 0..3 {
        wait_for_explained(
            "every replica to hold the whole conversation",
            WAIT,
            || async {
                let n = keys_on(&cluster, i);
                (n as u64 > MESSAGES)
                    .then_some(())
                    .ok_or(format!("node {i} holds {n} keys"))
            },
        )
        .await;
    }
    let before = proposal_sizes(&cluster).await;

    let half = info.first_seq + MESSAGES / 2;
    let trimmed = client
        .trim(TrimRequest {
            conversation: Some(conv()),
            before_seq: half,
            ..Default::default()
        })
        .await
        .expect("trim");
    assert_eq!(trimmed.removed, MESSAGES / 2);
    let info = client
        .conversation(conv())
        .await
        .expect("info")
        .expect("the conversation still exists");
    assert_eq!((info.message_count, info.first_seq), (MESSAGES / 2, half));

    client.delete_conversation(conv()).await.expect("delete");
    assert!(client.conversation(conv()).await.expect("info").is_none());

    let after = proposal_sizes(&cluster).await;
    let (proposed, small) = (after.0 - before.0, after.1 - before.1);
    assert!(
        proposed >= 2.0,
        "the trim and the delete were proposed: {before:?} {after:?}"
    );
    assert_eq!(
        proposed, small,
        "a proposal over {ENTRY_BOUND} bytes after the fill: {before:?} -> {after:?}"
    );

    for i in 0..3 {
        wait_for_explained("every replica to drop the conversation", WAIT, || async {
            match keys_on(&cluster, i) {
                0 => Ok(()),
                n => Err(format!("node {i} still holds {n} of its keys")),
            }
        })
        .await;
        let check = cluster.nodes[i]
            .as_ref()
            .expect("node running")
            .check_listing_index()
            .expect("index check");
        assert_eq!((check.missing, check.extra), (0, 0), "node {i}: {check:?}");
    }
    cluster.shutdown().await;
}
