//! Reads of context records from the local replica, each from one RocksDB snapshot
//! (a round applied mid-read is seen whole or not at all). Run on a blocking thread,
//! or, as a [`View::in_memory`] read that gives up at the first read memory cannot
//! answer, on the calling task.

use super::budget::{self, Candidate};
use crate::context::{
    blob_key, ckpt_key, ckpt_prefix, conv_key, model_prefix, msg_key, writes_prefix,
};
use crate::error::{ErrInto, Result};
use crate::fsm::command::is_live;
use crate::keys;
use crate::proto::read_request::Select;
use crate::proto::{
    ChannelBlob, ChatMessage, Checkpoint, CheckpointTuple, CommandResult, ConversationInfo,
    ConversationRecord, ConversationRef, DedupRecord, Model, PendingWrite, PurgeKey, ReadResponse,
    ThreadRef, ValueRecord,
};
use crate::storage::Engine;
use prost::Message;
use std::cell::Cell;
use std::collections::{HashMap, HashSet};

/// Messages a budget read looks through past its budget for the older partners of
/// linked messages it holds.
const LINK_SEARCH: usize = 1_000;

/// Records (point reads and iterator steps) an [`View::in_memory`] read may take
/// before it gives up and leaves the read to a blocking thread: small reads (a get,
/// a token-budget window) stay on the calling task, long scans do not hold it.
const MEMORY_READ_STEPS: usize = 512;

/// A consistent view of the local replica at one point in time.
pub(crate) struct View<'a> {
    engine: &'a Engine,
    snap: rocksdb::Snapshot<'a>,
    now: u64,
    /// What it may read: anything, or memory only ([`View::in_memory`]).
    budget: ReadBudget,
}

/// What a read may take: anything, or only what memory holds (the memtables and the
/// block cache) and at most [`MEMORY_READ_STEPS`] records. A memory-only read that
/// meets more is marked as missed, and its result, whatever it is, is not used: it
/// runs again, unbounded, on a blocking thread ([`View::in_memory`], and the apply
/// path's small rounds).
pub(crate) struct ReadBudget {
    /// Memory only: the records it may still read.
    memory: Option<Cell<usize>>,
    /// A memory-only read found something it may not read (on disk, or past its
    /// steps).
    missed: Cell<bool>,
}

impl ReadBudget {
    /// Reads anything.
    pub(crate) fn unbounded() -> Self {
        Self {
            memory: None,
            missed: Cell::new(false),
        }
    }

    /// Reads only what memory holds, at most [`MEMORY_READ_STEPS`] records.
    pub(crate) fn in_memory() -> Self {
        Self {
            memory: Some(Cell::new(MEMORY_READ_STEPS)),
            missed: Cell::new(false),
        }
    }

    /// Whether a memory-only read met something it may not read.
    pub(crate) fn missed(&self) -> bool {
        self.missed.get()
    }

    /// Read options for this budget (memory only when it is).
    pub(crate) fn opts(&self) -> rocksdb::ReadOptions {
        let mut opts = rocksdb::ReadOptions::default();
        if self.memory.is_some() {
            opts.set_read_tier(rocksdb::ReadTier::BlockCache);
        }
        opts
    }

    /// Takes one record's step and maps a RocksDB error; a memory-only read that
    /// runs out of steps, or meets a read that needs the disk, is marked as missed
    /// and fails.
    pub(crate) fn step<T>(&self, r: std::result::Result<T, rocksdb::Error>) -> Result<T> {
        if let Some(left) = &self.memory {
            let incomplete = matches!(&r, Err(e) if e.kind() == rocksdb::ErrorKind::Incomplete);
            if incomplete || left.get() == 0 {
                self.missed.set(true);
                return Err(crate::error::Error::Storage(
                    "a memory-only read needs the disk".into(),
                ));
            }
            left.set(left.get() - 1);
        }
        r.err_into()
    }
}

impl<'a> View<'a> {
    /// A view of `engine` now; records expired at `now` are invisible.
    pub(crate) fn new(engine: &'a Engine, now: u64) -> Self {
        Self {
            engine,
            snap: engine.db().snapshot(),
            now,
            budget: ReadBudget::unbounded(),
        }
    }

    /// Runs `f` on a view that reads only what memory holds (the memtables and the
    /// block cache) and at most [`MEMORY_READ_STEPS`] records: `Ok(None)` when `f`
    /// needed more (a block on disk, a long scan), to be run again on a [`View::new`]
    /// on a blocking thread. Such a miss is told apart from `f`'s own errors, and a
    /// result `f` made after swallowing one is not used either.
    pub(crate) fn in_memory<T>(
        engine: &'a Engine,
        now: u64,
        f: impl FnOnce(&View<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        let view = Self {
            budget: ReadBudget::in_memory(),
            ..Self::new(engine, now)
        };
        let r = f(&view);
        if view.budget.missed() {
            return Ok(None);
        }
        r.map(Some)
    }

    /// Read options at this view's snapshot (memory only for an in-memory view).
    fn opts(&self) -> rocksdb::ReadOptions {
        let mut opts = self.budget.opts();
        opts.set_snapshot(&self.snap);
        opts
    }

    /// Takes one record's step of this view's budget ([`ReadBudget::step`]).
    fn step<T>(&self, r: std::result::Result<T, rocksdb::Error>) -> Result<T> {
        self.budget.step(r)
    }

    /// The stored bytes of a key of `cf` in this view, pinned in RocksDB's buffer (no
    /// copy: callers decode from it).
    fn get_raw(
        &self,
        cf: &rocksdb::ColumnFamily,
        key: &[u8],
    ) -> Result<Option<rocksdb::DBPinnableSlice<'_>>> {
        self.step(self.engine.db().get_pinned_cf_opt(cf, key, &self.opts()))
    }

