//! The per-replica change log behind `Watch`: every applied round publishes the
//! changes it made (version = Raft index), in order. Each replica keeps the newest
//! changes up to a byte budget and, when an age bound is set, no change older than it
//! (checked at each applied round and when the log opens), so a watcher can resume
//! from the last version it saw on any replica that still retains it; older versions
//! get `WatchCompacted`.
//!
//! The log is kept twice. On disk, in the `meta` CF (`keys::watch_log_key`), written
//! by the apply batch that makes the changes ([`persist`]), so it survives restarts;
//! versions that fall out of the budget are deleted by a later apply batch (the hub
//! lists them, [`WatchHub::take_gc`]). In memory, the changes applied since the
//! replica started, within the same budget: a suffix of the disk log, which serves
//! most resumes and every live watcher without a read. A snapshot carries its
//! sender's disk log (`storage::snapshot`), which the installing replica opens in its
//! place ([`WatchHub::install`]). Reading the disk log blocks: [`WatchHub::subscribe`]
//! runs off the async threads, and split notices on disk are also kept in memory so
//! that routing a watch ([`WatchHub::moved_after`]) never reads it.

use crate::error::{ErrInto, Error, Result};
use crate::keys;
use crate::proto::{HashRange, ValueRecord, WatchLogRecord};
use crate::storage::Engine;
use crate::types::ShardId;
use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use prost::Message;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// Rounds a slow watcher may fall behind by before it re-reads the retained log
/// (rounds are shared with the log, so this bounds what a stalled watcher pins).
pub(crate) const CHANNEL_CAPACITY: usize = 256;

/// One change to one key, or the notice that a split moved some of the shard's arcs.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    /// Raft index of the change.
    pub(crate) version: u64,
    /// The user key (empty for a split notice).
    pub(crate) key: Bytes,
    /// The new record; None for a delete (or a split notice).
    pub(crate) record: Option<ValueRecord>,
    /// A split at `version` moved these arcs to this shard: a watch of a key or tag
    /// in them ends there and resumes on the new shard.
    pub(crate) moved: Option<(ShardId, Vec<crate::ranges::Arc>)>,
    /// When the change was made: the proposal time (ms since the epoch) of the newest
    /// entry of its applied round; 0 when unknown (a log written before it was kept).
    pub(crate) time_ms: u64,
}

impl Change {
    /// A change to a key.
    pub(crate) fn key(version: u64, key: Bytes, record: Option<ValueRecord>) -> Self {
        Self {
            version,
            key,
            record,
            moved: None,
            time_ms: 0,
        }
    }

    /// The notice that a split at `version` moved `arcs` to shard `to`.
    pub(crate) fn moved(version: u64, to: ShardId, arcs: Vec<crate::ranges::Arc>) -> Self {
        Self {
            version,
            key: Bytes::new(),
            record: None,
            moved: Some((to, arcs)),
            time_ms: 0,
        }
    }

    /// The change, made at `time_ms`.
    pub(crate) fn at(mut self, time_ms: u64) -> Self {
        self.time_ms = time_ms;
        self
    }

    fn size(&self) -> usize {
        64 + self.key.len()
            + self.record.as_ref().map_or(0, |r| r.value.len())
            + self.moved.as_ref().map_or(0, |(_, a)| 16 * a.len())
    }

    fn to_record(&self) -> WatchLogRecord {
        let (moved_to, moved_arcs) = match &self.moved {
            Some((to, arcs)) => (
                to.0,
                arcs.iter().map(|&(lo, hi)| HashRange { lo, hi }).collect(),
            ),
            None => (0, Vec::new()),
        };
        WatchLogRecord {
            key: self.key.clone(),
            record: self.record.clone(),
            moved_to,
            moved_arcs,
            time_ms: self.time_ms,
        }
    }

    fn from_record(version: u64, r: WatchLogRecord) -> Self {
        let moved = (r.moved_to != 0).then(|| {
            let arcs = r.moved_arcs.iter().map(|a| (a.lo, a.hi)).collect();
            (ShardId(r.moved_to), arcs)
        });
        Self {
            version,
            key: r.key,
            record: r.record,
            moved,
            time_ms: r.time_ms,
        }
    }
}

