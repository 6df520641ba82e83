//! Pure command logic: checks, puts, deletes and request dedup.

use crate::error::Result;
use crate::keys;
use crate::proto::{
    command_result, lease_command, raft_command, write_op, CheckFailed, CommandResult, DedupRecord,
    LeaseCommand, LeaseRecord, RaftCommand, ValueRecord, WriteOutcome,
};
use prost::Message as _;
use std::collections::{BTreeMap, HashMap};

/// The most keys one lease holds (its record lists them, and is rewritten by each
/// attachment).
pub(crate) const MAX_LEASE_KEYS: usize = 1_000;

/// How long a request id is remembered for deduplicating retries.
pub(crate) const DEDUP_WINDOW_MS: u64 = 10 * 60 * 1000;

/// Read access to the state a command applies to.
pub(crate) trait StateReader {
    /// The record stored under a `data` CF key.
    fn value(&self, data_key: &[u8]) -> Result<Option<ValueRecord>>;
    /// The dedup record under a `meta` CF key.
    fn dedup(&self, dedup_key: &[u8]) -> Result<Option<DedupRecord>>;
    /// Up to `limit` records of `data` CF keys in `[start, end)`, in key order
    /// (expired ones included).
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, ValueRecord)>>;
}

/// A change the applier wants written.
#[derive(Debug, PartialEq)]
pub(crate) enum Change {
    /// Store a value record; the last field is the replaced record's expiry (None: no
    /// record; 0: none), whose expiry index entry goes.
    PutValue(Vec<u8>, ValueRecord, Option<u64>),
    /// Remove a data key, whose record had this expiry (0: none).
    DeleteValue(Vec<u8>, u64),
    /// Remember a request's result.
    PutDedup(Vec<u8>, DedupRecord),
}

/// Applies commands of one round on top of a reader, seeing its own earlier writes.
pub(crate) struct Applier<'r, R: StateReader> {
    /// The committed state before this round.
    reader: &'r R,
    /// Data keys written earlier in this round (None = deleted).
    values: BTreeMap<Vec<u8>, Option<ValueRecord>>,
    /// Dedup records written earlier in this round.
    dedups: HashMap<Vec<u8>, DedupRecord>,
    /// Everything to write, in order, each with the index of the command that wrote it.
    pub(crate) changes: Vec<(u64, Change)>,
    /// Replicas the round marked as started.
    pub(crate) started: Vec<u64>,
    /// Index of the command being applied.
    index: u64,
    /// The shard's arcs and `ring_ver` (None: no ownership check, e.g. the meta
    /// shard): a command touching a key outside them writes nothing.
    owner: Option<(Vec<crate::ranges::Arc>, u64)>,
}

impl<'r, R: StateReader> Applier<'r, R> {
    /// An applier with nothing applied yet.
    pub(crate) fn new(reader: &'r R) -> Self {
        Self {
            reader,
            values: BTreeMap::new(),
            dedups: HashMap::new(),
            changes: Vec::new(),
            started: Vec::new(),
            index: 0,
            owner: None,
        }
    }

    /// From now on, commands must stay inside `arcs` (the shard's, at `ring_ver`).
    pub(crate) fn set_owner(&mut self, arcs: Vec<crate::ranges::Arc>, ring_ver: u64) {
        self.owner = Some((arcs, ring_ver));
    }

    /// `not_owned` if any of `hashes` lies outside the shard's arcs: the key moved to
    /// another shard by a split, and a command racing the split must not land here.
    /// Judged in log order, so every replica decides the same.
    pub(crate) fn check_owned(
        &self,
        hashes: impl IntoIterator<Item = u64>,
    ) -> Option<CommandResult> {
        let (arcs, ring_ver) = self.owner.as_ref()?;
        hashes
            .into_iter()
            .any(|h| !crate::ranges::contains(arcs, h))
            .then(|| CommandResult {
                result: Some(command_result::Result::NotOwned(*ring_ver)),
            })
    }

    /// The record of a `data` CF key as of the commands applied so far.
    pub(crate) fn value(&self, dk: &[u8]) -> Result<Option<ValueRecord>> {
        match self.values.get(dk) {
            Some(v) => Ok(v.clone()),
            None => self.reader.value(dk),
        }
    }

    /// [`Applier::value`] if it has not expired at `now_ms`.
    pub(crate) fn live_value(&self, dk: &[u8], now_ms: u64) -> Result<Option<ValueRecord>> {
        Ok(self.value(dk)?.filter(|r| is_live(r, now_ms)))
    }

