//! A fault campaign for the mutex (`Client::lock`, docs/api.md, "Locks and
//! elections"): lockers take the lock, write under it with `guarded_batch`, and let it
//! go, while a nemesis `kill -9`s nodes and SIGSTOPs them longer than the TTL (real
//! `ctxd` processes), or cuts a node off the others' Raft traffic longer than the
//! TTL, crashes nodes and moves leaderships (in-process), and one locker in turn
//! "pauses" holding the lock (stops renewing its lease). Checked:
//!
//! - fencing: the successful guarded writes, in the order they took effect (their
//!   versions), carry fences that never go down, and one fence is one holder: no
//!   holder wrote after a later holder had;
//! - a paused holder, once its lease has ended (its key gone), cannot write: its
//!   guarded write is refused and writes nothing;
//! - liveness: once the faults have healed, the lockers write again (10 more guarded
//!   writes within 30 s).
//!
//! `LOCK_CAMPAIGN_SECS` sets the length (default 12 s); `LOCK_CAMPAIGN_SEED` replays.

mod common;

use common::procs::start_cluster;
use common::{
    assert_process_replicas_agree, assert_replicas_agree, partition, set_filter, wait_for,
    TestCluster, WAIT,
};
use ctxstore::Error;
use ctxstore_client::proto::{batch_op, BatchOp, PutOp};
use ctxstore_client::{Client, ClientOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One successful guarded write: (version it took effect at, fence, locker).
type Write = (u64, u64, usize);

const LOCK: &str = "campaign";
const TTL: Duration = Duration::from_millis(1500);

fn owner_put(locker: usize, fence: u64) -> BatchOp {
    BatchOp {
        op: Some(batch_op::Op::Put(PutOp {
            key: "{lock/campaign}/owner".into(),
            value: format!("{locker}:{fence}").into(),
            ..Default::default()
        })),
    }
}

/// One locker: takes the lock, writes under it a few times, lets it go; every fifth
/// time (for locker 0) pauses holding it until its lease has ended, then tries to
/// write, which must be refused. Returns the refused writes of paused holds.
async fn locker(
    id: usize,
    c: Client,
    writes: Arc<Mutex<Vec<Write>>>,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> usize {
    let mut rng = StdRng::seed_from_u64(seed ^ id as u64);
    let mut refused = 0;
    let mut holds = 0u64;
    while !stop.load(Ordering::Acquire) {
        let Ok(mut guard) = c.lock(LOCK, TTL).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        holds += 1;
        // Locker 0 pauses on its first hold and every fifth after.
        if id == 0 && (holds == 1 || holds.is_multiple_of(5)) {
            // A pause longer than the lease: stop renewing, wait until the key is
            // gone (the lease ended), then write as if still holding the lock.
            guard.keeper().stop();
            let key = guard.key().clone();
            let gone = async {
                loop {
                    if matches!(c.get(key.clone()).await, Ok(None)) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            if tokio::time::timeout(Duration::from_secs(30), gone)
                .await
                .is_err()
            {
                continue;
            }
            // Asked again after an unknown outcome: the answer is refused or not.
            for _ in 0..20 {
                match c
                    .guarded_batch(&guard, vec![owner_put(id, guard.fence())])
                    .await
                {
                    Err(Error::VersionMismatch { .. }) => {
                        refused += 1;
                        break;
                    }
                    Ok(v) => panic!(
                        "a holder whose lease ended wrote at version {v} with fence {}",
                        guard.fence()
                    ),
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            continue;
        }
        for _ in 0..rng.random_range(1..4) {
            match c
                .guarded_batch(&guard, vec![owner_put(id, guard.fence())])
                .await
            {
                Ok(v) => writes.lock().expect("writes").push((v, guard.fence(), id)),
                Err(_) => break,
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..100))).await;
        }
        let _ = guard.unlock().await;
    }
    refused
}

/// The lockers at work: their clients' tasks, their writes, and the stop flag.
struct Lockers {
    tasks: Vec<tokio::task::JoinHandle<usize>>,
    writes: Arc<Mutex<Vec<Write>>>,
    stop: Arc<AtomicBool>,
}

impl Lockers {
    fn start(clients: Vec<Client>, seed: u64) -> Lockers {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = clients
            .into_iter()
            .enumerate()
            .map(|(id, c)| tokio::spawn(locker(id, c, writes.clone(), stop.clone(), seed)))
            .collect();
        Lockers {
            tasks,
            writes,
            stop,
        }
    }

    /// Waits, once the faults have healed, until the lockers have written 10 more
    /// times. How much they write during the faults depends on the schedule: each
    /// leader change restarts the expiry clock of a lease its holder gave up (a new
    /// leader never expires a lease early), so a dense run of pauses can keep the
    /// queue blocked by abandoned waiters from one fault to the next.
    async fn wait_for_progress(&self) -> usize {
        let during = self.writes.lock().expect("writes").len();
        wait_for(
            "the lockers to write again after the faults",
            WAIT,
            || async {
                let now = self.writes.lock().expect("writes").len();
                (now >= during + 10).then_some(())
            },
        )
        .await;
        during
    }

    /// Stops the lockers and checks their history: fences never go down in the order
    /// the writes took effect, and one fence is one locker.
    async fn stop_and_check(self, faults: usize) {
        let during = self.wait_for_progress().await;
        self.stop.store(true, Ordering::Release);
        let mut refused = 0;
        for l in self.tasks {
            refused += tokio::time::timeout(Duration::from_secs(60), l)
                .await
                .expect("a locker stops")
                .expect("locker");
        }
        let mut writes = self.writes.lock().expect("writes").clone();
        writes.sort_unstable();
        eprintln!(
            "lock campaign: {faults} faults, {} guarded writes ({during} while faults ran), {refused} refused after a paused hold",
            writes.len()
        );
        assert!(
            refused > 0,
            "a paused holder tried to write after its lease"
        );
        for w in writes.windows(2) {
            let ((v1, f1, l1), (v2, f2, l2)) = (w[0], w[1]);
            assert!(
                f1 <= f2,
                "fence went down: locker {l1} wrote with fence {f1} at version {v1}, then locker {l2} with fence {f2} at {v2}"
            );
            if f1 == f2 {
                assert_eq!(l1, l2, "two lockers wrote with fence {f1}");
            }
        }
    }
}

/// The campaign's length and seed (`LOCK_CAMPAIGN_SECS`, `LOCK_CAMPAIGN_SEED`).
fn settings() -> (u64, u64) {
    let secs: u64 = std::env::var("LOCK_CAMPAIGN_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let seed: u64 = std::env::var("LOCK_CAMPAIGN_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("lock campaign: seed {seed}, {secs} s");
    (secs, seed)
}

/// Real `ctxd` processes: `kill -9` and SIGSTOP (2.5-3.5 s, longer than the TTL) of
/// random nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_campaign_keeps_fences_in_order() {
    let (secs, seed) = settings();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut procs, addrs) = start_cluster(dir.path(), 3, &[]);
    let opts = ClientOptions {
        timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let admin = Client::connect_with(&addrs, opts.clone())
        .await
        .expect("client");
    wait_for("the cluster to serve", WAIT, || async {
        admin.put("probe", "x").await.ok()
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(
            Client::connect_with(&addrs, opts.clone())
                .await
                .expect("client"),
        );
    }
    let lockers = Lockers::start(clients, seed);
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut faults = 0;
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..1500))).await;
        let victim = rng.random_range(0..procs.len());
        if rng.random_bool(0.5) {
            eprintln!("  nemesis: kill -9 node {}", victim + 1);
            procs[victim].kill9();
            tokio::time::sleep(Duration::from_millis(rng.random_range(300..1200))).await;
            procs[victim].restart();
        } else {
            eprintln!("  nemesis: SIGSTOP node {}", victim + 1);
            procs[victim].pause();
            tokio::time::sleep(Duration::from_millis(rng.random_range(2500..3500))).await;
            procs[victim].resume();
        }
        faults += 1;
    }
    lockers.stop_and_check(faults).await;
    assert_process_replicas_agree(&admin, &addrs).await;
}

/// In-process nodes: one node cut off from the others' Raft traffic for 2-3 s (longer
/// than the TTL: a holder behind it cannot renew), crashes and restarts, and leader
/// transfers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_campaign_under_partitions_keeps_fences_in_order() {
    let (secs, seed) = settings();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cluster = TestCluster::start(3).await;
    cluster.wait_all_leaders().await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(cluster.client().await);
    }
    let admin = cluster.client().await;
    let lockers = Lockers::start(clients, seed);
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut faults = 0;
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1000))).await;
        let victim = rng.random_range(0..3usize);
        match rng.random_range(0..3) {
            0 => {
                eprintln!("  nemesis: node {} cut off", victim + 1);
                let rest: Vec<u64> = (1..=3).filter(|n| *n != victim as u64 + 1).collect();
                let cut = partition(&[vec![victim as u64 + 1], rest], None);
                set_filter(&cluster, Some(Arc::new(cut)));
                tokio::time::sleep(Duration::from_millis(rng.random_range(2000..3000))).await;
                set_filter(&cluster, None);
            }
            1 => {
                eprintln!("  nemesis: node {} crashes", victim + 1);
                cluster.stop(victim).await;
                tokio::time::sleep(Duration::from_millis(rng.random_range(200..800))).await;
                cluster.restart(victim).await;
            }
            _ => {
                eprintln!("  nemesis: leadership to node {}", victim + 1);
                let _ = admin.transfer_leader(victim as u64 + 1).await;
            }
        }
        faults += 1;
    }
    set_filter(&cluster, None);
    lockers.stop_and_check(faults).await;
    assert_replicas_agree(&cluster).await;
    cluster.shutdown().await;
}