    /// The time the view judges expiry by.
    pub(crate) fn now(&self) -> u64 {
        self.now
    }

    /// The live record of a user key.
    pub(crate) fn get(&self, user_key: &[u8]) -> Result<Option<ValueRecord>> {
        let cf = self.engine.cf(keys::CF_DATA);
        live(
            self.get_raw(cf, &keys::data_key(user_key))?.as_deref(),
            self.now,
        )
    }

    /// Visits live records of the `data` CF keys in `[start, end)` whose user keys
    /// pass `accept` (checked before decoding), in key order (or reverse), until
    /// `visit` returns false; also visits expired ones when `expired`.
    pub(crate) fn visit(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
        reverse: bool,
        expired: bool,
        accept: impl Fn(&[u8]) -> bool,
        mut visit: impl FnMut(&[u8], ValueRecord) -> Result<bool>,
    ) -> Result<()> {
        let mut opts = self.opts();
        opts.set_iterate_lower_bound(start);
        opts.set_iterate_upper_bound(end);
        let mode = if reverse {
            rocksdb::IteratorMode::End
        } else {
            rocksdb::IteratorMode::Start
        };
        for item in self
            .engine
            .db()
            .iterator_cf_opt(self.engine.cf(keys::CF_DATA), opts, mode)
        {
            let (k, v) = self.step(item)?;
            let Some(user_key) = keys::decode_data_key(&k).filter(|uk| accept(uk)) else {
                continue;
            };
            let rec = ValueRecord::decode(v.as_ref())?;
            if (expired || is_live(&rec, self.now)) && !visit(user_key, rec)? {
                break;
            }
        }
        Ok(())
    }

    /// [`View::visit`] over `ranges` (one shard's), in storage order, from after the
    /// data key `after` (empty: from the start), until `visit` returns false.
    pub(crate) fn visit_ranges(
        &self,
        ranges: &[(Vec<u8>, Vec<u8>)],
        after: &[u8],
        expired: bool,
        accept: impl Fn(&[u8]) -> bool,
        mut visit: impl FnMut(&[u8], ValueRecord) -> Result<bool>,
    ) -> Result<()> {
        let mut ranges = ranges.to_vec();
        ranges.sort();
        let mut go_on = true;
        for (start, end) in ranges {
            if !go_on {
                break;
            }
            if end.as_slice() <= after {
                continue;
            }
            let start = if after >= start.as_slice() {
                [after, &[0]].concat()
            } else {
                start
            };
            self.visit(start, end, false, expired, &accept, |k, r| {
                go_on = visit(k, r)?;
                Ok(go_on)
            })?;
        }
        Ok(())
    }

    /// Visits the live records of user keys in `[start, end)` of one partition.
    fn visit_users(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        visit: impl FnMut(&[u8], ValueRecord) -> Result<bool>,
    ) -> Result<()> {
        self.visit(
            keys::data_key(start),
            keys::data_key(end),
            reverse,
            false,
            |_| true,
            visit,
        )
    }

    /// Visits the live records of user keys starting with `prefix` (one partition).
    pub(crate) fn visit_prefix(
        &self,
        prefix: &[u8],
        reverse: bool,
        visit: impl FnMut(&[u8], ValueRecord) -> Result<bool>,
    ) -> Result<()> {
        let start = keys::data_key(prefix);
        let end = keys::prefix_end(&start).unwrap_or_else(|| vec![0xff; start.len() + 1]);
        self.visit(start, end, reverse, false, |_| true, visit)
    }

    /// A live conversation's record.
    pub(crate) fn conversation(&self, c: &ConversationRef) -> Result<Option<ConversationRecord>> {
        match self.get(&conv_key(c))? {
            Some(r) => Ok(Some(ConversationRecord::decode(r.value.as_ref())?)),
            None => Ok(None),
        }
    }

