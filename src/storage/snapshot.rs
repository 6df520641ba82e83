//! Shard snapshots as files under `<data-dir>/snap`, so that moving a shard of any
//! size needs memory bounded by a few buffers on both sides.
//!
//! - **Build** (sender): one RocksDB snapshot is read into a file of length-delimited
//!   `SnapshotFrame`s (a `SnapshotHeader` first: descriptor, apply state, and the meta
//!   shard's state; then the `data` and dedup records in key order), written to
//!   `send-….tmp`, hashed (xxh3) and counted as it is written, fsynced and renamed to
//!   `send-….snap`. The raft-rs `Snapshot` carries only a `SnapshotMeta` (size and
//!   checksum of the file).
//! - **Transfer**: the transport streams the file in chunks; the receiver spools them
//!   to `recv-….tmp` the same way and keeps the file only if size and checksum match.
//! - **Install** (receiver), in three steps whose order is the crash-safety argument:
//!   1. the file is read once without writing anything ([`verify`]): checksum, frame
//!      layout, every data key inside the snapshot's arcs, every dedup key under the
//!      shard's prefix, a meta state only in the meta shard's snapshot;
//!   2. one synced write (through the log writer, behind every earlier write of the
//!      shard) puts a `SnapshotMarker` naming the file and clears the shard's old
//!      data ranges, orphaned arcs, dedup records and Raft log
//!      ([`begin_install_ops`]);
//!   3. the records are loaded in batches of [`LOAD_BATCH_BYTES`] ([`load`]), and the
//!      apply state, descriptor, meta state and the deletion of the marker
//!      ([`finish_install_ops`]) go into the ready's synced batch with the new
//!      `RaftLocalState`. The file is deleted once that batch is durable.
//!
//! Invariants:
//! - **A marker exists exactly while a shard's state is being replaced.** With a
//!   marker, the shard's old data, dedup records and log are gone, the file's records
//!   may be partly loaded, and its apply state, descriptor and `RaftLocalState` are
//!   the old ones. The batch that writes the new ones deletes the marker, atomically.
//!   So at start ([`recover`], before any replica loads) every shard without a marker
//!   is whole (old or new), and each marker is an install to redo from its file.
//! - **A file named by a durable marker is never deleted before the install is
//!   durable** ([`SnapshotFile::keep`]); a redo that cannot read it stops the node's
//!   start with an error naming the shard, instead of coming up with half the data.
//! - Every other snapshot file belongs to the `Arc<SnapshotFile>`s that name it (the
//!   [`SnapshotStore`] entry, a send in flight, an install in progress): the last one
//!   dropped deletes it. Names carry a sequence number, so a path always names one
//!   content. Files left over by a crash are deleted at start.
//! - Records are written with the WAL but without a sync: the ready's synced batch
//!   that deletes the marker syncs them too (the WAL is one ordered log).

use crate::error::ErrInto;
use crate::error::{Error, Result};
use crate::keys;
use crate::proto::{
    snapshot_frame, ApplyState, ByteRange, MetaState, RaftLocalState, ShardDescriptor,
    SnapshotFrame, SnapshotHeader, SnapshotKv, SnapshotMarker,
};
use crate::storage::log_writer::add_to_batch;
use crate::storage::LogOp;
use crate::types::{ShardId, META_SHARD};
use prost::Message;
use protobuf::Message as _;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// `SnapshotMeta.format` of a file of length-delimited `SnapshotFrame`s.
pub(crate) const FORMAT_FRAMES: u32 = 1;
/// Bytes of records written to RocksDB per batch while a snapshot is loaded.
pub(crate) const LOAD_BATCH_BYTES: usize = 4 << 20;
/// Largest frame a file may hold: one record with the largest value allowed.
const MAX_FRAME: usize = crate::proto::MAX_MESSAGE_SIZE;
/// Buffer of snapshot file reads and writes.
const IO_BUFFER: usize = 1 << 20;
/// Received files kept per shard while their replica decides which to install.
pub(crate) const MAX_INCOMING_PER_SHARD: usize = 3;

/// The `data` CF ranges of some arcs.
pub(crate) fn arc_data_ranges(arcs: &[crate::ranges::Arc]) -> Vec<(Vec<u8>, Vec<u8>)> {
    arcs.iter()
        .map(|&(lo, hi)| keys::data_range(lo, hi))
        .collect()
}

/// The `data` CF ranges a shard owns: its arcs (the meta shard keeps its state in the
/// `meta` CF and owns none).
pub(crate) fn shard_data_ranges(desc: &ShardDescriptor) -> Vec<(Vec<u8>, Vec<u8>)> {
    arc_data_ranges(&crate::ranges::arcs_of(desc))
}

/// Calls `f` with every `data` CF record of the shard `desc` describes, in key order,
/// as of `snap` (without filling the block cache: a full scan would evict the hot
/// blocks).
fn for_each_data_kv(
    engine: &crate::storage::Engine,
    snap: &rocksdb::SnapshotWithThreadMode<'_, rocksdb::DB>,
    desc: &ShardDescriptor,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
) -> Result<()> {
    for (start, end) in shard_data_ranges(desc) {
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_snapshot(snap);
        opts.set_iterate_upper_bound(end);
        opts.fill_cache(false);
        let iter = engine.db().iterator_cf_opt(
            engine.cf(keys::CF_DATA),
            opts,
            rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.err_into()?;
            f(&k, &v)?;
        }
    }
    Ok(())
}

/// The applied index of this node's replica of `shard` and an xxh3 digest of its
/// data (keys and value records), read from one RocksDB snapshot. Replicas that
/// applied the same index must have the same digest.
pub(crate) fn data_digest(engine: &crate::storage::Engine, shard: ShardId) -> Result<(u64, u64)> {
    let snap = engine.db().snapshot();
    let meta = engine.cf(keys::CF_META);
    let applied = match snap.get_cf(meta, keys::apply_state_key(shard)).err_into()? {
        Some(v) => ApplyState::decode(v.as_slice())?.applied_index,
        None => return Err(Error::Storage(format!("shard {shard}: no apply state"))),
    };
    let desc = match snap.get_cf(meta, keys::desc_key(shard)).err_into()? {
        Some(v) => ShardDescriptor::decode(v.as_slice())?,
        None => return Err(Error::Storage(format!("shard {shard}: no descriptor"))),
    };
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for_each_data_kv(engine, &snap, &desc, |k, v| {
        hash_record(&mut h, k, v);
        Ok(())
    })?;
    Ok((applied, h.digest()))
}

/// Adds one data record to a [`data_digest`].
fn hash_record(h: &mut xxhash_rust::xxh3::Xxh3, k: &[u8], v: &[u8]) {
    h.update(&(k.len() as u64).to_be_bytes());
    h.update(k);
    h.update(&(v.len() as u64).to_be_bytes());
    h.update(v);
}

/// What a snapshot file holds, every check of [`verify`] passed.
pub(crate) struct FileSummary {
    /// Its header (descriptor, apply state, meta state).
    pub(crate) header: SnapshotHeader,
    /// Data records.
    pub(crate) keys: u64,
    /// The [`data_digest`] a replica loaded from it has.
    pub(crate) data_digest: u64,
}

/// Reads and checks the whole file, and digests its data as [`data_digest`] digests a
/// replica's (backups record it; a restore compares).
pub(crate) fn summarize(file: &SnapshotFile, shard: ShardId) -> Result<FileSummary> {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut keys = 0;
    let header = read_file(file, shard, |rec| {
        if let Record::Data(kv) = rec {
            hash_record(&mut h, &kv.key, &kv.value);
            keys += 1;
        }
        Ok(())
    })?;
    Ok(FileSummary {
        header,
        keys,
        data_digest: h.digest(),
    })
}

