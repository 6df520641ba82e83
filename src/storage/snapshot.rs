//! Shard snapshots: built from a RocksDB snapshot (so data and applied index agree),
//! shipped in chunks by the transport, installed through the log writer in one batch.

use crate::error::ErrInto;
use crate::error::{Error, Result};
use crate::keys;
use crate::proto::{ApplyState, MetaState, ShardDescriptor, SnapshotKv, SnapshotPayload};
use crate::storage::LogOp;
use crate::types::{ShardId, META_SHARD};
use prost::Message;

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
/// as of `snap`.
fn for_each_data_kv(
    engine: &crate::storage::Engine,
    snap: &rocksdb::SnapshotWithThreadMode<'_, rocksdb::DB>,
    desc: &ShardDescriptor,
    mut f: impl FnMut(&[u8], &[u8]),
) -> Result<()> {
    for (start, end) in shard_data_ranges(desc) {
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_snapshot(snap);
        opts.set_iterate_upper_bound(end);
        let iter = engine.db().iterator_cf_opt(
            engine.cf(keys::CF_DATA),
            opts,
            rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.err_into()?;
            f(&k, &v);
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
        h.update(&(k.len() as u64).to_be_bytes());
        h.update(k);
        h.update(&(v.len() as u64).to_be_bytes());
        h.update(v);
    })?;
    Ok((applied, h.digest()))
}

/// A built snapshot: the encoded payload and the state it was taken at.
pub(crate) struct BuiltSnapshot {
    /// Encoded `SnapshotPayload`.
    pub(crate) payload: Vec<u8>,
    /// Applied index/term and conf state the payload corresponds to.
    pub(crate) apply_state: ApplyState,
}

/// Reads the shard's applied state and data from one consistent RocksDB snapshot.
pub(crate) fn build(engine: &crate::storage::Engine, shard: ShardId) -> Result<BuiltSnapshot> {
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
    let mut data = Vec::new();
    for_each_data_kv(engine, &snap, &desc, |k, v| {
        data.push(SnapshotKv {
            key: k.to_vec().into(),
            value: v.to_vec().into(),
        })
    })?;
    let mut dedup = Vec::new();
    let prefix = keys::dedup_prefix(shard);
    let mut opts = rocksdb::ReadOptions::default();
    opts.set_snapshot(&snap);
    if let Some(end) = keys::prefix_end(&prefix) {
        opts.set_iterate_upper_bound(end);
    }
    let iter = db.iterator_cf_opt(
        meta,
        opts,
        rocksdb::IteratorMode::From(&prefix, rocksdb::Direction::Forward),
    );
    for item in iter {
        let (k, v) = item.err_into()?;
        dedup.push(SnapshotKv {
            key: k.into_vec().into(),
            value: v.into_vec().into(),
        });
    }
    let meta_state = if shard == META_SHARD {
        match snap.get_cf(meta, keys::meta_state_key()).err_into()? {
            Some(v) => Some(MetaState::decode(v.as_slice())?),
            None => None,
        }
    } else {
        None
    };
    let payload = SnapshotPayload {
        descriptor: Some(desc),
        apply_state: Some(apply_state.clone()),
        data,
        dedup,
        meta: meta_state,
    }
    .encode_to_vec();
    Ok(BuiltSnapshot {
        payload,
        apply_state,
    })
}