    /// Serves `Read`; `limit` caps the messages returned (or looked at, for budgets).
    pub(crate) fn read(
        &self,
        c: &ConversationRef,
        select: Option<&Select>,
        after_seq: u64,
        limit: usize,
    ) -> Result<ReadResponse> {
        let Some(rec) = self.conversation(c)? else {
            return Ok(ReadResponse::default());
        };
        let info = rec.info.clone().unwrap_or_default();
        let mut out = ReadResponse::default();
        let end_seq = info.last_seq.saturating_add(1);
        match select {
            Some(Select::LastN(n)) => {
                let want = usize::try_from(*n).unwrap_or(usize::MAX).min(limit);
                let mut msgs = Vec::new();
                self.visit_users(&msg_key(c, 0), &msg_key(c, end_seq), true, |_, r| {
                    if msgs.len() >= want {
                        return Ok(false);
                    }
                    msgs.push(ChatMessage::decode(r.value.as_ref())?);
                    Ok(true)
                })?;
                msgs.reverse();
                out.messages = msgs;
            }
            Some(Select::TokenBudget(b)) => {
                // Newest first until the budget is exceeded; then, for link ids seen
                // only once (a result whose call is older, or the reverse), look
                // further back for their partners.
                let mut window = Vec::new();
                let mut msgs: HashMap<u64, ChatMessage> = HashMap::new();
                let mut seen_tokens = 0u64;
                let mut searching: Option<HashSet<String>> = None;
                let mut searched = 0usize;
                let mut stopped = false;
                self.visit_users(&msg_key(c, 0), &msg_key(c, end_seq), true, |_, r| {
                    let m = ChatMessage::decode(r.value.as_ref())?;
                    let cand = Candidate::of(&m);
                    match &mut searching {
                        None => {
                            seen_tokens = seen_tokens.saturating_add(m.token_count);
                            window.push(cand);
                            msgs.insert(m.seq, m);
                            if seen_tokens > b.max_tokens || window.len() >= limit {
                                searching = Some(budget::single_links(&window));
                            }
                        }
                        Some(open) => {
                            searched += 1;
                            if cand.links.iter().any(|l| open.contains(l)) {
                                for l in &cand.links {
                                    open.remove(l);
                                }
                                window.push(cand);
                                msgs.insert(m.seq, m);
                            }
                        }
                    }
                    let done = searching
                        .as_ref()
                        .is_some_and(|open| open.is_empty() || searched >= LINK_SEARCH);
                    stopped |= done;
                    Ok(!done)
                })?;
                // Ids still unmatched when the search stopped early may have partners
                // further back: their units are not taken. At the conversation's
                // start, an unmatched id has no partner left (e.g. trimmed).
                let open = match searching {
                    Some(open) if stopped => open,
                    _ => HashSet::new(),
                };
                let mut pinned = Vec::new();
                if b.include_pinned {
                    for seq in &rec.pinned {
                        let m = match msgs.get(seq) {
                            Some(m) => Some(m.clone()),
                            None => self
                                .get(&msg_key(c, *seq))?
                                .map(|r| ChatMessage::decode(r.value.as_ref()))
                                .transpose()?,
                        };
                        if let Some(m) = m {
                            pinned.push(Candidate::of(&m));
                            msgs.insert(m.seq, m);
                        }
                    }
                }
                let seqs = budget::select(&window, &open, b.max_tokens, &pinned);
                out.messages = seqs.iter().filter_map(|s| msgs.remove(s)).collect();
            }
            Some(Select::Range(r)) => {
                let from = r.from_seq.max(after_seq.saturating_add(1));
                let to = if r.to_seq == 0 {
                    end_seq
                } else {
                    r.to_seq.min(end_seq)
                };
                self.page(c, from, to, limit, &mut out)?;
            }
            None => {
                let from = after_seq.saturating_add(1);
                self.page(c, from, end_seq, limit, &mut out)?;
            }
        }
        out.total_tokens = out
            .messages
            .iter()
            .fold(0u64, |a, m| a.saturating_add(m.token_count));
        out.info = Some(info);
        Ok(out)
    }

    fn page(
        &self,
        c: &ConversationRef,
        from: u64,
        to: u64,
        limit: usize,
        out: &mut ReadResponse,
    ) -> Result<()> {
        if from >= to {
            return Ok(());
        }
        self.visit_users(&msg_key(c, from), &msg_key(c, to), false, |_, r| {
            let m = ChatMessage::decode(r.value.as_ref())?;
            if out.messages.len() >= limit {
                out.next_seq = m.seq;
                return Ok(false);
            }
            out.messages.push(m);
            Ok(true)
        })
    }

    /// Conversations of `namespace` on this replica's `ranges` with ids above
    /// `after`, ordered by id, at most `limit` (and whether more exist), read from the
    /// node's conversation index (`keys::CONV_INDEX_PREFIX`).
    pub(crate) fn list_conversations(
        &self,
        ranges: &[(Vec<u8>, Vec<u8>)],
        namespace: &str,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<ConversationInfo>, bool)> {
        let prefix = keys::conv_index_prefix(namespace);
        self.list_indexed(ranges, prefix, after, limit, |_, rec| {
            Ok(ConversationRecord::decode(rec.value.as_ref())?
                .info
                .unwrap_or_default())
        })
    }

