//! Task queues (docs/api.md, "Task queues"): order, delays, idempotent enqueues,
//! visibility timeouts, nacks, dead letters and counts; and at-least-once delivery
//! with exactly-once acks per idempotency key while nodes crash and restart.

mod common;

use common::{assert_replicas_agree, wait_for_explained, TestCluster, WAIT};
use ctxstore::Error;
use ctxstore_client::Enqueue;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

fn payloads(tasks: &[ctxstore_client::proto::QueueTask]) -> Vec<String> {
    tasks
        .iter()
        .map(|t| String::from_utf8_lossy(&t.payload).into_owned())
        .collect()
}

/// 1. Priorities first, FIFO within one; a delayed task stays out until its delay.
/// 2. An idempotency key enqueues once.
/// 3. A lease that ends redelivers the task with a new token; the old token cannot
///    ack it; the new one can, once.
/// 4. A nack makes it visible again after the retry; after `max_attempts` leases the
///    next nack dead-letters it. The counts follow.
/// 5. Bad calls are refused and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_orders_redelivers_and_dead_letters() {
    let cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    let c = cluster.client().await;
    let q = "jobs";
    for (p, prio) in [
        ("low-1", 1),
        ("high-1", 9),
        ("low-2", 1),
        ("high-2", 9),
        ("mid", 5),
    ] {
        let opts = Enqueue {
            priority: prio,
            ..Default::default()
        };
        c.enqueue_with(q, p, opts).await.expect("enqueue");
    }
    // Out of sight for the whole test, whatever the machine's speed.
    let later = Enqueue {
        priority: 255,
        delay: Duration::from_secs(600),
        ..Default::default()
    };
    c.enqueue_with(q, "later", later).await.expect("enqueue");
    let vis = Duration::from_secs(30);
    let got = c.lease_tasks(q, 3, vis).await.expect("lease");
    assert_eq!(payloads(&got), ["high-1", "high-2", "mid"]);
    let rest = c.lease_tasks(q, 10, vis).await.expect("lease");
    assert_eq!(
        payloads(&rest),
        ["low-1", "low-2"],
        "the delayed one is not visible"
    );
    let soon = Enqueue {
        delay: Duration::from_millis(300),
        ..Default::default()
    };
    c.enqueue_with(q, "delayed", soon).await.expect("enqueue");
    wait_for_explained("the delayed task to show", WAIT, || async {
        let t = c.lease_tasks(q, 10, vis).await.map_err(|e| e.to_string())?;
        (payloads(&t) == ["delayed"])
            .then_some(())
            .ok_or(format!("{:?}", payloads(&t)))
    })
    .await;
    let s = c.queue_stats(q).await.expect("stats");
    assert_eq!(
        (s.ready, s.leased, s.delayed, s.enqueued_total),
        (0, 6, 1, 7),
        "{s:?}"
    );
    for t in got.iter().chain(&rest) {
        assert!(c.ack(q, t).await.expect("ack"));
        assert!(!c.ack(q, t).await.expect("ack again"), "acked once");
    }

    // Idempotent enqueue.
    let once = Enqueue {
        idempotency_key: "order-17".into(),
        max_attempts: 2,
        ..Default::default()
    };
    let (id, dup) = c
        .enqueue_with("work", "a", once.clone())
        .await
        .expect("enqueue");
    assert!(!dup);
    assert_eq!(
        c.enqueue_with("work", "b", once).await.expect("again"),
        (id, true)
    );

    // A lease that ends redelivers.
    let first = c
        .lease_tasks("work", 1, Duration::from_millis(200))
        .await
        .expect("lease");
    assert_eq!(
        (first.len(), first[0].task_id, first[0].attempts),
        (1, id, 1)
    );
    let second = wait_for_explained("the task to come back", WAIT, || async {
        let t = c
            .lease_tasks("work", 1, Duration::from_secs(30))
            .await
            .map_err(|e| e.to_string())?;
        t.into_iter().next().ok_or_else(|| "not yet".to_string())
    })
    .await;
    assert_eq!((second.task_id, second.attempts), (id, 2));
    assert_ne!(second.lease_token, first[0].lease_token);
    assert!(
        !c.ack("work", &first[0]).await.expect("late ack"),
        "the old lease cannot ack"
    );
    assert!(c
        .extend("work", &second, Duration::from_secs(60))
        .await
        .expect("extend"));
    // Its second lease was its last (max_attempts 2): a nack dead-letters it.
    assert_eq!(
        c.nack("work", &second, None).await.expect("nack"),
        (true, true)
    );
    let s = c.queue_stats("work").await.expect("stats");
    assert_eq!(
        (s.ready, s.leased, s.delayed, s.dead),
        (0, 0, 0, 1),
        "{s:?}"
    );

    // A nack within the attempts comes back after the retry.
    let id = c.enqueue("work", "retry").await.expect("enqueue");
    let t = c.lease_tasks("work", 1, vis).await.expect("lease");
    assert_eq!(
        c.nack("work", &t[0], Some(Duration::from_secs(2)))
            .await
            .expect("nack"),
        (true, false)
    );
    assert_eq!(c.queue_stats("work").await.expect("stats").delayed, 1);
    assert!(c
        .lease_tasks("work", 1, vis)
        .await
        .expect("lease")
        .is_empty());
    let back = wait_for_explained("the nacked task to come back", WAIT, || async {
        let t = c
            .lease_tasks("work", 1, vis)
            .await
            .map_err(|e| e.to_string())?;
        t.into_iter().next().ok_or_else(|| "not yet".to_string())
    })
    .await;
    assert_eq!((back.task_id, back.attempts), (id, 2));

    // Bad calls.
    for bad in [
        c.lease_tasks("work", 0, vis).await.err(),
        c.lease_tasks("work", 1, Duration::ZERO).await.err(),
        c.lease_tasks("a}b", 1, vis).await.err(),
        c.enqueue("", "x").await.err(),
    ] {
        assert!(
            matches!(bad, Some(Error::InvalidArgument { .. })),
            "{bad:?}"
        );
    }
    assert_replicas_agree(&cluster).await;
    cluster.shutdown().await;
}

