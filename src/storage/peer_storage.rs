//! `raft::Storage` for one replica: an in-memory mirror of its durable Raft log.
//!
//! The mirror is loaded from RocksDB when the replica starts and is updated when the
//! replica hands a ready to the log writer (raft-rs requires the updates to be readable
//! through `Storage` before `advance_append_async`). Log GC keeps the mirror bounded.

use crate::error::{ErrInto, Error, Result};
use crate::keys;
use crate::proto::{ApplyState, RaftLocalState};
use crate::storage::Engine;
use crate::types::ShardId;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

/// Index and term of the state a new shard starts from: replicas that join later are
/// always behind it and so are always initialized through a snapshot.
pub(crate) const INIT_INDEX: u64 = 5;
/// Term of the bootstrap state.
pub(crate) const INIT_TERM: u64 = 5;

/// The Raft log and state of one replica, as raft-rs sees it.
pub(crate) struct PeerStorage {
    /// Vote, term and commit.
    hard_state: HardState,
    /// Membership as of the last applied (or snapshot) index.
    conf_state: ConfState,
    /// Index of the last entry removed by log GC or covered by a snapshot.
    truncated_index: u64,
    /// Term of `truncated_index`.
    truncated_term: u64,
    /// Entries `truncated_index + 1 ..= last_index`.
    entries: VecDeque<Entry>,
    /// The latest snapshot built for followers, served by `snapshot()`.
    snapshot: Option<Snapshot>,
    /// Lowest index a follower asked a snapshot for, while none is ready (0 = none).
    snapshot_wanted: AtomicU64,
}

impl PeerStorage {
    /// A storage with nothing in it: a replica created to receive a snapshot.
    pub(crate) fn new_empty() -> Self {
        Self {
            hard_state: HardState::default(),
            conf_state: ConfState::default(),
            truncated_index: 0,
            truncated_term: 0,
            entries: VecDeque::new(),
            snapshot: None,
            snapshot_wanted: AtomicU64::new(0),
        }
    }

    /// The bootstrap state of a brand-new shard with the given voters.
    pub(crate) fn new_bootstrap(voters: Vec<u64>) -> Self {
        let mut s = Self::new_empty();
        s.conf_state.set_voters(voters);
        s.truncated_index = INIT_INDEX;
        s.truncated_term = INIT_TERM;
        s.hard_state.set_term(INIT_TERM);
        s.hard_state.set_commit(INIT_INDEX);
        s
    }

    /// The state of a shard a split just created: an empty log truncated at the
    /// split's `index` and `term`, committed there, with the parent's membership.
    pub(crate) fn new_split(conf_state: ConfState, index: u64, term: u64) -> Self {
        let mut s = Self::new_empty();
        s.conf_state = conf_state;
        s.truncated_index = index;
        s.truncated_term = term;
        s.hard_state.set_term(term);
        s.hard_state.set_commit(index);
        s
    }

    /// Loads the replica of `shard` from RocksDB. The commit index is raised to the
    /// applied index: entries are applied only once committed and fsynced, but the
    /// hard state carrying the commit may be written after the apply batch.
    pub(crate) fn load(engine: &Engine, shard: ShardId) -> Result<(Self, ApplyState)> {
        let rs: RaftLocalState = engine
            .get_decoded(keys::CF_RAFT, &keys::raft_state_key(shard))?
            .ok_or_else(|| Error::Storage(format!("shard {shard}: no raft state")))?;
        let apply: ApplyState = engine
            .get_decoded(keys::CF_META, &keys::apply_state_key(shard))?
            .unwrap_or_default();
        let mut s = Self::new_empty();
        s.hard_state = HardState::parse_from_bytes(&rs.hard_state).err_into()?;
        s.conf_state = ConfState::parse_from_bytes(&apply.conf_state).err_into()?;
        s.truncated_index = rs.truncated_index;
        s.truncated_term = rs.truncated_term;
        let db = engine.db();
        let start = keys::raft_log_key(shard, rs.truncated_index + 1);
        let end = keys::raft_log_key(shard, u64::MAX);
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_upper_bound(end);
        let iter = db.iterator_cf_opt(
            engine.cf(keys::CF_RAFT),
            opts,
            rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
        );
        for (expected, item) in (rs.truncated_index + 1..).zip(iter) {
            let (k, v) = item.err_into()?;
            let index = keys::decode_raft_log_key(shard, &k)
                .ok_or_else(|| Error::Storage(format!("shard {shard}: bad log key")))?;
            if index != expected {
                // A hole: entries past it were truncated by a conflicting append whose
                // cleanup had not reached disk; they are not part of the log.
                break;
            }
            let e = Entry::parse_from_bytes(&v).err_into()?;
            s.entries.push_back(e);
        }
        if apply.applied_index > s.hard_state.commit && apply.applied_index <= s.last() {
            s.hard_state.set_commit(apply.applied_index);
        }
        Ok((s, apply))
    }