/// An I/O error on a snapshot file, naming the file.
fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Storage(format!("snapshot file {}: {what}: {e}", path.display()))
}

/// Makes a rename or deletion in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("cannot sync the directory", dir, e))
}

/// A complete snapshot file (`….snap`): what it holds and where. Deleted when the last
/// reference is dropped, unless an install marker names it ([`SnapshotFile::keep`]).
pub(crate) struct SnapshotFile {
    /// Where the file is.
    path: PathBuf,
    /// The shard it is a snapshot of.
    pub(crate) shard: ShardId,
    /// Applied index it was taken at.
    pub(crate) index: u64,
    /// Term of `index`.
    pub(crate) term: u64,
    /// Bytes in the file.
    pub(crate) size: u64,
    /// xxh3 of the file.
    pub(crate) checksum: u64,
    /// A durable install marker names the file: dropping does not delete it.
    kept: AtomicBool,
}

impl SnapshotFile {
    /// A snapshot file outside the store (a backup's), expected at `index` and `term`
    /// with `size` bytes hashing to `checksum`: read, never deleted.
    pub(crate) fn external(
        path: PathBuf,
        shard: ShardId,
        (index, term): (u64, u64),
        size: u64,
        checksum: u64,
    ) -> Self {
        Self {
            path,
            shard,
            index,
            term,
            size,
            checksum,
            kept: AtomicBool::new(true),
        }
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The file's name in the snapshot directory (what a marker records).
    pub(crate) fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// From now on dropping the last reference leaves the file in place: an install
    /// marker is about to name it, and only the install's completion
    /// ([`SnapshotFile::release`]) or recovery may delete it.
    pub(crate) fn keep(&self) {
        self.kept.store(true, Ordering::Release);
    }

    /// The install that kept the file is durable: dropping the last reference deletes
    /// it again.
    pub(crate) fn release(&self) {
        self.kept.store(false, Ordering::Release);
    }
}

impl Drop for SnapshotFile {
    fn drop(&mut self) {
        if self.kept.load(Ordering::Acquire) {
            return;
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot delete snapshot file")
            }
        }
    }
}

/// Writes a snapshot file: `<name>.tmp` while written, hashed and counted as it is
/// written, then fsynced and renamed to `<name>.snap` by [`SpoolWriter::finish`].
/// Dropped unfinished, it deletes the `.tmp`.
pub(crate) struct SpoolWriter {
    /// The `.tmp` path.
    tmp: PathBuf,
    /// The `.snap` path it becomes.
    done: PathBuf,
    /// The open file (None once finished).
    file: Option<BufWriter<std::fs::File>>,
    /// xxh3 of the bytes written so far.
    hasher: xxhash_rust::xxh3::Xxh3,
    /// Bytes written so far.
    size: u64,
    /// Shard, index and term of the snapshot.
    point: (ShardId, u64, u64),
}

impl SpoolWriter {
    fn create(dir: &Path, name: &str, point: (ShardId, u64, u64)) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| io_error("cannot create", dir, e))?;
        let tmp = dir.join(format!("{name}.tmp"));
        let done = dir.join(format!("{name}.snap"));
        let file = std::fs::File::create(&tmp).map_err(|e| io_error("cannot create", &tmp, e))?;
        Ok(Self {
            tmp,
            done,
            file: Some(BufWriter::with_capacity(IO_BUFFER, file)),
            hasher: xxhash_rust::xxh3::Xxh3::new(),
            size: 0,
            point,
        })
    }

    /// Appends bytes.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Err(Error::Internal("snapshot spool already finished".into()));
        };
        file.write_all(bytes)
            .map_err(|e| io_error("cannot write", &self.tmp, e))?;
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// xxh3 of the bytes written so far.
    pub(crate) fn checksum(&self) -> u64 {
        self.hasher.digest()
    }

    /// Makes the file durable under its final name and hands it over.
    pub(crate) fn finish(mut self) -> Result<Arc<SnapshotFile>> {
        let Some(file) = self.file.take() else {
            return Err(Error::Internal("snapshot spool already finished".into()));
        };
        let file = file
            .into_inner()
            .map_err(|e| io_error("cannot write", &self.tmp, e.into_error()))?;
        file.sync_all()
            .map_err(|e| io_error("cannot sync", &self.tmp, e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.done)
            .map_err(|e| io_error("cannot rename", &self.tmp, e))?;
        let (shard, index, term) = self.point;
        let out = Arc::new(SnapshotFile {
            path: self.done.clone(),
            shard,
            index,
            term,
            size: self.size,
            checksum: self.hasher.digest(),
            kept: AtomicBool::new(false),
        });
        if let Some(dir) = self.done.parent() {
            sync_dir(dir)?;
        }
        Ok(out)
    }
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Appends one length-delimited frame; `buf` is scratch space reused between frames.
fn write_frame(w: &mut SpoolWriter, buf: &mut Vec<u8>, frame: snapshot_frame::Frame) -> Result<()> {
    buf.clear();
    SnapshotFrame { frame: Some(frame) }
        .encode_length_delimited(buf)
        .map_err(|e| Error::Internal(format!("encoding a snapshot frame: {e}")))?;
    w.write(buf)
}

/// A built snapshot: its file and the state it was taken at.
pub(crate) struct BuiltSnapshot {
    /// The file, as kept in the [`SnapshotStore`].
    pub(crate) file: Arc<SnapshotFile>,
    /// Applied index/term and conf state the file corresponds to.
    pub(crate) apply_state: ApplyState,
    /// The shard's descriptor at that index.
    pub(crate) descriptor: ShardDescriptor,
    /// Data records written, and their [`data_digest`].
    pub(crate) keys: u64,
    pub(crate) data_digest: u64,
}

/// Writes the shard's applied state and records, read from one consistent RocksDB
/// snapshot, to a new file in `store`'s directory.
pub(crate) fn build(
    engine: &crate::storage::Engine,
    store: &SnapshotStore,
    shard: ShardId,
) -> Result<BuiltSnapshot> {
    let db = engine.db();
    let snap = db.snapshot();
    let meta = engine.cf(keys::CF_META);
    let apply_state = match snap.get_cf(meta, keys::apply_state_key(shard)).err_into()? {
        Some(v) => ApplyState::decode(v.as_slice())?,
        None => return Err(Error::Storage(format!("shard {shard}: no apply state"))),
    };
    let desc = match snap.get_cf(meta, keys::desc_key(shard)).err_into()? {
        Some(v) => ShardDescriptor::decode(v.as_slice())?,
        None => return Err(Error::Storage(format!("shard {shard}: no descriptor"))),
    };
    let meta_state = if shard == META_SHARD {
        match snap.get_cf(meta, keys::meta_state_key()).err_into()? {
            Some(v) => Some(MetaState::decode(v.as_slice())?),
            None => None,
        }
    } else {
        None
    };
    let mut w = store.spool(
        "send",
        shard,
        apply_state.applied_index,
        apply_state.applied_term,
    )?;
    let mut buf = Vec::new();
    let (watch_log_after, watch_log) = watch_log_to_ship(engine, &snap, shard)?;
    let header = SnapshotHeader {
        descriptor: Some(desc.clone()),
        apply_state: Some(apply_state.clone()),
        meta: meta_state,
        watch_log_after,
        watch_log,
    };
    write_frame(&mut w, &mut buf, snapshot_frame::Frame::Header(header))?;
    let mut digest = xxhash_rust::xxh3::Xxh3::new();
    let mut keys = 0;
    for_each_data_kv(engine, &snap, &desc, |k, v| {
        hash_record(&mut digest, k, v);
        keys += 1;
        let kv = SnapshotKv {
            key: bytes::Bytes::copy_from_slice(k),
            value: bytes::Bytes::copy_from_slice(v),
        };
        write_frame(&mut w, &mut buf, snapshot_frame::Frame::Data(kv))
    })?;
    for item in meta_prefix_iter(engine, &snap, &keys::dedup_prefix(shard)) {
        let (k, v) = item.err_into()?;
        let kv = SnapshotKv {
            key: bytes::Bytes::copy_from_slice(&k),
            value: bytes::Bytes::copy_from_slice(&v),
        };
        write_frame(&mut w, &mut buf, snapshot_frame::Frame::Dedup(kv))?;
    }
    let file = w.finish()?;
    Ok(BuiltSnapshot {
        file,
        apply_state,
        descriptor: desc,
        keys,
        data_digest: digest.digest(),
    })
}

/// The `meta` CF records under `prefix` in `snap`, in key order (not cached: a
/// snapshot reads them once).
fn meta_prefix_iter<'a>(
    engine: &'a crate::storage::Engine,
    snap: &rocksdb::Snapshot<'a>,
    prefix: &[u8],
) -> rocksdb::DBIteratorWithThreadMode<'a, rocksdb::DB> {
    let mut opts = rocksdb::ReadOptions::default();
    opts.set_snapshot(snap);
    opts.fill_cache(false);
    if let Some(end) = keys::prefix_end(prefix) {
        opts.set_iterate_upper_bound(end);
    }
    engine.db().iterator_cf_opt(
        engine.cf(keys::CF_META),
        opts,
        rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward),
    )
}