/// Adds to an apply batch of `shard` the changes it makes (one applied round, in
/// order) and the deletion of the versions `gc` lists (from [`WatchHub::take_gc`]).
pub(crate) fn persist(
    batch: &mut rocksdb::WriteBatch,
    engine: &Engine,
    shard: ShardId,
    changes: &[Change],
    gc: &Gc,
) {
    let cf = engine.cf(keys::CF_META);
    let mut n = 0u32;
    let mut last = None;
    for c in changes {
        n = if last == Some(c.version) { n + 1 } else { 0 };
        last = Some(c.version);
        batch.put_cf(
            cf,
            keys::watch_log_key(shard, c.version, n),
            c.to_record().encode_to_vec(),
        );
    }
    if let Some(after) = gc.after {
        for &(version, count) in &gc.versions {
            for n in 0..count {
                batch.delete_cf(cf, keys::watch_log_key(shard, version, n));
            }
        }
        batch.put_cf(cf, keys::watch_log_prefix(shard), after.to_be_bytes());
    }
}

/// Versions to delete from a shard's disk log, and where the log starts after them.
#[derive(Debug, Default)]
pub(crate) struct Gc {
    /// (version, its number of changes), oldest first.
    versions: Vec<(u64, u32)>,
    /// The log's new start; None when there is nothing to delete.
    after: Option<u64>,
}

/// Where `shard`'s disk log starts (the version after which it holds every change).
fn disk_start(engine: &Engine, shard: ShardId) -> Result<Option<u64>> {
    Ok(engine
        .get(keys::CF_META, &keys::watch_log_prefix(shard))?
        .and_then(|v| Some(u64::from_be_bytes(v.as_slice().try_into().ok()?))))
}

/// The changes on disk of `shard` with versions in `(after, upto]`, oldest first.
fn read_disk(engine: &Engine, shard: ShardId, after: u64, upto: u64) -> Result<Vec<Arc<Change>>> {
    let mut out = Vec::new();
    let from = keys::watch_log_key(shard, after.saturating_add(1), 0);
    let prefix = keys::watch_log_prefix(shard);
    let iter = engine.db().iterator_cf(
        engine.cf(keys::CF_META),
        rocksdb::IteratorMode::From(&from, rocksdb::Direction::Forward),
    );
    for item in iter {
        let (k, v) = item.err_into()?;
        if !k.starts_with(&prefix) {
            break;
        }
        let Some(version) = keys::decode_watch_log_key(&k) else {
            continue;
        };
        if version > upto {
            break;
        }
        out.push(Arc::new(decode_record(shard, version, &v)?));
    }
    Ok(out)
}

fn decode_record(shard: ShardId, version: u64, value: &[u8]) -> Result<Change> {
    let r = WatchLogRecord::decode(value)
        .map_err(|e| Error::Storage(format!("shard {shard}: watch log record: {e}")))?;
    Ok(Change::from_record(version, r))
}

/// The changes of the watch log records a snapshot of `shard` carries (their keys
/// checked by `storage::snapshot`), for [`WatchHub::install`].
pub(crate) fn decode_shipped(
    shard: ShardId,
    records: &[crate::proto::SnapshotKv],
) -> Result<Vec<Change>> {
    records
        .iter()
        .filter_map(|kv| Some((keys::decode_watch_log_key(&kv.key)?, kv)))
        .map(|(version, kv)| decode_record(shard, version, &kv.value))
        .collect()
}

