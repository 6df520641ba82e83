//! Applies committed entries to RocksDB: one WriteBatch per round carrying the data,
//! the dedup records, the shard descriptor and the applied index it all corresponds to.

use crate::error::Result;
use crate::fsm::command::{Applier, Change, StateReader};
use crate::fsm::read::ReadBudget;
use crate::fsm::split::{apply_split, ChildInit};
use crate::keys;
use crate::proto::{
    command_result, raft_command, ApplyState, CommandResult, DedupRecord, MetaState, RaftCommand,
    ShardDescriptor, SplitDone, ValueRecord,
};
use crate::ranges;
use crate::storage::Engine;
use crate::types::{ShardId, META_SHARD};
use prost::Message;
use raft::eraftpb::{Entry, EntryType};

/// Purge expired dedup records every this many applied entries.
const DEDUP_PURGE_EVERY: u64 = 4096;

struct EngineReader<'a> {
    engine: &'a Engine,
    /// Anything, or memory only ([`try_apply_round`]).
    budget: ReadBudget,
}

impl EngineReader<'_> {
    fn get<M: Message + Default>(&self, cf: &str, key: &[u8]) -> Result<Option<M>> {
        let r = self
            .engine
            .db()
            .get_pinned_cf_opt(self.engine.cf(cf), key, &self.budget.opts());
        match self.budget.step(r)? {
            Some(v) => Ok(Some(M::decode(v.as_ref())?)),
            None => Ok(None),
        }
    }
}

impl StateReader for EngineReader<'_> {
    fn value(&self, dk: &[u8]) -> Result<Option<ValueRecord>> {
        self.get(keys::CF_DATA, dk)
    }

    fn dedup(&self, dk: &[u8]) -> Result<Option<DedupRecord>> {
        self.get(keys::CF_META, dk)
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, ValueRecord)>> {
        let mut opts = self.budget.opts();
        opts.set_iterate_upper_bound(end.to_vec());
        let iter = self.engine.db().iterator_cf_opt(
            self.engine.cf(keys::CF_DATA),
            opts,
            rocksdb::IteratorMode::From(start, rocksdb::Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            if out.len() >= limit {
                break;
            }
            let (k, v) = self.budget.step(item)?;
            out.push((k.to_vec(), ValueRecord::decode(v.as_ref())?));
        }
        Ok(out)
    }
}

/// The outcome of one applied round.
pub(crate) struct Applied {
    /// `(index, term, result)` of every command entry.
    pub(crate) results: Vec<(u64, u64, CommandResult)>,
    /// The descriptor after the round.
    pub(crate) desc: ShardDescriptor,
    /// The applied index and term after the round.
    pub(crate) applied_index: u64,
    /// Term of `applied_index`.
    pub(crate) applied_term: u64,
    /// The meta shard's state after the round (meta shard only).
    pub(crate) meta: Option<MetaState>,
    /// Every data change of the round, in order, for watches.
    pub(crate) changes: Vec<crate::fsm::watch::Change>,
    /// A split the round applied: the new shard's initial state (written in the
    /// round's batch; the replica is started by the caller).
    pub(crate) split: Option<ChildInit>,
}

/// Applies `entries` (already committed and persisted, in order). `desc` and
/// `conf_state` already reflect the conf changes among them (the replica applies those
/// to raft-rs itself); they are written with the applied index. A split entry may only
/// be the last of a round (the caller cuts rounds after them), so `conf_state` is the
/// membership at the split.
pub(crate) fn apply_round(
    engine: &Engine,
    shard: ShardId,
    entries: &[Entry],
    desc: ShardDescriptor,
    conf_state: Vec<u8>,
    watch_gc: &crate::fsm::watch::Gc,
) -> Result<Applied> {
    let reader = EngineReader {
        engine,
        budget: ReadBudget::unbounded(),
    };
    let (batch, applied) = prepare_round(&reader, shard, entries, desc, conf_state, watch_gc)?;
    engine.write(batch)?;
    Ok(applied)
}

