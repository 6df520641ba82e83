//! Opens the node's RocksDB with the `raft`, `data` and `meta` column families.

use crate::error::{ErrInto, Error, Result};
use crate::keys::{self, ALL_CFS};
use rocksdb::{BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, Options, DB};
use std::path::Path;
use std::sync::Arc;

/// A shared handle to the node's RocksDB.
#[derive(Clone)]
pub(crate) struct Engine {
    /// The database; every CF of DESIGN §4 exists once `open` returned.
    db: Arc<DB>,
    /// Bytes of every batch this node wrote (what a split or move costs in writes).
    written: Arc<std::sync::atomic::AtomicU64>,
    /// Held while the expiry index changes outside the apply path (each batch of a
    /// snapshot load, which writes its records' entries; a purge round from its view
    /// of the index to its deletion of the entries it found stale), so a round never
    /// deletes an entry a load wrote after that view.
    expiry_upkeep: Arc<parking_lot::Mutex<()>>,
}

impl Engine {
    /// Opens (creating if needed) the database under `path`.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path)
            .map_err(|e| Error::Storage(format!("cannot create {}: {e}", path.display())))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(4);
        opts.set_max_total_wal_size(256 << 20);
        let cache = Cache::new_lru_cache(128 << 20);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut cf = Options::default();
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            if *name != keys::CF_RAFT {
                // The apply path point-reads `data` (a key's current version) and
                // `meta` (dedup records) on every write. SST bloom filters answer a
                // miss without reading a block. The Raft log is read from the
                // in-memory mirror, not by point reads.
                table.set_bloom_filter(10.0, false);
            }
            if *name == keys::CF_META {
                // Dedup lookups are almost all misses (three buckets per request): a
                // memtable bloom filter answers them without a skiplist search. Reads
                // of `data` mostly hit, where the filter is only extra work.
                cf.set_memtable_whole_key_filtering(true);
                cf.set_memtable_prefix_bloom_ratio(0.1);
            }
            if *name == keys::CF_DATA {
                cf.set_compression_type(rocksdb::DBCompressionType::Lz4);
            } else {
                cf.set_compression_type(rocksdb::DBCompressionType::None);
            }
            cf.set_block_based_table_factory(&table);
            cf.set_write_buffer_size(32 << 20);
            ColumnFamilyDescriptor::new(*name, cf)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs).err_into()?;
        Ok(Self {
            db: Arc::new(db),
            written: Default::default(),
            expiry_upkeep: Default::default(),
        })
    }

    /// Excludes other changes of the expiry index outside the apply path while held.
    pub(crate) fn expiry_upkeep(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.expiry_upkeep.lock()
    }

    /// The raw database.
    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    /// A column family handle; every CF is created at open.
    pub(crate) fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("every column family is created when the engine opens")
    }

    /// Reads one key.
    pub(crate) fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(cf), key).err_into()
    }

    /// Reads one key and decodes it as `M`, straight from RocksDB's pinned buffer (no
    /// intermediate copy of the value: the hot read paths decode records of up to
    /// `max-value-size`).
    pub(crate) fn get_decoded<M: prost::Message + Default>(
        &self,
        cf: &str,
        key: &[u8],
    ) -> Result<Option<M>> {
        decode_pinned(self.db.get_pinned_cf(self.cf(cf), key))
    }

    /// [`Engine::get_decoded`] from memory only (the memtables and the block cache):
    /// `Ok(None)` when the read would have to go to the disk.
    pub(crate) fn get_decoded_cached<M: prost::Message + Default>(
        &self,
        cf: &str,
        key: &[u8],
    ) -> Result<Option<Option<M>>> {
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_read_tier(rocksdb::ReadTier::BlockCache);
        match self.db.get_pinned_cf_opt(self.cf(cf), key, &opts) {
            Err(e) if e.kind() == rocksdb::ErrorKind::Incomplete => Ok(None),
            r => decode_pinned(r).map(Some),
        }
    }

    /// Writes a batch and syncs the WAL before returning: for the few writes that
    /// must be durable on their own (bootstrap state, the node identity, the cleanup
    /// of a removed replica), not through the log writer.
    pub(crate) fn write_sync(&self, batch: rocksdb::WriteBatch) -> Result<()> {
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(true);
        self.count(&batch);
        self.db.write_opt(batch, &opts).err_into()
    }

    /// Writes a batch without a sync (the apply path: see `fsm::apply`).
    pub(crate) fn write(&self, batch: rocksdb::WriteBatch) -> Result<()> {
        self.count(&batch);
        self.db.write(batch).err_into()
    }

    /// Writes a batch without a sync unless RocksDB would stall or slow the write
    /// down (too many memtables or level-0 files): then writes nothing and answers
    /// `false`. For writes made on an async task, which must not block its thread.
    pub(crate) fn write_unless_stalled(&self, batch: rocksdb::WriteBatch) -> Result<bool> {
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_no_slowdown(true);
        let bytes = batch.size_in_bytes();
        match self.db.write_opt(batch, &opts) {
            Ok(()) => {
                self.written
                    .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
                Ok(true)
            }
            Err(e) if e.kind() == rocksdb::ErrorKind::Incomplete => {
                tracing::debug!(bytes, "a write would stall; handed to a blocking thread");
                Ok(false)
            }
            Err(e) => Err(e).err_into(),
        }
    }

    /// Sets mutable options of column family `cf` (tests: e.g. to make writes stall).
    #[cfg(test)]
    pub(crate) fn set_cf_options(&self, cf: &str, opts: &[(&str, &str)]) -> Result<()> {
        self.db.set_options_cf(self.cf(cf), opts).err_into()
    }

    /// Flushes column family `cf`'s memtable to a level-0 file (tests); answers how
    /// many level-0 files `cf` has then.
    #[cfg(test)]
    pub(crate) fn flush_cf(&self, cf: &str) -> Result<u64> {
        self.db.flush_cf(self.cf(cf)).err_into()?;
        let files = self
            .db
            .property_int_value_cf(self.cf(cf), "rocksdb.num-files-at-level0")
            .err_into()?;
        Ok(files.unwrap_or(0))
    }

    fn count(&self, batch: &rocksdb::WriteBatch) {
        self.written.fetch_add(
            batch.size_in_bytes() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Bytes of all batches written since the engine opened.
    pub(crate) fn bytes_written(&self) -> u64 {
        self.written.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes of the live SST files of every column family plus the memtables: what
    /// the node's data takes (the WAL aside).
    /// RocksDB's estimate of the bytes compaction still has to rewrite, over every
    /// column family.
    pub(crate) fn pending_compaction_bytes(&self) -> u64 {
        ALL_CFS
            .iter()
            .map(|name| {
                self.db
                    .property_int_value_cf(
                        &self.cf(name),
                        "rocksdb.estimate-pending-compaction-bytes",
                    )
                    .ok()
                    .flatten()
                    .unwrap_or(0)
            })
            .sum()
    }

    pub(crate) fn used_bytes(&self) -> u64 {
        ALL_CFS
            .iter()
            .map(|name| {
                let cf = self.cf(name);
                [
                    "rocksdb.live-sst-files-size",
                    "rocksdb.cur-size-all-mem-tables",
                ]
                .iter()
                .map(|p| {
                    self.db
                        .property_int_value_cf(&cf, *p)
                        .ok()
                        .flatten()
                        .unwrap_or(0)
                })
                .sum::<u64>()
            })
            .sum()
    }
}

/// Decodes a pinned read as `M` (no copy of the value).
fn decode_pinned<M: prost::Message + Default>(
    read: std::result::Result<Option<rocksdb::DBPinnableSlice<'_>>, rocksdb::Error>,
) -> Result<Option<M>> {
    match read.err_into()? {
        Some(v) => Ok(Some(M::decode(v.as_ref())?)),
        None => Ok(None),
    }
}

/// Bytes available to unprivileged users on the file system holding `path` (None:
/// unknown).
pub(crate) fn disk_free(path: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use prost::Message as _;

    /// A read from memory only answers from the memtable and the block cache, says
    /// when it would need the disk, and never answers wrong.
    #[test]
    fn a_cached_read_answers_from_memory_or_says_it_needs_the_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = crate::proto::ValueRecord {
            value: b"v".to_vec().into(),
            version: 7,
            ..Default::default()
        };
        {
            let e = Engine::open(dir.path()).expect("open");
            e.db()
                .put_cf(e.cf(keys::CF_DATA), b"k", rec.encode_to_vec())
                .expect("put");
            let got = e
                .get_decoded_cached::<crate::proto::ValueRecord>(keys::CF_DATA, b"k")
                .expect("read");
            assert_eq!(got, Some(Some(rec.clone())), "from the memtable");
            e.db().flush_cf(e.cf(keys::CF_DATA)).expect("flush");
        }
        // Reopened: the record is only in an SST file, none of it cached.
        let e = Engine::open(dir.path()).expect("open");
        let cold = e
            .get_decoded_cached::<crate::proto::ValueRecord>(keys::CF_DATA, b"k")
            .expect("read");
        assert_eq!(cold, None, "a cold read needs the disk");
        let warm = e
            .get_decoded::<crate::proto::ValueRecord>(keys::CF_DATA, b"k")
            .expect("read");
        assert_eq!(warm.as_ref(), Some(&rec));
        let cached = e
            .get_decoded_cached::<crate::proto::ValueRecord>(keys::CF_DATA, b"k")
            .expect("read");
        assert_eq!(cached, Some(Some(rec)), "its block is cached now");
        assert!(
            !matches!(
                e.get_decoded_cached::<crate::proto::ValueRecord>(keys::CF_DATA, b"absent"),
                Ok(Some(Some(_))) | Err(_)
            ),
            "an absent key is absent or unknown, never found"
        );
    }
}