struct ShardLog {
    changes: VecDeque<Arc<Change>>,
    bytes: usize,
    /// Every change with a version above this is in `changes` (or not yet applied).
    retained_after: u64,
    /// The newest version published (or the applied index at the last reset).
    last_version: u64,
    /// Live changes, one message per applied round (so a version is never split).
    /// Made by the first subscriber and dropped once none is left: a broadcast
    /// channel holds its whole ring (`CHANNEL_CAPACITY` slots, 8 KiB) from the
    /// start, and most replicas are never watched.
    tx: Option<broadcast::Sender<Round>>,
    /// The disk log, per version, oldest first.
    disk: VecDeque<DiskVersion>,
    disk_bytes: usize,
    /// The disk log holds every change with a version above this, less the versions
    /// in `gc` (dropped, to delete with the next apply batch).
    disk_after: u64,
    gc: Vec<(u64, u32)>,
    /// The split notices in the disk log, oldest first.
    disk_moves: VecDeque<Arc<Change>>,
}

impl ShardLog {
    fn new(applied: u64, disk_after: u64) -> Self {
        Self {
            changes: VecDeque::new(),
            bytes: 0,
            retained_after: applied,
            last_version: applied,
            tx: None,
            disk: VecDeque::new(),
            disk_bytes: 0,
            disk_after,
            gc: Vec::new(),
            disk_moves: VecDeque::new(),
        }
    }

    fn push_disk(&mut self, c: &Arc<Change>) {
        let size = c.size();
        if c.moved.is_some() {
            self.disk_moves.push_back(c.clone());
        }
        match self.disk.back_mut() {
            Some(d) if d.version == c.version => {
                d.count += 1;
                d.bytes += size;
            }
            _ => self.disk.push_back(DiskVersion {
                version: c.version,
                count: 1,
                bytes: size,
                time_ms: c.time_ms,
            }),
        }
        self.disk_bytes += size;
    }

    /// Drops the oldest versions, whole, until the disk log fits `keep`.
    fn trim_disk(&mut self, keep: Retention) {
        while self
            .disk
            .front()
            .is_some_and(|d| self.disk_bytes > keep.bytes || d.time_ms < keep.since_ms)
        {
            let Some(d) = self.disk.pop_front() else {
                break;
            };
            self.disk_bytes -= d.bytes;
            self.disk_after = self.disk_after.max(d.version);
            self.gc.push((d.version, d.count));
        }
        while self
            .disk_moves
            .front()
            .is_some_and(|c| c.version <= self.disk_after)
        {
            self.disk_moves.pop_front();
        }
    }
}

/// One version of a disk log: its number of changes, their bytes and their time.
struct DiskVersion {
    version: u64,
    count: u32,
    bytes: usize,
    time_ms: u64,
}

/// What a replica's log keeps: at most `bytes`, and nothing made before `since_ms`.
#[derive(Clone, Copy)]
struct Retention {
    bytes: usize,
    since_ms: u64,
}

/// The changes of one applied round.
pub(crate) type Round = Arc<Vec<Arc<Change>>>;

/// The change logs of every replica on a node.
pub(crate) struct WatchHub {
    logs: Mutex<HashMap<ShardId, ShardLog>>,
    /// Bytes of changes kept per replica (`context.watch-retain-bytes`; the cluster's
    /// settings may change it while the node runs).
    max_bytes: std::sync::atomic::AtomicUsize,
    /// The age past which changes are dropped, in ms; 0 = no age bound
    /// (`context.watch-retain-age`, also a cluster setting).
    max_age_ms: std::sync::atomic::AtomicU64,
}

/// What a new watcher gets: the retained changes after its version, then live ones.
pub(crate) struct Subscription {
    /// The version the watch starts after: the one asked for, or the newest
    /// published when none was.
    pub(crate) start: u64,
    pub(crate) replay: Vec<Arc<Change>>,
    pub(crate) live: broadcast::Receiver<Round>,
}

impl WatchHub {
    /// A hub keeping up to `max_bytes` of changes per replica, none older than
    /// `max_age` (`Duration::ZERO`: no age bound).
    pub(crate) fn new(max_bytes: usize, max_age: Duration) -> Self {
        Self {
            logs: Mutex::new(HashMap::new()),
            max_bytes: std::sync::atomic::AtomicUsize::new(max_bytes),
            max_age_ms: std::sync::atomic::AtomicU64::new(millis(max_age)),
        }
    }