/// The writes that clear a shard's data ranges, dedup records and Raft log on this
/// node (shared by replica removal and snapshot installation).
fn clear_ops(desc: &ShardDescriptor, ranges: &[(Vec<u8>, Vec<u8>)]) -> Vec<LogOp> {
    let shard = ShardId(desc.shard_id);
    let mut ops: Vec<LogOp> = ranges
        .iter()
        .map(|(s, e)| LogOp::DeleteRange(keys::CF_DATA, s.clone(), e.clone()))
        .collect();
    for (cf, prefix) in [
        (keys::CF_META, keys::dedup_prefix(shard)),
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
    let mut ops = clear_ops(desc, &shard_data_ranges(desc));
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

/// The writes that replace a shard's state with a snapshot payload. Besides the
/// payload's own arcs, the data in `also_clear` is deleted: arcs the replica owned
/// before that no shard on this node owns any more (a split the replica skipped by
/// installing this snapshot moved them away). The caller adds the new
/// `RaftLocalState`.
pub(crate) fn install_ops(
    shard: ShardId,
    payload: &SnapshotPayload,
    also_clear: &[crate::ranges::Arc],
) -> Result<Vec<LogOp>> {
    let desc = payload
        .descriptor
        .as_ref()
        .ok_or_else(|| Error::Storage("snapshot without descriptor".into()))?;
    let apply_state = payload
        .apply_state
        .as_ref()
        .ok_or_else(|| Error::Storage("snapshot without apply state".into()))?;
    if desc.shard_id != shard.0 {
        return Err(Error::Storage(format!(
            "snapshot for shard {} sent to shard {shard}",
            desc.shard_id
        )));
    }
    let ranges = shard_data_ranges(desc);
    let mut ops = clear_ops(desc, &ranges);
    ops.extend(
        arc_data_ranges(also_clear)
            .into_iter()
            .map(|(s, e)| LogOp::DeleteRange(keys::CF_DATA, s, e)),
    );
    ops.reserve(payload.data.len() + payload.dedup.len() + 4);
    for kv in &payload.data {
        // Shards share the `data` CF: a record outside this shard's arcs would
        // overwrite another shard's data.
        let inside = ranges
            .iter()
            .any(|(s, e)| kv.key.as_ref() >= s.as_slice() && kv.key.as_ref() < e.as_slice());
        if !inside {
            return Err(Error::Storage("snapshot data key outside its shard".into()));
        }
        ops.push(LogOp::Put(
            keys::CF_DATA,
            kv.key.to_vec(),
            kv.value.to_vec(),
        ));
    }
    for kv in &payload.dedup {
        if !kv.key.starts_with(&keys::dedup_prefix(shard)) {
            return Err(Error::Storage(
                "snapshot dedup key outside its shard".into(),
            ));
        }
        ops.push(LogOp::Put(
            keys::CF_META,
            kv.key.to_vec(),
            kv.value.to_vec(),
        ));
    }
    ops.push(LogOp::Put(
        keys::CF_META,
        keys::apply_state_key(shard),
        apply_state.encode_to_vec(),
    ));
    ops.push(LogOp::Put(
        keys::CF_META,
        keys::desc_key(shard),
        desc.encode_to_vec(),
    ));
    match (&payload.meta, shard == META_SHARD) {
        (Some(state), true) => ops.push(LogOp::Put(
            keys::CF_META,
            keys::meta_state_key(),
            state.encode_to_vec(),
        )),
        (None, false) => {}
        _ => {
            return Err(Error::Storage(format!(
                "shard {shard}: meta state in a data shard's snapshot, or missing from the meta shard's"
            )))
        }
    }
    Ok(ops)
}

/// A built payload with the index and term it was taken at.
type BuiltPayload = (u64, u64, std::sync::Arc<Vec<u8>>);

/// Received payloads kept per shard while their replica decides which to install.
pub(crate) const MAX_INCOMING_PER_SHARD: usize = 3;

/// Snapshot payloads in memory: the latest built per shard (to send) and received ones
/// waiting for their replica to install them.
#[derive(Default)]
pub(crate) struct SnapshotStore {
    /// Shard → (index, term, payload) of the latest built snapshot.
    outgoing: parking_lot::Mutex<std::collections::HashMap<ShardId, BuiltPayload>>,
    /// (shard, index, term) → received payload.
    incoming: parking_lot::Mutex<std::collections::HashMap<(ShardId, u64, u64), Vec<u8>>>,
}

impl SnapshotStore {
    /// Records the latest built snapshot of a shard.
    pub(crate) fn put_outgoing(&self, shard: ShardId, index: u64, term: u64, payload: Vec<u8>) {
        self.outgoing
            .lock()
            .insert(shard, (index, term, std::sync::Arc::new(payload)));
    }

    /// The built payload for exactly this snapshot, if still current.
    pub(crate) fn get_outgoing(
        &self,
        shard: ShardId,
        index: u64,
        term: u64,
    ) -> Option<std::sync::Arc<Vec<u8>>> {
        let m = self.outgoing.lock();
        m.get(&shard)
            .filter(|(i, t, _)| *i == index && *t == term)
            .map(|(_, _, p)| p.clone())
    }

    /// Keeps a received payload until its replica installs it.
    pub(crate) fn put_incoming(&self, shard: ShardId, index: u64, term: u64, payload: Vec<u8>) {
        {
            let mut m = self.incoming.lock();
            m.insert((shard, index, term), payload);
            // Keep the newest few per shard: raft-rs installs at most one of them.
            let mut mine: Vec<(u64, u64)> = m
                .keys()
                .filter(|k| k.0 == shard)
                .map(|k| (k.1, k.2))
                .collect();
            mine.sort_unstable();
            while mine.len() > MAX_INCOMING_PER_SHARD {
                let (i, t) = mine.remove(0);
                m.remove(&(shard, i, t));
            }
        }
    }

    /// Takes a received payload.
    pub(crate) fn take_incoming(&self, shard: ShardId, index: u64, term: u64) -> Option<Vec<u8>> {
        self.incoming.lock().remove(&(shard, index, term))
    }
}