/// [`apply_round`] on a thread that must not block: `None`, with nothing written,
/// when a read of the round needs the disk or more records than a memory read may
/// take ([`ReadBudget::in_memory`]), or when RocksDB would stall or slow down the
/// round's write ([`Engine::write_unless_stalled`]). The round can then run again
/// with `apply_round` on a blocking thread: it reads the same state and writes the
/// same batch.
pub(crate) fn try_apply_round(
    engine: &Engine,
    shard: ShardId,
    entries: &[Entry],
    desc: ShardDescriptor,
    conf_state: Vec<u8>,
    watch_gc: &crate::fsm::watch::Gc,
) -> Result<Option<Applied>> {
    let reader = EngineReader {
        engine,
        budget: ReadBudget::in_memory(),
    };
    let prepared = prepare_round(&reader, shard, entries, desc, conf_state, watch_gc);
    // A round that met a read memory could not answer is not used, even if it
    // swallowed the miss.
    if reader.budget.missed() {
        return Ok(None);
    }
    let (batch, applied) = prepared?;
    Ok(engine.write_unless_stalled(batch)?.then_some(applied))
}

/// The round's write batch, and what the round applied once it is written.
fn prepare_round(
    reader: &EngineReader<'_>,
    shard: ShardId,
    entries: &[Entry],
    mut desc: ShardDescriptor,
    conf_state: Vec<u8>,
    watch_gc: &crate::fsm::watch::Gc,
) -> Result<(rocksdb::WriteBatch, Applied)> {
    let engine = reader.engine;
    let mut applier = Applier::new(reader);
    if shard != META_SHARD {
        applier.set_owner(ranges::arcs_of(&desc), desc.ring_ver);
    }
    let mut split = None;
    let mut results = Vec::new();
    let mut last_now_ms = 0;
    let mut meta = if shard == META_SHARD {
        let mut state = reader
            .get::<MetaState>(keys::CF_META, &keys::meta_state_key())?
            .unwrap_or_default();
        crate::meta::state::upgrade(&mut state);
        Some(state)
    } else {
        None
    };
    let mut meta_changed = false;
    for e in entries {
        if e.get_entry_type() != EntryType::EntryNormal || e.data.is_empty() {
            continue;
        }
        let cmd = match RaftCommand::decode(e.data.as_ref()) {
            Ok(c) => c,
            Err(err) => {
                tracing::error!(%shard, index = e.index, %err, "skipping undecodable command");
                continue;
            }
        };
        last_now_ms = last_now_ms.max(cmd.now_ms);
        match (&cmd.cmd, &mut meta) {
            (Some(raft_command::Cmd::MetaHeartbeat(hb)), Some(state)) => {
                crate::meta::state::apply_heartbeat(state, hb);
                meta_changed = true;
                results.push((e.index, e.term, crate::fsm::command::ok(e.index, vec![])));
                continue;
            }
            (Some(raft_command::Cmd::AllocShard(req)), Some(state)) => {
                let r = match crate::meta::state::alloc_shard(state, req) {
                    Ok(child) => {
                        meta_changed = true;
                        command_result::Result::AllocatedShard(child)
                    }
                    Err(why) => command_result::Result::Refused(why),
                };
                results.push((e.index, e.term, CommandResult { result: Some(r) }));
                continue;
            }
            (Some(raft_command::Cmd::SetNodeAdmin(req)), Some(state)) => {
                let r = match crate::meta::state::set_node_admin(state, req) {
                    Ok(_) => {
                        meta_changed = true;
                        crate::fsm::command::ok(e.index, vec![])
                    }
                    Err(why) => CommandResult {
                        result: Some(command_result::Result::Refused(why)),
                    },
                };
                results.push((e.index, e.term, r));
                continue;
            }
            (Some(raft_command::Cmd::SetConfig(req)), Some(state)) => {
                let doc = state.cluster_config.get_or_insert_with(Default::default);
                crate::cluster_config::apply_changes(doc, &req.changes);
                meta_changed = true;
                results.push((e.index, e.term, crate::fsm::command::ok(e.index, vec![])));
                continue;
            }
            (Some(raft_command::Cmd::Auth(cmd)), Some(state)) => {
                let store = state.auth.get_or_insert_with(Default::default);
                let r = match crate::auth::apply(store, cmd) {
                    Ok(()) => {
                        meta_changed = true;
                        crate::fsm::command::ok(e.index, vec![])
                    }
                    Err(why) => CommandResult {
                        result: Some(command_result::Result::Refused(why)),
                    },
                };
                results.push((e.index, e.term, r));
                continue;
            }
            (Some(raft_command::Cmd::SetPdPaused(req)), Some(state)) => {
                if state.pd_paused != req.paused {
                    state.pd_paused = req.paused;
                    meta_changed = true;
                }
                results.push((e.index, e.term, crate::fsm::command::ok(e.index, vec![])));
                continue;
            }
            (Some(raft_command::Cmd::Split(sc)), _) => {
                let r = match apply_split(&mut desc, sc, e.index, e.term, &conf_state) {
                    Ok(child) => {
                        applier.set_owner(ranges::arcs_of(&desc), desc.ring_ver);
                        let done = SplitDone {
                            parent: Some(desc.clone()),
                            child: Some(child.desc.clone()),
                        };
                        split = Some(child);
                        command_result::Result::Split(done)
                    }
                    Err(why) => command_result::Result::Refused(why),
                };
                results.push((e.index, e.term, CommandResult { result: Some(r) }));
                continue;
            }
            _ => {}
        }
        let r = applier.apply(e.index, &cmd, |b, rid| keys::dedup_key(shard, b, rid))?;
        results.push((e.index, e.term, r));
    }
    for id in &applier.started {
        if let Some(r) = desc.replicas.iter_mut().find(|r| r.replica_id == *id) {
            r.started = true;
        }
    }
    let (applied_index, applied_term) = entries
        .last()
        .map(|e| (e.index, e.term))
        .unwrap_or_default();
    let mut batch = rocksdb::WriteBatch::default();
    let data = engine.cf(keys::CF_DATA);
    let meta_cf = engine.cf(keys::CF_META);
    let mut changes = Vec::new();
    if let Some(child) = &split {
        // The new shard's replica on this node: its state at the split, in the same
        // batch as the parent's new descriptor (a crash keeps both or neither).
        let id = ShardId(child.desc.shard_id);
        batch.put_cf(
            meta_cf,
            keys::apply_state_key(id),
            child.apply.encode_to_vec(),
        );
        batch.put_cf(meta_cf, keys::desc_key(id), child.desc.encode_to_vec());
        batch.put_cf(
            engine.cf(keys::CF_RAFT),
            keys::raft_state_key(id),
            child.raft.encode_to_vec(),
        );
    }
    for (version, change) in applier.changes.drain(..) {
        let watched = |k: &[u8], record| {
            let key = bytes::Bytes::copy_from_slice(keys::decode_data_key(k).unwrap_or_default());
            crate::fsm::watch::Change::key(version, key, record).at(last_now_ms)
        };
        match change {
            Change::PutValue(k, v, replaced) => {
                let replaced_expiry = replaced.unwrap_or(0);
                if replaced_expiry != 0 && replaced_expiry != v.expires_at_ms {
                    batch.delete_cf(meta_cf, keys::expiry_key(replaced_expiry, &k));
                }
                if v.expires_at_ms != 0 {
                    batch.put_cf(meta_cf, keys::expiry_key(v.expires_at_ms, &k), []);
                }
                if replaced.is_none() {
                    if let Some(entry) = keys::listing_entry(&k) {
                        batch.put_cf(meta_cf, keys::listing_by_key(&k), &entry);
                        batch.put_cf(meta_cf, entry, &k);
                    }
                }
                batch.put_cf(data, &k, v.encode_to_vec());
                changes.push(watched(&k, Some(v)));
            }
            Change::DeleteValue(k, expiry) => {
                if expiry != 0 {
                    batch.delete_cf(meta_cf, keys::expiry_key(expiry, &k));
                }
                if let Some(entry) = keys::listing_entry(&k) {
                    batch.delete_cf(meta_cf, keys::listing_by_key(&k));
                    batch.delete_cf(meta_cf, entry);
                }
                batch.delete_cf(data, &k);
                changes.push(watched(&k, None));
            }
            Change::PutDedup(k, v) => batch.put_cf(meta_cf, k, v.encode_to_vec()),
        }
    }
    let first_index = entries.first().map_or(applied_index, |e| e.index);
    let crossed =
        first_index.saturating_sub(1) / DEDUP_PURGE_EVERY != applied_index / DEDUP_PURGE_EVERY;
    if last_now_ms > 0 && crossed {
        purge_dedup(shard, last_now_ms, &mut batch, engine);
    }
    let state = ApplyState {
        applied_index,
        applied_term,
        conf_state: conf_state.into(),
    };
    batch.put_cf(meta_cf, keys::apply_state_key(shard), state.encode_to_vec());
    batch.put_cf(meta_cf, keys::desc_key(shard), desc.encode_to_vec());
    if let (true, Some(state)) = (meta_changed, &meta) {
        batch.put_cf(meta_cf, keys::meta_state_key(), state.encode_to_vec());
    }
    if let Some(child) = &split {
        // Watchers of the moved keys learn at the split's version where they went.
        changes.push(
            crate::fsm::watch::Change::moved(
                child.apply.applied_index,
                ShardId(child.desc.shard_id),
                ranges::arcs_of(&child.desc),
            )
            .at(last_now_ms),
        );
        // In version order: entries after the split's may have changed keys.
        changes.sort_by_key(|c| c.version);
    }
    crate::fsm::watch::persist(&mut batch, engine, shard, &changes, watch_gc);
    let applied = Applied {
        results,
        desc,
        applied_index,
        applied_term,
        meta,
        changes,
        split,
    };
    Ok((batch, applied))
}