    /// Changes what each replica keeps from its next round on.
    pub(crate) fn set_retention(&self, max_bytes: usize, max_age: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        self.max_bytes.store(max_bytes, Relaxed);
        self.max_age_ms.store(millis(max_age), Relaxed);
    }

    fn logs(&self) -> MutexGuard<'_, HashMap<ShardId, ShardLog>> {
        self.logs.lock()
    }

    /// What to keep as of now (the age bound against this node's clock).
    fn retention(&self) -> Retention {
        use std::sync::atomic::Ordering::Relaxed;
        let age = self.max_age_ms.load(Relaxed);
        Retention {
            bytes: self.max_bytes.load(Relaxed),
            since_ms: if age == 0 {
                0
            } else {
                crate::util::now_ms().saturating_sub(age)
            },
        }
    }

    /// Starts a replica's log at `applied`, when it installs a snapshot: nothing at or
    /// below it is retained (the install cleared the disk log and started it there).
    pub(crate) fn reset(&self, shard: ShardId, applied: u64) {
        // A fresh log with a fresh channel: watchers of the old log end (a snapshot
        // skipped changes they would otherwise miss silently); they resume from
        // their last version.
        self.logs().insert(shard, ShardLog::new(applied, applied));
    }

    /// Opens a replica's log when it starts at `applied`: the disk log as the last
    /// run left it (an older data dir without one starts it at `applied`), and an
    /// empty memory log.
    pub(crate) fn load(&self, engine: &Engine, shard: ShardId, applied: u64) -> Result<()> {
        let read = disk_start(engine, shard).and_then(|start| match start {
            Some(after) => Ok(Some((after, read_disk(engine, shard, after, u64::MAX)?))),
            None => Ok(None),
        });
        let (after, changes) = match read {
            Ok(Some(log)) => log,
            Ok(None) => (applied, Vec::new()),
            Err(e) => {
                // History is worth less than the replica: start the log afresh (what
                // is left of the old one lies before the new start, never read).
                tracing::warn!(%shard, %e, "watch log unreadable; it starts again at the applied index");
                (applied, Vec::new())
            }
        };
        if after == applied && changes.is_empty() {
            engine
                .db()
                .put_cf(
                    engine.cf(keys::CF_META),
                    keys::watch_log_prefix(shard),
                    applied.to_be_bytes(),
                )
                .err_into()?;
        }
        self.open(shard, applied, after, changes);
        Ok(())
    }

    /// Opens a replica's log once its snapshot install at `applied` is durable: the
    /// disk log the snapshot brought (starting after `after`, with `changes`).
    pub(crate) fn install(&self, shard: ShardId, applied: u64, after: u64, changes: Vec<Change>) {
        self.open(
            shard,
            applied,
            after,
            changes.into_iter().map(Arc::new).collect(),
        );
    }

    /// A fresh memory log at `applied` (and a fresh channel: the old log's watchers
    /// end), over a disk log that starts after `after` and holds `changes`.
    fn open(&self, shard: ShardId, applied: u64, after: u64, changes: Vec<Arc<Change>>) {
        let mut log = ShardLog::new(applied, after);
        for c in &changes {
            log.push_disk(c);
        }
        log.trim_disk(self.retention());
        self.logs().insert(shard, log);
    }

    /// The versions to delete from `shard`'s disk log with its next apply batch.
    pub(crate) fn take_gc(&self, shard: ShardId) -> Gc {
        let mut logs = self.logs();
        let Some(log) = logs.get_mut(&shard) else {
            return Gc::default();
        };
        if log.gc.is_empty() {
            return Gc::default();
        }
        Gc {
            versions: std::mem::take(&mut log.gc),
            after: Some(log.disk_after),
        }
    }

    /// Forgets a removed replica (its watchers' streams end).
    pub(crate) fn remove(&self, shard: ShardId) {
        self.logs().remove(&shard);
    }

    /// Records the changes of one applied round, oldest first.
    pub(crate) fn publish(&self, shard: ShardId, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        let mut logs = self.logs();
        let Some(log) = logs.get_mut(&shard) else {
            return;
        };
        let round: Vec<Arc<Change>> = changes.into_iter().map(Arc::new).collect();
        for c in &round {
            log.last_version = log.last_version.max(c.version);
            log.bytes += c.size();
            log.push_disk(c);
            log.changes.push_back(c.clone());
        }
        // No receivers is fine: the changes are still retained for resumption.
        if let Some(tx) = &log.tx {
            if tx.send(Arc::new(round)).is_err() {
                log.tx = None;
            }
        }
        let keep = self.retention();
        log.trim_disk(keep);
        while log
            .changes
            .front()
            .is_some_and(|c| log.bytes > keep.bytes || c.time_ms < keep.since_ms)
        {
            let Some(old) = log.changes.pop_front() else {
                break;
            };
            log.bytes -= old.size();
            // A round's changes share a version: drop them together so a resume
            // point never splits a round.
            log.retained_after = old.version;
            while log
                .changes
                .front()
                .is_some_and(|c| c.version == old.version)
            {
                if let Some(c) = log.changes.pop_front() {
                    log.bytes -= c.size();
                }
            }
        }
    }

    /// Whether the retained log of `shard` holds, after version `after`, a split that
    /// moved hash `h` away: a watch resuming from `after` is then served here up to
    /// the split, and told where to go on.
    pub(crate) fn moved_after(&self, shard: ShardId, after: u64, h: u64) -> bool {
        let logs = self.logs();
        let Some(log) = logs.get(&shard) else {
            return false;
        };
        after >= log.disk_after.min(log.retained_after)
            && log.disk_moves.iter().any(|c| {
                c.version > after
                    && c.moved
                        .as_ref()
                        .is_some_and(|(_, arcs)| crate::ranges::contains(arcs, h))
            })
    }

    /// Subscribes to `shard` for changes with versions above `after` (None: from
    /// the next change on). Versions older than the memory log are read from disk:
    /// call it off the async threads.
    pub(crate) fn subscribe(
        &self,
        engine: &Engine,
        shard: ShardId,
        after: Option<u64>,
    ) -> Result<Subscription> {
        let compacted = |requested, retained_after| Error::WatchCompacted {
            requested,
            retained_after,
        };
        let (mut sub, older) = {
            let mut logs = self.logs();
            let log = logs.get_mut(&shard).ok_or(Error::WrongShard { shard })?;
            let (replay, older) = match after {
                None => (Vec::new(), None),
                Some(v) if v < log.disk_after.min(log.retained_after) => {
                    return Err(compacted(v, log.disk_after.min(log.retained_after)))
                }
                Some(v) if v < log.retained_after => (
                    log.changes.iter().cloned().collect(),
                    Some((v, log.retained_after)),
                ),
                Some(v) => (
                    log.changes
                        .iter()
                        .filter(|c| c.version > v)
                        .cloned()
                        .collect(),
                    None,
                ),
            };
            let sub = Subscription {
                start: after.unwrap_or(log.last_version),
                replay,
                live: log
                    .tx
                    .get_or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
                    .subscribe(),
            };
            (sub, older)
        };
        if let Some((v, upto)) = older {
            // Read outside the lock; the versions read may have been dropped from the
            // disk log meanwhile (then it says so), never half-deleted unnoticed.
            let mut replay = read_disk(engine, shard, v, upto)?;
            let logs = self.logs();
            let log = logs.get(&shard).ok_or(Error::WrongShard { shard })?;
            if v < log.disk_after {
                return Err(compacted(v, log.disk_after));
            }
            // The disk must hold what the hub counted there: a gap would be silent.
            let expected: usize = log
                .disk
                .iter()
                .filter(|d| d.version > v && d.version <= upto)
                .map(|d| d.count as usize)
                .sum();
            if replay.len() != expected {
                return Err(Error::Storage(format!(
                    "shard {shard}: the watch log on disk holds {} changes after version {v}, {expected} expected",
                    replay.len()
                )));
            }
            replay.append(&mut sub.replay);
            sub.replay = replay;
        }
        Ok(sub)
    }
}