    /// Writes `value` under a user key at `index`, keeping the create version of a
    /// live record, attached to lease `lease` of its partition (`Some(0)`: none;
    /// None: the lease the record had; the caller checked that the lease exists).
    pub(crate) fn put_user(
        &mut self,
        index: u64,
        now_ms: u64,
        user_key: &[u8],
        value: bytes::Bytes,
        expires_at_ms: u64,
        lease: Option<u64>,
    ) -> Result<u64> {
        let dk = keys::data_key(user_key);
        let old = self.value(&dk)?;
        let replaced = old.as_ref().map(|r| r.expires_at_ms);
        let old_lease = old.as_ref().map_or(0, |r| r.lease_id);
        let lease_id = lease.unwrap_or(old_lease);
        let create_version = old
            .filter(|r| is_live(r, now_ms))
            .map_or(index, |r| r.create_version);
        let rec = ValueRecord {
            version: index,
            create_version,
            expires_at_ms,
            value,
            lease_id,
        };
        self.values.insert(dk.clone(), Some(rec.clone()));
        self.changes
            .push((index, Change::PutValue(dk, rec, replaced)));
        if old_lease != lease_id {
            self.lease_keys(old_lease, user_key, false)?;
            self.lease_keys(lease_id, user_key, true)?;
        }
        Ok(create_version)
    }

    /// Removes a `data` CF key (a no-op when absent), and the key from its lease.
    pub(crate) fn delete_data(&mut self, dk: Vec<u8>) -> Result<()> {
        if let Some(old) = self.delete_record(&dk)? {
            if let Some(user_key) = keys::decode_data_key(&dk) {
                self.lease_keys(old.lease_id, user_key, false)?;
            }
        }
        Ok(())
    }

    /// Removes a `data` CF key, leaving its lease's list alone; the record it had.
    fn delete_record(&mut self, dk: &[u8]) -> Result<Option<ValueRecord>> {
        let old = self.value(dk)?;
        if let Some(old) = &old {
            self.drop_record(dk, old);
        }
        Ok(old)
    }

    /// Removes `data` CF key `dk`, whose record (just read) is `old`.
    fn drop_record(&mut self, dk: &[u8], old: &ValueRecord) {
        self.values.insert(dk.to_vec(), None);
        self.changes.push((
            self.index,
            Change::DeleteValue(dk.to_vec(), old.expires_at_ms),
        ));
    }

    /// The record of lease `id` of `user_key`'s partition, if it exists (and `id` is
    /// not 0): its `data` CF key, record and decoded lease.
    pub(crate) fn lease(
        &self,
        user_key: &[u8],
        id: u64,
    ) -> Result<Option<(Vec<u8>, ValueRecord, LeaseRecord)>> {
        if id == 0 {
            return Ok(None);
        }
        let Ok(lk) = crate::context::lease_key("key", user_key, id) else {
            return Ok(None);
        };
        let dk = keys::data_key(&lk);
        match self.value(&dk)? {
            Some(rec) => {
                let lease = LeaseRecord::decode(rec.value.as_ref())?;
                Ok(Some((dk, rec, lease)))
            }
            None => Ok(None),
        }
    }

    /// Adds `user_key` to (or removes it from) the keys of lease `id` of its
    /// partition; nothing when there is no such lease.
    fn lease_keys(&mut self, id: u64, user_key: &[u8], attach: bool) -> Result<()> {
        let Some((dk, rec, mut lease)) = self.lease(user_key, id)? else {
            return Ok(());
        };
        let at = lease.keys.iter().position(|k| k.as_ref() == user_key);
        match (attach, at) {
            (true, None) => lease.keys.push(bytes::Bytes::copy_from_slice(user_key)),
            (false, Some(i)) => drop(lease.keys.remove(i)),
            _ => return Ok(()),
        }
        let new = ValueRecord {
            version: self.index,
            value: lease.encode_to_vec().into(),
            ..rec
        };
        self.values.insert(dk.clone(), Some(new.clone()));
        let replaced = Some(new.expires_at_ms);
        self.changes
            .push((self.index, Change::PutValue(dk, new, replaced)));
        Ok(())
    }

