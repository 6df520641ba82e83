//! The node's indexes of its `data` records, in the `meta` CF, node-local (derived
//! from the data, never replicated):
//!
//! - the expiry index (`keys::EXPIRY_PREFIX`): one empty entry `expires_at_ms BE8 ·
//!   data key` per record with an expiry, so the TTL purge (`node::purge`) reads what
//!   has expired instead of every record;
//! - the listing indexes: the conversation index (`keys::CONV_INDEX_PREFIX`), one
//!   entry `namespace / id` per conversation record, holding its data key, so
//!   `ListConversations` reads a page of a namespace in id order instead of every
//!   record of the shard; the thread index (`keys::THREAD_INDEX_PREFIX`), the same for
//!   checkpoint threads and `ListThreads`; and their reverse entries
//!   (`keys::LISTING_BY_KEY_PREFIX`, data key → entry), so the entries of a hash range
//!   are found by reading that range.
//!
//! Who keeps them: the apply path writes, moves and deletes entries in the batch that
//! writes each record (`fsm::apply`); a snapshot load writes the entries of the records
//! it loads. A snapshot install or a replica removal clears whole ranges without
//! reading them: a purge round deletes the expiry entries left behind, and the install
//! (`clear_listing_entries`) and a purge round (`node::purge`) the listing entries.
//! A data directory from before an index is indexed once, at start
//! ([`ensure_index`]).

use crate::error::{ErrInto, Result};
use crate::keys;
use crate::storage::Engine;
use prost::Message;

/// `ValueRecord`'s expiry alone (field 3): prost skips the fields a message does not
/// declare, so the value is not copied.
#[derive(Clone, PartialEq, prost::Message)]
struct RecordExpiry {
    #[prost(uint64, tag = "3")]
    expires_at_ms: u64,
}

/// The expiry of an encoded `data` CF record (0: none).
pub(crate) fn expires_at(record: &[u8]) -> Result<u64> {
    Ok(RecordExpiry::decode(record)?.expires_at_ms)
}

/// Adds to `batch` the expiry index entry of the encoded record `record` stored at
/// `data` CF key `data_key`, if it has an expiry; whether it did. A record that does
/// not decode gets none: it must not stop a start or a snapshot load (every read of it
/// says what is wrong).
fn index_expiry(
    batch: &mut rocksdb::WriteBatch,
    meta: &rocksdb::ColumnFamily,
    data_key: &[u8],
    record: &[u8],
) -> bool {
    match expires_at(record) {
        Ok(at) if at != 0 => {
            batch.put_cf(meta, keys::expiry_key(at, data_key), []);
            true
        }
        _ => false,
    }
}

/// Adds to `batch` the listing index entry of `data` CF key `data_key`, if it holds a
/// record with one and `wanted` takes the entry; whether it did.
fn index_listing(
    batch: &mut rocksdb::WriteBatch,
    meta: &rocksdb::ColumnFamily,
    data_key: &[u8],
    wanted: impl Fn(&[u8]) -> bool,
) -> bool {
    match keys::listing_entry(data_key) {
        Some(entry) if wanted(&entry) => {
            batch.put_cf(meta, keys::listing_by_key(data_key), &entry);
            batch.put_cf(meta, entry, data_key);
            true
        }
        _ => false,
    }
}

/// Adds to `batch` every index entry of the encoded record `record` stored at `data`
/// CF key `data_key` (a snapshot load).
pub(crate) fn index_record(
    batch: &mut rocksdb::WriteBatch,
    meta: &rocksdb::ColumnFamily,
    data_key: &[u8],
    record: &[u8],
) {
    index_expiry(batch, meta, data_key, record);
    index_listing(batch, meta, data_key, |_| true);
}

/// Bytes of index entries written per batch while indexing an older data directory.
const BATCH_BYTES: usize = 4 << 20;

