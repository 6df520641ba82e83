//! The state-machine side of the context API (DESIGN §7): every operation here runs
//! inside one applied Raft entry, so sequence numbers, preconditions and TTLs are
//! decided once, identically on every replica. The leader validated the request; this code still
//! never panics on a malformed one (it is rejected as a bad range).

use crate::context::{
    blob_key, blob_of, blob_prefix, ckpt_key, ckpt_prefix, conv_data_prefixes, conv_key, idem_key,
    is_pinned, msg_key, msg_prefix, owner_of_record, seq_of, thread_data_prefixes, thread_key,
    write_key, writes_prefix, Owner, IDEMPOTENCY_WINDOW_MS,
};
use crate::error::Result;
use crate::fsm::command::{is_live, Applier, StateReader};
use crate::fsm::metadata::MetadataFilter;
use crate::keys;
use crate::proto::context_command::Op;
use crate::proto::context_rejected::Reason;
use crate::proto::prune_checkpoints_request::Keep;
use crate::proto::{
    command_result, AppendRequest, ChatMessage, Checkpoint, CommandResult, CompactRequest,
    ContextCommand, ContextOutcome, ContextRejected, ConversationInfo, ConversationRecord,
    ConversationRef, DeleteCheckpointsCommand, IdempotencyRecord, PendingWrite,
    PruneCheckpointsRequest, PutCheckpointRequest, PutWritesRequest,
    SetConversationMetadataRequest, ThreadRecord, ThreadRef, TrimRequest,
};
use prost::Message;
use std::collections::HashSet;

/// Channels whose pending writes are replaced rather than kept on a repeat; each has
/// its own slot per task (LangGraph's negative write indexes), not its position.
const SPECIAL_CHANNELS: [&str; 4] = ["__error__", "__scheduled__", "__interrupt__", "__resume__"];

/// The stored index of the write at `position` on `channel`.
fn write_idx(channel: &str, position: usize) -> u32 {
    match SPECIAL_CHANNELS.iter().position(|c| *c == channel) {
        Some(k) => u32::MAX - k as u32,
        None => u32::try_from(position).unwrap_or(u32::MAX - 8),
    }
}

fn done(o: ContextOutcome) -> CommandResult {
    CommandResult {
        result: Some(command_result::Result::Context(o)),
    }
}

fn rejected(reason: Reason, expected: u64, actual: u64, detail: &str) -> CommandResult {
    CommandResult {
        result: Some(command_result::Result::ContextRejected(ContextRejected {
            reason: reason as i32,
            expected,
            actual,
            detail: detail.to_string(),
        })),
    }
}

fn bad(detail: &str) -> CommandResult {
    rejected(Reason::BadRange, 0, 0, detail)
}

fn expiry(now_ms: u64, idle_ttl_ms: u64) -> u64 {
    if idle_ttl_ms == 0 {
        0
    } else {
        now_ms.saturating_add(idle_ttl_ms)
    }
}

impl<R: StateReader> Applier<'_, R> {
    /// Applies one context command at `index` (the `Applier`'s context feature; its
    /// core and the `Kv` writes are in `fsm::command`).
    pub(crate) fn apply_context(
        &mut self,
        index: u64,
        now_ms: u64,
        cmd: &ContextCommand,
    ) -> Result<CommandResult> {
        apply(self, index, now_ms, cmd)
    }
}

/// The partition hashes a context command touches.
fn command_hashes(cmd: &ContextCommand) -> Vec<u64> {
    let conv = |c: &Option<ConversationRef>| c.as_ref().map(|c| keys::key_hash(&conv_key(c)));
    let thread = |t: &str| Some(keys::key_hash(&thread_key(t)));
    let thread_ref =
        |t: &Option<crate::proto::ThreadRef>| t.as_ref().and_then(|t| thread(&t.thread));
    match &cmd.op {
        Some(Op::Append(r)) => conv(&r.conversation).into_iter().collect(),
        Some(Op::Trim(r)) => conv(&r.conversation).into_iter().collect(),
        Some(Op::Compact(r)) => conv(&r.conversation).into_iter().collect(),
        Some(Op::DeleteConversation(r)) => conv(&r.conversation).into_iter().collect(),
        Some(Op::SetMetadata(r)) => conv(&r.conversation).into_iter().collect(),
        Some(Op::Touch(t)) => match &t.conversation {
            Some(_) => conv(&t.conversation).into_iter().collect(),
            None => thread(&t.thread).into_iter().collect(),
        },
        Some(Op::PutCheckpoint(r)) => thread_ref(&r.thread).into_iter().collect(),
        Some(Op::PutWrites(r)) => thread_ref(&r.thread).into_iter().collect(),
        Some(Op::Prune(r)) => thread_ref(&r.thread).into_iter().collect(),
        Some(Op::DeleteThread(r)) => thread(&r.thread).into_iter().collect(),
        Some(Op::Purge(p)) => p.keys.iter().map(|k| keys::key_hash(&k.key)).collect(),
        Some(Op::DeleteCheckpoints(d)) => d
            .checkpoints
            .iter()
            .filter_map(|c| thread(&c.thread))
            .collect(),
        None => Vec::new(),
    }
}