    /// Grants or revokes a lease (`cmd`) at `index`, at the proposer's time `now_ms`.
    fn apply_lease(
        &mut self,
        index: u64,
        now_ms: u64,
        cmd: &LeaseCommand,
    ) -> Result<CommandResult> {
        let key = match &cmd.op {
            Some(lease_command::Op::Grant(g)) => &g.key,
            Some(lease_command::Op::Revoke(k)) => k,
            None => return Ok(ok(index, vec![])),
        };
        if let Some(r) = self.check_owned([keys::key_hash(key)]) {
            return Ok(r);
        }
        let dk = keys::data_key(key);
        let existing = self.value(&dk)?;
        match &cmd.op {
            Some(lease_command::Op::Grant(g)) => {
                if existing.is_some() {
                    return Ok(CommandResult {
                        result: Some(command_result::Result::Refused(
                            "a lease with this id exists".into(),
                        )),
                    });
                }
                let lease = LeaseRecord {
                    ttl_ms: g.ttl_ms,
                    keys: Vec::new(),
                };
                self.put_user(index, 0, key, lease.encode_to_vec().into(), 0, Some(0))?;
                Ok(ok(index, vec![]))
            }
            _ => {
                let Some(rec) = existing else {
                    return Ok(ok(index, vec![0, 0]));
                };
                let lease = LeaseRecord::decode(rec.value.as_ref())?;
                let id = key.last_chunk::<8>().map_or(0, |b| u64::from_be_bytes(*b));
                // The record goes too: its list is not updated key by key.
                let mut deleted = 0;
                for k in &lease.keys {
                    let kdk = keys::data_key(k);
                    if let Some(r) = self.value(&kdk)?.filter(|r| r.lease_id == id) {
                        self.drop_record(&kdk, &r);
                        // A conversation or thread takes its data with it.
                        self.clear_owned(index, now_ms, k)?;
                        deleted += 1;
                    }
                }
                self.delete_record(&dk)?;
                Ok(ok(index, vec![1, deleted]))
            }
        }
    }