    /// Checkpoint threads of `namespace` on this replica's `ranges` with ids above
    /// `after`, ordered by id, at most `limit` (and whether more exist), read from the
    /// node's thread index (`keys::THREAD_INDEX_PREFIX`).
    pub(crate) fn list_threads(
        &self,
        ranges: &[(Vec<u8>, Vec<u8>)],
        namespace: &str,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<crate::proto::ThreadInfo>, bool)> {
        let prefix = keys::thread_index_prefix(namespace);
        self.list_indexed(ranges, prefix, after, limit, |id, rec| {
            let r = crate::proto::ThreadRecord::decode(rec.value.as_ref())?;
            Ok(crate::proto::ThreadInfo {
                namespace: namespace.to_string(),
                thread: String::from_utf8_lossy(id).into_owned(),
                created_at_ms: r.created_at_ms,
                updated_at_ms: r.updated_at_ms,
                idle_ttl_ms: r.idle_ttl_ms,
            })
        })
    }

    /// The live records one of the node's listing indexes names under `prefix` (a
    /// namespace's) with ids above `after`, in id order, that lie in `ranges`, as
    /// `show(id, record)` makes them: at most `limit`, and whether more exist. Reads
    /// the entries of the page, and those of other shards' and expired records in
    /// between, never the rest of the store.
    fn list_indexed<T>(
        &self,
        ranges: &[(Vec<u8>, Vec<u8>)],
        prefix: Vec<u8>,
        after: &str,
        limit: usize,
        mut show: impl FnMut(&[u8], ValueRecord) -> Result<T>,
    ) -> Result<(Vec<T>, bool)> {
        let Some(end) = keys::prefix_end(&prefix) else {
            return Ok((Vec::new(), false));
        };
        let start = if after.is_empty() {
            prefix.clone()
        } else {
            [prefix.as_slice(), after.as_bytes(), &[0]].concat()
        };
        let data = self.engine.cf(keys::CF_DATA);
        let mut found = Vec::new();
        for item in self.index_entries(start, end) {
            let (entry, dk) = self.step(item)?;
            // Another shard's on this node, or left by a replica removed from it.
            if !crate::storage::index::in_ranges(&dk, ranges) {
                continue;
            }
            let Some(rec) = live(self.get_raw(data, &dk)?.as_deref(), self.now)? else {
                continue;
            };
            if found.len() == limit {
                return Ok((found, true));
            }
            let id = entry.get(prefix.len()..).unwrap_or_default();
            found.push(show(id, rec)?);
        }
        Ok((found, false))
    }

    /// The idle TTL of a live thread (0: none, or no such thread).
    pub(crate) fn thread_idle_ttl(&self, thread: &str) -> Result<u64> {
        match self.get(&crate::context::thread_key(thread))? {
            Some(r) => Ok(crate::proto::ThreadRecord::decode(r.value.as_ref())?.idle_ttl_ms),
            None => Ok(0),
        }
    }

    /// Whether the thread's record is live (a thread expires as a whole).
    fn thread_live(&self, thread: &str) -> Result<bool> {
        Ok(self.get(&crate::context::thread_key(thread))?.is_some())
    }

    fn tuple(&self, t: &ThreadRef, cp: Checkpoint) -> Result<CheckpointTuple> {
        let mut blobs = Vec::new();
        let mut versions: Vec<_> = cp.channel_versions.iter().collect();
        versions.sort();
        for (channel, version) in versions {
            if let Some(r) = self.get(&blob_key(t, channel, version))? {
                blobs.push(ChannelBlob {
                    channel: channel.clone(),
                    version: version.clone(),
                    value: r.value,
                });
            }
        }
        let mut pending_writes = Vec::new();
        self.visit_prefix(&writes_prefix(t, &cp.checkpoint_id), false, |_, r| {
            pending_writes.push(PendingWrite::decode(r.value.as_ref())?);
            Ok(true)
        })?;
        // LangGraph's order: task path, task id, then idx with the special channels'
        // slots (stored at the top of u32) read as its negative indexes, first.
        pending_writes.sort_by(|a, b| {
            (&a.task_path, &a.task_id, a.idx as i32).cmp(&(&b.task_path, &b.task_id, b.idx as i32))
        });
        Ok(CheckpointTuple {
            thread: Some(t.clone()),
            checkpoint: Some(cp),
            blobs,
            pending_writes,
        })
    }

    /// A checkpoint with its blobs and pending writes; the latest when `id` is None.
    pub(crate) fn checkpoint(
        &self,
        t: &ThreadRef,
        id: Option<&str>,
    ) -> Result<Option<CheckpointTuple>> {
        if !self.thread_live(&t.thread)? {
            return Ok(None);
        }
        let cp = match id {
            Some(id) => self.get(&ckpt_key(t, id))?,
            None => {
                let mut last = None;
                self.visit_prefix(&ckpt_prefix(t), true, |_, r| {
                    last = Some(r);
                    Ok(false)
                })?;
                last
            }
        };
        match cp {
            Some(r) => Ok(Some(self.tuple(t, Checkpoint::decode(r.value.as_ref())?)?)),
            None => Ok(None),
        }
    }