/// The most of a shard's watch log a snapshot carries: its newest versions, whole,
/// within this many bytes of keys and values (the header is one frame).
pub(crate) const SHIP_WATCH_LOG_BYTES: usize = 8 << 20;

/// The watch log records of `shard` in `snap` to ship with a snapshot, and where the
/// shipped log starts (None: the sender has no disk log).
fn watch_log_to_ship(
    engine: &crate::storage::Engine,
    snap: &rocksdb::Snapshot<'_>,
    shard: ShardId,
) -> Result<(Option<u64>, Vec<SnapshotKv>)> {
    let meta = engine.cf(keys::CF_META);
    let prefix = keys::watch_log_prefix(shard);
    let Some(start) = snap.get_cf(meta, &prefix).err_into()? else {
        return Ok((None, Vec::new()));
    };
    let mut after = u64::from_be_bytes(
        start
            .as_slice()
            .try_into()
            .map_err(|_| Error::Storage(format!("shard {shard}: bad watch log start")))?,
    );
    let mut records = std::collections::VecDeque::new();
    let mut bytes = 0;
    for item in meta_prefix_iter(engine, snap, &prefix) {
        let (k, v) = item.err_into()?;
        // Versions at or before the start are deleted from the log, or about to be.
        let Some(version) = keys::decode_watch_log_key(&k).filter(|v| *v > after) else {
            continue;
        };
        bytes += k.len() + v.len();
        records.push_back((
            version,
            SnapshotKv {
                key: bytes::Bytes::copy_from_slice(&k),
                value: bytes::Bytes::copy_from_slice(&v),
            },
        ));
    }
    // Over the bound, the oldest versions stay behind, whole.
    while bytes > SHIP_WATCH_LOG_BYTES {
        let Some((version, kv)) = records.pop_front() else {
            break;
        };
        bytes -= kv.key.len() + kv.value.len();
        after = version;
        while records.front().is_some_and(|(v, _)| *v == version) {
            if let Some((_, kv)) = records.pop_front() {
                bytes -= kv.key.len() + kv.value.len();
            }
        }
    }
    Ok((Some(after), records.into_iter().map(|(_, kv)| kv).collect()))
}

/// Reads a snapshot file frame by frame, hashing and counting every byte.
struct FrameReader {
    /// The file.
    reader: BufReader<std::fs::File>,
    /// For errors.
    path: PathBuf,
    /// xxh3 of the bytes read so far.
    hasher: xxhash_rust::xxh3::Xxh3,
    /// Bytes read so far.
    size: u64,
    /// The current frame's bytes.
    buf: Vec<u8>,
}

impl FrameReader {
    fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| io_error("cannot open", path, e))?;
        Ok(Self {
            reader: BufReader::with_capacity(IO_BUFFER, file),
            path: path.to_path_buf(),
            hasher: xxhash_rust::xxh3::Xxh3::new(),
            size: 0,
            buf: Vec::new(),
        })
    }

    fn corrupt(&self, what: impl std::fmt::Display) -> Error {
        Error::Storage(format!(
            "snapshot file {} is corrupt at byte {}: {what}",
            self.path.display(),
            self.size
        ))
    }

    /// The next frame, or None at the end of the file.
    fn next_frame(&mut self) -> Result<Option<snapshot_frame::Frame>> {
        // The length: a varint of at most 10 bytes.
        let mut len: u64 = 0;
        let mut prefix = [0u8; 10];
        let mut n = 0;
        loop {
            let mut b = [0u8; 1];
            let got = self
                .reader
                .read(&mut b)
                .map_err(|e| io_error("cannot read", &self.path, e))?;
            if got == 0 {
                if n == 0 {
                    return Ok(None);
                }
                return Err(self.corrupt("truncated frame length"));
            }
            if n == prefix.len() {
                return Err(self.corrupt("frame length longer than 10 bytes"));
            }
            prefix[n] = b[0];
            len |= u64::from(b[0] & 0x7f) << (7 * n);
            n += 1;
            if b[0] & 0x80 == 0 {
                break;
            }
        }
        if len > MAX_FRAME as u64 {
            return Err(self.corrupt(format!("frame of {len} bytes")));
        }
        self.buf.resize(len as usize, 0);
        self.reader.read_exact(&mut self.buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                self.corrupt("truncated frame")
            } else {
                io_error("cannot read", &self.path, e)
            }
        })?;
        self.hasher.update(&prefix[..n]);
        self.hasher.update(&self.buf);
        self.size += (n + self.buf.len()) as u64;
        let frame = SnapshotFrame::decode(self.buf.as_slice())
            .map_err(|e| self.corrupt(format!("undecodable frame: {e}")))?;
        match frame.frame {
            Some(f) => Ok(Some(f)),
            None => Err(self.corrupt("empty frame")),
        }
    }
}

/// Checks a snapshot header against the shard it is for.
fn check_header(shard: ShardId, header: &SnapshotHeader) -> Result<()> {
    let desc = header
        .descriptor
        .as_ref()
        .ok_or_else(|| Error::Storage(format!("shard {shard}: snapshot without descriptor")))?;
    if header.apply_state.is_none() {
        return Err(Error::Storage(format!(
            "shard {shard}: snapshot without apply state"
        )));
    }
    if desc.shard_id != shard.0 {
        return Err(Error::Storage(format!(
            "snapshot for shard {} sent to shard {shard}",
            desc.shard_id
        )));
    }
    if header.meta.is_some() != (shard == META_SHARD) {
        return Err(Error::Storage(format!(
            "shard {shard}: meta state in a data shard's snapshot, or missing from the meta shard's"
        )));
    }
    let applied = header.apply_state.as_ref().map_or(0, |a| a.applied_index);
    let prefix = keys::watch_log_prefix(shard);
    let after = header.watch_log_after.unwrap_or(applied);
    let in_log = |kv: &SnapshotKv| {
        kv.key.starts_with(&prefix)
            && keys::decode_watch_log_key(&kv.key).is_some_and(|v| v > after && v <= applied)
    };
    if after > applied || !header.watch_log.iter().all(in_log) {
        return Err(Error::Storage(format!(
            "shard {shard}: snapshot watch log outside the shard's log"
        )));
    }
    Ok(())
}