    /// The persisted form of the hard state and truncation point.
    pub(crate) fn local_state(&self) -> RaftLocalState {
        RaftLocalState {
            hard_state: self
                .hard_state
                .write_to_bytes()
                .expect("encoding a HardState to memory cannot fail")
                .into(),
            truncated_index: self.truncated_index,
            truncated_term: self.truncated_term,
        }
    }

    /// Current hard state.
    #[cfg(test)]
    pub(crate) fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// Replaces the hard state.
    pub(crate) fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// Replaces the conf state (after applying a conf change).
    pub(crate) fn set_conf_state(&mut self, cs: ConfState) {
        self.conf_state = cs;
    }

    /// Current conf state.
    pub(crate) fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// First index still in the log.
    pub(crate) fn first(&self) -> u64 {
        self.truncated_index + 1
    }

    /// Last index in the log (the truncation point when empty).
    pub(crate) fn last(&self) -> u64 {
        self.truncated_index + self.entries.len() as u64
    }

    /// Appends entries from a ready, dropping any conflicting suffix. Returns the old
    /// last index so the caller can delete a truncated suffix on disk.
    pub(crate) fn append(&mut self, ents: &[Entry]) -> u64 {
        let old_last = self.last();
        let Some(first) = ents.first() else {
            return old_last;
        };
        let start = first.index;
        if start <= self.truncated_index {
            // raft-rs never appends below the truncation point.
            return old_last;
        }
        let keep = (start - self.first()) as usize;
        self.entries.truncate(keep);
        self.entries.extend(ents.iter().cloned());
        old_last
    }

    /// Gives back the memory the in-memory log holds beyond its entries (a replica
    /// about to hibernate).
    pub(crate) fn shrink(&mut self) {
        self.entries.shrink_to_fit();
    }

    /// Drops entries up to and including `index` (log GC). Returns the term of `index`.
    pub(crate) fn compact(&mut self, index: u64) -> Result<u64> {
        if index <= self.truncated_index {
            return Ok(self.truncated_term);
        }
        if index > self.last() {
            return Err(Error::Internal(format!(
                "compact to {index} beyond last index {}",
                self.last()
            )));
        }
        let term = self.term_of(index).err_into()?;
        let n = (index - self.truncated_index) as usize;
        self.entries.drain(..n);
        self.truncated_index = index;
        self.truncated_term = term;
        Ok(term)
    }

    /// Resets the log to a snapshot's point.
    pub(crate) fn apply_snapshot(&mut self, snap: &Snapshot) {
        let meta = snap.get_metadata();
        self.entries.clear();
        self.truncated_index = meta.index;
        self.truncated_term = meta.term;
        self.conf_state = meta.get_conf_state().clone();
        if self.hard_state.commit < meta.index {
            self.hard_state.set_commit(meta.index);
        }
        if self.hard_state.term < meta.term {
            self.hard_state.set_term(meta.term);
        }
    }

    /// Records the latest snapshot built for followers.
    pub(crate) fn set_snapshot(&mut self, snap: Snapshot) {
        let idx = snap.get_metadata().index;
        if self.snapshot_wanted.load(Ordering::Relaxed) <= idx {
            self.snapshot_wanted.store(0, Ordering::Relaxed);
        }
        self.snapshot = Some(snap);
    }

    /// Takes the pending snapshot request, if raft-rs asked for one.
    pub(crate) fn take_snapshot_wanted(&self) -> Option<u64> {
        match self.snapshot_wanted.swap(0, Ordering::Relaxed) {
            0 => None,
            i => Some(i),
        }
    }

    fn term_of(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.truncated_index {
            return Ok(self.truncated_term);
        }
        if idx < self.truncated_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.first()) as usize].term)
    }
}