/// Builds each index the data directory does not say is complete
/// (`keys::EXPIRY_INDEXED_KEY`, `keys::CONV_INDEXED_KEY`, `keys::THREADS_INDEXED_KEY`)
/// from every record, then says so; runs before any replica loads. Returns the
/// entries written (0 for a directory already indexed, or new).
pub(crate) fn ensure_index(engine: &Engine) -> Result<u64> {
    let marked = |k| -> Result<bool> { Ok(engine.get(keys::CF_META, k)?.is_some()) };
    let expiry_done = marked(keys::EXPIRY_INDEXED_KEY)?;
    let convs_done = marked(keys::CONV_INDEXED_KEY)?;
    let threads_done = marked(keys::THREADS_INDEXED_KEY)?;
    if expiry_done && convs_done && threads_done {
        return Ok(0);
    }
    let meta = engine.cf(keys::CF_META);
    let mut batch = rocksdb::WriteBatch::default();
    let mut written = 0;
    let iter = engine
        .db()
        .iterator_cf(engine.cf(keys::CF_DATA), rocksdb::IteratorMode::Start);
    for item in iter {
        let (k, v) = item.err_into()?;
        if !expiry_done && index_expiry(&mut batch, meta, &k, &v) {
            written += 1;
        }
        // (Lease records came after these markers: no older directory holds any.)
        let wanted = |entry: &[u8]| {
            (!convs_done && entry.starts_with(keys::CONV_INDEX_PREFIX))
                || (!threads_done && entry.starts_with(keys::THREAD_INDEX_PREFIX))
        };
        if index_listing(&mut batch, meta, &k, wanted) {
            written += 1;
        }
        if batch.size_in_bytes() >= BATCH_BYTES {
            engine.write(std::mem::take(&mut batch))?;
        }
    }
    // The entries before the markers: a crash in between indexes again, harmlessly.
    engine.write_sync(batch)?;
    let mut done = rocksdb::WriteBatch::default();
    for marker in [
        keys::EXPIRY_INDEXED_KEY,
        keys::CONV_INDEXED_KEY,
        keys::THREADS_INDEXED_KEY,
    ] {
        done.put_cf(meta, marker, []);
    }
    engine.write_sync(done)?;
    Ok(written)
}

/// Deletes the listing index entries whose records lie in the `data` CF ranges
/// `ranges` (a snapshot install cleared them and loads its own), found through the
/// reverse entries: it reads those of the ranges only. Returns how many. Nothing
/// else writes entries of these ranges meanwhile: the shard's apply waits for the
/// install.
pub(crate) fn clear_listing_entries(engine: &Engine, ranges: &[(Vec<u8>, Vec<u8>)]) -> Result<u64> {
    let meta = engine.cf(keys::CF_META);
    let mut batch = rocksdb::WriteBatch::default();
    let mut n = 0;
    for (start, end) in ranges {
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_lower_bound(keys::listing_by_key(start));
        opts.set_iterate_upper_bound(keys::listing_by_key(end));
        for item in engine
            .db()
            .iterator_cf_opt(meta, opts, rocksdb::IteratorMode::Start)
        {
            let (k, entry) = item.err_into()?;
            batch.delete_cf(meta, k);
            batch.delete_cf(meta, entry);
            n += 1;
        }
    }
    if !batch.is_empty() {
        engine.write(batch)?;
    }
    Ok(n)
}