/// A record of a snapshot file, checked to belong to its shard.
enum Record {
    /// A `data` CF record.
    Data(SnapshotKv),
    /// A `meta` CF dedup record.
    Dedup(SnapshotKv),
}

/// Reads `file` to its end: checks its layout, that every record belongs to `shard`
/// and, at the end, its size and checksum; hands each record to `visit` on the way.
/// Returns the header.
fn read_file(
    file: &SnapshotFile,
    shard: ShardId,
    mut visit: impl FnMut(Record) -> Result<()>,
) -> Result<SnapshotHeader> {
    let mut r = FrameReader::open(file.path())?;
    let header = match r.next_frame()? {
        Some(snapshot_frame::Frame::Header(h)) => h,
        _ => return Err(r.corrupt("no header first")),
    };
    check_header(shard, &header)?;
    let apply = header.apply_state.as_ref();
    if apply.map(|a| (a.applied_index, a.applied_term)) != Some((file.index, file.term)) {
        return Err(Error::Storage(format!(
            "shard {shard}: snapshot file {} is not at index {} term {}",
            file.path().display(),
            file.index,
            file.term
        )));
    }
    let ranges = header
        .descriptor
        .as_ref()
        .map(shard_data_ranges)
        .unwrap_or_default();
    let dedup_prefix = keys::dedup_prefix(shard);
    while let Some(frame) = r.next_frame()? {
        match frame {
            snapshot_frame::Frame::Header(_) => return Err(r.corrupt("a second header")),
            snapshot_frame::Frame::Data(kv) => {
                // Shards share the `data` CF: a record outside this shard's arcs would
                // overwrite another shard's data.
                let key = kv.key.as_ref();
                if !ranges
                    .iter()
                    .any(|(s, e)| key >= s.as_slice() && key < e.as_slice())
                {
                    return Err(Error::Storage(format!(
                        "shard {shard}: snapshot data key outside its shard"
                    )));
                }
                visit(Record::Data(kv))?;
            }
            snapshot_frame::Frame::Dedup(kv) => {
                if !kv.key.starts_with(&dedup_prefix) {
                    return Err(Error::Storage(format!(
                        "shard {shard}: snapshot dedup key outside its shard"
                    )));
                }
                visit(Record::Dedup(kv))?;
            }
        }
    }
    if r.size != file.size || r.hasher.digest() != file.checksum {
        return Err(Error::Storage(format!(
            "shard {shard}: snapshot file {} does not match its checksum ({} bytes read, {} expected)",
            file.path().display(),
            r.size,
            file.size
        )));
    }
    Ok(header)
}

/// Reads the whole file without writing anything and returns its header if every
/// check holds (see [`read_file`]): what an install does before it touches the
/// shard's state.
pub(crate) fn verify(file: &SnapshotFile, shard: ShardId) -> Result<SnapshotHeader> {
    read_file(file, shard, |_| Ok(()))
}

/// The writes that clear a shard's data ranges, dedup records, watch log and Raft log
/// on this node (shared by replica removal and snapshot installation).
fn clear_ops(shard: ShardId, ranges: &[(Vec<u8>, Vec<u8>)]) -> Vec<LogOp> {
    let mut ops: Vec<LogOp> = ranges
        .iter()
        .map(|(s, e)| LogOp::DeleteRange(keys::CF_DATA, s.clone(), e.clone()))
        .collect();
    for (cf, prefix) in [
        (keys::CF_META, keys::dedup_prefix(shard)),
        (keys::CF_META, keys::watch_log_prefix(shard)),
        (keys::CF_RAFT, keys::raft_log_prefix(shard)),
    ] {
        let end = keys::prefix_end(&prefix).expect("shard prefixes never end in 0xff");
        ops.push(LogOp::DeleteRange(cf, prefix, end));
    }
    ops
}

/// The writes that delete this node's replica of a shard (data, dedup records, log,
/// Raft and apply state, descriptor) and leave a tombstone for `removed_replica`.
pub(crate) fn removal_ops(desc: &ShardDescriptor, removed_replica: u64) -> Vec<LogOp> {
    let shard = ShardId(desc.shard_id);
    let mut ops = clear_ops(shard, &shard_data_ranges(desc));
    ops.push(LogOp::Delete(keys::CF_RAFT, keys::raft_state_key(shard)));
    ops.push(LogOp::Delete(keys::CF_META, keys::apply_state_key(shard)));
    ops.push(LogOp::Delete(keys::CF_META, keys::desc_key(shard)));
    if shard == META_SHARD {
        ops.push(LogOp::Delete(keys::CF_META, keys::meta_state_key()));
    }
    ops.push(LogOp::Put(
        keys::CF_META,
        keys::tombstone_key(shard),
        removed_replica.to_be_bytes().to_vec(),
    ));
    ops
}

/// The `data` CF ranges an install clears: the shard's as the snapshot describes
/// them, and `also_clear` (see [`begin_install_ops`]).
pub(crate) fn install_ranges(
    header: &SnapshotHeader,
    also_clear: &[crate::ranges::Arc],
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut ranges = header
        .descriptor
        .as_ref()
        .map(shard_data_ranges)
        .unwrap_or_default();
    ranges.extend(arc_data_ranges(also_clear));
    ranges
}

/// The first, synced write of an install (step 2 of the module docs): the marker
/// naming `file`, and the deletion of the shard's data ranges as the snapshot
/// describes them, of `also_clear` (arcs the replica owned before that no shard on
/// this node owns any more: a split the replica skipped by installing this snapshot
/// moved them away), of its dedup records and of its Raft log.
pub(crate) fn begin_install_ops(
    shard: ShardId,
    header: &SnapshotHeader,
    file: &SnapshotFile,
    also_clear: &[crate::ranges::Arc],
) -> Vec<LogOp> {
    let ranges = install_ranges(header, also_clear);
    let marker = SnapshotMarker {
        file: file.file_name(),
        index: file.index,
        term: file.term,
        size: file.size,
        checksum: file.checksum,
        clear: ranges
            .iter()
            .map(|(s, e)| ByteRange {
                start: s.clone().into(),
                end: e.clone().into(),
            })
            .collect(),
    };
    let mut ops = vec![LogOp::Put(
        keys::CF_META,
        keys::snapshot_marker_key(shard),
        marker.encode_to_vec(),
    )];
    ops.extend(clear_ops(shard, &ranges));
    ops
}

/// What [`load`] wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loaded {
    /// `data` CF records.
    pub(crate) data: u64,
    /// Dedup records.
    pub(crate) dedup: u64,
    /// Batches written.
    pub(crate) batches: u64,
}