    /// Checkpoints of every live thread in `ranges` (one shard's), in storage order
    /// after the cursor `after` (a data key, empty at first), metadata matching
    /// `filter`: at most `limit`, whether more follow, and the cursor to continue
    /// after. A page reads up to the first checkpoint it does not return, so paging
    /// through a shard reads it once.
    pub(crate) fn list_all_checkpoints(
        &self,
        ranges: &[(Vec<u8>, Vec<u8>)],
        after: &[u8],
        limit: usize,
        filter: &crate::fsm::metadata::MetadataFilter,
    ) -> Result<(Vec<CheckpointTuple>, bool, Vec<u8>)> {
        let prefix = crate::context::all_ckpt_prefix();
        let mut tuples = Vec::new();
        let mut next = Vec::new();
        let mut more = false;
        self.visit_ranges(
            ranges,
            after,
            false,
            |uk| uk.starts_with(&prefix),
            |uk, r| {
                let cp = Checkpoint::decode(r.value.as_ref())?;
                let Some(t) = ckpt_thread(uk) else {
                    return Ok(true);
                };
                if !filter.matches(&cp) || !self.thread_live(&t.thread)? {
                    return Ok(true);
                }
                if tuples.len() == limit {
                    more = true;
                    return Ok(false);
                }
                tuples.push(self.tuple(&t, cp)?);
                next = keys::data_key(uk);
                Ok(true)
            },
        )?;
        Ok((tuples, more, next))
    }

    /// The checkpoints in `ranges` (one shard's, expired threads included) that
    /// `pick` selects, by name.
    pub(crate) fn checkpoints_where(
        &self,
        ranges: &[(Vec<u8>, Vec<u8>)],
        pick: impl Fn(&Checkpoint) -> bool,
    ) -> Result<Vec<crate::proto::CheckpointName>> {
        let prefix = crate::context::all_ckpt_prefix();
        let mut out = Vec::new();
        self.visit_ranges(
            ranges,
            b"",
            true,
            |uk| uk.starts_with(&prefix),
            |uk, r| {
                let cp = Checkpoint::decode(r.value.as_ref())?;
                if pick(&cp) {
                    if let Some((thread, ns)) = crate::context::ckpt_ref_of(uk) {
                        out.push(crate::proto::CheckpointName {
                            thread,
                            ns,
                            checkpoint_id: cp.checkpoint_id,
                        });
                    }
                }
                Ok(true)
            },
        )?;
        Ok(out)
    }