impl raft::Storage for PeerStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.truncated_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let first = self.first();
        let mut out: Vec<Entry> = self
            .entries
            .range((low - first) as usize..(high - first) as usize)
            .cloned()
            .collect();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.term_of(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        if let Some(s) = &self.snapshot {
            let cs = s.get_metadata().get_conf_state();
            // A snapshot from before `to` joined would be rejected by it: build anew.
            let includes_to = cs.voters.contains(&to) || cs.learners.contains(&to);
            // One older than the log's start would leave the follower unable to
            // continue from the log.
            let fresh = s.get_metadata().index >= self.truncated_index;
            if s.get_metadata().index >= request_index && includes_to && fresh {
                return Ok(s.clone());
            }
        }
        let want = request_index.max(1);
        let prev = self.snapshot_wanted.load(Ordering::Relaxed);
        if prev == 0 || want > prev {
            self.snapshot_wanted.store(want, Ordering::Relaxed);
        }
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64, size: usize) -> Entry {
        Entry {
            index,
            term,
            data: vec![0u8; size].into(),
            ..Default::default()
        }
    }

    fn storage_with(last: u64) -> PeerStorage {
        let mut s = PeerStorage::new_bootstrap(vec![1, 2, 3]);
        let ents: Vec<Entry> = (INIT_INDEX + 1..=last).map(|i| entry(i, 6, 10)).collect();
        s.append(&ents);
        s
    }

    #[test]
    fn first_and_last_index_follow_compaction() {
        let mut s = storage_with(20);
        assert_eq!(s.first_index().unwrap(), INIT_INDEX + 1);
        assert_eq!(s.last_index().unwrap(), 20);
        s.compact(12).unwrap();
        assert_eq!(s.first_index().unwrap(), 13);
        assert_eq!(s.last_index().unwrap(), 20);
        // Compacting everything leaves an empty log whose last index is the truncation.
        s.compact(20).unwrap();
        assert_eq!(s.first_index().unwrap(), 21);
        assert_eq!(s.last_index().unwrap(), 20);
    }

    #[test]
    fn term_at_truncated_index_is_kept() {
        let mut s = storage_with(20);
        s.compact(12).unwrap();
        assert_eq!(s.term(12).unwrap(), 6);
        assert_eq!(s.term(11), Err(raft::Error::Store(StorageError::Compacted)));
        assert_eq!(
            s.term(21),
            Err(raft::Error::Store(StorageError::Unavailable))
        );
        assert!(s.term(INIT_INDEX + 1).is_err());
    }

    #[test]
    fn entries_respect_bounds_and_max_size() {
        let mut s = storage_with(20);
        let ctx = || GetEntriesContext::empty(false);
        assert_eq!(s.entries(6, 11, None, ctx()).unwrap().len(), 5);
        // max_size limits the result but always returns at least one entry.
        let one = s.entries(6, 11, Some(1), ctx()).unwrap();
        assert_eq!(one.len(), 1);
        let sized = s.entries(6, 11, Some(35), ctx()).unwrap();
        assert!(!sized.is_empty() && sized.len() < 5);
        s.compact(8).unwrap();
        assert_eq!(
            s.entries(8, 10, None, ctx()),
            Err(raft::Error::Store(StorageError::Compacted))
        );
        assert_eq!(
            s.entries(9, 22, None, ctx()),
            Err(raft::Error::Store(StorageError::Unavailable))
        );
    }

    #[test]
    fn conflicting_append_replaces_the_suffix() {
        let mut s = storage_with(10);
        let old_last = s.append(&[entry(8, 7, 1), entry(9, 7, 1)]);
        assert_eq!(old_last, 10);
        assert_eq!(s.last_index().unwrap(), 9);
        assert_eq!(s.term(8).unwrap(), 7);
        assert_eq!(s.term(7).unwrap(), 6);
    }

    #[test]
    fn snapshot_is_requested_then_served() {
        let mut s = storage_with(10);
        assert_eq!(
            s.snapshot(9, 2),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        );
        assert_eq!(s.take_snapshot_wanted(), Some(9));
        assert_eq!(s.take_snapshot_wanted(), None);
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 10;
        snap.mut_metadata().term = 6;
        snap.mut_metadata().mut_conf_state().set_voters(vec![1, 2]);
        s.set_snapshot(snap);
        assert_eq!(s.snapshot(9, 2).unwrap().get_metadata().index, 10);
        // A replica missing from the snapshot's membership needs a newer snapshot.
        assert!(s.snapshot(9, 4).is_err());
        assert_eq!(s.take_snapshot_wanted(), Some(9));
    }

    #[test]
    fn applying_a_snapshot_resets_the_log() {
        let mut s = storage_with(10);
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 50;
        snap.mut_metadata().term = 9;
        snap.mut_metadata().mut_conf_state().set_voters(vec![1, 2]);
        s.apply_snapshot(&snap);
        assert_eq!(s.first_index().unwrap(), 51);
        assert_eq!(s.last_index().unwrap(), 50);
        assert_eq!(s.term(50).unwrap(), 9);
        assert_eq!(s.hard_state().commit, 50);
        assert_eq!(s.conf_state().voters, vec![1, 2]);
    }
}
