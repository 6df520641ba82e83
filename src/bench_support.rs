//! Entry points for `benches/` into internal layers. Not a stable API.

use crate::error::Result;
use crate::proto::ShardDescriptor;
use crate::storage::{Engine, PeerStorage};
use crate::types::ShardId;
use raft::eraftpb::Entry;
use raft::{GetEntriesContext, Storage as _};

/// The in-memory Raft log mirror of one replica.
pub struct LogMirror(PeerStorage);

impl Default for LogMirror {
    fn default() -> Self {
        Self(PeerStorage::new_bootstrap(vec![1, 2, 3]))
    }
}

impl LogMirror {
    /// Appends entries as a ready would.
    pub fn append(&mut self, entries: &[Entry]) {
        self.0.append(entries);
    }

    /// Reads `[lo, hi)` as raft-rs does when sending appends.
    pub fn read(&self, lo: u64, hi: u64) -> usize {
        self.0
            .entries(lo, hi, None, GetEntriesContext::empty(false))
            .map_or(0, |e| e.len())
    }

    /// Index of the last entry.
    pub fn last(&self) -> u64 {
        self.0.last()
    }

    /// Drops entries up to `index` (log GC).
    pub fn compact(&mut self, index: u64) {
        let _ = self.0.compact(index);
    }
}

/// A node's RocksDB with the apply path on top.
pub struct ApplyPath {
    engine: Engine,
    next_index: u64,
}

impl ApplyPath {
    /// Opens RocksDB under `dir`.
    pub fn open(dir: &std::path::Path) -> Result<Self> {
        Ok(Self {
            engine: Engine::open(dir)?,
            next_index: 10,
        })
    }

    /// Applies one round of `n` committed single-put commands.
    pub fn apply_puts(&mut self, n: usize, value: &[u8]) -> Result<()> {
        let entries: Vec<Entry> = (0..n)
            .map(|i| {
                let index = self.next_index + i as u64;
                crate::fsm::apply::single_put_entry(
                    index,
                    6,
                    1,
                    &[],
                    format!("bench-{}", index % 10_000).into_bytes(),
                    value.to_vec(),
                )
            })
            .collect();
        self.next_index += n as u64;
        crate::fsm::apply::apply_round(
            &self.engine,
            ShardId(1),
            &entries,
            ShardDescriptor::default(),
            Vec::new(),
            &Default::default(),
        )?;
        Ok(())
    }
}
