//! The node's expiry index (`keys::EXPIRY_PREFIX` in the `meta` CF): one empty entry
//! `expires_at_ms BE8 · data key` per `data` record with an expiry, so the TTL purge
//! (`node::purge`) reads what has expired instead of every record.
//!
//! Who keeps it: the apply path writes, moves and deletes entries in the batch that
//! writes each record (`fsm::apply`); a snapshot load writes the entries of the records
//! it loads; a purge round deletes entries whose record is gone (a snapshot install or
//! a replica removal clears whole ranges without reading them). A data directory from
//! before the index is indexed once, at start ([`ensure_index`]).

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

/// Adds to `batch` the index entry of the encoded record `record` stored at `data` CF
/// key `data_key`, if it has an expiry; whether it did. A record that does not decode
/// gets none: it must not stop a start or a snapshot load (every read of it says what
/// is wrong).
pub(crate) fn index_record(
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

/// Bytes of index entries written per batch while indexing an older data directory.
const BATCH_BYTES: usize = 4 << 20;

/// Indexes every record with an expiry unless the data directory says it is done
/// (`keys::EXPIRY_INDEXED_KEY`), then says so; runs before any replica loads. Returns
/// the entries written (0 for a directory already indexed, or new).
pub(crate) fn ensure_index(engine: &Engine) -> Result<u64> {
    if engine
        .get(keys::CF_META, keys::EXPIRY_INDEXED_KEY)?
        .is_some()
    {
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
        if !index_record(&mut batch, meta, &k, &v) {
            continue;
        }
        written += 1;
        if batch.size_in_bytes() >= BATCH_BYTES {
            engine.write(std::mem::take(&mut batch))?;
        }
    }
    // The entries before the marker: a crash in between indexes again, harmlessly.
    engine.write_sync(batch)?;
    let mut done = rocksdb::WriteBatch::default();
    done.put_cf(meta, keys::EXPIRY_INDEXED_KEY, []);
    engine.write_sync(done)?;
    Ok(written)
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
