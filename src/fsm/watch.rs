//! The per-replica change log behind `Watch`: every applied round publishes the
//! changes it made (version = Raft index), in order. Each replica keeps the newest
//! changes up to a byte budget, so a watcher can resume from the last version it saw
//! on any replica that still retains it; older versions get `WatchCompacted`.
//! The log lives in memory: after a restart or a snapshot install a replica retains
//! only what it applied since.

use crate::error::{Error, Result};
use crate::proto::ValueRecord;
use crate::types::ShardId;
use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
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
}

impl Change {
    /// A change to a key.
    pub(crate) fn key(version: u64, key: Bytes, record: Option<ValueRecord>) -> Self {
        Self {
            version,
            key,
            record,
            moved: None,
        }
    }

    /// The notice that a split at `version` moved `arcs` to shard `to`.
    pub(crate) fn moved(version: u64, to: ShardId, arcs: Vec<crate::ranges::Arc>) -> Self {
        Self {
            version,
            key: Bytes::new(),
            record: None,
            moved: Some((to, arcs)),
        }
    }

    fn size(&self) -> usize {
        64 + self.key.len()
            + self.record.as_ref().map_or(0, |r| r.value.len())
            + self.moved.as_ref().map_or(0, |(_, a)| 16 * a.len())
    }
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
}

/// The changes of one applied round.
pub(crate) type Round = Arc<Vec<Arc<Change>>>;

/// The change logs of every replica on a node.
pub(crate) struct WatchHub {
    logs: Mutex<HashMap<ShardId, ShardLog>>,
    /// Bytes of changes kept per replica (`context.watch-retain-bytes`; the cluster's
    /// settings may change it while the node runs).
    max_bytes: std::sync::atomic::AtomicUsize,
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
    /// A hub keeping up to `max_bytes` of changes per replica.
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            logs: Mutex::new(HashMap::new()),
            max_bytes: std::sync::atomic::AtomicUsize::new(max_bytes),
        }
    }

    /// Changes how many bytes of changes each replica keeps from the next round on.
    pub(crate) fn set_max_bytes(&self, max_bytes: usize) {
        self.max_bytes
            .store(max_bytes, std::sync::atomic::Ordering::Relaxed);
    }

    fn logs(&self) -> MutexGuard<'_, HashMap<ShardId, ShardLog>> {
        self.logs.lock()
    }

    /// Starts (or restarts) a replica's log at `applied`: nothing at or below it is
    /// retained. Called when the replica starts and when it installs a snapshot.
    pub(crate) fn reset(&self, shard: ShardId, applied: u64) {
        // A fresh log with a fresh channel: watchers of the old log end (a snapshot
        // skipped changes they would otherwise miss silently); they resume from
        // their last version.
        let log = ShardLog {
            changes: VecDeque::new(),
            bytes: 0,
            retained_after: applied,
            last_version: applied,
            tx: None,
        };
        self.logs().insert(shard, log);
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
            log.changes.push_back(c.clone());
        }
        // No receivers is fine: the changes are still retained for resumption.
        if let Some(tx) = &log.tx {
            if tx.send(Arc::new(round)).is_err() {
                log.tx = None;
            }
        }
        let max_bytes = self.max_bytes.load(std::sync::atomic::Ordering::Relaxed);
        while log.bytes > max_bytes {
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
        after >= log.retained_after
            && log.changes.iter().any(|c| {
                c.version > after
                    && c.moved
                        .as_ref()
                        .is_some_and(|(_, arcs)| crate::ranges::contains(arcs, h))
            })
    }

    /// Subscribes to `shard` for changes with versions above `after` (None: from
    /// the next change on).
    pub(crate) fn subscribe(&self, shard: ShardId, after: Option<u64>) -> Result<Subscription> {
        let mut logs = self.logs();
        let log = logs.get_mut(&shard).ok_or(Error::WrongShard { shard })?;
        let replay = match after {
            None => Vec::new(),
            Some(v) if v < log.retained_after => {
                return Err(Error::WatchCompacted {
                    requested: v,
                    retained_after: log.retained_after,
                })
            }
            Some(v) => log
                .changes
                .iter()
                .filter(|c| c.version > v)
                .cloned()
                .collect(),
        };
        Ok(Subscription {
            start: after.unwrap_or(log.last_version),
            replay,
            live: log
                .tx
                .get_or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
                .subscribe(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let hub = WatchHub::new(1_100);
        let s = ShardId(1);
        hub.reset(s, 5);
        assert!(matches!(
            hub.subscribe(s, Some(4)),
            Err(Error::WatchCompacted {
                retained_after: 5,
                ..
            })
        ));
        hub.publish(s, vec![ch(6, "a", 10), ch(6, "b", 10)]);
        hub.publish(s, vec![ch(7, "a", 10)]);
        let sub = hub.subscribe(s, Some(6)).unwrap();
        assert_eq!(
            sub.replay.iter().map(|c| c.version).collect::<Vec<_>>(),
            vec![7]
        );
        let sub = hub.subscribe(s, Some(5)).unwrap();
        assert_eq!(sub.replay.len(), 3);
        // Overflow drops the oldest round whole.
        hub.publish(s, vec![ch(8, "c", 900)]);
        assert!(matches!(
            hub.subscribe(s, Some(5)),
            Err(Error::WatchCompacted {
                retained_after: 6,
                ..
            })
        ));
        let sub = hub.subscribe(s, Some(6)).unwrap();
        assert_eq!(
            sub.replay.iter().map(|c| c.version).collect::<Vec<_>>(),
            vec![7, 8]
        );
    }

    #[test]
    fn a_lowered_retention_trims_at_the_next_round() {
        let hub = WatchHub::new(1 << 20);
        let s = ShardId(3);
        hub.reset(s, 0);
        hub.publish(s, vec![ch(1, "a", 500)]);
        hub.publish(s, vec![ch(2, "b", 500)]);
        assert_eq!(hub.subscribe(s, Some(0)).unwrap().replay.len(), 2);
        hub.set_max_bytes(700);
        hub.publish(s, vec![ch(3, "c", 10)]);
        assert!(matches!(
            hub.subscribe(s, Some(0)),
            Err(Error::WatchCompacted {
                retained_after: 1,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn live_changes_follow_the_replay() {
        let hub = WatchHub::new(1 << 20);
        let s = ShardId(2);
        hub.reset(s, 0);
        let mut sub = hub.subscribe(s, None).unwrap();
        assert_eq!(sub.start, 0);
        hub.publish(s, vec![ch(1, "k", 1)]);
        assert_eq!(sub.live.recv().await.unwrap()[0].version, 1);
        assert_eq!(hub.subscribe(s, None).unwrap().start, 1);
        // A reset (snapshot install) ends the old subscribers.
        hub.reset(s, 10);
        assert!(sub.live.recv().await.is_err());
        assert!(hub.subscribe(ShardId(9), None).is_err());
    }
}