    /// Up to `limit` records (expired included) of `data` CF keys in `[start, end)` as
    /// of the commands applied so far, in key order.
    pub(crate) fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, ValueRecord)>> {
        let overlay: Vec<_> = self
            .values
            .range::<[u8], _>((
                std::ops::Bound::Included(start),
                std::ops::Bound::Excluded(end),
            ))
            .collect();
        // Keys deleted in this round may hide committed ones: read that many more.
        let hidden = overlay.iter().filter(|(_, v)| v.is_none()).count();
        let mut merged: BTreeMap<Vec<u8>, ValueRecord> = self
            .reader
            .scan(start, end, limit.saturating_add(hidden))?
            .into_iter()
            .collect();
        let last_committed = merged.keys().next_back().cloned();
        let complete = merged.len() < limit.saturating_add(hidden);
        for (k, v) in overlay {
            // Past the committed page, an overlay key may shadow unread keys: keep
            // only what is inside the range actually read.
            if !complete && last_committed.as_ref().is_some_and(|l| k > l) {
                continue;
            }
            match v {
                Some(r) => merged.insert(k.clone(), r.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().take(limit).collect())
    }

    /// Every record (expired included) of user keys starting with `prefix`, all in one
    /// partition.
    pub(crate) fn scan_user_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, ValueRecord)>> {
        let start = keys::data_key(prefix);
        let end = keys::prefix_end(&start).unwrap_or_else(|| vec![0xff; start.len() + 1]);
        self.scan(&start, &end, usize::MAX)
    }

    /// Applies the command committed at `index`; `dedup_key(bucket, request_id)` builds
    /// the dedup key of a request id in a dedup time bucket (see [`dedup_bucket`]).
    pub(crate) fn apply(
        &mut self,
        index: u64,
        cmd: &RaftCommand,
        dedup_key: impl Fn(u64, &[u8]) -> Vec<u8>,
    ) -> Result<CommandResult> {
        self.index = index;
        let bucket = dedup_bucket(cmd.now_ms);
        // The key this command's own record goes under, when it has a request id.
        let own_key = (!cmd.request_id.is_empty()).then(|| dedup_key(bucket, &cmd.request_id));
        if let Some(own) = &own_key {
            // A record written at time t sits in bucket(t) and matters while
            // t + window > now, so it is in this bucket or the one before; the one
            // after covers a leader whose clock ran ahead of this command's.
            let others = [bucket.wrapping_sub(1), bucket.wrapping_add(1)]
                .map(|b| dedup_key(b, &cmd.request_id));
            for dk in std::iter::once(own).chain(&others) {
                let prior = match self.dedups.get(dk) {
                    Some(r) => Some(r.clone()),
                    None => self.reader.dedup(dk)?,
                };
                // Expiry is judged by the command's own time, so every replica agrees
                // whether or not it has purged the record yet.
                if let Some(rec) = prior
                    .filter(|r| r.expires_at_ms > cmd.now_ms)
                    .and_then(|r| r.result)
                {
                    return Ok(rec);
                }
            }
        }
        let result = match &cmd.cmd {
            Some(raft_command::Cmd::Write(batch)) => self.apply_write(index, cmd.now_ms, batch)?,
            Some(raft_command::Cmd::MarkStarted(replica)) => {
                self.started.push(*replica);
                ok(index, vec![])
            }
            Some(raft_command::Cmd::Context(c)) => self.apply_context(index, cmd.now_ms, c)?,
            Some(raft_command::Cmd::Lease(l)) => self.apply_lease(index, cmd.now_ms, l)?,
            Some(raft_command::Cmd::Queue(q)) => self.apply_queue(index, cmd.now_ms, q)?,
            // Meta commands and splits are applied by `apply_round`.
            Some(
                raft_command::Cmd::MetaHeartbeat(_)
                | raft_command::Cmd::AllocShard(_)
                | raft_command::Cmd::SetNodeAdmin(_)
                | raft_command::Cmd::SetPdPaused(_)
                | raft_command::Cmd::SetConfig(_)
                | raft_command::Cmd::Auth(_)
                | raft_command::Cmd::Split(_),
            )
            | None => ok(index, vec![]),
        };
        if let Some(dk) = own_key {
            let rec = DedupRecord {
                expires_at_ms: cmd.now_ms.saturating_add(DEDUP_WINDOW_MS),
                result: Some(result.clone()),
            };
            self.dedups.insert(dk.clone(), rec.clone());
            self.changes.push((index, Change::PutDedup(dk, rec)));
        }
        Ok(result)
    }

    fn apply_write(
        &mut self,
        index: u64,
        now_ms: u64,
        batch: &crate::proto::WriteBatch,
    ) -> Result<CommandResult> {
        let keys = batch.ops.iter().filter_map(|op| match &op.op {
            Some(write_op::Op::Put(p)) => Some(keys::key_hash(&p.key)),
            Some(write_op::Op::Delete(d)) => Some(keys::key_hash(&d.key)),
            Some(write_op::Op::Check(c)) => Some(keys::key_hash(&c.key)),
            None => None,
        });
        if let Some(r) = self.check_owned(keys) {
            return Ok(r);
        }
        // Keys each lease of the batch gains, so the batch as a whole keeps the bound.
        let mut adding: HashMap<Vec<u8>, usize> = HashMap::new();
        for op in &batch.ops {
            if let Some(write_op::Op::Put(p)) = &op.op {
                if p.lease_id != 0 {
                    let Some((ldk, _, lease)) = self.lease(&p.key, p.lease_id)? else {
                        let lk = crate::context::lease_key("key", &p.key, p.lease_id)
                            .unwrap_or_default();
                        return Ok(CommandResult {
                            result: Some(command_result::Result::LeaseNotFound(lk.into())),
                        });
                    };
                    let attached = lease.keys.iter().any(|k| k.as_ref() == p.key.as_ref());
                    let added = adding.entry(ldk).or_insert(0);
                    *added += usize::from(!attached);
                    if lease.keys.len() + *added > MAX_LEASE_KEYS {
                        return Ok(CommandResult {
                            result: Some(command_result::Result::Refused(format!(
                                "a lease holds at most {MAX_LEASE_KEYS} keys"
                            ))),
                        });
                    }
                }
            }
            if let Some(write_op::Op::Check(c)) = &op.op {
                let actual = self
                    .live_value(&keys::data_key(&c.key), now_ms)?
                    .map_or(0, |r| r.version);
                if actual != c.expected_version {
                    return Ok(CommandResult {
                        result: Some(command_result::Result::CheckFailed(CheckFailed {
                            key: c.key.clone(),
                            expected_version: c.expected_version,
                            actual_version: actual,
                        })),
                    });
                }
            }
        }
        let mut per_op = Vec::with_capacity(batch.ops.len());
        for op in &batch.ops {
            match &op.op {
                Some(write_op::Op::Put(p)) => {
                    let cv = self.put_user(
                        index,
                        now_ms,
                        &p.key,
                        p.value.clone(),
                        p.expires_at_ms,
                        Some(p.lease_id),
                    )?;
                    per_op.push(cv);
                }
                Some(write_op::Op::Delete(d)) => {
                    let dk = keys::data_key(&d.key);
                    let existed = self.live_value(&dk, now_ms)?.is_some();
                    self.delete_data(dk)?;
                    per_op.push(u64::from(existed));
                }
                Some(write_op::Op::Check(_)) | None => per_op.push(0),
            }
        }
        Ok(ok(index, per_op))
    }
}