/// Writes the file's records into RocksDB in batches of about [`LOAD_BATCH_BYTES`]
/// (step 3 of the module docs; the marker must be durable first). Checks the file
/// again on the way; stops with `Error::Shutdown` between batches once `stop` says so
/// (the marker stays, and the next start redoes the install).
pub(crate) fn load(
    engine: &crate::storage::Engine,
    file: &SnapshotFile,
    shard: ShardId,
    cleared: &[(Vec<u8>, Vec<u8>)],
    stop: &dyn Fn() -> bool,
) -> Result<Loaded> {
    // The listing index entries of the records the install cleared go first;
    // those of the file's records are written with them.
    crate::storage::index::clear_listing_entries(engine, cleared)?;
    let mut batch = rocksdb::WriteBatch::default();
    let mut loaded = Loaded::default();
    let data = engine.cf(keys::CF_DATA);
    let meta = engine.cf(keys::CF_META);
    // The records' expiry index entries go in the batches that write them, each
    // written under `expiry_upkeep` (see `node::purge`).
    read_file(file, shard, |rec| {
        match rec {
            Record::Data(kv) => {
                crate::storage::index::index_record(&mut batch, meta, &kv.key, &kv.value);
                batch.put_cf(data, &kv.key, &kv.value);
                loaded.data += 1;
            }
            Record::Dedup(kv) => {
                batch.put_cf(meta, &kv.key, &kv.value);
                loaded.dedup += 1;
            }
        }
        if batch.size_in_bytes() >= LOAD_BATCH_BYTES {
            if stop() {
                return Err(Error::Shutdown);
            }
            let _upkeep = engine.expiry_upkeep();
            engine.write(std::mem::take(&mut batch))?;
            loaded.batches += 1;
        }
        Ok(())
    })?;
    if !batch.is_empty() {
        let _upkeep = engine.expiry_upkeep();
        engine.write(batch)?;
        loaded.batches += 1;
    }
    Ok(loaded)
}

/// The last writes of an install, for the ready's synced batch (which adds the new
/// `RaftLocalState`): the snapshot's apply state and descriptor, the meta shard's
/// state, and the deletion of the marker.
pub(crate) fn finish_install_ops(shard: ShardId, header: &SnapshotHeader) -> Vec<LogOp> {
    let mut ops = Vec::with_capacity(4);
    if let Some(apply) = &header.apply_state {
        ops.push(LogOp::Put(
            keys::CF_META,
            keys::apply_state_key(shard),
            apply.encode_to_vec(),
        ));
        // The watch log (cleared with the old state): the sender's, or none before
        // the snapshot when the sender had none.
        let after = header.watch_log_after.unwrap_or(apply.applied_index);
        ops.push(LogOp::Put(
            keys::CF_META,
            keys::watch_log_prefix(shard),
            after.to_be_bytes().to_vec(),
        ));
        for kv in &header.watch_log {
            ops.push(LogOp::Put(
                keys::CF_META,
                kv.key.to_vec(),
                kv.value.to_vec(),
            ));
        }
    }
    if let Some(desc) = &header.descriptor {
        ops.push(LogOp::Put(
            keys::CF_META,
            keys::desc_key(shard),
            desc.encode_to_vec(),
        ));
    }
    if let Some(state) = &header.meta {
        ops.push(LogOp::Put(
            keys::CF_META,
            keys::meta_state_key(),
            state.encode_to_vec(),
        ));
    }
    ops.push(LogOp::Delete(
        keys::CF_META,
        keys::snapshot_marker_key(shard),
    ));
    ops
}

/// The `RaftLocalState` the snapshot ready at `(index, term)` would have persisted,
/// from the one on disk (`stored`, None for a replica created empty): the log is
/// truncated at the snapshot, committed up to it, the term is at least the
/// snapshot's, and the vote stays only if the term did not change.
pub(crate) fn raft_state_after_install(
    stored: Option<&RaftLocalState>,
    index: u64,
    term: u64,
) -> Result<RaftLocalState> {
    let mut hs = match stored {
        Some(rs) => raft::eraftpb::HardState::parse_from_bytes(&rs.hard_state).err_into()?,
        None => raft::eraftpb::HardState::default(),
    };
    if hs.term < term {
        hs.set_term(term);
        hs.set_vote(0);
    }
    hs.set_commit(index);
    Ok(RaftLocalState {
        hard_state: hs.write_to_bytes().err_into()?.into(),
        truncated_index: index,
        truncated_term: term,
    })
}

/// Redoes every snapshot install a crash interrupted (each marker in the `meta` CF),
/// then deletes the files left in `dir` (sends and receives of the previous run).
/// Runs at start, before any replica loads. Returns the shards whose install it
/// redid. Fails, naming the shard, when a marker's file is missing or corrupt: the
/// shard's old state is gone and the new one incomplete.
pub(crate) fn recover(engine: &crate::storage::Engine, dir: &Path) -> Result<Vec<ShardId>> {
    std::fs::create_dir_all(dir).map_err(|e| io_error("cannot create", dir, e))?;
    let mut markers = Vec::new();
    let mut opts = rocksdb::ReadOptions::default();
    if let Some(end) = keys::prefix_end(keys::SNAPSHOT_MARKER_PREFIX) {
        opts.set_iterate_upper_bound(end);
    }
    let iter = engine.db().iterator_cf_opt(
        engine.cf(keys::CF_META),
        opts,
        rocksdb::IteratorMode::From(keys::SNAPSHOT_MARKER_PREFIX, rocksdb::Direction::Forward),
    );
    for item in iter {
        let (k, v) = item.err_into()?;
        let shard = keys::decode_snapshot_marker_key(&k)
            .ok_or_else(|| Error::Storage("corrupt snapshot marker key".into()))?;
        let marker = SnapshotMarker::decode(v.as_ref())
            .map_err(|e| Error::Storage(format!("shard {shard}: corrupt snapshot marker: {e}")))?;
        markers.push((shard, marker));
    }
    let mut redone = Vec::new();
    for (shard, marker) in markers {
        redo_install(engine, dir, shard, &marker).map_err(|e| {
            Error::Storage(format!(
                "shard {shard}: a snapshot install (index {}, term {}) was interrupted and cannot \
                 be redone, so this node's replica of the shard is incomplete: {e}. Restore the \
                 file, or remove this node's replica from the shard (`ctxctl member --shard \
                 {shard} remove NODE`), wipe the data dir and add the node back under a new id",
                marker.index, marker.term
            ))
        })?;
        tracing::warn!(%shard, index = marker.index, term = marker.term, "redid an interrupted snapshot install");
        redone.push(shard);
    }
    clean_dir(dir)?;
    Ok(redone)
}

/// Redoes one interrupted install from its file (see [`recover`]).
fn redo_install(
    engine: &crate::storage::Engine,
    dir: &Path,
    shard: ShardId,
    marker: &SnapshotMarker,
) -> Result<()> {
    let name = Path::new(&marker.file);
    if marker.file.is_empty() || name.file_name() != Some(name.as_os_str()) {
        return Err(Error::Storage(format!(
            "the marker names no file in the snapshot directory ({:?})",
            marker.file
        )));
    }
    let path = dir.join(name);
    if !path.is_file() {
        return Err(Error::Storage(format!(
            "its file {} is missing",
            path.display()
        )));
    }
    let file = SnapshotFile {
        path,
        shard,
        index: marker.index,
        term: marker.term,
        size: marker.size,
        checksum: marker.checksum,
        // Deleted below only once the redo is durable.
        kept: AtomicBool::new(true),
    };
    let header = verify(&file, shard)?;
    // Clear again: records of the interrupted load go too.
    let ranges: Vec<(Vec<u8>, Vec<u8>)> = marker
        .clear
        .iter()
        .map(|r| (r.start.to_vec(), r.end.to_vec()))
        .collect();
    let mut batch = rocksdb::WriteBatch::default();
    add_to_batch(engine, &mut batch, clear_ops(shard, &ranges));
    engine.write(batch)?;
    load(engine, &file, shard, &ranges, &|| false)?;
    let stored: Option<RaftLocalState> =
        engine.get_decoded(keys::CF_RAFT, &keys::raft_state_key(shard))?;
    let state = raft_state_after_install(stored.as_ref(), marker.index, marker.term)?;
    let mut ops = finish_install_ops(shard, &header);
    ops.push(LogOp::Put(
        keys::CF_RAFT,
        keys::raft_state_key(shard),
        state.encode_to_vec(),
    ));
    let mut batch = rocksdb::WriteBatch::default();
    add_to_batch(engine, &mut batch, ops);
    engine.write_sync(batch)?;
    file.release();
    Ok(())
}

