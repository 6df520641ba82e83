//! The fixed values `docs/operations.md` quotes ("Limits and fixed values") are the
//! constants in the code: a change to one without the other fails here.

use std::time::Duration;

const OPERATIONS: &str = include_str!("../docs/operations.md");

/// `1000` → `1,000`, as the docs write numbers.
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The table row that starts with `| what |`.
fn row(what: &str) -> &'static str {
    let start = format!("| {what} |");
    OPERATIONS
        .lines()
        .find(|l| l.starts_with(&start))
        .unwrap_or_else(|| panic!("docs/operations.md has no row `{start}`"))
}

fn assert_row_says(what: &str, text: &str) {
    let r = row(what);
    assert!(
        r.contains(text),
        "docs/operations.md, row `{what}`: expected `{text}` in `{r}`"
    );
}

#[test]
fn fixed_values_in_operations_md_match_the_code() {
    let n = |v: usize| grouped(v as u64);
    assert_row_says(
        "live watch backlog",
        &format!("{} applied rounds", crate::fsm::watch::CHANNEL_CAPACITY),
    );
    assert_row_says(
        "TTL purge",
        &format!("at most {} records", n(crate::node::purge::PURGE_BATCH)),
    );
    assert_row_says(
        "names (namespace, conversation id, checkpoint id, channel, model name), idempotency key",
        &format!("at most {} bytes", crate::context::MAX_NAME),
    );
    assert_row_says(
        "checkpoint thread id, checkpoint namespace (`ns`)",
        &format!("{} bytes by default", n(crate::context::MAX_THREAD)),
    );
    assert_row_says(
        "request id",
        &format!("at most {} bytes", crate::server::path::MAX_REQUEST_ID),
    );
    assert_row_says(
        "replica inbox",
        &format!("{} messages", n(crate::raft::peer::INBOX_CAPACITY)),
    );
    assert_row_says(
        "raft message queue per destination node",
        &format!(
            "{} messages, batches of up to {}",
            n(crate::raft::transport::QUEUE),
            crate::raft::transport::MAX_BATCH
        ),
    );
    assert_row_says(
        "snapshot chunk",
        &format!("{} MiB", crate::raft::transport::CHUNK >> 20),
    );
    assert_row_says(
        "gRPC message size (`Kv`, `AgentContext`, `Raft`)",
        &format!("{} MiB", crate::proto::MAX_MESSAGE_SIZE >> 20),
    );
    assert_row_says(
        "server wait for a proposal or read barrier",
        &format!("{} s", crate::raft::handle::REQUEST_TIMEOUT.as_secs()),
    );
    assert_row_says(
        "`AddMember` wait for promotion",
        &format!("{} s", crate::server::cluster::PROMOTION_WAIT.as_secs()),
    );
    assert_row_says(
        "dedup window for request ids",
        &format!(
            "{} minutes",
            Duration::from_millis(crate::fsm::command::DEDUP_WINDOW_MS).as_secs() / 60
        ),
    );
    assert_row_says(
        "idempotency window of an `Append`",
        &format!(
            "{} hours",
            Duration::from_millis(crate::context::IDEMPOTENCY_WINDOW_MS).as_secs() / 3600
        ),
    );
    assert_row_says(
        "snapshot file received",
        &format!(
            "at most {} GiB, spooled to `<data-dir>/snap`; up to {} kept",
            crate::server::raft_service::MAX_SNAPSHOT_BYTES >> 30,
            crate::storage::snapshot::MAX_INCOMING_PER_SHARD
        ),
    );
}

#[test]
fn grouping_matches_the_docs_style() {
    assert_eq!(grouped(1000), "1,000");
    assert_eq!(grouped(8192), "8,192");
    assert_eq!(grouped(256), "256");
    assert_eq!(grouped(1_000_000), "1,000,000");
}