/// Applies one context command at `index`.
fn apply<R: StateReader>(
    a: &mut Applier<'_, R>,
    index: u64,
    now: u64,
    cmd: &ContextCommand,
) -> Result<CommandResult> {
    if let Some(r) = a.check_owned(command_hashes(cmd)) {
        return Ok(r);
    }
    let mut ctx = Ctx { a, index, now };
    match &cmd.op {
        Some(Op::Append(r)) => ctx.append(r),
        Some(Op::Trim(r)) => ctx.trim(r),
        Some(Op::Compact(r)) => ctx.compact(r),
        Some(Op::DeleteConversation(r)) => match &r.conversation {
            Some(c) => {
                let record = keys::data_key(&conv_key(c));
                let existed = ctx.a.live_value(&record, now)?.is_some();
                ctx.clear_conversation(c)?;
                Ok(done(ContextOutcome {
                    version: index,
                    existed,
                    ..Default::default()
                }))
            }
            None => Ok(bad("conversation missing")),
        },
        Some(Op::SetMetadata(r)) => ctx.set_metadata(r),
        Some(Op::Touch(t)) => ctx.touch(t.conversation.as_ref(), &t.thread),
        Some(Op::PutCheckpoint(r)) => ctx.put_checkpoint(r),
        Some(Op::PutWrites(r)) => ctx.put_writes(r),
        Some(Op::Prune(r)) => ctx.prune(r),
        Some(Op::DeleteThread(r)) => {
            let existed = ctx.clear_thread(&r.thread)?;
            Ok(done(ContextOutcome {
                version: index,
                existed,
                ..Default::default()
            }))
        }
        Some(Op::Purge(p)) => {
            let mut purged = 0;
            for k in &p.keys {
                let dk = keys::data_key(&k.key);
                let Some(rec) = ctx.a.value(&dk)? else {
                    continue;
                };
                if rec.version != k.version || is_live(&rec, now) {
                    continue;
                }
                ctx.a.delete_data(dk)?;
                purged += 1;
                match owner_of_record(&k.key) {
                    Some(Owner::Conversation(c)) => ctx.clear_conversation(&c)?,
                    Some(Owner::Thread(t)) => {
                        ctx.clear_thread(&t)?;
                    }
                    None => {}
                }
            }
            Ok(done(ContextOutcome {
                version: index,
                count: purged,
                ..Default::default()
            }))
        }
        Some(Op::DeleteCheckpoints(d)) => ctx.delete_checkpoints(d),
        None => Ok(bad("empty context command")),
    }
}

struct Ctx<'x, 'r, R: StateReader> {
    a: &'x mut Applier<'r, R>,
    index: u64,
    now: u64,
}

impl<R: StateReader> Applier<'_, R> {
    /// After the record at `user_key` was deleted (a revoked lease's): the data of the
    /// conversation or thread it was the record of, if any.
    pub(crate) fn clear_owned(&mut self, index: u64, now: u64, user_key: &[u8]) -> Result<()> {
        let mut ctx = Ctx {
            a: self,
            index,
            now,
        };
        match owner_of_record(user_key) {
            Some(Owner::Conversation(c)) => ctx.clear_conversation(&c),
            Some(Owner::Thread(t)) => ctx.clear_thread(&t).map(drop),
            None => Ok(()),
        }
    }
}

impl<R: StateReader> Ctx<'_, '_, R> {
    /// Writes a record, keeping the lease it was attached to.
    fn put(&mut self, user_key: &[u8], value: Vec<u8>, expires_at_ms: u64) -> Result<()> {
        self.a.put_user(
            self.index,
            self.now,
            user_key,
            value.into(),
            expires_at_ms,
            None,
        )?;
        Ok(())
    }