/// What the producers and consumers saw.
#[derive(Default)]
struct Seen {
    /// Idempotency keys whose enqueue was acknowledged.
    enqueued: BTreeSet<String>,
    /// Idempotency key → deliveries.
    delivered: BTreeMap<String, u32>,
    /// Idempotency key → acks answered `true`.
    acked: BTreeMap<String, u32>,
    /// Keys whose ack failed with an unknown outcome and then answered `false` (the
    /// failed one may have applied).
    uncertain: BTreeSet<String>,
}

/// 4 producers enqueue 60 tasks each (idempotency key per task, retried with the same
/// key until acknowledged) and 4 consumers lease and ack them, while node 1, 2 and 3
/// in turn crash and restart. One consumer "pauses" on its first task (never acks it
/// in time): that task is delivered again to another consumer. At the end the queue
/// holds 240 tasks enqueued (idempotency kept retries out), 240 acked and none left;
/// every acknowledged enqueue was delivered at least once, and no key got two
/// successful acks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_enqueued_task_is_acked_once_through_crashes() {
    let mut cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let q = "crash";
    let vis = Duration::from_millis(1500);
    let mut tasks = Vec::new();
    for p in 0..4 {
        let c = cluster.client().await;
        let seen = seen.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..60 {
                let key = format!("p{p}-{i}");
                let opts = Enqueue {
                    idempotency_key: key.clone(),
                    max_attempts: 100,
                    ..Default::default()
                };
                // A failed call may have enqueued: the same key again is harmless.
                while c.enqueue_with(q, key.clone(), opts.clone()).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                seen.lock().await.enqueued.insert(key);
            }
        }));
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for n in 0..4 {
        let c = cluster.client().await;
        let (seen, stop) = (seen.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut paused = n == 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let got = match c.lease_tasks(q, 4, vis).await {
                    Ok(t) => t,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if got.is_empty() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                for t in got {
                    let key = String::from_utf8_lossy(&t.payload).into_owned();
                    *seen.lock().await.delivered.entry(key.clone()).or_default() += 1;
                    if paused {
                        // Holds it past its lease and never acks it.
                        paused = false;
                        continue;
                    }
                    // An ack whose answer was lost may have applied: asking again
                    // answers false.
                    let mut tries = 0;
                    loop {
                        match c.ack(q, &t).await {
                            Ok(true) => {
                                *seen.lock().await.acked.entry(key).or_default() += 1;
                                break;
                            }
                            Ok(false) if tries > 0 => {
                                seen.lock().await.uncertain.insert(key);
                                break;
                            }
                            Ok(false) => break,
                            Err(_) if tries < 20 => {
                                tries += 1;
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            Err(e) => panic!("ack: {e}"),
                        }
                    }
                }
            }
        }));
    }
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        cluster.stop(i).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.restart(i).await;
    }
    for t in tasks.drain(..4) {
        t.await.expect("producer");
    }
    let c = cluster.client().await;
    wait_for_explained(
        "every task to be acked",
        Duration::from_secs(60),
        || async {
            let s = c.queue_stats(q).await.map_err(|e| e.to_string())?;
            (s.acked_total == 240 && s.ready + s.leased + s.delayed == 0)
                .then_some(())
                .ok_or(format!("{s:?}"))
        },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    for t in tasks {
        t.await.expect("consumer");
    }
    let seen = seen.lock().await;
    assert_eq!(seen.enqueued.len(), 240);
    for k in &seen.enqueued {
        assert!(
            seen.delivered.get(k).is_some_and(|n| *n >= 1),
            "{k} delivered"
        );
        let acks = seen.acked.get(k).copied().unwrap_or(0);
        assert!(
            acks == 1 || (acks == 0 && seen.uncertain.contains(k)),
            "{k}: {acks} successful acks"
        );
    }
    assert!(
        seen.delivered.values().any(|n| *n >= 2),
        "the paused consumer's task was delivered again"
    );
    let s = c.queue_stats(q).await.expect("stats");
    assert_eq!(
        (s.enqueued_total, s.acked_total, s.dead),
        (240, 240, 0),
        "{s:?}"
    );
    assert_replicas_agree(&cluster).await;
    cluster.shutdown().await;
}
