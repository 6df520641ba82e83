//! A pool of agent workers coordinated through ctxstore alone (docs/api.md, "Leases",
//! "Locks and elections", "Task queues"): each worker registers itself in the service
//! registry, the workers elect a coordinator, the coordinator enqueues the jobs (with
//! idempotency keys, so a new coordinator enqueueing again adds nothing), and every
//! worker drains the queue. Mid-way the coordinator and every third worker are killed
//! (their tasks aborted: registrations lapse with their leases, leased jobs come back
//! after the visibility timeout), and another worker takes over as coordinator and
//! enqueues the jobs again, which adds nothing.
//!
//! ```sh
//! cargo run -p ctxstore-client --example worker_pool -- [ENDPOINTS] [WORKERS] [JOBS]
//! # defaults: 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 6 60
//! ```

use ctxstore_client::{Client, Enqueue, Error};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SERVICE: &str = "pool-workers";
const ELECTION: &str = "pool-coordinator";
const QUEUE: &str = "pool-jobs";
const TTL: Duration = Duration::from_secs(2);
const VISIBILITY: Duration = Duration::from_secs(2);

/// Enqueues every job once (a repeat by a later coordinator finds the keys).
async fn coordinate(c: &Client, jobs: u64, run: &str) -> Result<(), Error> {
    for j in 0..jobs {
        let opts = Enqueue {
            idempotency_key: format!("{run}-{j}"),
            ..Default::default()
        };
        c.enqueue_with(QUEUE, format!("job {j}"), opts).await?;
    }
    Ok(())
}

/// Aborts a task when dropped: a killed worker's campaign dies with it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One worker: registers, campaigns in the background, and drains the queue.
async fn worker(
    c: Client,
    id: usize,
    jobs: u64,
    run: String,
    done: Arc<AtomicU64>,
) -> Result<(), Error> {
    let _registration = c
        .register(SERVICE, &format!("w{id}"), format!("worker {id}"), TTL)
        .await?;
    let elector = c.clone();
    let elect_run = run.clone();
    let _campaign = AbortOnDrop(tokio::spawn(async move {
        if let Ok(leading) = elector.campaign(ELECTION, format!("w{id}"), TTL).await {
            println!("w{id}: elected coordinator");
            if let Err(e) = coordinate(&elector, jobs, &elect_run).await {
                eprintln!("w{id}: enqueueing failed: {e}");
            }
            // Leads until killed or the pool is done.
            std::future::pending::<()>().await;
            drop(leading);
        }
    }));
    while done.load(Ordering::Acquire) < jobs {
        let tasks = c.lease_tasks(QUEUE, 2, VISIBILITY).await?;
        if tasks.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        for t in tasks {
            // The "work".
            tokio::time::sleep(Duration::from_millis(10)).await;
            if c.ack(QUEUE, &t).await? {
                done.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let endpoints: Vec<String> = args
        .get(1)
        .map_or("127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003", |s| s)
        .split(',')
        .map(String::from)
        .collect();
    let workers: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(6);
    let jobs: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(60);
    let run = format!("{:x}", rand::random::<u32>());
    let c = Client::connect(&endpoints).await?;
    let acked_before = c.queue_stats(QUEUE).await?.acked_total;
    let start = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let mut pool = Vec::new();
    for id in 0..workers {
        let c = c.clone();
        let (run, done) = (run.clone(), done.clone());
        pool.push(tokio::spawn(worker(c, id, jobs, run, done)));
    }
    // Once a third of the jobs are done, kill the coordinator and every third worker.
    while done.load(Ordering::Acquire) < jobs / 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let coordinator = c
        .leader(ELECTION)
        .await?
        .map(|l| String::from_utf8_lossy(&l.value).into_owned());
    println!("coordinator before the kills: {coordinator:?}");
    let mut killed = 0;
    for (id, w) in pool.iter().enumerate() {
        if id % 3 == 0 || coordinator.as_deref() == Some(format!("w{id}").as_str()) {
            w.abort();
            killed += 1;
            println!("killed w{id}");
        }
    }
    for w in pool {
        match w.await {
            Ok(r) => r?,
            Err(e) if e.is_cancelled() => {}
            Err(e) => return Err(Error::Internal(e.to_string())),
        }
    }
    let stats = c.queue_stats(QUEUE).await?;
    let live = c.discover(SERVICE).await?;
    println!(
        "{} jobs done in {:.1} s by {workers} workers ({killed} killed); queue: {} ready, {} leased, {} acked by this run; {} workers still registered",
        done.load(Ordering::Acquire),
        start.elapsed().as_secs_f64(),
        stats.ready,
        stats.leased,
        stats.acked_total - acked_before,
        live.len()
    );
    Ok(())
}
