//! The node-wide log writer: one thread that group-commits the Raft log writes of every
//! replica on the node (DESIGN §3). Each round drains every queued task, writes them in
//! one RocksDB WriteBatch with a single WAL sync, then tells each replica which of its
//! readies are durable. Tasks of one replica complete in the order they were queued.

use crate::error::Result;
use crate::storage::Engine;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

/// One write to apply in the batch.
pub(crate) enum LogOp {
    /// Put `key = value` in column family `cf`.
    Put(&'static str, Vec<u8>, Vec<u8>),
    /// Delete one key.
    Delete(&'static str, Vec<u8>),
    /// Delete `[from, to)`.
    DeleteRange(&'static str, Vec<u8>, Vec<u8>),
}

/// Writes from one replica's ready, and whom to tell once they are durable.
pub(crate) struct WriteTask {
    /// The writes.
    pub(crate) ops: Vec<LogOp>,
    /// Whether the ops must be fsynced before `done` runs (new entries, vote/term, snapshot).
    pub(crate) sync: bool,
    /// Called on the writer thread after the round is durable (or failed).
    pub(crate) done: Box<dyn FnOnce(Result<()>) + Send>,
}

/// Handle to the writer thread; cloning shares the thread.
#[derive(Clone)]
pub(crate) struct LogWriter {
    /// Queue into the writer thread.
    tx: mpsc::Sender<WriteTask>,
    /// Number of WAL syncs done so far (exported in `Cluster.Status`).
    syncs: Arc<AtomicU64>,
    /// Set when the thread has exited (and dropped its RocksDB handle).
    closed: WriterClosed,
}

/// Signals that the writer thread has exited.
#[derive(Clone, Default)]
pub(crate) struct WriterClosed(Arc<(parking_lot::Mutex<bool>, parking_lot::Condvar)>);

impl WriterClosed {
    fn set(&self) {
        let (m, cv) = &*self.0;
        *m.lock() = true;
        cv.notify_all();
    }

    /// Blocks until the thread exited or `timeout` passed; returns whether it exited.
    pub(crate) fn wait(&self, timeout: std::time::Duration) -> bool {
        let (m, cv) = &*self.0;
        let mut done = m.lock();
        cv.wait_while_for(&mut done, |done| !*done, timeout);
        *done
    }
}

impl LogWriter {
    /// Starts the writer thread; it ends when every handle is dropped. Each synced
    /// write's duration goes to `fsync_seconds`.
    pub(crate) fn start(engine: Engine, fsync_seconds: Histogram) -> Self {
        let (tx, rx) = mpsc::channel::<WriteTask>();
        let syncs = Arc::new(AtomicU64::new(0));
        let counter = syncs.clone();
        let closed = WriterClosed::default();
        let signal = closed.clone();
        std::thread::Builder::new()
            .name("ctx-log-writer".into())
            .spawn(move || {
                run(engine, rx, counter, fsync_seconds);
                signal.set();
            })
            .expect("spawning the log writer thread");
        Self { tx, syncs, closed }
    }

    /// A handle that tells when the thread has exited.
    pub(crate) fn closed_signal(&self) -> WriterClosed {
        self.closed.clone()
    }

    /// Queues a task; returns false when the writer has stopped.
    pub(crate) fn submit(&self, task: WriteTask) -> bool {
        self.tx.send(task).is_ok()
    }

    /// WAL syncs done so far.
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

/// Most tasks folded into one round.
const MAX_TASKS_PER_ROUND: usize = 4096;

fn run(engine: Engine, rx: mpsc::Receiver<WriteTask>, syncs: Arc<AtomicU64>, fsync: Histogram) {
    let mut round: Vec<WriteTask> = Vec::new();
    while let Ok(first) = rx.recv() {
        round.push(first);
        while round.len() < MAX_TASKS_PER_ROUND {
            match rx.try_recv() {
                Ok(t) => round.push(t),
                Err(_) => break,
            }
        }
        let result = write_round(&engine, &mut round, &syncs, &fsync);
        for task in round.drain(..) {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(crate::error::Error::Storage(e.to_string())),
            };
            (task.done)(r);
        }
    }
}

/// Adds log-writer ops to a RocksDB batch.
pub(crate) fn add_to_batch(
    engine: &Engine,
    batch: &mut rocksdb::WriteBatch,
    ops: impl IntoIterator<Item = LogOp>,
) {
    for op in ops {
        match op {
            LogOp::Put(cf, k, v) => batch.put_cf(engine.cf(cf), k, v),
            LogOp::Delete(cf, k) => batch.delete_cf(engine.cf(cf), k),
            LogOp::DeleteRange(cf, from, to) => batch.delete_range_cf(engine.cf(cf), from, to),
        }
    }
}

fn write_round(
    engine: &Engine,
    round: &mut [WriteTask],
    syncs: &AtomicU64,
    fsync: &Histogram,
) -> Result<()> {
    let mut batch = rocksdb::WriteBatch::default();
    let mut sync = false;
    for task in round.iter_mut() {
        sync |= task.sync;
        add_to_batch(engine, &mut batch, task.ops.drain(..));
    }
    if batch.is_empty() && !sync {
        return Ok(());
    }
    if sync {
        let started = std::time::Instant::now();
        engine.write_sync(batch)?;
        fsync.observe(started.elapsed().as_secs_f64());
    } else {
        engine.write(batch)?;
    }
    if sync {
        syncs.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::CF_RAFT;
    use std::sync::mpsc::channel;

    #[test]
    fn tasks_complete_in_order_and_share_syncs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::open(dir.path()).expect("open");
        let writer = LogWriter::start(engine.clone(), Histogram::new([1.0]));
        let (done_tx, done_rx) = channel();
        for i in 0u64..200 {
            let tx = done_tx.clone();
            writer.submit(WriteTask {
                ops: vec![LogOp::Put(CF_RAFT, i.to_be_bytes().to_vec(), b"v".to_vec())],
                sync: true,
                done: Box::new(move |r| {
                    r.expect("write succeeds");
                    tx.send(i).expect("receiver alive");
                }),
            });
        }
        let order: Vec<u64> = (0..200).map(|_| done_rx.recv().expect("done")).collect();
        assert_eq!(order, (0..200).collect::<Vec<_>>());
        assert!(writer.syncs() >= 1 && writer.syncs() <= 200);
        assert!(engine
            .get(CF_RAFT, &199u64.to_be_bytes())
            .unwrap()
            .is_some());
        // Let the thread close its RocksDB handle before the process exits.
        let closed = writer.closed_signal();
        drop(writer);
        drop(engine);
        assert!(closed.wait(std::time::Duration::from_secs(10)));
    }
}