/// The dedup time bucket of `now_ms`: records are grouped by the window they were
/// written in, so expired ones are dropped a whole bucket at a time.
pub(crate) fn dedup_bucket(now_ms: u64) -> u64 {
    now_ms / DEDUP_WINDOW_MS
}

pub(crate) fn ok(version: u64, per_op: Vec<u64>) -> CommandResult {
    CommandResult {
        result: Some(command_result::Result::Ok(WriteOutcome { version, per_op })),
    }
}

/// Whether a record is visible at `now_ms`.
pub(crate) fn is_live(r: &ValueRecord, now_ms: u64) -> bool {
    r.expires_at_ms == 0 || r.expires_at_ms > now_ms
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proto::{WriteBatch, WriteCheck, WriteDelete, WriteOp, WritePut};

    /// An in-memory committed state.
    #[derive(Default)]
    pub(crate) struct MapReader {
        pub(crate) values: HashMap<Vec<u8>, ValueRecord>,
        pub(crate) dedups: HashMap<Vec<u8>, DedupRecord>,
    }

    impl StateReader for MapReader {
        fn value(&self, k: &[u8]) -> Result<Option<ValueRecord>> {
            Ok(self.values.get(k).cloned())
        }
        fn dedup(&self, k: &[u8]) -> Result<Option<DedupRecord>> {
            Ok(self.dedups.get(k).cloned())
        }
        fn scan(
            &self,
            start: &[u8],
            end: &[u8],
            limit: usize,
        ) -> Result<Vec<(Vec<u8>, ValueRecord)>> {
            let mut out: Vec<_> = self
                .values
                .iter()
                .filter(|(k, _)| k.as_slice() >= start && k.as_slice() < end)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out.truncate(limit);
            Ok(out)
        }
    }

    fn put(key: &str, value: &str) -> WriteOp {
        WriteOp {
            op: Some(write_op::Op::Put(WritePut {
                key: key.as_bytes().to_vec().into(),
                value: value.as_bytes().to_vec().into(),
                expires_at_ms: 0,
                lease_id: 0,
            })),
        }
    }

    fn check(key: &str, v: u64) -> WriteOp {
        WriteOp {
            op: Some(write_op::Op::Check(WriteCheck {
                key: key.as_bytes().to_vec().into(),
                expected_version: v,
            })),
        }
    }

    fn del(key: &str) -> WriteOp {
        WriteOp {
            op: Some(write_op::Op::Delete(WriteDelete {
                key: key.as_bytes().to_vec().into(),
            })),
        }
    }

    fn cmd(ops: Vec<WriteOp>, rid: &str) -> RaftCommand {
        RaftCommand {
            request_id: rid.as_bytes().to_vec().into(),
            now_ms: 1000,
            cmd: Some(raft_command::Cmd::Write(WriteBatch { ops })),
        }
    }

    fn version_of(r: &CommandResult) -> u64 {
        match &r.result {
            Some(command_result::Result::Ok(o)) => o.version,
            other => panic!("expected ok, got {other:?}"),
        }
    }

    #[test]
    fn versions_and_create_versions() {
        let reader = MapReader::default();
        let mut a = Applier::new(&reader);
        let dk = |_: u64, id: &[u8]| id.to_vec();
        assert_eq!(
            version_of(&a.apply(10, &cmd(vec![put("k", "1")], ""), dk).unwrap()),
            10
        );
        a.apply(11, &cmd(vec![put("k", "2")], ""), dk).unwrap();
        let rec = a.value(&keys::data_key(b"k")).unwrap().unwrap();
        assert_eq!((rec.version, rec.create_version), (11, 10));
        a.apply(12, &cmd(vec![del("k")], ""), dk).unwrap();
        a.apply(13, &cmd(vec![put("k", "3")], ""), dk).unwrap();
        let rec = a.value(&keys::data_key(b"k")).unwrap().unwrap();
        assert_eq!((rec.version, rec.create_version), (13, 13));
    }

    #[test]
    fn failed_check_writes_nothing() {
        let reader = MapReader::default();
        let mut a = Applier::new(&reader);
        let dk = |_: u64, id: &[u8]| id.to_vec();
        let r = a
            .apply(10, &cmd(vec![put("a", "x"), check("b", 7)], ""), dk)
            .unwrap();
        assert!(
            matches!(r.result, Some(command_result::Result::CheckFailed(ref c)) if c.actual_version == 0)
        );
        assert!(a.changes.is_empty());
        // Create-only (expected 0) succeeds once, then fails.
        a.apply(11, &cmd(vec![check("b", 0), put("b", "1")], ""), dk)
            .unwrap();
        let r = a
            .apply(12, &cmd(vec![check("b", 0), put("b", "2")], ""), dk)
            .unwrap();
        assert!(
            matches!(r.result, Some(command_result::Result::CheckFailed(ref c)) if c.actual_version == 11)
        );
    }

    #[test]
    fn duplicate_request_id_applies_once() {
        let reader = MapReader::default();
        let mut a = Applier::new(&reader);
        let dk = |_: u64, id: &[u8]| id.to_vec();
        let first = a.apply(10, &cmd(vec![put("k", "1")], "req-1"), dk).unwrap();
        let n = a.changes.len();
        let again = a.apply(11, &cmd(vec![put("k", "1")], "req-1"), dk).unwrap();
        assert_eq!(first, again);
        assert_eq!(a.changes.len(), n, "the retry wrote nothing");
    }

    #[test]
    fn dedup_spans_bucket_boundaries_and_clock_skew() {
        let reader = MapReader::default();
        let mut a = Applier::new(&reader);
        let dk = |b: u64, id: &[u8]| [b.to_be_bytes().as_slice(), id].concat();
        let at = |rid: &str, now_ms: u64| RaftCommand {
            now_ms,
            ..cmd(vec![put("k", rid)], rid)
        };
        let w = DEDUP_WINDOW_MS;
        // Written just before a bucket boundary, retried just after it.
        let first = a.apply(10, &at("late", w - 1), dk).unwrap();
        let n = a.changes.len();
        assert_eq!(a.apply(11, &at("late", w + 5), dk).unwrap(), first);
        // Written by a leader whose clock ran ahead, retried under one that is behind.
        let ahead = a.apply(12, &at("skew", 2 * w + 1), dk).unwrap();
        assert_eq!(a.apply(13, &at("skew", 2 * w - 1), dk).unwrap(), ahead);
        assert_eq!(a.changes.len(), n + 2, "only the two first attempts wrote");
        // Past the window the record is ignored: the command applies again.
        let again = a.apply(14, &at("late", 2 * w), dk).unwrap();
        assert_ne!(version_of(&again), version_of(&first));
        assert_eq!(dedup_bucket(w - 1), 0);
        assert_eq!(dedup_bucket(w), 1);
    }

    #[test]
    fn expired_values_are_absent() {
        let mut reader = MapReader::default();
        reader.values.insert(
            keys::data_key(b"t"),
            ValueRecord {
                version: 3,
                create_version: 3,
                expires_at_ms: 500,
                value: "old".into(),
                lease_id: 0,
            },
        );
        let mut a = Applier::new(&reader);
        let dk = |_: u64, id: &[u8]| id.to_vec();
        // now_ms = 1000 > 500: the key counts as absent for checks and create_version.
        a.apply(10, &cmd(vec![check("t", 0), put("t", "new")], ""), dk)
            .unwrap();
        let rec = a.value(&keys::data_key(b"t")).unwrap().unwrap();
        assert_eq!(rec.create_version, 10);
    }

    proptest::proptest! {
        /// Any bytes that decode as a command apply without panicking, and a replay of
        /// the same commands on the same state gives the same results (determinism).
        #[test]
        fn arbitrary_commands_apply_deterministically(
            cmds in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96), 1..12)
        ) {
            use prost::Message as _;
            let reader = MapReader::default();
            let run = || {
                let mut a = Applier::new(&reader);
                let mut out = Vec::new();
                for (i, bytes) in cmds.iter().enumerate() {
                    if let Ok(cmd) = RaftCommand::decode(bytes.as_slice()) {
                        out.push(a.apply(10 + i as u64, &cmd, |_, r| r.to_vec()).map_err(|e| e.to_string()));
                    }
                }
                (out, a.changes.len())
            };
            proptest::prop_assert_eq!(run(), run());
        }
    }
}