/// Deletes the snapshot files in `dir`: `.tmp` ones (interrupted writes) and `.snap`
/// ones (no marker names any once [`recover`] has redone its installs, and the sends
/// and receives they were for ended with the previous run).
fn clean_dir(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error("cannot list", dir, e))?;
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| io_error("cannot list", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = (name.starts_with("send-") || name.starts_with("recv-"))
            && (name.ends_with(".tmp") || name.ends_with(".snap"));
        if !ours {
            continue;
        }
        let path = entry.path();
        std::fs::remove_file(&path).map_err(|e| io_error("cannot delete", &path, e))?;
        removed += 1;
    }
    if removed > 0 {
        tracing::info!(dir = %dir.display(), files = removed, "deleted snapshot files of the previous run");
        sync_dir(dir)?;
    }
    Ok(())
}

/// Snapshot files by purpose: the latest built per shard (to send) and received ones
/// waiting for their replica to install them. Dropping an entry deletes its file
/// once no send or install uses it.
pub(crate) struct SnapshotStore {
    /// `<data-dir>/snap`.
    dir: PathBuf,
    /// Makes file names unique.
    next_seq: AtomicU64,
    /// Shard → the latest built snapshot.
    outgoing: parking_lot::Mutex<std::collections::HashMap<ShardId, Arc<SnapshotFile>>>,
    /// (shard, index, term) → received file.
    incoming: parking_lot::Mutex<std::collections::HashMap<(ShardId, u64, u64), Arc<SnapshotFile>>>,
}

