//! Key encoding in the node's RocksDB (DESIGN §4). The partition-key rule (DESIGN §1)
//! is shared with clients and lives in `ctxstore-api`; it is re-exported here.
//!
//! Invariants:
//! - `data` CF keys are `xxh3(partition key) BE8 · user key`, so one hash tag is one
//!   contiguous range and a ring arc is a contiguous range of hash prefixes.
//! - `raft` and `meta` CF keys start with the shard id big-endian, so one shard's
//!   records are one prefix; node-wide `meta` records (the node identity, snapshot
//!   install markers) start with `0xffff` instead, past every shard's prefix.

use crate::types::ShardId;

pub use ctxstore_api::keys::{key_hash, partition_key, prefix_end, prefix_partition, tag_hash};

/// Column family of Raft log entries and Raft local state.
pub const CF_RAFT: &str = "raft";
/// Column family of user data.
pub const CF_DATA: &str = "data";
/// Column family of per-shard apply state, descriptors and dedup records.
pub const CF_META: &str = "meta";
/// Every column family the engine opens.
pub const ALL_CFS: [&str; 3] = [CF_RAFT, CF_DATA, CF_META];

const RAFT_LOG_TAG: u8 = 0x01;
const RAFT_STATE_TAG: u8 = 0x02;
const APPLY_STATE_TAG: u8 = b'a';
const DESC_TAG: u8 = b'd';
const DEDUP_TAG: u8 = b'r';
const TOMBSTONE_TAG: u8 = b't';
const META_STATE_TAG: u8 = b'm';
const WATCH_LOG_TAG: u8 = b'w';

/// Where the node-wide `meta` CF records start, after every shard's prefix.
pub const NODE_WIDE_PREFIX: &[u8] = b"\xff\xff";

/// `meta` CF key holding this data directory's node identity.
pub const NODE_IDENT_KEY: &[u8] = b"\xff\xffnode-ident";

/// Prefix of the `meta` CF snapshot install markers (one per shard whose install is
/// in progress); one prefix, so a start finds them all without a full scan.
pub const SNAPSHOT_MARKER_PREFIX: &[u8] = b"\xff\xffsnap-marker/";

/// Prefix of the `meta` CF expiry index: `EXPIRY_PREFIX · expires_at_ms BE8 · data
/// key`, one empty entry per `data` record with an expiry, written in the batch that
/// writes the record. Node-local (derived from the data, never replicated): a purge
/// round reads what has expired, in expiry order, instead of every record.
pub const EXPIRY_PREFIX: &[u8] = b"\xff\xffexpiry/";

/// `meta` CF key present once this data directory's expiry index is complete (written
/// by the first start of a version that keeps one, after indexing older records).
pub const EXPIRY_INDEXED_KEY: &[u8] = b"\xff\xffexpiry-indexed";

/// The expiry index entry of `data` CF key `data_key` expiring at `expires_at_ms`.
pub fn expiry_key(expires_at_ms: u64, data_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(EXPIRY_PREFIX.len() + 8 + data_key.len());
    k.extend_from_slice(EXPIRY_PREFIX);
    k.extend_from_slice(&expires_at_ms.to_be_bytes());
    k.extend_from_slice(data_key);
    k
}

/// `(expires_at_ms, data key)` of an expiry index entry.
pub fn decode_expiry_key(key: &[u8]) -> Option<(u64, &[u8])> {
    let rest = key.strip_prefix(EXPIRY_PREFIX)?;
    let (at, data_key) = rest.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*at), data_key))
}

/// Prefix of the `meta` CF conversation index: `CONV_INDEX_PREFIX · namespace · '/' ·
/// id`, one entry per conversation record, holding the record's `data` CF key and
/// written in the batch that writes the record. Node-local like the expiry index: a
/// namespace's conversations in id order, so a listing reads a page, not the shard.
pub const CONV_INDEX_PREFIX: &[u8] = b"\xff\xffconvs/";

/// Prefix of the `meta` CF thread index: `THREAD_INDEX_PREFIX · namespace · '/' · id`
/// (the id as the client named it), one entry per thread record, kept as the
/// conversation index is: a namespace's checkpoint threads in id order.
pub const THREAD_INDEX_PREFIX: &[u8] = b"\xff\xffthrds/";

/// Prefix of the listing indexes' reverse entries (conversations' and threads'):
/// `LISTING_BY_KEY_PREFIX · data key` → the entry under `CONV_INDEX_PREFIX` or
/// `THREAD_INDEX_PREFIX`, one per record, in hash order, so the entries of a hash
/// range are found without reading the whole index. (The bytes say "conv": the
/// conversation index came first.)
pub const LISTING_BY_KEY_PREFIX: &[u8] = b"\xff\xffconvk/";

