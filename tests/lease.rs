//! Leases (docs/api.md, "Leases"): keys attached to a lease vanish on every replica
//! when it expires or is revoked, and never while it is kept alive, through a leader
//! change and a restart of the whole cluster; and the mutex built on them
//! (`Client::lock`) hands out increasing fencing tokens that stop a holder whose
//! lease ended.

mod common;

use common::{assert_replicas_agree, wait_for_explained, TestCluster, WAIT};
use ctxstore::Error;
use ctxstore_client::proto::{batch_op, BatchOp, PutOp};
use ctxstore_client::{Client, LeaseState};
use std::time::{Duration, Instant};

/// Waits until `key` is gone (linearizable reads), and returns when it went.
async fn wait_gone(c: &Client, key: &str) -> Instant {
    wait_for_explained(&format!("{key} to be deleted"), WAIT, || async {
        match c.get(key.to_string()).await {
            Ok(None) => Ok(Instant::now()),
            Ok(Some(kv)) => Err(format!("still there at version {}", kv.version)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}

/// 1. A lease of 2 s in `{svc/a}` holds three keys; a put naming it from another
///    partition, or naming a lease that does not exist, is `NotFound` and writes
///    nothing; a put without it detaches a key.
/// 2. Without keepalives, its keys go together, no earlier than its TTL after the
///    grant, and every replica agrees.
/// 3. A revoked lease takes its keys at once: the next read does not see them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leases_keys_go_with_it_when_it_expires_or_is_revoked() {
    let cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    let c = cluster.client().await;
    let granted = Instant::now();
    let lease = c
        .grant_lease("{svc/a}", Duration::from_secs(2))
        .await
        .expect("grant");
    for k in ["{svc/a}/w1", "{svc/a}/w2", "{svc/a}/w3"] {
        let w = c.put_with_lease(k, "addr", &lease).await.expect("attach");
        let kv = c.get(k).await.expect("get").expect("there");
        assert_eq!((kv.lease_id, kv.version), (lease.id, w.version));
    }
    let info = c.lease_info(&lease).await.expect("info").expect("exists");
    assert_eq!(info.keys.len(), 3, "{info:?}");
    // At most the TTL, plus an election timeout (300 ms here) when the leader's
    // count of the shard's leases started after the grant (a reign just begun).
    assert!(info.remaining_ms <= 2_300, "{info:?}");
    // Another partition's key cannot use it; an unknown lease is no lease.
    match c.put_with_lease("{svc/b}/w1", "x", &lease).await {
        Err(Error::NotFound(what)) => assert!(what.contains("lease"), "{what}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let unknown = ctxstore_client::Lease {
        id: lease.id ^ 1,
        ..lease.clone()
    };
    assert!(matches!(
        c.put_with_lease("{svc/a}/w4", "x", &unknown).await,
        Err(Error::NotFound(_))
    ));
    assert!(c.get("{svc/b}/w1").await.expect("get").is_none());
    assert!(c.get("{svc/a}/w4").await.expect("get").is_none());
    // A plain put detaches the key: it outlives the lease.
    c.put("{svc/a}/w3", "kept").await.expect("detach");
    let info = c.lease_info(&lease).await.expect("info").expect("exists");
    assert_eq!(info.keys.len(), 2, "{info:?}");

    let gone = wait_gone(&c, "{svc/a}/w1").await;
    assert!(
        gone.duration_since(granted) >= Duration::from_secs(2),
        "expired {:?} after the grant, before its TTL",
        gone.duration_since(granted)
    );
    assert!(c.get("{svc/a}/w2").await.expect("get").is_none());
    assert_eq!(
        c.get("{svc/a}/w3")
            .await
            .expect("get")
            .map(|kv| kv.lease_id),
        Some(0)
    );
    assert!(c.lease_info(&lease).await.expect("info").is_none());
    assert_replicas_agree(&cluster).await;

    let lease = c
        .grant_lease("{svc/a}", Duration::from_secs(60))
        .await
        .expect("grant");
    c.put_with_lease("{svc/a}/x", "1", &lease)
        .await
        .expect("attach");
    c.put_with_lease("{svc/a}/y", "2", &lease)
        .await
        .expect("attach");
    assert_eq!(c.revoke_lease(&lease).await.expect("revoke"), (true, 2));
    assert!(c.get("{svc/a}/x").await.expect("get").is_none());
    assert!(c.get("{svc/a}/y").await.expect("get").is_none());
    assert_eq!(c.revoke_lease(&lease).await.expect("again"), (false, 0));
    assert_eq!(c.keep_alive_once(&lease).await.expect("keepalive"), None);

    // A lease lists at most 1,000 keys, counted across one batch too.
    let full = c
        .grant_lease("{svc/full}", Duration::from_secs(60))
        .await
        .expect("grant");
    let puts = |from: usize, n: usize| -> Vec<BatchOp> {
        (from..from + n)
            .map(|i| BatchOp {
                op: Some(batch_op::Op::Put(PutOp {
                    key: format!("{{svc/full}}/{i}").into(),
                    value: "v".into(),
                    lease_id: full.id,
                    ..Default::default()
                })),
            })
            .collect()
    };
    for b in 0..9 {
        c.batch(puts(b * 100, 100)).await.expect("attach 100");
    }
    match c.batch(puts(900, 101)).await {
        Err(Error::FailedPrecondition(why)) => assert!(why.contains("1000"), "{why}"),
        other => panic!("expected the bound, got {other:?}"),
    }
    assert!(c.get("{svc/full}/900").await.expect("get").is_none());
    c.batch(puts(900, 100)).await.expect("up to the bound");
    assert_eq!(c.revoke_lease(&full).await.expect("revoke"), (true, 1000));
    assert_replicas_agree(&cluster).await;
    cluster.shutdown().await;
}

/// A conversation attached to a lease (`AppendRequest::lease_id`) keeps it through
/// appends that do not name it, and goes with all its messages when the lease is
/// revoked; a lease of another partition is `NotFound` and appends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_goes_with_its_lease() {
    use ctxstore_client::proto::{AppendRequest, ChatMessage, ConversationRef};
    let cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    let c = cluster.client().await;
    let conv = ConversationRef {
        namespace: "agents".into(),
        id: "run-1".into(),
    };
    let append = |lease_id: Option<u64>| AppendRequest {
        conversation: Some(conv.clone()),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: "hi".into(),
            ..Default::default()
        }],
        lease_id,
        ..Default::default()
    };
    let lease = c
        .grant_conversation_lease(&conv, Duration::from_secs(60))
        .await
        .expect("grant");
    let other = c
        .grant_lease("{svc/other}", Duration::from_secs(60))
        .await
        .expect("grant");
    match c.append(append(Some(other.id))).await {
        Err(Error::NotFound(what)) => assert!(what.contains("lease"), "{what}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(c.conversation(conv.clone()).await.expect("get").is_none());
    c.append(append(Some(lease.id))).await.expect("attach");
    c.append(append(None)).await.expect("keep");
    let info = c.lease_info(&lease).await.expect("info").expect("exists");
    assert_eq!(info.keys.len(), 1, "the conversation's record: {info:?}");
    assert_eq!(c.revoke_lease(&lease).await.expect("revoke"), (true, 1));
    assert!(c.conversation(conv.clone()).await.expect("get").is_none());
    let r = c.append(append(None)).await.expect("a new conversation");
    assert_eq!(r.first_seq, 1, "its messages went with it");
    assert_replicas_agree(&cluster).await;
    cluster.shutdown().await;
}

/// A lease of 1 s kept alive by a `LeaseKeeper` keeps its key through two leader
/// changes and 3.6 s; once the keeper stops, the key goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_lease_survives_leader_changes() {
    let cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    let c = cluster.client().await;
    let lease = c
        .grant_lease("{svc/k}", Duration::from_secs(1))
        .await
        .expect("grant");
    let keeper = c.keep_alive(lease.clone());
    c.put_with_lease("{svc/k}/me", "1", &lease)
        .await
        .expect("attach");
    let mut moves = 0;
    for phase in 0..3 {
        if phase > 0 {
            let leader = cluster.wait_leader().await;
            let to = ((leader + 1) % 3) as u64 + 1;
            if c.transfer_leader(to).await.is_ok() {
                moves += 1;
            }
        }
        let until = Instant::now() + Duration::from_millis(1200);
        while Instant::now() < until {
            assert!(
                c.get("{svc/k}/me").await.expect("get").is_some(),
                "the key of a kept lease went"
            );
            assert!(matches!(keeper.state(), LeaseState::Alive(_)));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(moves > 0, "no leader change happened");
    drop(keeper);
    wait_gone(&c, "{svc/k}/me").await;
    cluster.shutdown().await;
}

/// Restarting every node does not end a lease early: a lease of 3 s granted before the
/// restart still holds its key right after it (the new leader counts the whole TTL
/// again), and a kept one through the restart; both end once nothing renews them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_restart_does_not_end_a_lease_early() {
    let mut cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    let c = cluster.client().await;
    let idle = c
        .grant_lease("{svc/r}", Duration::from_secs(3))
        .await
        .expect("grant");
    c.put_with_lease("{svc/r}/idle", "1", &idle)
        .await
        .expect("attach");
    let kept = c
        .grant_lease("{svc/r}", Duration::from_secs(2))
        .await
        .expect("grant");
    c.put_with_lease("{svc/r}/kept", "1", &kept)
        .await
        .expect("attach");
    let restarting = Instant::now();
    cluster.restart_all().await;
    cluster.wait_all_leaders().await;
    let restarted = Instant::now();
    let c = cluster.client().await;
    let keeper = c.keep_alive(kept.clone());
    assert!(c.get("{svc/r}/idle").await.expect("get").is_some());
    while restarted.elapsed() < Duration::from_secs(2) {
        assert!(c.get("{svc/r}/kept").await.expect("get").is_some());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gone = wait_gone(&c, "{svc/r}/idle").await;
    // Its new leader counts its whole TTL from after the restart began.
    assert!(
        gone.duration_since(restarting) >= Duration::from_secs(3),
        "gone {:?} after the restart began",
        gone.duration_since(restarting)
    );
    assert!(c.get("{svc/r}/kept").await.expect("get").is_some());
    drop(keeper);
    wait_gone(&c, "{svc/r}/kept").await;
    cluster.shutdown().await;
}

/// The mutex: a second locker waits while the first holds the lock; when the first
/// holder stops renewing (as a paused process would), the second gets the lock with a
/// higher fence, and the first holder's guarded write is refused and writes nothing,
/// while the second's applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_fences_a_holder_whose_lease_ended() {
    let cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    let c = cluster.client().await;
    let put = |v: &str| BatchOp {
        op: Some(batch_op::Op::Put(PutOp {
            key: "{lock/job}/state".into(),
            value: v.to_string().into(),
            ..Default::default()
        })),
    };
    let ttl = Duration::from_secs(1);
    let mut first = c.lock("job", ttl).await.expect("lock");
    c.guarded_batch(&first, vec![put("first")])
        .await
        .expect("the holder writes");
    let c2 = cluster.client().await;
    let waiter = tokio::spawn(async move {
        let g = c2.lock("job", ttl).await.expect("lock");
        (c2, g)
    });
    // The waiter is in line (its key is there) and still waits.
    wait_for_explained("the second locker to queue up", WAIT, || async {
        let n = c
            .scan("{lock/job}/w/", "", 10)
            .await
            .map_err(|e| e.to_string())?
            .kvs
            .len();
        (n == 2).then_some(()).ok_or(format!("{n} waiters"))
    })
    .await;
    assert!(!waiter.is_finished(), "the lock is held");
    // The first holder "pauses": its lease is no longer renewed.
    let fence = first.fence();
    let key = first.key().clone();
    first.keeper().stop();
    let (c2, second) = waiter.await.expect("the waiter");
    assert!(second.fence() > fence, "{} > {fence}", second.fence());
    assert!(c.get(key).await.expect("get").is_none());
    match c.guarded_batch(&first, vec![put("stale")]).await {
        Err(Error::VersionMismatch { .. }) => {}
        other => panic!("the old holder's write must be refused, got {other:?}"),
    }
    c2.guarded_batch(&second, vec![put("second")])
        .await
        .expect("the new holder writes");
    let v = c
        .get("{lock/job}/state")
        .await
        .expect("get")
        .expect("there");
    assert_eq!(v.value.as_ref(), b"second");
    second.unlock().await.expect("unlock");
    cluster.shutdown().await;
}

/// The service registry and elections on leases: two instances register, are
/// discovered, and the departure of one (its keeper dropped, its TTL passed) reaches a
/// watcher as a delete; two candidates campaign, and the second leads once the first
/// resigns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_and_elections_follow_their_leases() {
    use ctxstore_client::proto::watch_event::Kind;
    let cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    let c = cluster.client().await;
    let ttl = Duration::from_secs(1);
    let a = c
        .register("models", "a", "10.0.0.1:9000", ttl)
        .await
        .expect("a");
    let b = c
        .register("models", "b", "10.0.0.2:9000", ttl)
        .await
        .expect("b");
    let found: Vec<_> = c
        .discover("models")
        .await
        .expect("discover")
        .into_iter()
        .map(|kv| (kv.key, kv.value, kv.lease_id))
        .collect();
    assert_eq!(
        found,
        vec![
            (
                "{svc/models}/a".into(),
                "10.0.0.1:9000".into(),
                a.lease().id
            ),
            (
                "{svc/models}/b".into(),
                "10.0.0.2:9000".into(),
                b.lease().id
            ),
        ]
    );
    let mut w = c.watch_service("models", None).await.expect("watch");
    drop(a);
    let e = tokio::time::timeout(WAIT, w.next())
        .await
        .expect("an event in time")
        .expect("the watch goes on")
        .expect("an event");
    assert_eq!(e.kind, Kind::Delete as i32);
    assert_eq!(e.kv.expect("kv").key.as_ref(), b"{svc/models}/a");
    let left = c.discover("models").await.expect("discover");
    assert_eq!(left.len(), 1);
    assert!(matches!(
        c.discover("bad}name").await,
        Err(Error::InvalidArgument { .. })
    ));

    let first = c.campaign("coord", "node-1", ttl).await.expect("campaign");
    let c2 = cluster.client().await;
    let second = tokio::spawn(async move { c2.campaign("coord", "node-2", ttl).await });
    let leader = c.leader("coord").await.expect("leader").expect("someone");
    assert_eq!(leader.value.as_ref(), b"node-1");
    first.unlock().await.expect("resign");
    let second = second.await.expect("task").expect("elected");
    let leader = c.leader("coord").await.expect("leader").expect("someone");
    assert_eq!(leader.value.as_ref(), b"node-2");
    assert_eq!(&leader.key, second.key());
    drop(b);
    cluster.shutdown().await;
}