    /// The checkpoint namespaces of a live thread (its stored name) that hold a
    /// checkpoint, sorted.
    pub(crate) fn checkpoint_namespaces(&self, thread: &str) -> Result<Vec<String>> {
        if !self.thread_live(thread)? {
            return Ok(Vec::new());
        }
        let prefix = crate::context::thread_ckpt_prefix(thread);
        let mut out: Vec<String> = Vec::new();
        self.visit_prefix(&prefix, false, |k, _| {
            let rest = k.get(prefix.len()..).unwrap_or_default();
            let ns = rest.split(|b| *b == 0).next().unwrap_or_default();
            let ns = crate::context::unescape(&String::from_utf8_lossy(ns));
            if out.last() != Some(&ns) {
                out.push(ns);
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// Checkpoints of every namespace of a live thread (its stored name) in key order
    /// (namespace, then id: oldest first), after the key `after`: at most `limit`,
    /// and the key to continue after (None when this was the last page).
    pub(crate) fn thread_checkpoints(
        &self,
        thread: &str,
        after: &[u8],
        limit: usize,
    ) -> Result<(Vec<CheckpointTuple>, Option<Vec<u8>>)> {
        if !self.thread_live(thread)? {
            return Ok((Vec::new(), None));
        }
        let prefix = keys::data_key(&crate::context::thread_ckpt_prefix(thread));
        let end = keys::prefix_end(&prefix).unwrap_or_else(|| vec![0xff; prefix.len() + 1]);
        let start = if after.is_empty() {
            prefix
        } else {
            // Just after `after` (data keys sort as their user keys).
            let mut k = keys::data_key(after);
            k.push(0);
            k.max(prefix)
        };
        let mut found: Vec<(Vec<u8>, Checkpoint)> = Vec::new();
        let mut more = false;
        self.visit(
            start,
            end,
            false,
            false,
            |_| true,
            |uk, r| {
                if found.len() == limit {
                    more = true;
                    return Ok(false);
                }
                found.push((uk.to_vec(), Checkpoint::decode(r.value.as_ref())?));
                Ok(true)
            },
        )?;
        let next = found.last().map(|(k, _)| k.clone()).filter(|_| more);
        let mut tuples = Vec::with_capacity(found.len());
        for (uk, cp) in found {
            if let Some(t) = ckpt_thread(&uk) {
                tuples.push(self.tuple(&t, cp)?);
            }
        }
        Ok((tuples, next))
    }

    /// Checkpoints newest first, ids below `before`, metadata matching `filter`.
    pub(crate) fn list_checkpoints(
        &self,
        t: &ThreadRef,
        before: Option<&str>,
        limit: usize,
        filter: &crate::fsm::metadata::MetadataFilter,
    ) -> Result<Vec<CheckpointTuple>> {
        if !self.thread_live(&t.thread)? {
            return Ok(Vec::new());
        }
        let prefix = ckpt_prefix(t);
        let mut cps = Vec::new();
        let mut visit = |_: &[u8], r: ValueRecord| {
            let cp = Checkpoint::decode(r.value.as_ref())?;
            if filter.matches(&cp) {
                cps.push(cp);
            }
            Ok(cps.len() < limit)
        };
        match before {
            Some(b) => self.visit_users(&prefix, &ckpt_key(t, b), true, &mut visit)?,
            None => self.visit_prefix(&prefix, true, &mut visit)?,
        }
        cps.into_iter().map(|cp| self.tuple(t, cp)).collect()
    }

    /// A model by name, in the registry of `namespace`.
    pub(crate) fn model(&self, namespace: &str, name: &str) -> Result<Option<Model>> {
        match self.get(&crate::context::model_key(namespace, name))? {
            Some(r) => Ok(Some(model_of(&r)?)),
            None => Ok(None),
        }
    }

    /// Every model of `namespace`'s registry, by name.
    pub(crate) fn models(&self, namespace: &str) -> Result<Vec<Model>> {
        let mut out = Vec::new();
        self.visit_prefix(&model_prefix(namespace), false, |_, r| {
            out.push(model_of(&r)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// What a purge round finds in the node's expiry index (`keys::EXPIRY_PREFIX`): it
    /// reads the entries that have expired by `now`, oldest first from after the
    /// entry `after` (None: from the oldest), at most `visit_max`, and sorts them. An
    /// entry whose record is gone or carries another expiry is stale (a snapshot
    /// install or a replica removal cleared the record's range without reading it);
    /// every other goes to the led shard `owner` names for the record's hash (None:
    /// led elsewhere, skipped), at most `per_shard` each. A record that does not
    /// decode is skipped.
    pub(crate) fn expired_entries(
        &self,
        after: Option<&[u8]>,
        visit_max: usize,
        shards: usize,
        per_shard: usize,
        owner: impl Fn(u64) -> Option<usize>,
    ) -> Result<Expired> {
        let mut found = Expired {
            keys: vec![Vec::new(); shards],
            stale: Vec::new(),
            next: None,
        };
        let Some(end) = self.expired_end() else {
            return Ok(found);
        };
        let start = match after {
            Some(k) => [k, &[0]].concat(),
            None => keys::EXPIRY_PREFIX.to_vec(),
        };
        let data = self.engine.cf(keys::CF_DATA);
        let iter = self.index_entries(start, end);
        let mut last: Option<Box<[u8]>> = None;
        for (visited, item) in iter.enumerate() {
            let (k, _) = self.step(item)?;
            if visited == visit_max {
                // More than the limit: the next round goes on after the last one read.
                found.next = last.map(|l| l.to_vec());
                break;
            }
            last = Some(k.clone());
            let Some((at, dk)) = keys::decode_expiry_key(&k) else {
                continue;
            };
            let rec = match self.get_raw(data, dk)? {
                Some(v) => match ValueRecord::decode(v.as_ref()) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        tracing::warn!(error = %e, "purge: a record that does not decode is skipped");
                        continue;
                    }
                },
                None => None,
            };
            let Some(rec) = rec.filter(|r| r.expires_at_ms == at) else {
                found.stale.push(k.to_vec());
                continue;
            };
            let (Some(hash), Some(user_key)) = (
                dk.first_chunk::<8>().map(|h| u64::from_be_bytes(*h)),
                keys::decode_data_key(dk),
            ) else {
                found.stale.push(k.to_vec());
                continue;
            };
            let Some(list) = owner(hash).and_then(|i| found.keys.get_mut(i)) else {
                continue;
            };
            if list.len() < per_shard {
                list.push(PurgeKey {
                    key: bytes::Bytes::copy_from_slice(user_key),
                    version: rec.version,
                });
            }
        }
        Ok(found)
    }

    /// How many expiry index entries have expired by `now` and wait for the purge,
    /// counting at most `max`.
    pub(crate) fn count_expired(&self, max: usize) -> Result<u64> {
        let Some(end) = self.expired_end() else {
            return Ok(0);
        };
        let mut n = 0;
        for item in self
            .index_entries(keys::EXPIRY_PREFIX.to_vec(), end)
            .take(max)
        {
            self.step(item)?;
            n += 1;
        }
        Ok(n)
    }

    /// Where the expiry index entries that have expired by `now` end (None: every
    /// entry has, `now` being the last millisecond there is).
    fn expired_end(&self) -> Option<Vec<u8>> {
        Some(keys::expiry_key(self.now.checked_add(1)?, b""))
    }

    /// The `meta` CF entries in `[start, end)` (an index's), in this view.
    fn index_entries(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
    ) -> rocksdb::DBIteratorWithThreadMode<'_, rocksdb::DB> {
        let mut opts = self.opts();
        opts.set_iterate_lower_bound(start);
        opts.set_iterate_upper_bound(end);
        self.engine.db().iterator_cf_opt(
            self.engine.cf(keys::CF_META),
            opts,
            rocksdb::IteratorMode::Start,
        )
    }

    /// The expiry index against the records it indexes (a test's check; reads the
    /// whole `data` CF and the index).
    pub(crate) fn check_expiry_index(&self) -> Result<IndexCheck> {
        let mut want = std::collections::BTreeSet::new();
        let data = self.engine.cf(keys::CF_DATA);
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_snapshot(&self.snap);
        for item in self
            .engine
            .db()
            .iterator_cf_opt(data, opts, rocksdb::IteratorMode::Start)
        {
            let (k, v) = self.step(item)?;
            let rec = ValueRecord::decode(v.as_ref())?;
            if rec.expires_at_ms != 0 {
                want.insert(keys::expiry_key(rec.expires_at_ms, &k));
            }
        }
        let mut have = std::collections::BTreeSet::new();
        let end = keys::prefix_end(keys::EXPIRY_PREFIX)
            .ok_or_else(|| crate::error::Error::Internal("the expiry prefix has no end".into()))?;
        for item in self.index_entries(keys::EXPIRY_PREFIX.to_vec(), end) {
            let (k, _) = self.step(item)?;
            have.insert(k.to_vec());
        }
        Ok(IndexCheck {
            records: want.len(),
            entries: have.len(),
            missing: want.difference(&have).count(),
            extra: have.difference(&want).count(),
        })
    }

    /// The listing indexes against the conversation and thread records (a test's
    /// check; reads the whole `data` CF and the indexes). An entry or reverse entry
    /// counts as extra unless it names the key of such a record, expired or not, and
    /// as missing when a record has none or another.
    pub(crate) fn check_listing_index(&self) -> Result<IndexCheck> {
        let mut want = std::collections::BTreeMap::new();
        let data = self.engine.cf(keys::CF_DATA);
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_snapshot(&self.snap);
        for item in self
            .engine
            .db()
            .iterator_cf_opt(data, opts, rocksdb::IteratorMode::Start)
        {
            let (k, _) = self.step(item)?;
            if let Some(entry) = keys::listing_entry(&k) {
                want.insert(keys::listing_by_key(&k), entry.clone());
                want.insert(entry, k.to_vec());
            }
        }
        let mut have = std::collections::BTreeMap::new();
        for prefix in [
            keys::CONV_INDEX_PREFIX,
            keys::THREAD_INDEX_PREFIX,
            keys::LEASE_INDEX_PREFIX,
            keys::LISTING_BY_KEY_PREFIX,
        ] {
            let end = keys::prefix_end(prefix).ok_or_else(|| {
                crate::error::Error::Internal("the index prefix has no end".into())
            })?;
            for item in self.index_entries(prefix.to_vec(), end) {
                let (k, v) = self.step(item)?;
                have.insert(k.to_vec(), v.to_vec());
            }
        }
        // Each record and entry counts once, though each has a reverse entry too.
        let missing = want.iter().filter(|(k, v)| have.get(*k) != Some(v)).count();
        let extra = have.iter().filter(|(k, v)| want.get(*k) != Some(v)).count();
        Ok(IndexCheck {
            records: want.len() / 2,
            entries: have.len() / 2,
            missing,
            extra,
        })
    }
}

/// One of a node's indexes against its records ([`View::check_expiry_index`],
/// [`View::check_listing_index`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexCheck {
    /// Records the index should hold an entry for.
    pub records: usize,
    /// Index entries.
    pub entries: usize,
    /// Records with no entry (must be 0).
    pub missing: usize,
    /// Entries with no record behind them (left by a snapshot install or a replica
    /// removal until a purge round passes their expiry, or the sweep their hash).
    pub extra: usize,
}

/// What a purge round found in the expiry index ([`View::expired_entries`]).
pub(crate) struct Expired {
    /// Per led shard (by the caller's index), the expired records to purge.
    pub(crate) keys: Vec<Vec<PurgeKey>>,
    /// Index entries with no record behind them, to delete on this node.
    pub(crate) stale: Vec<Vec<u8>>,
    /// The last entry read when the round stopped at its limit (the next round starts
    /// after it); None when it read every expired entry.
    pub(crate) next: Option<Vec<u8>>,
}

/// The `(stored thread, ns)` a checkpoint record's key names.
fn ckpt_thread(user_key: &[u8]) -> Option<ThreadRef> {
    let (thread, ns) = crate::context::ckpt_ref_of(user_key)?;
    Some(ThreadRef {
        thread,
        ns,
        namespace: String::new(),
    })
}

/// The live record of a user key, read without a snapshot (a single point read).
pub(crate) fn get_live(engine: &Engine, user_key: &[u8], now: u64) -> Result<Option<ValueRecord>> {
    Ok(engine
        .get_decoded::<ValueRecord>(keys::CF_DATA, &keys::data_key(user_key))?
        .filter(|r| is_live(r, now)))
}

/// [`get_live`] from memory only (memtables, block cache): None when it would need
/// the disk.
pub(crate) fn get_live_cached(
    engine: &Engine,
    user_key: &[u8],
    now: u64,
) -> Result<Option<Option<ValueRecord>>> {
    Ok(engine
        .get_decoded_cached::<ValueRecord>(keys::CF_DATA, &keys::data_key(user_key))?
        .map(|r| r.filter(|r| is_live(r, now))))
}

/// The result a command with `request_id` got when it applied on this replica of
/// `shard`, if its dedup record is still live at `now` (the same buckets the apply
/// path looks in).
pub(crate) fn dedup_result(
    engine: &Engine,
    shard: crate::types::ShardId,
    request_id: &[u8],
    now: u64,
) -> Result<Option<CommandResult>> {
    let bucket = crate::fsm::command::dedup_bucket(now);
    for b in [bucket, bucket.wrapping_sub(1), bucket.wrapping_add(1)] {
        let key = keys::dedup_key(shard, b, request_id);
        let rec = engine.get_decoded::<DedupRecord>(keys::CF_META, &key)?;
        if let Some(r) = rec.filter(|r| r.expires_at_ms > now).and_then(|r| r.result) {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// A stored record if it has not expired at `now`.
fn live(bytes: Option<&[u8]>, now: u64) -> Result<Option<ValueRecord>> {
    match bytes {
        Some(v) => Ok(Some(ValueRecord::decode(v)?).filter(|r| is_live(r, now))),
        None => Ok(None),
    }
}

/// A stored model record with its version filled in.
pub(crate) fn model_of(r: &ValueRecord) -> Result<Model> {
    let mut m = Model::decode(r.value.as_ref())?;
    m.version = r.version;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(e: &Engine, user_key: &[u8], version: u64) -> ValueRecord {
        let rec = ValueRecord {
            value: format!("value {version}").into_bytes().into(),
            version,
            create_version: version,
            ..Default::default()
        };
        e.db()
            .put_cf(
                e.cf(keys::CF_DATA),
                keys::data_key(user_key),
                rec.encode_to_vec(),
            )
            .expect("put");
        rec
    }

    /// Records a visit over the whole `data` CF sees, stopping after `max`.
    fn count(v: &View<'_>, max: usize) -> Result<usize> {
        let mut n = 0;
        v.visit(
            Vec::new(),
            vec![0xff; 16],
            false,
            false,
            |_| true,
            |_, _| {
                n += 1;
                Ok(n < max)
            },
        )?;
        Ok(n)
    }

    /// An in-memory read answers what memory holds within its steps, gives up (None,
    /// not an error) on a block on disk or a long scan, and keeps `f`'s own errors.
    #[test]
    fn an_in_memory_read_answers_small_reads_and_gives_up_on_the_disk_or_long_scans() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = 1;
        let first = {
            let e = Engine::open(dir.path()).expect("open");
            let first = put(&e, b"k0", 1);
            for i in 1..(MEMORY_READ_STEPS + 88) {
                put(&e, format!("k{i}").as_bytes(), i as u64 + 1);
            }
            let got = View::in_memory(&e, now, |v| v.get(b"k0")).expect("read");
            assert_eq!(got, Some(Some(first.clone())), "from the memtable");
            let absent = View::in_memory(&e, now, |v| v.get(b"absent")).expect("read");
            assert_eq!(absent, Some(None), "an absent key from the memtable");
            let few = View::in_memory(&e, now, |v| count(v, 10)).expect("read");
            assert_eq!(few, Some(10), "a short scan stays in memory");
            let all = View::in_memory(&e, now, |v| count(v, usize::MAX)).expect("read");
            assert_eq!(
                all, None,
                "a scan past the steps is left to a blocking read"
            );
            let whole = count(&View::new(&e, now), usize::MAX).expect("read");
            assert_eq!(whole, MEMORY_READ_STEPS + 88, "a plain view reads it all");
            e.db().flush_cf(e.cf(keys::CF_DATA)).expect("flush");
            first
        };
        // Reopened: the records are only in an SST file, none of it cached.
        let e = Engine::open(dir.path()).expect("open");
        let cold = View::in_memory(&e, now, |v| v.get(b"k0")).expect("read");
        assert_eq!(cold, None, "a cold read needs the disk");
        let scan = View::in_memory(&e, now, |v| count(v, 10)).expect("read");
        assert_eq!(scan, None, "a cold scan needs the disk");
        let swallowed = View::in_memory(&e, now, |v| Ok(v.get(b"k1").is_err())).expect("read");
        assert_eq!(
            swallowed, None,
            "a result made past a swallowed miss is not used"
        );
        let disk = View::new(&e, now).get(b"k0").expect("read");
        assert_eq!(disk.as_ref(), Some(&first));
        let warm = View::in_memory(&e, now, |v| v.get(b"k0")).expect("read");
        assert_eq!(warm, Some(Some(first)), "its block is cached now");
        let own = View::in_memory(&e, now, |_| -> Result<()> {
            Err(crate::error::Error::invalid("limit", "bad"))
        });
        assert!(
            matches!(own, Err(crate::error::Error::InvalidArgument { .. })),
            "f's own error is kept: {own:?}"
        );
    }
}