/// Prefix of the `meta` CF lease index: `LEASE_INDEX_PREFIX · data key` of each
/// lease record, in hash order, so the leases of a shard's ranges are found by
/// reading those ranges (a new leader starts counting down each; `node::lease`).
pub const LEASE_INDEX_PREFIX: &[u8] = b"\xff\xffleases/";

/// `meta` CF key present once this data directory's conversation index is complete.
pub const CONV_INDEXED_KEY: &[u8] = b"\xff\xffconvs-indexed";

/// `meta` CF key present once this data directory's thread index is complete.
pub const THREADS_INDEXED_KEY: &[u8] = b"\xff\xffthrds-indexed";

/// The listing index entry of the conversation, thread or lease record at user key
/// `user_key` (None: none of these).
pub fn listing_key(user_key: &[u8]) -> Option<Vec<u8>> {
    if let Some(path) = crate::context::conv_path_of(user_key) {
        return Some([CONV_INDEX_PREFIX, path].concat());
    }
    if crate::context::is_lease_key(user_key) {
        return Some([LEASE_INDEX_PREFIX, &data_key(user_key)].concat());
    }
    let path = crate::context::thread_path_of(user_key)?;
    Some([THREAD_INDEX_PREFIX, path.as_slice()].concat())
}

/// The listing index entry of `data` CF key `data_key`, if it holds a conversation,
/// thread or lease record.
pub fn listing_entry(data_key: &[u8]) -> Option<Vec<u8>> {
    listing_key(decode_data_key(data_key)?)
}

/// The reverse entry of the listing indexes for `data` CF key `data_key`.
pub fn listing_by_key(data_key: &[u8]) -> Vec<u8> {
    [LISTING_BY_KEY_PREFIX, data_key].concat()
}

/// Where `namespace`'s conversation index entries start.
pub fn conv_index_prefix(namespace: &str) -> Vec<u8> {
    [CONV_INDEX_PREFIX, namespace.as_bytes(), b"/"].concat()
}

/// Where `namespace`'s thread index entries start.
pub fn thread_index_prefix(namespace: &str) -> Vec<u8> {
    [THREAD_INDEX_PREFIX, namespace.as_bytes(), b"/"].concat()
}

fn shard_key(shard: ShardId, tag: u8, extra: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + extra.len());
    k.extend_from_slice(&shard.0.to_be_bytes());
    k.push(tag);
    k.extend_from_slice(extra);
    k
}

/// `raft` CF key of log entry `index` of `shard`.
pub fn raft_log_key(shard: ShardId, index: u64) -> Vec<u8> {
    shard_key(shard, RAFT_LOG_TAG, &index.to_be_bytes())
}