/// `d` in whole milliseconds (saturating).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> (tempfile::TempDir, Engine) {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::open(dir.path()).expect("open");
        (dir, engine)
    }

    /// What the apply path does with a round: persist it (and the GC due) in one
    /// batch, write, then publish.
    fn apply(hub: &WatchHub, e: &Engine, s: ShardId, changes: Vec<Change>) {
        let mut batch = rocksdb::WriteBatch::default();
        persist(&mut batch, e, s, &changes, &hub.take_gc(s));
        e.write(batch).expect("write");
        hub.publish(s, changes);
    }

    fn versions(sub: &Subscription) -> Vec<u64> {
        sub.replay.iter().map(|c| c.version).collect()
    }

    #[test]
    fn the_disk_log_serves_resumes_after_a_restart_and_is_trimmed_by_later_batches() {
        let (_dir, e) = engine();
        let s = ShardId(4);
        let hub = WatchHub::new(1_000, Duration::ZERO);
        hub.load(&e, s, 10).expect("load");
        apply(&hub, &e, s, vec![ch(11, "a", 100), ch(11, "b", 100)]);
        apply(&hub, &e, s, vec![ch(12, "a", 100)]);
        let moved = Change::moved(13, ShardId(9), vec![(5, 7)]);
        apply(&hub, &e, s, vec![moved]);
        // A restart: the memory log is empty, the disk log has it all.
        let hub = WatchHub::new(1_000, Duration::ZERO);
        hub.load(&e, s, 13).expect("load");
        let sub = hub.subscribe(&e, s, Some(10)).expect("resume from disk");
        assert_eq!(versions(&sub), vec![11, 11, 12, 13]);
        assert_eq!(sub.replay[1].key.as_ref(), b"b");
        assert_eq!(
            sub.replay[1].record.as_ref().map(|r| r.value.len()),
            Some(100)
        );
        assert_eq!(sub.replay[3].moved, Some((ShardId(9), vec![(5, 7)])));
        assert!(hub.moved_after(s, 12, 6));
        assert!(!hub.moved_after(s, 12, 8));
        assert!(!hub.moved_after(s, 13, 6));
        apply(&hub, &e, s, vec![ch(14, "c", 100)]);
        assert_eq!(
            versions(&hub.subscribe(&e, s, Some(11)).expect("mixed")),
            vec![12, 13, 14]
        );
        // Over the budget: version 11 goes, from memory accounting at once and from
        // disk with the next batch.
        apply(&hub, &e, s, vec![ch(15, "d", 500)]);
        assert!(matches!(
            hub.subscribe(&e, s, Some(10)),
            Err(Error::WatchCompacted {
                retained_after: 11,
                ..
            })
        ));
        assert_eq!(disk_start(&e, s).expect("start"), Some(10));
        apply(&hub, &e, s, Vec::new());
        assert_eq!(disk_start(&e, s).expect("start"), Some(11));
        let hub = WatchHub::new(1_000, Duration::ZERO);
        hub.load(&e, s, 15).expect("load");
        assert_eq!(
            versions(&hub.subscribe(&e, s, Some(11)).expect("after gc")),
            vec![12, 13, 14, 15]
        );
        assert!(read_disk(&e, s, 0, 11).expect("read").is_empty());
    }

    #[test]
    fn an_unreadable_disk_log_starts_again_at_the_applied_index() {
        let (_dir, e) = engine();
        let s = ShardId(6);
        let hub = WatchHub::new(1 << 20, Duration::ZERO);
        hub.load(&e, s, 3).expect("load");
        apply(&hub, &e, s, vec![ch(4, "a", 1), ch(5, "b", 1)]);
        e.db()
            .put_cf(
                e.cf(keys::CF_META),
                keys::watch_log_key(s, 5, 0),
                b"\xff\xff\xff",
            )
            .expect("corrupt");
        let hub = WatchHub::new(1 << 20, Duration::ZERO);
        hub.load(&e, s, 5)
            .expect("a replica starts whatever its watch log holds");
        assert!(matches!(
            hub.subscribe(&e, s, Some(3)),
            Err(Error::WatchCompacted {
                retained_after: 5,
                ..
            })
        ));
        apply(&hub, &e, s, vec![ch(6, "c", 1)]);
        let hub = WatchHub::new(1 << 20, Duration::ZERO);
        hub.load(&e, s, 6).expect("load");
        assert_eq!(
            versions(&hub.subscribe(&e, s, Some(5)).expect("resume")),
            vec![6]
        );
    }

    #[test]
    fn a_disk_log_missing_changes_is_an_error_not_a_gap() {
        let (_dir, e) = engine();
        let s = ShardId(7);
        let hub = WatchHub::new(1 << 20, Duration::ZERO);
        hub.load(&e, s, 0).expect("load");
        apply(&hub, &e, s, vec![ch(1, "a", 1), ch(2, "b", 1)]);
        let hub = WatchHub::new(1 << 20, Duration::ZERO);
        hub.load(&e, s, 2).expect("load");
        e.db()
            .delete_cf(e.cf(keys::CF_META), keys::watch_log_key(s, 2, 0))
            .expect("delete");
        match hub.subscribe(&e, s, Some(0)) {
            Err(Error::Storage(why)) => assert!(why.contains("1 changes"), "{why}"),
            other => panic!(
                "expected a storage error, got {:?}",
                other.map(|s| s.replay.len())
            ),
        }
    }

    #[test]
    fn an_older_data_dir_starts_its_disk_log_at_the_applied_index() {
        let (_dir, e) = engine();
        let s = ShardId(2);
        let hub = WatchHub::new(1 << 20, Duration::ZERO);
        hub.load(&e, s, 40).expect("load");
        assert_eq!(disk_start(&e, s).expect("start"), Some(40));
        assert!(matches!(
            hub.subscribe(&e, s, Some(39)),
            Err(Error::WatchCompacted {
                retained_after: 40,
                ..
            })
        ));
        assert!(hub
            .subscribe(&e, s, Some(40))
            .expect("from the start")
            .replay
            .is_empty());
    }

    fn ch(version: u64, key: &str, size: usize) -> Change {
        Change::key(
            version,
            Bytes::copy_from_slice(key.as_bytes()),
            Some(ValueRecord {
                value: vec![0; size].into(),
                ..Default::default()
            }),
        )
    }

    #[test]
    fn replays_after_a_version_and_compacts_whole_rounds() {
        let (_dir, e) = engine();
        let hub = WatchHub::new(1_100, Duration::ZERO);
        let s = ShardId(1);
        hub.reset(s, 5);
        assert!(matches!(
            hub.subscribe(&e, s, Some(4)),
            Err(Error::WatchCompacted {
                retained_after: 5,
                ..
            })
        ));
        hub.publish(s, vec![ch(6, "a", 10), ch(6, "b", 10)]);
        hub.publish(s, vec![ch(7, "a", 10)]);
        let sub = hub.subscribe(&e, s, Some(6)).unwrap();
        assert_eq!(
            sub.replay.iter().map(|c| c.version).collect::<Vec<_>>(),
            vec![7]
        );
        let sub = hub.subscribe(&e, s, Some(5)).unwrap();
        assert_eq!(sub.replay.len(), 3);
        // Overflow drops the oldest round whole.
        hub.publish(s, vec![ch(8, "c", 900)]);
        assert!(matches!(
            hub.subscribe(&e, s, Some(5)),
            Err(Error::WatchCompacted {
                retained_after: 6,
                ..
            })
        ));
        let sub = hub.subscribe(&e, s, Some(6)).unwrap();
        assert_eq!(
            sub.replay.iter().map(|c| c.version).collect::<Vec<_>>(),
            vec![7, 8]
        );
    }

    #[test]
    fn changes_older_than_the_age_bound_go_at_the_next_round_and_when_the_log_opens() {
        let (_dir, e) = engine();
        let s = ShardId(8);
        let now = crate::util::now_ms();
        let old = now - 120_000;
        // Written without an age bound: everything stays.
        let hub = WatchHub::new(1 << 20, Duration::ZERO);
        hub.load(&e, s, 0).expect("load");
        apply(
            &hub,
            &e,
            s,
            vec![ch(1, "a", 10).at(old), ch(1, "b", 10).at(old)],
        );
        apply(&hub, &e, s, vec![ch(2, "a", 10).at(old + 1)]);
        apply(&hub, &e, s, vec![ch(3, "a", 10).at(now)]);
        assert_eq!(
            versions(&hub.subscribe(&e, s, Some(0)).expect("all")),
            vec![1, 1, 2, 3]
        );
        // A bound of a minute, set while running: the next round drops versions 1
        // and 2 from memory at once, and from disk with the round after.
        hub.set_retention(1 << 20, Duration::from_secs(60));
        apply(&hub, &e, s, vec![ch(4, "c", 10).at(now)]);
        assert!(matches!(
            hub.subscribe(&e, s, Some(1)),
            Err(Error::WatchCompacted {
                retained_after: 2,
                ..
            })
        ));
        assert_eq!(
            versions(&hub.subscribe(&e, s, Some(2)).expect("kept")),
            vec![3, 4]
        );
        apply(&hub, &e, s, vec![ch(5, "c", 10).at(now)]);
        assert_eq!(disk_start(&e, s).expect("start"), Some(2));
        assert!(read_disk(&e, s, 0, 2).expect("read").is_empty());
        // The disk records keep their time: a restart with the bound serves the rest.
        let hub = WatchHub::new(1 << 20, Duration::from_secs(60));
        hub.load(&e, s, 5).expect("load");
        assert_eq!(
            versions(&hub.subscribe(&e, s, Some(2)).expect("disk")),
            vec![3, 4, 5]
        );
        // A log written before changes had a time (0): older than any bound.
        let s = ShardId(9);
        let hub = WatchHub::new(1 << 20, Duration::ZERO);
        hub.load(&e, s, 0).expect("load");
        apply(&hub, &e, s, vec![ch(1, "a", 10)]);
        apply(&hub, &e, s, vec![ch(2, "a", 10)]);
        let hub = WatchHub::new(1 << 20, Duration::from_secs(3600));
        hub.load(&e, s, 2).expect("load");
        assert!(matches!(
            hub.subscribe(&e, s, Some(0)),
            Err(Error::WatchCompacted {
                retained_after: 2,
                ..
            })
        ));
    }

    #[test]
    fn a_lowered_retention_trims_at_the_next_round() {
        let (_dir, e) = engine();
        let hub = WatchHub::new(1 << 20, Duration::ZERO);
        let s = ShardId(3);
        hub.reset(s, 0);
        hub.publish(s, vec![ch(1, "a", 500)]);
        hub.publish(s, vec![ch(2, "b", 500)]);
        assert_eq!(hub.subscribe(&e, s, Some(0)).unwrap().replay.len(), 2);
        hub.set_retention(700, Duration::ZERO);
        hub.publish(s, vec![ch(3, "c", 10)]);
        assert!(matches!(
            hub.subscribe(&e, s, Some(0)),
            Err(Error::WatchCompacted {
                retained_after: 1,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn live_changes_follow_the_replay() {
        let (_dir, e) = engine();
        let hub = WatchHub::new(1 << 20, Duration::ZERO);
        let s = ShardId(2);
        hub.reset(s, 0);
        let mut sub = hub.subscribe(&e, s, None).unwrap();
        assert_eq!(sub.start, 0);
        hub.publish(s, vec![ch(1, "k", 1)]);
        assert_eq!(sub.live.recv().await.unwrap()[0].version, 1);
        assert_eq!(hub.subscribe(&e, s, None).unwrap().start, 1);
        // A reset (snapshot install) ends the old subscribers.
        hub.reset(s, 10);
        assert!(sub.live.recv().await.is_err());
        assert!(hub.subscribe(&e, ShardId(9), None).is_err());
    }
}