/// Deletes every dedup bucket before the one before `now_ms`'s: a record written at t
/// expires at t + window, so all of those have expired (one range delete, no scan).
fn purge_dedup(shard: ShardId, now_ms: u64, batch: &mut rocksdb::WriteBatch, engine: &Engine) {
    let keep_from = crate::fsm::command::dedup_bucket(now_ms).saturating_sub(1);
    batch.delete_range_cf(
        engine.cf(keys::CF_META),
        keys::dedup_prefix(shard),
        keys::dedup_bucket_prefix(shard, keep_from),
    );
}

/// A committed entry carrying one command that puts `key = value` (benches and tests).
pub(crate) fn single_put_entry(
    index: u64,
    term: u64,
    now_ms: u64,
    request_id: &[u8],
    key: Vec<u8>,
    value: Vec<u8>,
) -> Entry {
    use crate::proto::{write_op, WriteBatch, WriteOp, WritePut};
    let cmd = RaftCommand {
        request_id: request_id.to_vec().into(),
        now_ms,
        cmd: Some(raft_command::Cmd::Write(WriteBatch {
            ops: vec![WriteOp {
                op: Some(write_op::Op::Put(WritePut {
                    key: key.into(),
                    value: value.into(),
                    expires_at_ms: 0,
                    lease_id: 0,
                })),
            }],
        })),
    };
    Entry {
        index,
        term,
        data: cmd.encode_to_vec().into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::command::DEDUP_WINDOW_MS;

    fn entry(index: u64, now_ms: u64, rid: &str) -> Entry {
        single_put_entry(
            index,
            1,
            now_ms,
            rid.as_bytes(),
            b"k".to_vec(),
            b"v".to_vec(),
        )
    }

    /// A descriptor owning the whole hash space (with no arcs every put is refused).
    fn owning_all() -> ShardDescriptor {
        crate::meta::state::whole_ring_descriptor(ShardId(7))
    }

    #[test]
    fn a_round_whose_write_would_stall_writes_nothing_until_a_waiting_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::open(dir.path()).expect("open");
        let shard = ShardId(7);
        let gc = Default::default();
        let applied_index = || {
            engine
                .get_decoded::<ApplyState>(keys::CF_META, &keys::apply_state_key(shard))
                .expect("read")
                .map(|s| s.applied_index)
        };
        let first = try_apply_round(
            &engine,
            shard,
            &[entry(1, 5, "r1")],
            owning_all(),
            vec![],
            &gc,
        )
        .expect("apply");
        let first = first.expect("a write that need not wait applies");
        assert!(
            matches!(
                first.results.first(),
                Some((1, 1, r)) if matches!(r.result, Some(command_result::Result::Ok(_)))
            ),
            "the put applied: {:?}",
            first.results
        );
        assert_eq!(applied_index(), Some(1));
        // Writes stop at one level-0 file, and one file is too few to compact (four
        // are needed): flushing the first round's key makes that file.
        engine
            .set_cf_options(
                keys::CF_DATA,
                &[
                    ("level0_slowdown_writes_trigger", "1"),
                    ("level0_stop_writes_trigger", "1"),
                ],
            )
            .expect("options");
        let files = engine.flush_cf(keys::CF_DATA).expect("flush");
        assert_eq!(files, 1, "one level-0 file of data");
        let second = [entry(2, 6, "r2")];
        // On a thread of its own: a write that waited for the stop would never return.
        let (tx, rx) = std::sync::mpsc::channel();
        let (e2, s2) = (engine.clone(), second.clone());
        std::thread::spawn(move || {
            let r = try_apply_round(&e2, shard, &s2, owning_all(), vec![], &Default::default());
            let _ = tx.send(r.map(|a| a.is_none()));
        });
        let gave_up = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the round answers at once, without waiting for the stop to end")
            .expect("no error: a stall is not a failure");
        assert!(gave_up, "the round gave up");
        assert_eq!(applied_index(), Some(1), "and wrote nothing");
        // The stop ends (as a compaction would end it), and on a thread that may wait
        // the round applies.
        engine
            .set_cf_options(
                keys::CF_DATA,
                &[
                    ("level0_slowdown_writes_trigger", "20"),
                    ("level0_stop_writes_trigger", "36"),
                ],
            )
            .expect("options");
        let applied =
            apply_round(&engine, shard, &second, owning_all(), vec![], &gc).expect("apply");
        assert_eq!(applied.applied_index, 2);
        assert_eq!(applied_index(), Some(2));
    }

    #[test]
    fn a_round_whose_read_needs_the_disk_writes_nothing_until_a_waiting_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shard = ShardId(7);
        let gc = Default::default();
        {
            let engine = Engine::open(dir.path()).expect("open");
            apply_round(
                &engine,
                shard,
                &[entry(1, 5, "r1")],
                owning_all(),
                vec![],
                &gc,
            )
            .expect("apply");
            engine.flush_cf(keys::CF_DATA).expect("flush");
            engine.flush_cf(keys::CF_META).expect("flush");
        }
        // Reopened: key `k`'s record is only in an SST file, none of it cached, and
        // a put of `k` reads it first (for its create version).
        let engine = Engine::open(dir.path()).expect("open");
        let applied_index = || {
            engine
                .get_decoded::<ApplyState>(keys::CF_META, &keys::apply_state_key(shard))
                .expect("read")
                .map(|s| s.applied_index)
        };
        let second = [entry(2, 6, "r2")];
        let tried = try_apply_round(&engine, shard, &second, owning_all(), vec![], &gc)
            .expect("no error: a miss is not a failure");
        assert!(tried.is_none(), "the round gave up on the disk read");
        assert_eq!(applied_index(), Some(1), "and wrote nothing");
        let applied =
            apply_round(&engine, shard, &second, owning_all(), vec![], &gc).expect("apply");
        assert_eq!(applied.applied_index, 2);
        let rec = engine
            .get_decoded::<ValueRecord>(keys::CF_DATA, &keys::data_key(b"k"))
            .expect("read")
            .expect("k exists");
        assert_eq!(
            (rec.version, rec.create_version),
            (2, 1),
            "the put kept the create version it read from the disk"
        );
    }

    #[test]
    fn dedup_purge_drops_only_expired_buckets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::open(dir.path()).expect("open");
        let shard = ShardId(7);
        let w = DEDUP_WINDOW_MS;
        let round = |entries: &[Entry]| {
            apply_round(
                &engine,
                shard,
                entries,
                ShardDescriptor::default(),
                vec![],
                &Default::default(),
            )
            .expect("apply")
        };
        // Buckets 0, 1 and 2; then a round crossing a purge point at time 3w + 1.
        round(&[
            entry(1, 5, "b0"),
            entry(2, w + 5, "b1"),
            entry(3, 2 * w + 5, "b2"),
        ]);
        round(&[entry(DEDUP_PURGE_EVERY, 3 * w + 1, "b3")]);
        let has = |b: u64, rid: &str| {
            engine
                .get(keys::CF_META, &keys::dedup_key(shard, b, rid.as_bytes()))
                .expect("get")
                .is_some()
        };
        // Everything in buckets 0 and 1 has expired by 3w + 1 (written before 2w).
        assert!(!has(0, "b0") && !has(1, "b1"), "expired buckets are purged");
        assert!(has(2, "b2") && has(3, "b3"), "live buckets are kept");
    }
}