/// Deletes the listing index entries a replica removal left behind: reads the
/// reverse entries (in hash order) from after `after` (None: the first), at most
/// `max`, and deletes those whose record is gone and whose hash no replica on this
/// node `owns`. Returns where the next call goes on (None: the pass reached the end)
/// and how many it deleted. The caller holds `Engine::expiry_upkeep`, which snapshot
/// loads take: they write records with their entries, and no apply writes a hash no
/// replica here owns.
pub(crate) fn sweep_listing_entries(
    engine: &Engine,
    after: Option<&[u8]>,
    max: usize,
    owns: impl Fn(u64) -> bool,
) -> Result<(Option<Vec<u8>>, u64)> {
    let end = keys::prefix_end(keys::LISTING_BY_KEY_PREFIX)
        .ok_or_else(|| crate::error::Error::Internal("the index prefix has no end".into()))?;
    let start = match after {
        Some(k) => [k, &[0]].concat(),
        None => keys::LISTING_BY_KEY_PREFIX.to_vec(),
    };
    let mut opts = rocksdb::ReadOptions::default();
    opts.set_iterate_lower_bound(start);
    opts.set_iterate_upper_bound(end);
    let meta = engine.cf(keys::CF_META);
    let mut batch = rocksdb::WriteBatch::default();
    let mut last: Option<Box<[u8]>> = None;
    let mut next = None;
    let mut deleted = 0;
    let iter = engine
        .db()
        .iterator_cf_opt(meta, opts, rocksdb::IteratorMode::Start);
    for (read, item) in iter.enumerate() {
        let (k, entry) = item.err_into()?;
        if read == max {
            // More than the limit: the next call goes on after the last one read.
            next = last.map(|l| l.to_vec());
            break;
        }
        let dk = &k[keys::LISTING_BY_KEY_PREFIX.len()..];
        let owned = dk
            .first_chunk::<8>()
            .is_some_and(|h| owns(u64::from_be_bytes(*h)));
        if !owned && engine.get(keys::CF_DATA, dk)?.is_none() {
            batch.delete_cf(meta, &k);
            batch.delete_cf(meta, &entry);
            deleted += 1;
        }
        last = Some(k);
    }
    if !batch.is_empty() {
        engine.write(batch)?;
    }
    Ok((next, deleted))
}

/// Whether `data` CF key `dk` lies in one of `ranges` (`[start, end)` each).
pub(crate) fn in_ranges(dk: &[u8], ranges: &[(Vec<u8>, Vec<u8>)]) -> bool {
    ranges
        .iter()
        .any(|(s, e)| dk >= s.as_slice() && dk < e.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ValueRecord;

    #[test]
    fn the_expiry_is_read_without_the_rest() {
        let rec = ValueRecord {
            version: 7,
            create_version: 3,
            expires_at_ms: 123_456,
            value: vec![9; 1000].into(),
            lease_id: 0,
        };
        assert_eq!(expires_at(&rec.encode_to_vec()).ok(), Some(123_456));
        let rec = ValueRecord {
            expires_at_ms: 0,
            ..rec
        };
        assert_eq!(expires_at(&rec.encode_to_vec()).ok(), Some(0));
        assert!(expires_at(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn an_older_data_dir_is_indexed_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::open(dir.path()).expect("open");
        let mut batch = rocksdb::WriteBatch::default();
        let data = engine.cf(keys::CF_DATA);
        for (key, at) in [(&b"a"[..], 0u64), (b"b", 50), (b"c", 20)] {
            let rec = ValueRecord {
                version: 1,
                create_version: 1,
                expires_at_ms: at,
                value: key.to_vec().into(),
                lease_id: 0,
            };
            batch.put_cf(data, keys::data_key(key), rec.encode_to_vec());
        }
        engine.write(batch).expect("write");
        assert_eq!(ensure_index(&engine).ok(), Some(2));
        let now = 100;
        let view = crate::fsm::read::View::new(&engine, now);
        let check = view.check_expiry_index().expect("check");
        assert_eq!(
            (check.records, check.missing, check.extra),
            (2, 0, 0),
            "{check:?}"
        );
        let found = view
            .expired_entries(None, 100, 1, 10, |_| Some(0))
            .expect("read the index");
        let keys: Vec<_> = found.keys[0].iter().map(|k| k.key.to_vec()).collect();
        assert_eq!(
            keys,
            vec![b"c".to_vec(), b"b".to_vec()],
            "oldest expiry first"
        );
        assert!(found.next.is_none(), "every expired entry was read");
        // A round limited to one entry stops after the oldest; the next goes on.
        let first = view
            .expired_entries(None, 1, 1, 10, |_| Some(0))
            .expect("read the index");
        assert_eq!(first.keys[0].len(), 1);
        assert_eq!(first.keys[0][0].key.as_ref(), b"c");
        let rest = view
            .expired_entries(first.next.as_deref(), 1, 1, 10, |_| Some(0))
            .expect("read the index");
        assert_eq!(rest.keys[0].len(), 1);
        assert_eq!(rest.keys[0][0].key.as_ref(), b"b");
        assert!(rest.next.is_none(), "the second round reached the present");
        // Done once: a second start writes nothing.
        assert_eq!(ensure_index(&engine).ok(), Some(0));
    }
}
