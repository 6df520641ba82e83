//! The KV API's semantics: hash-tag scans with paging, TTL expiry, atomic batches.

mod common;

use common::{wait_for, TestCluster, WAIT};
use ctxstore::proto::{batch_op, BatchOp, CheckOp, DeleteOp, PutOp};
use std::time::Duration;

/// Scans of a hash-tag prefix are ordered and paged; other keys are not included.
///
/// 1. Write 10 keys under `{conv:1}:m:`, 5 under `{conv:2}:m:`, and untagged keys.
/// 2. Page through `{conv:1}:m:` 4 at a time: 4 + 4 + 2 keys, in order, `more` set
///    on all but the last page.
/// 3. An untagged prefix scan returns its keys sorted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_tag_scans_are_ordered_and_paged() {
    let cluster = TestCluster::start(3).await;
    let c = cluster.client().await;
    for i in (0..10).rev() {
        c.put(format!("{{conv:1}}:m:{i:03}"), format!("msg {i}"))
            .await
            .expect("put");
    }
    for i in 0..5 {
        c.put(format!("{{conv:2}}:m:{i:03}"), "other")
            .await
            .expect("put");
    }
    for k in ["plain-b", "plain-a", "plain-c"] {
        c.put(k, "x").await.expect("put");
    }
    let mut seen = Vec::new();
    let mut after = String::new();
    let mut pages = Vec::new();
    loop {
        let page = c.scan("{conv:1}:m:", after.clone(), 4).await.expect("scan");
        pages.push((page.kvs.len(), page.more));
        for kv in &page.kvs {
            seen.push(String::from_utf8(kv.key.to_vec()).expect("utf8"));
        }
        if !page.more {
            break;
        }
        after = seen.last().cloned().expect("a page with more has keys");
    }
    assert_eq!(pages, vec![(4, true), (4, true), (2, false)]);
    let expect: Vec<String> = (0..10).map(|i| format!("{{conv:1}}:m:{i:03}")).collect();
    assert_eq!(seen, expect);
    let plain = c.scan("plain-", "", 10).await.expect("scan");
    let keys: Vec<&[u8]> = plain.kvs.iter().map(|kv| kv.key.as_ref()).collect();
    assert_eq!(keys, vec![&b"plain-a"[..], b"plain-b", b"plain-c"]);
    cluster.shutdown().await;
}

/// A key written with a TTL is readable until it expires, then invisible; keys without
/// a TTL are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_keys_expire() {
    let cluster = TestCluster::start(3).await;
    let c = cluster.client().await;
    c.put_with_ttl("session", "live", Some(Duration::from_millis(400)))
        .await
        .expect("put with ttl");
    c.put("forever", "stays").await.expect("put");
    let kv = c
        .get("session")
        .await
        .expect("get")
        .expect("visible before expiry");
    assert!(kv.expires_at_ms > 0);
    wait_for("the ttl key to expire", WAIT, || async {
        c.get("session").await.expect("get").is_none().then_some(())
    })
    .await;
    assert!(c.get("forever").await.expect("get").is_some());
    // An expired key counts as absent: create-only CAS succeeds.
    c.compare_and_swap("session", 0, "new")
        .await
        .expect("create after expiry");
    cluster.shutdown().await;
}

/// A batch applies all of its operations at one version, or none when a check fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_atomic() {
    let cluster = TestCluster::start(3).await;
    let c = cluster.client().await;
    let w = c.put("{agent:7}:a", "1").await.expect("put");
    let put = |k: &str, v: &str| BatchOp {
        op: Some(batch_op::Op::Put(PutOp {
            key: k.as_bytes().to_vec().into(),
            value: v.as_bytes().to_vec().into(),
            ttl_ms: 0,
            lease_id: 0,
        })),
    };
    let check = |k: &str, v: u64| BatchOp {
        op: Some(batch_op::Op::Check(CheckOp {
            key: k.as_bytes().to_vec().into(),
            expected_version: v,
        })),
    };
    let del = |k: &str| BatchOp {
        op: Some(batch_op::Op::Delete(DeleteOp {
            key: k.as_bytes().to_vec().into(),
        })),
    };
    // A failing check: nothing applies.
    let e = c
        .batch(vec![
            put("{agent:7}:b", "2"),
            check("{agent:7}:a", w.version + 1),
        ])
        .await
        .unwrap_err();
    assert!(matches!(e, ctxstore::Error::VersionMismatch { .. }), "{e}");
    assert!(c.get("{agent:7}:b").await.expect("get").is_none());
    // A passing check: everything applies at one version.
    let v = c
        .batch(vec![
            check("{agent:7}:a", w.version),
            put("{agent:7}:b", "2"),
            put("{agent:7}:c", "3"),
            del("{agent:7}:a"),
        ])
        .await
        .expect("batch");
    assert!(c.get("{agent:7}:a").await.expect("get").is_none());
    for k in ["{agent:7}:b", "{agent:7}:c"] {
        assert_eq!(c.get(k).await.expect("get").expect("written").version, v);
    }
    cluster.shutdown().await;
}