impl SnapshotStore {
    /// A store with its files in `dir`.
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            next_seq: AtomicU64::new(1),
            outgoing: Default::default(),
            incoming: Default::default(),
        }
    }

    /// Starts a file `<kind>-<shard>-<index>-<term>-<seq>` for a snapshot built
    /// (`send`) or received (`recv`).
    pub(crate) fn spool(
        &self,
        kind: &str,
        shard: ShardId,
        index: u64,
        term: u64,
    ) -> Result<SpoolWriter> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("{kind}-{}-{index}-{term}-{seq}", shard.0);
        SpoolWriter::create(&self.dir, &name, (shard, index, term))
    }

    /// Records the latest built snapshot of a shard (the one it replaces goes once no
    /// send uses it).
    pub(crate) fn put_outgoing(&self, file: Arc<SnapshotFile>) {
        let old = self.outgoing.lock().insert(file.shard, file);
        drop(old);
    }

    /// The built file for exactly this snapshot, if still current.
    pub(crate) fn get_outgoing(
        &self,
        shard: ShardId,
        index: u64,
        term: u64,
    ) -> Option<Arc<SnapshotFile>> {
        let m = self.outgoing.lock();
        m.get(&shard)
            .filter(|f| f.index == index && f.term == term)
            .cloned()
    }

    /// Keeps a received file until its replica installs it; keeps the newest few per
    /// shard (raft-rs installs at most one of them).
    pub(crate) fn put_incoming(&self, file: Arc<SnapshotFile>) {
        let shard = file.shard;
        let mut dropped = Vec::new();
        {
            let mut m = self.incoming.lock();
            if let Some(old) = m.insert((shard, file.index, file.term), file) {
                dropped.push(old);
            }
            let mut mine: Vec<(u64, u64)> = m
                .keys()
                .filter(|k| k.0 == shard)
                .map(|k| (k.1, k.2))
                .collect();
            mine.sort_unstable();
            while mine.len() > MAX_INCOMING_PER_SHARD {
                let (i, t) = mine.remove(0);
                dropped.extend(m.remove(&(shard, i, t)));
            }
        }
        // Files are deleted outside the lock.
        drop(dropped);
    }

    /// Takes a received file.
    pub(crate) fn take_incoming(
        &self,
        shard: ShardId,
        index: u64,
        term: u64,
    ) -> Option<Arc<SnapshotFile>> {
        self.incoming.lock().remove(&(shard, index, term))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::HashRange;
    use crate::storage::Engine;

    const SHARD: ShardId = ShardId(1);
    /// The shard's arc in these tests: the lower half of the hash space.
    const HALF: u64 = u64::MAX / 2;

    fn desc(arcs: &[(u64, u64)]) -> ShardDescriptor {
        ShardDescriptor {
            shard_id: SHARD.0,
            conf_ver: 1,
            arcs: arcs.iter().map(|&(lo, hi)| HashRange { lo, hi }).collect(),
            ..Default::default()
        }
    }

    /// `n` user keys whose hash lies in `lo..=hi`, made with `tag`.
    fn user_keys(tag: &str, n: usize, lo: u64, hi: u64) -> Vec<Vec<u8>> {
        (0..)
            .map(|i| format!("{tag}-{i}").into_bytes())
            .filter(|k| (lo..=hi).contains(&keys::key_hash(k)))
            .take(n)
            .collect()
    }

    fn put(engine: &Engine, ops: Vec<LogOp>) {
        let mut batch = rocksdb::WriteBatch::default();
        add_to_batch(engine, &mut batch, ops);
        engine.write_sync(batch).expect("write");
    }

    /// Writes a replica of `SHARD` at `(index, term)` with `n` records in the lower
    /// half and a few dedup records, as the apply path leaves it.
    fn seed(engine: &Engine, index: u64, term: u64, n: usize, tag: &str) {
        let apply = ApplyState {
            applied_index: index,
            applied_term: term,
            conf_state: Default::default(),
        };
        let mut ops = vec![
            LogOp::Put(
                keys::CF_META,
                keys::apply_state_key(SHARD),
                apply.encode_to_vec(),
            ),
            LogOp::Put(
                keys::CF_META,
                keys::desc_key(SHARD),
                desc(&[(0, HALF)]).encode_to_vec(),
            ),
        ];
        for (i, k) in user_keys(tag, n, 0, HALF).into_iter().enumerate() {
            let value = vec![(i % 251) as u8; 1000 + i % 3000];
            ops.push(LogOp::Put(keys::CF_DATA, keys::data_key(&k), value));
        }
        for i in 0..20u64 {
            let k = keys::dedup_key(SHARD, i / 5, format!("{tag}-req-{i}").as_bytes());
            ops.push(LogOp::Put(keys::CF_META, k, b"dedup".to_vec()));
        }
        put(engine, ops);
    }

    /// Every dedup record of `SHARD`.
    fn dedup_records(engine: &Engine) -> Vec<(Vec<u8>, Vec<u8>)> {
        let prefix = keys::dedup_prefix(SHARD);
        engine
            .db()
            .prefix_iterator_cf(engine.cf(keys::CF_META), &prefix)
            .map(|r| r.expect("read"))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }

    /// Copies a file into `store` as the receiver's spool does, in small chunks.
    fn transfer(file: &SnapshotFile, store: &SnapshotStore) -> Arc<SnapshotFile> {
        let bytes = std::fs::read(file.path()).expect("read");
        let mut w = store
            .spool("recv", file.shard, file.index, file.term)
            .expect("spool");
        for chunk in bytes.chunks(64 << 10) {
            w.write(chunk).expect("write");
        }
        assert_eq!((w.size(), w.checksum()), (file.size, file.checksum));
        w.finish().expect("finish")
    }

    /// Installs a received file the way the ready loop does, synchronously.
    fn install(
        engine: &Engine,
        file: &SnapshotFile,
        also_clear: &[crate::ranges::Arc],
    ) -> Result<Loaded> {
        let header = verify(file, SHARD)?;
        file.keep();
        put(engine, begin_install_ops(SHARD, &header, file, also_clear));
        let cleared = install_ranges(&header, also_clear);
        let loaded = load(engine, file, SHARD, &cleared, &|| false)?;
        let mut ops = finish_install_ops(SHARD, &header);
        let state = raft_state_after_install(None, file.index, file.term)?;
        ops.push(LogOp::Put(
            keys::CF_RAFT,
            keys::raft_state_key(SHARD),
            state.encode_to_vec(),
        ));
        put(engine, ops);
        file.release();
        Ok(loaded)
    }

    fn marker(engine: &Engine) -> Option<Vec<u8>> {
        engine
            .get(keys::CF_META, &keys::snapshot_marker_key(SHARD))
            .expect("get")
    }

    #[test]
    fn build_transfer_install_round_trip() {
        let (sdir, rdir) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let sender = Engine::open(&sdir.path().join("db")).expect("open");
        let receiver = Engine::open(&rdir.path().join("db")).expect("open");
        seed(&sender, 500, 7, 3000, "new");
        // The receiver holds an older state of the shard, a Raft log, and data in an
        // arc it no longer owns (a skipped split moved it away).
        seed(&receiver, 100, 3, 800, "old");
        let orphan = user_keys("orphan", 50, HALF + 1, u64::MAX);
        put(
            &receiver,
            orphan
                .iter()
                .map(|k| LogOp::Put(keys::CF_DATA, keys::data_key(k), b"x".to_vec()))
                .chain((90..=100).map(|i| {
                    LogOp::Put(
                        keys::CF_RAFT,
                        keys::raft_log_key(SHARD, i),
                        b"entry".to_vec(),
                    )
                }))
                .collect(),
        );

        let sstore = SnapshotStore::new(sdir.path().join("snap"));
        let built = build(&sender, &sstore, SHARD).expect("build");
        assert_eq!(built.apply_state.applied_index, 500);
        assert!(built.file.size > 3000 * 64, "the records are in the file");
        let rstore = SnapshotStore::new(rdir.path().join("snap"));
        let received = transfer(&built.file, &rstore);
        let loaded = install(&receiver, &received, &[(HALF + 1, u64::MAX)]).expect("install");
        assert_eq!((loaded.data, loaded.dedup), (3000, 20));
        assert!(loaded.batches > 1, "records are loaded in several batches");

        assert_eq!(
            data_digest(&receiver, SHARD).expect("digest"),
            data_digest(&sender, SHARD).expect("digest"),
            "the receiver holds exactly the sender's data at the sender's index"
        );
        assert_eq!(dedup_records(&receiver), dedup_records(&sender));
        for k in &orphan {
            assert!(receiver
                .get(keys::CF_DATA, &keys::data_key(k))
                .expect("get")
                .is_none());
        }
        let log_left = receiver
            .get(keys::CF_RAFT, &keys::raft_log_key(SHARD, 95))
            .expect("get");
        assert!(log_left.is_none(), "the old Raft log is gone");
        let rs: RaftLocalState = receiver
            .get_decoded(keys::CF_RAFT, &keys::raft_state_key(SHARD))
            .expect("get")
            .expect("raft state");
        assert_eq!((rs.truncated_index, rs.truncated_term), (500, 7));
        assert!(
            marker(&receiver).is_none(),
            "the marker goes with the install"
        );

        // Files go with their last reference.
        let (spath, rpath) = (
            built.file.path().to_path_buf(),
            received.path().to_path_buf(),
        );
        drop(built);
        drop(received);
        assert!(!spath.exists() && !rpath.exists());
    }

    /// `received` (shard 1's snapshot at 50/2) with the size and checksum the sender
    /// announced for `sent`: what the receiver verifies it against.
    fn as_sent(received: &SnapshotFile, sent: &SnapshotFile) -> SnapshotFile {
        SnapshotFile {
            path: received.path().to_path_buf(),
            shard: SHARD,
            index: 50,
            term: 2,
            size: sent.size,
            checksum: sent.checksum,
            kept: AtomicBool::new(false),
        }
    }

    #[test]
    fn a_corrupt_or_truncated_file_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::open(&dir.path().join("db")).expect("open");
        seed(&engine, 50, 2, 500, "k");
        let store = SnapshotStore::new(dir.path().join("snap"));
        let built = build(&engine, &store, SHARD).expect("build");
        let bytes = std::fs::read(built.file.path()).expect("read");

        // One flipped bit in the middle of a value: every frame still decodes.
        let mut flipped = bytes.clone();
        let in_value = (flipped.len() / 2..flipped.len() - 16)
            .find(|&p| flipped[p - 16..p + 16].iter().all(|&b| b == flipped[p]))
            .expect("values are long runs of one byte");
        flipped[in_value] ^= 0x01;
        let mut w = store.spool("recv", SHARD, 50, 2).expect("spool");
        w.write(&flipped).expect("write");
        // What the receiver checks against: the sender's size and checksum.
        let received = w.finish().expect("finish");
        let bad = as_sent(&received, &built.file);
        let err = verify(&bad, SHARD).expect_err("a flipped bit is refused");
        assert!(err.to_string().contains("checksum"), "{err}");

        // A truncated file.
        let mut w = store.spool("recv", SHARD, 50, 2).expect("spool");
        w.write(&bytes[..bytes.len() - 10]).expect("write");
        let received = w.finish().expect("finish");
        let cut = as_sent(&received, &built.file);
        assert!(verify(&cut, SHARD).is_err(), "a truncated file is refused");

        // A snapshot of another shard.
        let err = verify(&built.file, ShardId(2)).expect_err("wrong shard");
        assert!(err.to_string().contains("sent to shard 2"), "{err}");
        assert!(verify(&built.file, SHARD).is_ok());
    }

    /// Writes a file with `header` and the given records, as a hostile or buggy
    /// sender could.
    fn handmade(
        store: &SnapshotStore,
        header: SnapshotHeader,
        records: Vec<snapshot_frame::Frame>,
    ) -> Arc<SnapshotFile> {
        let mut w = store.spool("recv", SHARD, 9, 1).expect("spool");
        let mut buf = Vec::new();
        write_frame(&mut w, &mut buf, snapshot_frame::Frame::Header(header)).expect("write");
        for r in records {
            write_frame(&mut w, &mut buf, r).expect("write");
        }
        w.finish().expect("finish")
    }

    #[test]
    fn records_outside_the_shard_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SnapshotStore::new(dir.path().join("snap"));
        let header = SnapshotHeader {
            descriptor: Some(desc(&[(0, HALF)])),
            apply_state: Some(ApplyState {
                applied_index: 9,
                applied_term: 1,
                conf_state: Default::default(),
            }),
            meta: None,
            ..Default::default()
        };
        let kv = |k: Vec<u8>| SnapshotKv {
            key: k.into(),
            value: bytes::Bytes::from_static(b"v"),
        };
        let inside = keys::data_key(&user_keys("in", 1, 0, HALF)[0]);
        let outside = keys::data_key(&user_keys("out", 1, HALF + 1, u64::MAX)[0]);
        let ok = handmade(
            &store,
            header.clone(),
            vec![snapshot_frame::Frame::Data(kv(inside.clone()))],
        );
        assert!(verify(&ok, SHARD).is_ok());

        let f = handmade(
            &store,
            header.clone(),
            vec![
                snapshot_frame::Frame::Data(kv(inside)),
                snapshot_frame::Frame::Data(kv(outside)),
            ],
        );
        let err = verify(&f, SHARD).expect_err("a key of another shard's arc");
        assert!(
            err.to_string().contains("data key outside its shard"),
            "{err}"
        );

        let other_dedup = keys::dedup_key(ShardId(2), 0, b"r");
        let f = handmade(
            &store,
            header.clone(),
            vec![snapshot_frame::Frame::Dedup(kv(other_dedup))],
        );
        let err = verify(&f, SHARD).expect_err("another shard's dedup record");
        assert!(
            err.to_string().contains("dedup key outside its shard"),
            "{err}"
        );

        for (after, key, why) in [
            (
                Some(5),
                keys::watch_log_key(ShardId(2), 7, 0),
                "another shard's watch log",
            ),
            (
                Some(5),
                keys::watch_log_key(SHARD, 5, 0),
                "a version before the log's start",
            ),
            (
                Some(5),
                keys::watch_log_key(SHARD, 10, 0),
                "a version after the snapshot",
            ),
            (
                Some(10),
                keys::watch_log_key(SHARD, 10, 0),
                "a start after the snapshot",
            ),
            (
                Some(5),
                keys::dedup_key(SHARD, 0, b"r"),
                "a key that is not a watch log key",
            ),
        ] {
            let mut h = header.clone();
            h.watch_log_after = after;
            h.watch_log = vec![kv(key)];
            let f = handmade(&store, h, vec![]);
            let err = verify(&f, SHARD).expect_err(why);
            assert!(
                err.to_string().contains("watch log outside"),
                "{why}: {err}"
            );
        }
        let mut h = header.clone();
        h.watch_log_after = Some(5);
        h.watch_log = vec![kv(keys::watch_log_key(SHARD, 9, 0))];
        assert!(verify(&handmade(&store, h, vec![]), SHARD).is_ok());

        let mut with_meta = header.clone();
        with_meta.meta = Some(MetaState::default());
        let f = handmade(&store, with_meta, vec![]);
        let err = verify(&f, SHARD).expect_err("meta state in a data shard's snapshot");
        assert!(err.to_string().contains("meta state"), "{err}");

        let f = handmade(
            &store,
            header,
            vec![snapshot_frame::Frame::Header(SnapshotHeader::default())],
        );
        assert!(verify(&f, SHARD).is_err(), "a second header is refused");
    }

    #[test]
    fn recovery_redoes_an_interrupted_install() {
        let (sdir, rdir) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let sender = Engine::open(&sdir.path().join("db")).expect("open");
        seed(&sender, 400, 9, 2000, "new");
        let sstore = SnapshotStore::new(sdir.path().join("snap"));
        let built = build(&sender, &sstore, SHARD).expect("build");

        let snap_dir = rdir.path().join("snap");
        let db_dir = rdir.path().join("db");
        {
            let receiver = Engine::open(&db_dir).expect("open");
            seed(&receiver, 100, 3, 500, "old");
            // The persisted Raft state: term 5 with a vote, below the snapshot's term.
            let mut hs = raft::eraftpb::HardState::default();
            hs.set_term(5);
            hs.set_vote(2);
            hs.set_commit(100);
            let rs = RaftLocalState {
                hard_state: hs.write_to_bytes().expect("encode").into(),
                truncated_index: 90,
                truncated_term: 3,
            };
            put(
                &receiver,
                vec![LogOp::Put(
                    keys::CF_RAFT,
                    keys::raft_state_key(SHARD),
                    rs.encode_to_vec(),
                )],
            );
            let rstore = SnapshotStore::new(snap_dir.clone());
            let received = transfer(&built.file, &rstore);
            // Steps 1 and 2, then a crash halfway through step 3: the marker is
            // durable, some records are loaded, the ready's batch never landed.
            let header = verify(&received, SHARD).expect("verify");
            received.keep();
            put(&receiver, begin_install_ops(SHARD, &header, &received, &[]));
            let mut some = Vec::new();
            read_file(&received, SHARD, |r| {
                if let Record::Data(kv) = r {
                    if some.len() < 700 {
                        some.push(LogOp::Put(
                            keys::CF_DATA,
                            kv.key.to_vec(),
                            kv.value.to_vec(),
                        ));
                    }
                }
                Ok(())
            })
            .expect("read");
            put(&receiver, some);
            // Leftovers of the previous run: a half-received file and an old send.
            std::fs::write(snap_dir.join("recv-1-7-7-99.tmp"), b"partial").expect("write");
            std::fs::write(snap_dir.join("send-1-3-3-98.snap"), b"old").expect("write");
            assert!(marker(&receiver).is_some());
            assert_ne!(
                data_digest(&receiver, SHARD).expect("digest").1,
                data_digest(&sender, SHARD).expect("digest").1
            );
            drop(received);
            drop(rstore);
        }

        let receiver = Engine::open(&db_dir).expect("reopen");
        let redone = recover(&receiver, &snap_dir).expect("recover");
        assert_eq!(redone, vec![SHARD]);
        assert_eq!(
            data_digest(&receiver, SHARD).expect("digest"),
            data_digest(&sender, SHARD).expect("digest"),
            "the redo leaves exactly the snapshot's data and index"
        );
        assert_eq!(dedup_records(&receiver), dedup_records(&sender));
        assert!(marker(&receiver).is_none(), "the marker is gone");
        let rs: RaftLocalState = receiver
            .get_decoded(keys::CF_RAFT, &keys::raft_state_key(SHARD))
            .expect("get")
            .expect("raft state");
        assert_eq!((rs.truncated_index, rs.truncated_term), (400, 9));
        let hs = raft::eraftpb::HardState::parse_from_bytes(&rs.hard_state).expect("decode");
        assert_eq!(
            (hs.term, hs.vote, hs.commit),
            (9, 0, 400),
            "a new term drops the vote"
        );
        let left: Vec<_> = std::fs::read_dir(&snap_dir).expect("list").collect();
        assert!(
            left.is_empty(),
            "the file and the leftovers are deleted: {left:?}"
        );

        // Nothing to do on the next start.
        assert!(recover(&receiver, &snap_dir).expect("recover").is_empty());
    }

    #[test]
    fn recovery_without_the_file_fails_naming_the_shard() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::open(&dir.path().join("db")).expect("open");
        let marker = SnapshotMarker {
            file: "recv-1-400-9-3.snap".into(),
            index: 400,
            term: 9,
            size: 10,
            checksum: 1,
            clear: vec![],
        };
        put(
            &engine,
            vec![LogOp::Put(
                keys::CF_META,
                keys::snapshot_marker_key(SHARD),
                marker.encode_to_vec(),
            )],
        );
        let err = recover(&engine, &dir.path().join("snap")).expect_err("no file");
        let msg = err.to_string();
        assert!(msg.contains("shard 1") && msg.contains("missing"), "{msg}");
    }

    #[test]
    fn the_vote_survives_an_install_in_the_same_term() {
        let mut hs = raft::eraftpb::HardState::default();
        hs.set_term(9);
        hs.set_vote(3);
        let rs = RaftLocalState {
            hard_state: hs.write_to_bytes().expect("encode").into(),
            truncated_index: 1,
            truncated_term: 1,
        };
        let after = raft_state_after_install(Some(&rs), 40, 8).expect("state");
        let hs = raft::eraftpb::HardState::parse_from_bytes(&after.hard_state).expect("decode");
        assert_eq!((hs.term, hs.vote, hs.commit), (9, 3, 40));
        assert_eq!((after.truncated_index, after.truncated_term), (40, 8));
    }
}