/// Index encoded in a `raft` CF log key, if `key` is one of `shard`.
pub fn decode_raft_log_key(shard: ShardId, key: &[u8]) -> Option<u64> {
    let prefix = raft_log_prefix(shard);
    let rest = key.strip_prefix(prefix.as_slice())?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// Prefix of every log entry key of `shard`.
pub fn raft_log_prefix(shard: ShardId) -> Vec<u8> {
    shard_key(shard, RAFT_LOG_TAG, &[])
}

/// `raft` CF key of the shard's `RaftLocalState`.
pub fn raft_state_key(shard: ShardId) -> Vec<u8> {
    shard_key(shard, RAFT_STATE_TAG, &[])
}

/// `meta` CF key of the shard's `ApplyState`.
pub fn apply_state_key(shard: ShardId) -> Vec<u8> {
    shard_key(shard, APPLY_STATE_TAG, &[])
}

/// Shard id of a `meta` CF apply-state key.
pub fn decode_apply_state_key(key: &[u8]) -> Option<ShardId> {
    if key.len() == 9 && key[8] == APPLY_STATE_TAG {
        Some(ShardId(u64::from_be_bytes(key[..8].try_into().ok()?)))
    } else {
        None
    }
}

/// `meta` CF key of the shard descriptor this node last applied.
pub fn desc_key(shard: ShardId) -> Vec<u8> {
    shard_key(shard, DESC_TAG, &[])
}

/// `meta` CF key of a client request's dedup record, written in dedup time bucket
/// `bucket` (`fsm::command::dedup_bucket`).
pub fn dedup_key(shard: ShardId, bucket: u64, request_id: &[u8]) -> Vec<u8> {
    let mut k = dedup_bucket_prefix(shard, bucket);
    k.extend_from_slice(request_id);
    k
}

/// Prefix of the dedup records of `shard` written in time bucket `bucket`; buckets sort
/// in time order, so every bucket before `bucket` is `[dedup_prefix, this)`.
pub fn dedup_bucket_prefix(shard: ShardId, bucket: u64) -> Vec<u8> {
    shard_key(shard, DEDUP_TAG, &bucket.to_be_bytes())
}

/// `meta` CF key marking that this node's replica of `shard` was removed (value: the
/// removed replica id); messages to that replica id or older are ignored.
pub fn tombstone_key(shard: ShardId) -> Vec<u8> {
    shard_key(shard, TOMBSTONE_TAG, &[])
}

/// Shard id of a `meta` CF tombstone key.
pub fn decode_tombstone_key(key: &[u8]) -> Option<ShardId> {
    if key.len() == 9 && key[8] == TOMBSTONE_TAG {
        Some(ShardId(u64::from_be_bytes(key[..8].try_into().ok()?)))
    } else {
        None
    }
}

/// `meta` CF key of the meta shard's whole state (`MetaState`); only shard 0 has one.
pub fn meta_state_key() -> Vec<u8> {
    shard_key(ShardId(0), META_STATE_TAG, &[])
}

/// `meta` CF key of the marker of an in-progress snapshot install of `shard`
/// (`SnapshotMarker`).
pub fn snapshot_marker_key(shard: ShardId) -> Vec<u8> {
    let mut k = SNAPSHOT_MARKER_PREFIX.to_vec();
    k.extend_from_slice(&shard.0.to_be_bytes());
    k
}

/// Shard id of a `meta` CF snapshot marker key.
pub fn decode_snapshot_marker_key(key: &[u8]) -> Option<ShardId> {
    let rest = key.strip_prefix(SNAPSHOT_MARKER_PREFIX)?;
    Some(ShardId(u64::from_be_bytes(rest.try_into().ok()?)))
}

/// Prefix of every dedup record of `shard`.
pub fn dedup_prefix(shard: ShardId) -> Vec<u8> {
    shard_key(shard, DEDUP_TAG, &[])
}

/// Prefix of `shard`'s watch log in the `meta` CF. The prefix itself is the key of
/// the log's start (`version BE8`: the log holds every change after it); each change
/// follows at [`watch_log_key`], in version order.
pub fn watch_log_prefix(shard: ShardId) -> Vec<u8> {
    shard_key(shard, WATCH_LOG_TAG, &[])
}

/// `meta` CF key of the `n`th change `shard` applied at `version`.
pub fn watch_log_key(shard: ShardId, version: u64, n: u32) -> Vec<u8> {
    let mut extra = [0u8; 12];
    extra[..8].copy_from_slice(&version.to_be_bytes());
    extra[8..].copy_from_slice(&n.to_be_bytes());
    shard_key(shard, WATCH_LOG_TAG, &extra)
}

/// The version of a [`watch_log_key`] (None for the start key or another key).
pub fn decode_watch_log_key(key: &[u8]) -> Option<u64> {
    if key.len() != 21 || key[8] != WATCH_LOG_TAG {
        return None;
    }
    Some(u64::from_be_bytes(key[9..17].try_into().ok()?))
}

/// `data` CF key of a user key.
pub fn data_key(user_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + user_key.len());
    k.extend_from_slice(&key_hash(user_key).to_be_bytes());
    k.extend_from_slice(user_key);
    k
}

/// The `data` CF range `[start, end)` holding every key whose hash is in `lo..=hi`.
pub fn data_range(lo: u64, hi: u64) -> (Vec<u8>, Vec<u8>) {
    let start = lo.to_be_bytes().to_vec();
    let end = match hi.checked_add(1) {
        Some(h) => h.to_be_bytes().to_vec(),
        // Past every key of the last hash: longer than any allowed user key.
        None => vec![0xff; 8 + MAX_KEY_BOUND],
    };
    (start, end)
}

/// An upper bound on user key length used to close the last data range.
const MAX_KEY_BOUND: usize = 64 << 10;

/// The user key inside a `data` CF key.
pub fn decode_data_key(key: &[u8]) -> Option<&[u8]> {
    (key.len() >= 8).then(|| &key[8..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn data_key_round_trips(key in proptest::collection::vec(any::<u8>(), 0..64)) {
            let dk = data_key(&key);
            prop_assert_eq!(decode_data_key(&dk), Some(&key[..]));
        }

        #[test]
        fn snapshot_marker_keys_round_trip(s in any::<u64>()) {
            let k = snapshot_marker_key(ShardId(s));
            prop_assert_eq!(decode_snapshot_marker_key(&k), Some(ShardId(s)));
            prop_assert_eq!(decode_apply_state_key(&k), None);
            prop_assert_eq!(decode_tombstone_key(&k), None);
        }

        #[test]
        fn raft_log_keys_sort_by_index(s in 0u64..1000, i in any::<u64>(), j in any::<u64>()) {
            let (ki, kj) = (raft_log_key(ShardId(s), i), raft_log_key(ShardId(s), j));
            prop_assert_eq!(i.cmp(&j), ki.cmp(&kj));
            prop_assert_eq!(decode_raft_log_key(ShardId(s), &ki), Some(i));
        }
    }
}