    fn delete_prefix(&mut self, prefix: &[u8]) -> Result<u64> {
        let found = self.a.scan_user_prefix(prefix)?;
        let n = found.len() as u64;
        for (dk, _) in found {
            self.a.delete_data(dk)?;
        }
        Ok(n)
    }

    /// The live conversation record. An expired one is removed with its messages
    /// first, so a conversation that expired starts afresh.
    fn conversation(&mut self, c: &ConversationRef) -> Result<Option<ConversationRecord>> {
        self.live_head(&conv_key(c), |me| me.clear_conversation(c))
    }

    /// The live head record (conversation or thread) under `user_key`, decoded; an
    /// expired one is removed by `clear` first, so the next write starts afresh.
    fn live_head<M: prost::Message + Default>(
        &mut self,
        user_key: &[u8],
        clear: impl FnOnce(&mut Self) -> Result<()>,
    ) -> Result<Option<M>> {
        match self.a.value(&keys::data_key(user_key))? {
            Some(rec) if is_live(&rec, self.now) => Ok(Some(M::decode(rec.value.as_ref())?)),
            Some(_) => {
                clear(self)?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    fn new_conversation(&self, c: &ConversationRef) -> ConversationRecord {
        ConversationRecord {
            info: Some(ConversationInfo {
                conversation: Some(c.clone()),
                created_at_ms: self.now,
                ..Default::default()
            }),
            pinned: Vec::new(),
        }
    }

    fn save_conversation(
        &mut self,
        c: &ConversationRef,
        rec: ConversationRecord,
    ) -> Result<ConversationInfo> {
        self.save_conversation_leased(c, rec, None)
    }

    /// [`Self::save_conversation`] attached to lease `lease` (None: the one it had;
    /// `Some(0)`: none).
    fn save_conversation_leased(
        &mut self,
        c: &ConversationRef,
        mut rec: ConversationRecord,
        lease: Option<u64>,
    ) -> Result<ConversationInfo> {
        let info = rec.info.get_or_insert_with(Default::default);
        info.updated_at_ms = self.now;
        info.expires_at_ms = expiry(self.now, info.idle_ttl_ms);
        let expires = info.expires_at_ms;
        let out = info.clone();
        let v = rec.encode_to_vec().into();
        self.a
            .put_user(self.index, self.now, &conv_key(c), v, expires, lease)?;
        Ok(out)
    }

    fn clear_conversation(&mut self, c: &ConversationRef) -> Result<()> {
        self.a.delete_data(keys::data_key(&conv_key(c)))?;
        for p in conv_data_prefixes(c) {
            self.delete_prefix(&p)?;
        }
        Ok(())
    }

    fn append(&mut self, r: &AppendRequest) -> Result<CommandResult> {
        let Some(c) = &r.conversation else {
            return Ok(bad("conversation missing"));
        };
        if r.messages.is_empty() {
            return Ok(bad("no messages"));
        }
        if let Some(lease) = r.lease_id.filter(|l| *l != 0) {
            if self.a.lease(&conv_key(c), lease)?.is_none() {
                let lk =
                    crate::context::lease_key("lease_id", &conv_key(c), lease).unwrap_or_default();
                return Ok(CommandResult {
                    result: Some(command_result::Result::LeaseNotFound(lk.into())),
                });
            }
        }
        // An expired conversation goes first, with its idempotency keys.
        let existing = self.conversation(c)?;
        let ik = (!r.idempotency_key.is_empty()).then(|| idem_key(c, &r.idempotency_key));
        if let Some(ik) = &ik {
            if let Some(rec) = self.a.live_value(&keys::data_key(ik), self.now)? {
                let prior = IdempotencyRecord::decode(rec.value.as_ref())?;
                return Ok(done(ContextOutcome {
                    version: prior.version,
                    first_seq: prior.first_seq,
                    last_seq: prior.last_seq,
                    replayed: true,
                    ..Default::default()
                }));
            }
        }
        let mut rec = match existing {
            Some(rec) => rec,
            None => self.new_conversation(c),
        };
        let info = rec.info.get_or_insert_with(Default::default);
        let last = info.last_seq;
        if let Some(expected) = r.expected_last_seq {
            if expected != last {
                return Ok(rejected(Reason::LastSeqMismatch, expected, last, ""));
            }
        }
        let first_seq = last + 1;
        for (i, m) in r.messages.iter().enumerate() {
            let seq = first_seq + i as u64;
            let stored = ChatMessage {
                seq,
                created_at_ms: self.now,
                ..m.clone()
            };
            info.message_count += 1;
            info.token_total = info.token_total.saturating_add(m.token_count);
            if is_pinned(m) {
                rec.pinned.push(seq);
            }
            self.a.put_user(
                self.index,
                self.now,
                &msg_key(c, seq),
                stored.encode_to_vec().into(),
                0,
                None,
            )?;
        }
        let info = rec.info.get_or_insert_with(Default::default);
        let last_seq = last + r.messages.len() as u64;
        info.last_seq = last_seq;
        if info.first_seq == 0 {
            info.first_seq = first_seq;
        }
        if let Some(ttl) = r.idle_ttl_ms {
            info.idle_ttl_ms = ttl;
        }
        let info = self.save_conversation_leased(c, rec, r.lease_id)?;
        if let Some(ik) = ik {
            let idem = IdempotencyRecord {
                first_seq,
                last_seq,
                version: self.index,
            };
            let until = self.now.saturating_add(IDEMPOTENCY_WINDOW_MS);
            self.put(&ik, idem.encode_to_vec(), until)?;
        }
        Ok(done(ContextOutcome {
            version: self.index,
            first_seq,
            last_seq,
            info: Some(info),
            ..Default::default()
        }))
    }

    /// Removes the stored messages with seqs in `[from, to)`; returns how many.
    fn remove_messages(
        &mut self,
        c: &ConversationRef,
        rec: &mut ConversationRecord,
        from: u64,
        to: u64,
    ) -> Result<u64> {
        let start = keys::data_key(&msg_key(c, from));
        let end = keys::data_key(&msg_key(c, to));
        let found = self.a.scan(&start, &end, usize::MAX)?;
        let info = rec.info.get_or_insert_with(Default::default);
        let n = found.len() as u64;
        for (dk, v) in found {
            if let Ok(m) = ChatMessage::decode(v.value.as_ref()) {
                info.token_total = info.token_total.saturating_sub(m.token_count);
            }
            info.message_count = info.message_count.saturating_sub(1);
            self.a.delete_data(dk)?;
        }
        rec.pinned.retain(|s| *s < from || *s >= to);
        Ok(n)
    }

    /// Lowest stored seq (0 when none).
    fn first_stored(&self, c: &ConversationRef) -> Result<u64> {
        let start = keys::data_key(&msg_prefix(c));
        let end = keys::prefix_end(&start).unwrap_or_default();
        let first = self.a.scan(&start, &end, 1)?;
        Ok(first
            .first()
            .and_then(|(dk, _)| keys::decode_data_key(dk).and_then(seq_of))
            .unwrap_or(0))
    }

    fn trim(&mut self, r: &TrimRequest) -> Result<CommandResult> {
        let Some(c) = &r.conversation else {
            return Ok(bad("conversation missing"));
        };
        let Some(mut rec) = self.conversation(c)? else {
            return Ok(rejected(Reason::NotFound, 0, 0, "conversation"));
        };
        let removed = self.remove_messages(c, &mut rec, 0, r.before_seq)?;
        let first = self.first_stored(c)?;
        let info = rec.info.get_or_insert_with(Default::default);
        info.first_seq = first;
        let info = self.save_conversation(c, rec)?;
        Ok(done(ContextOutcome {
            version: self.index,
            count: removed,
            info: Some(info),
            ..Default::default()
        }))
    }

    fn compact(&mut self, r: &CompactRequest) -> Result<CommandResult> {
        let Some(c) = &r.conversation else {
            return Ok(bad("conversation missing"));
        };
        let Some(summary) = &r.summary else {
            return Ok(bad("summary missing"));
        };
        let Some(mut rec) = self.conversation(c)? else {
            return Ok(rejected(Reason::NotFound, 0, 0, "conversation"));
        };
        let info = rec.info.clone().unwrap_or_default();
        if let Some(expected) = r.expected_last_seq {
            if expected != info.last_seq {
                return Ok(rejected(
                    Reason::LastSeqMismatch,
                    expected,
                    info.last_seq,
                    "",
                ));
            }
        }
        if r.from_seq == 0 || r.from_seq >= r.to_seq || r.to_seq > info.last_seq + 1 {
            return Ok(bad(&format!(
                "range [{}, {}) must be non-empty and within 1..={}",
                r.from_seq, r.to_seq, info.last_seq
            )));
        }
        if info.first_seq == 0 || r.from_seq < info.first_seq {
            return Ok(bad(&format!(
                "range starts at {} but the first stored message is {}",
                r.from_seq, info.first_seq
            )));
        }
        let removed = self.remove_messages(c, &mut rec, r.from_seq, r.to_seq)?;
        let mut stored = ChatMessage {
            seq: r.from_seq,
            created_at_ms: self.now,
            ..summary.clone()
        };
        stored
            .metadata
            .insert("compacted_to".into(), r.to_seq.to_string());
        let info = rec.info.get_or_insert_with(Default::default);
        info.message_count += 1;
        info.token_total = info.token_total.saturating_add(stored.token_count);
        if is_pinned(&stored) {
            rec.pinned.push(stored.seq);
            rec.pinned.sort_unstable();
        }
        self.put(&msg_key(c, stored.seq), stored.encode_to_vec(), 0)?;
        let info = self.save_conversation(c, rec)?;
        Ok(done(ContextOutcome {
            version: self.index,
            first_seq: r.from_seq,
            count: removed,
            info: Some(info),
            ..Default::default()
        }))
    }

    fn set_metadata(&mut self, r: &SetConversationMetadataRequest) -> Result<CommandResult> {
        let Some(c) = &r.conversation else {
            return Ok(bad("conversation missing"));
        };
        let existing = self.conversation(c)?;
        let actual = existing
            .as_ref()
            .and_then(|rec| rec.info.as_ref())
            .map_or(0, |i| i.metadata_version);
        if let Some(expected) = r.expected_metadata_version {
            if expected != actual {
                return Ok(rejected(
                    Reason::MetadataVersionMismatch,
                    expected,
                    actual,
                    "",
                ));
            }
        }
        let mut rec = existing.unwrap_or_else(|| self.new_conversation(c));
        let info = rec.info.get_or_insert_with(Default::default);
        info.metadata = r.metadata.clone();
        info.metadata_version = self.index;
        if let Some(ttl) = r.idle_ttl_ms {
            info.idle_ttl_ms = ttl;
        }
        let info = self.save_conversation(c, rec)?;
        Ok(done(ContextOutcome {
            version: self.index,
            info: Some(info),
            ..Default::default()
        }))
    }

    fn touch(&mut self, c: Option<&ConversationRef>, thread: &str) -> Result<CommandResult> {
        let mut touched = false;
        if let Some(c) = c {
            if let Some(rec) = self.conversation(c)? {
                if rec.info.as_ref().is_some_and(|i| i.idle_ttl_ms > 0) {
                    self.save_conversation(c, rec)?;
                    touched = true;
                }
            }
        }
        if !thread.is_empty() {
            if let Some(t) = self.thread(thread)? {
                if t.idle_ttl_ms > 0 {
                    self.save_thread(thread, t)?;
                    touched = true;
                }
            }
        }
        Ok(done(ContextOutcome {
            version: self.index,
            existed: touched,
            ..Default::default()
        }))
    }

    /// The live thread record; an expired thread is removed first.
    fn thread(&mut self, thread: &str) -> Result<Option<ThreadRecord>> {
        self.live_head(&thread_key(thread), |me| me.clear_thread(thread).map(drop))
    }

    fn save_thread(&mut self, thread: &str, mut t: ThreadRecord) -> Result<()> {
        t.updated_at_ms = self.now;
        let expires = expiry(self.now, t.idle_ttl_ms);
        self.put(&thread_key(thread), t.encode_to_vec(), expires)
    }

    /// Removes a thread with every namespace; whether it existed (live).
    fn clear_thread(&mut self, thread: &str) -> Result<bool> {
        let dk = keys::data_key(&thread_key(thread));
        let live = self.a.live_value(&dk, self.now)?.is_some();
        self.a.delete_data(dk)?;
        let mut found = 0;
        for p in thread_data_prefixes(thread) {
            found += self.delete_prefix(&p)?;
        }
        Ok(live || found > 0)
    }

    /// The thread's record for a write, created if new, its TTL updated if asked.
    fn touch_thread(&mut self, thread: &str, ttl: Option<u64>) -> Result<()> {
        let mut t = self.thread(thread)?.unwrap_or(ThreadRecord {
            created_at_ms: self.now,
            ..Default::default()
        });
        if let Some(ttl) = ttl {
            t.idle_ttl_ms = ttl;
        }
        self.save_thread(thread, t)
    }

    fn put_checkpoint(&mut self, r: &PutCheckpointRequest) -> Result<CommandResult> {
        let (Some(t), Some(cp)) = (&r.thread, &r.checkpoint) else {
            return Ok(bad("thread or checkpoint missing"));
        };
        self.touch_thread(&t.thread, r.idle_ttl_ms)?;
        let stored = Checkpoint {
            created_at_ms: self.now,
            ..cp.clone()
        };
        self.put(&ckpt_key(t, &cp.checkpoint_id), stored.encode_to_vec(), 0)?;
        for b in &r.blobs {
            self.a.put_user(
                self.index,
                self.now,
                &blob_key(t, &b.channel, &b.version),
                b.value.clone(),
                0,
                None,
            )?;
        }
        Ok(done(ContextOutcome {
            version: self.index,
            ..Default::default()
        }))
    }

    fn put_writes(&mut self, r: &PutWritesRequest) -> Result<CommandResult> {
        let Some(t) = &r.thread else {
            return Ok(bad("thread missing"));
        };
        self.touch_thread(&t.thread, None)?;
        let mut stored = 0;
        for (i, w) in r.writes.iter().enumerate() {
            let idx = if r.keep_idx {
                w.idx
            } else {
                write_idx(&w.channel, i)
            };
            let k = write_key(t, &r.checkpoint_id, &r.task_id, idx);
            let exists = self.a.value(&keys::data_key(&k))?.is_some();
            if exists && !SPECIAL_CHANNELS.contains(&w.channel.as_str()) {
                continue;
            }
            let pw = PendingWrite {
                task_id: r.task_id.clone(),
                channel: w.channel.clone(),
                value: w.value.clone(),
                task_path: r.task_path.clone(),
                idx,
            };
            self.put(&k, pw.encode_to_vec(), 0)?;
            stored += 1;
        }
        Ok(done(ContextOutcome {
            version: self.index,
            count: stored,
            ..Default::default()
        }))
    }

    fn prune(&mut self, r: &PruneCheckpointsRequest) -> Result<CommandResult> {
        let Some(t) = &r.thread else {
            return Ok(bad("thread missing"));
        };
        let keep = match &r.keep {
            Some(k) => k.clone(),
            None => return Ok(bad("keep_latest or older_than_ms must be set")),
        };
        let (removed, removed_blobs) = self.prune_where(t, |ckpts, now| match keep {
            Keep::KeepLatest(n) => {
                let keep_from = ckpts
                    .len()
                    .saturating_sub(usize::try_from(n).unwrap_or(usize::MAX));
                (0..ckpts.len()).map(|i| i < keep_from).collect()
            }
            Keep::OlderThanMs(age) => {
                let cutoff = now.saturating_sub(age);
                ckpts.iter().map(|c| c.created_at_ms < cutoff).collect()
            }
            Keep::RemoveId(ref id) => ckpts.iter().map(|c| &c.checkpoint_id == id).collect(),
        })?;
        Ok(done(ContextOutcome {
            version: self.index,
            count: removed,
            count2: removed_blobs,
            ..Default::default()
        }))
    }

    /// Removes the named checkpoints that still carry one of the run ids, thread by
    /// thread, with the blobs no remaining checkpoint of the thread names.
    fn delete_checkpoints(&mut self, d: &DeleteCheckpointsCommand) -> Result<CommandResult> {
        let mut by_thread: std::collections::BTreeMap<(&str, &str), HashSet<&str>> =
            Default::default();
        for c in &d.checkpoints {
            by_thread
                .entry((c.thread.as_str(), c.ns.as_str()))
                .or_default()
                .insert(c.checkpoint_id.as_str());
        }
        let (mut removed, mut removed_blobs) = (0, 0);
        for ((thread, ns), ids) in by_thread {
            let t = ThreadRef {
                thread: thread.to_string(),
                ns: ns.to_string(),
                namespace: String::new(),
            };
            let (r, b) = self.prune_where(&t, |ckpts, _| {
                ckpts
                    .iter()
                    .map(|c| {
                        ids.contains(c.checkpoint_id.as_str())
                            && MetadataFilter::run_id_in(c, &d.run_ids)
                    })
                    .collect()
            })?;
            removed += r;
            removed_blobs += b;
        }
        Ok(done(ContextOutcome {
            version: self.index,
            count: removed,
            count2: removed_blobs,
            ..Default::default()
        }))
    }

    /// Removes the checkpoints of `(thread, ns)` that `pick` marks (given them in id
    /// order, oldest first, and the command's time), with their writes, then the
    /// blobs no remaining checkpoint names; (checkpoints, blobs) removed.
    fn prune_where(
        &mut self,
        t: &ThreadRef,
        pick: impl FnOnce(&[Checkpoint], u64) -> Vec<bool>,
    ) -> Result<(u64, u64)> {
        let all = self.a.scan_user_prefix(&ckpt_prefix(t))?;
        let mut keys = Vec::with_capacity(all.len());
        let mut ckpts = Vec::with_capacity(all.len());
        for (dk, v) in all {
            keys.push(dk);
            ckpts.push(Checkpoint::decode(v.value.as_ref())?);
        }
        // Ascending by checkpoint id (key order): the newest last.
        let remove = pick(&ckpts, self.now);
        let mut referenced = HashSet::new();
        let mut removed = 0;
        for ((dk, cp), gone) in keys.into_iter().zip(ckpts).zip(remove) {
            if gone {
                self.a.delete_data(dk)?;
                self.delete_prefix(&writes_prefix(t, &cp.checkpoint_id))?;
                removed += 1;
            } else {
                referenced.extend(cp.channel_versions);
            }
        }
        let mut removed_blobs = 0;
        for (dk, _) in self.a.scan_user_prefix(&blob_prefix(t))? {
            let Some(uk) = keys::decode_data_key(&dk) else {
                continue;
            };
            if blob_of(t, uk).is_some_and(|cv| !referenced.contains(&cv)) {
                self.a.delete_data(dk)?;
                removed_blobs += 1;
            }
        }
        Ok((removed, removed_blobs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::command::tests::MapReader;
    use crate::proto::{raft_command, ChannelBlob, RaftCommand};

    fn tref(thread: &str, ns: &str) -> ThreadRef {
        ThreadRef {
            thread: thread.into(),
            ns: ns.into(),
            namespace: String::new(),
        }
    }

    fn conv() -> ConversationRef {
        ConversationRef {
            namespace: "ns".into(),
            id: "c1".into(),
        }
    }

    fn msg(content: &str, tokens: u64) -> ChatMessage {
        ChatMessage {
            role: "user".into(),
            content: content.into(),
            token_count: tokens,
            ..Default::default()
        }
    }

    fn run<R: StateReader>(a: &mut Applier<'_, R>, index: u64, now: u64, op: Op) -> CommandResult {
        let cmd = RaftCommand {
            request_id: Default::default(),
            now_ms: now,
            cmd: Some(raft_command::Cmd::Context(ContextCommand { op: Some(op) })),
        };
        a.apply(index, &cmd, |_, r| r.to_vec()).unwrap()
    }

    fn outcome(r: CommandResult) -> ContextOutcome {
        match r.result {
            Some(command_result::Result::Context(o)) => o,
            other => panic!("expected an outcome, got {other:?}"),
        }
    }

    fn append(msgs: Vec<ChatMessage>, expected: Option<u64>, key: &str) -> Op {
        Op::Append(AppendRequest {
            conversation: Some(conv()),
            messages: msgs,
            expected_last_seq: expected,
            idempotency_key: key.into(),
            ..Default::default()
        })
    }

    #[test]
    fn appends_number_messages_and_check_expectations() {
        let reader = MapReader::default();
        let mut a = Applier::new(&reader);
        let o = outcome(run(
            &mut a,
            10,
            1,
            append(vec![msg("a", 3), msg("b", 4)], Some(0), ""),
        ));
        assert_eq!((o.first_seq, o.last_seq), (1, 2));
        let info = o.info.unwrap();
        assert_eq!(
            (info.message_count, info.token_total, info.first_seq),
            (2, 7, 1)
        );
        let r = run(&mut a, 11, 2, append(vec![msg("c", 1)], Some(1), ""));
        assert!(
            matches!(r.result, Some(command_result::Result::ContextRejected(ref x)) if x.actual == 2)
        );
        let o = outcome(run(&mut a, 12, 3, append(vec![msg("c", 1)], Some(2), "k")));
        assert_eq!((o.first_seq, o.last_seq), (3, 3));
        let again = outcome(run(&mut a, 13, 4, append(vec![msg("c", 1)], Some(2), "k")));
        assert!(again.replayed);
        assert_eq!((again.first_seq, again.last_seq, again.version), (3, 3, 12));
    }

    #[test]
    fn an_append_after_the_conversation_expired_starts_afresh_at_seq_1() {
        let reader = MapReader::default();
        let mut a = Applier::new(&reader);
        let mut first = append(vec![msg("old", 5)], None, "");
        if let Op::Append(r) = &mut first {
            r.idle_ttl_ms = Some(10);
        }
        run(&mut a, 10, 1, first);
        // Past its idle TTL the conversation starts afresh at seq 1, its old message
        // gone with it: the new message is a new record, counted alone.
        let o = outcome(run(&mut a, 11, 100, append(vec![msg("new", 2)], None, "")));
        assert_eq!((o.first_seq, o.last_seq), (1, 1));
        let info = o.info.unwrap();
        assert_eq!((info.message_count, info.token_total), (1, 2));
        let rec = a
            .value(&keys::data_key(&msg_key(&conv(), 1)))
            .unwrap()
            .unwrap();
        assert_eq!((rec.version, rec.create_version, rec.lease_id), (11, 11, 0));
        assert_eq!(
            ChatMessage::decode(rec.value.as_ref()).unwrap().content,
            "new"
        );
    }

    #[test]
    fn trim_and_compact_keep_counts() {
        let reader = MapReader::default();
        let mut a = Applier::new(&reader);
        let msgs = (1..=6).map(|i| msg(&format!("m{i}"), i)).collect();
        run(&mut a, 10, 1, append(msgs, None, ""));
        let o = outcome(run(
            &mut a,
            11,
            2,
            Op::Trim(TrimRequest {
                conversation: Some(conv()),
                before_seq: 3,
                ..Default::default()
            }),
        ));
        assert_eq!(o.count, 2);
        let info = o.info.unwrap();
        assert_eq!(
            (info.first_seq, info.message_count, info.token_total),
            (3, 4, 3 + 4 + 5 + 6)
        );
        let o = outcome(run(
            &mut a,
            12,
            3,
            Op::Compact(CompactRequest {
                conversation: Some(conv()),
                from_seq: 3,
                to_seq: 6,
                summary: Some(msg("summary", 2)),
                expected_last_seq: Some(6),
                ..Default::default()
            }),
        ));
        assert_eq!(o.count, 3);
        let info = o.info.unwrap();
        assert_eq!(
            (info.message_count, info.token_total, info.last_seq),
            (2, 2 + 6, 6)
        );
        // A range before the first stored message is refused.
        let r = run(
            &mut a,
            13,
            4,
            Op::Compact(CompactRequest {
                conversation: Some(conv()),
                from_seq: 1,
                to_seq: 4,
                summary: Some(msg("s", 1)),
                ..Default::default()
            }),
        );
        assert!(matches!(
            r.result,
            Some(command_result::Result::ContextRejected(_))
        ));
    }

    #[test]
    fn expired_conversation_starts_afresh() {
        let reader = MapReader::default();
        let mut a = Applier::new(&reader);
        let mut op = append(vec![msg("a", 1), msg("b", 1)], None, "");
        if let Op::Append(r) = &mut op {
            r.idle_ttl_ms = Some(100);
        }
        run(&mut a, 10, 1000, op);
        let o = outcome(run(
            &mut a,
            11,
            1200,
            append(vec![msg("c", 1)], Some(0), ""),
        ));
        assert_eq!((o.first_seq, o.last_seq), (1, 1));
        assert_eq!(o.info.unwrap().message_count, 1);
    }

    #[test]
    fn prune_keeps_referenced_blobs() {
        let reader = MapReader::default();
        let mut a = Applier::new(&reader);
        let t = tref("th", "");
        for (i, ver) in ["1", "2", "3"].iter().enumerate() {
            let mut cp = Checkpoint {
                checkpoint_id: format!("cp{i}"),
                ..Default::default()
            };
            cp.channel_versions.insert("a".into(), ver.to_string());
            cp.channel_versions.insert("b".into(), "1".into());
            let mut blobs = vec![ChannelBlob {
                channel: "a".into(),
                version: ver.to_string(),
                value: "x".into(),
            }];
            if i == 0 {
                blobs.push(ChannelBlob {
                    channel: "b".into(),
                    version: "1".into(),
                    value: "y".into(),
                });
            }
            run(
                &mut a,
                10 + i as u64,
                1,
                Op::PutCheckpoint(PutCheckpointRequest {
                    thread: Some(t.clone()),
                    checkpoint: Some(cp),
                    blobs,
                    ..Default::default()
                }),
            );
        }
        let o = outcome(run(
            &mut a,
            20,
            2,
            Op::Prune(PruneCheckpointsRequest {
                thread: Some(t.clone()),
                keep: Some(Keep::KeepLatest(1)),
                ..Default::default()
            }),
        ));
        // cp0 and cp1 go; a@1 and a@2 go; b@1 stays (cp2 still uses it).
        assert_eq!((o.count, o.count2), (2, 2));
        let left = a.scan_user_prefix(&blob_prefix(&t)).unwrap();
        assert_eq!(left.len(), 2);
    }
}
