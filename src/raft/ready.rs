//! The ready loop of a replica, in raft-rs's order (DESIGN §3): send leader messages →
//! install snapshot → read states → apply committed → persist entries and hard state
//! (queued to the node's log writer) → send persisted messages once durable → advance.

use crate::error::{ErrInto, Error, Result};
use crate::fsm::apply::{apply_round, try_apply_round};
use crate::keys;
use crate::proto::{ConfChangeContext, Replica, ReplicaRole, SnapshotMeta};
use crate::raft::handle::{PeerEvent, Stamp};
use crate::raft::peer::{Peer, PendingSnapshot, Reply};
use crate::storage::snapshot::{self, SnapshotFile};
use crate::storage::{LogOp, PeerStorage, WriteTask};
use crate::types::{NodeId, ShardId, META_SHARD};
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2, Entry, EntryType, Message,
    MessageType, Snapshot,
};
use raft::{RawNode, ReadState, Ready, StateRole};
use std::collections::HashMap;
use std::sync::Arc;

/// The context of a `Split` entry: applying rounds are cut after it (the actor finds
/// it without decoding every entry).
pub(crate) const SPLIT_CONTEXT: &[u8] = b"split";

/// A round of at most this many entries and [`INLINE_APPLY_BYTES`] applies on the
/// replica's task instead of a blocking thread, unless its write would stall: with
/// many shards each round is small, and the handoff to a blocking thread and back
/// (two context switches and their futex wake-ups) cost more than the write.
const INLINE_APPLY_ENTRIES: usize = 8;
/// See [`INLINE_APPLY_ENTRIES`].
const INLINE_APPLY_BYTES: usize = 64 << 10;

/// What a ready asks for before its committed entries are applied (steps 1–4).
pub(crate) struct ReadyStart {
    /// The ready, handed back to `finish_ready`.
    pub(crate) ready: Ready,
    /// The new role, if it changed.
    pub(crate) role: Option<StateRole>,
    /// Messages a leader sends at once (before persisting; raft thesis 10.2.1).
    pub(crate) send_now: Vec<Message>,
    /// A snapshot to install.
    pub(crate) snapshot: Option<Snapshot>,
    /// Confirmed ReadIndex requests.
    pub(crate) read_states: Vec<ReadState>,
    /// Entries to apply (raft-rs hands out only locally durable ones).
    pub(crate) committed: Vec<Entry>,
}

/// What a ready needs made durable, and what to send once it is (steps 5–7).
pub(crate) struct ReadyPersist {
    /// The ready's number, for `on_persist_ready`.
    pub(crate) number: u64,
    /// Log entries, truncation and hard state writes.
    pub(crate) ops: Vec<LogOp>,
    /// Whether the writes need an fsync before the messages go.
    pub(crate) sync: bool,
    /// Messages that may leave only after the writes are durable.
    pub(crate) after_persist: Vec<Message>,
}

/// Takes a ready from raft-rs and splits off what precedes applying.
pub(crate) fn start_ready(raw: &mut RawNode<PeerStorage>) -> ReadyStart {
    let mut ready = raw.ready();
    let role = ready.ss().map(|ss| ss.raft_state);
    let send_now = ready.take_messages();
    let snapshot = (!ready.snapshot().is_empty()).then(|| ready.snapshot().clone());
    let read_states = ready.take_read_states();
    let committed = ready.take_committed_entries();
    ReadyStart {
        ready,
        role,
        send_now,
        snapshot,
        read_states,
        committed,
    }
}

/// Mirrors the ready's entries and hard state into `PeerStorage` (raft-rs must be able
/// to read them before `advance_append_async`), builds their writes, and advances.
/// `ops` holds writes that must precede them (a snapshot install).
pub(crate) fn finish_ready(
    raw: &mut RawNode<PeerStorage>,
    shard: ShardId,
    mut ready: Ready,
    mut ops: Vec<LogOp>,
) -> Result<ReadyPersist> {
    let installs_snapshot = !ops.is_empty();
    let entries = ready.take_entries();
    if let Some(last) = entries.last() {
        let new_last = last.index;
        let old_last = raw.mut_store().append(&entries);
        for e in &entries {
            let bytes = e.write_to_bytes().err_into()?;
            ops.push(LogOp::Put(
                keys::CF_RAFT,
                keys::raft_log_key(shard, e.index),
                bytes,
            ));
        }
        if old_last > new_last {
            ops.push(LogOp::DeleteRange(
                keys::CF_RAFT,
                keys::raft_log_key(shard, new_last + 1),
                keys::raft_log_key(shard, old_last + 1),
            ));
        }
    }
    if let Some(hs) = ready.hs() {
        raw.mut_store().set_hard_state(hs.clone());
    }
    if !ops.is_empty() || ready.hs().is_some() {
        let state = raw.store().local_state().encode_to_vec();
        ops.push(LogOp::Put(
            keys::CF_RAFT,
            keys::raft_state_key(shard),
            state,
        ));
    }
    let sync = ready.must_sync() || !entries.is_empty() || installs_snapshot;
    let after_persist = ready.take_persisted_messages();
    let number = ready.number();
    raw.advance_append_async(ready);
    Ok(ReadyPersist {
        number,
        ops,
        sync,
        after_persist,
    })
}

impl Peer {
    /// Handles one ready, if raft-rs has one.
    pub(crate) async fn handle_ready(&mut self) -> Result<()> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let start = start_ready(&mut self.raw);
        if let Some(role) = start.role {
            self.on_role_change(role);
        }
        let leader = self.raw.raft.leader_id;
        self.epoch.set_committed(self.raw.raft.raft_log.committed);
        let last = self.raw.raft.raft_log.last_index();
        if self.epoch.set_leader(self.is_leader(), leader, last) && leader != 0 {
            self.ctx
                .metrics
                .shard_leader_changes
                .get_or_create(&crate::metrics::ShardLabel {
                    shard: self.shard.0,
                })
                .inc();
        }
        // 1. A leader sends before persisting.
        self.send_messages(start.send_now);
        // 2. Snapshot.
        let mut ops: Vec<LogOp> = Vec::new();
        let mut installed = None;
        if let Some(snap) = &start.snapshot {
            let (last_ops, file, watch_log) = self.on_install_snapshot(snap).await?;
            ops.extend(last_ops);
            let m = snap.get_metadata();
            // The install cleared the disk log: forget versions due for deletion (a
            // later batch must not write their old start back).
            self.ctx.watch.reset(self.shard, m.index);
            installed = Some((m.index, m.term, file, watch_log));
        }
        // 3. Read states.
        for rs in start.read_states {
            let ctx = rs
                .request_ctx
                .as_slice()
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or_default();
            if let Some(waiters) = self.take_read_waiters(ctx) {
                self.ready_reads.push_back((rs.index, waiters));
            }
        }
        self.release_reads();
        // 4. Apply committed entries.
        if !start.committed.is_empty() {
            self.apply_committed(start.committed).await?;
        }
        // 5. Persist entries and hard state through the node's log writer.
        let persist = finish_ready(&mut self.raw, self.shard, start.ready, ops)?;
        let number = persist.number;
        if let Some((index, term, file, watch_log)) = installed {
            self.pending_snapshot = Some(PendingSnapshot {
                number,
                index,
                term,
                file,
                watch_log,
            });
        }
        if persist.ops.is_empty() && self.inflight_writes == 0 {
            // Nothing to make durable and nothing queued before it.
            self.raw.on_persist_ready(number);
            self.send_messages(persist.after_persist);
        } else {
            // 6. Persisted messages go once the log writer reports the write durable.
            self.persisted_msgs
                .push_back((number, persist.after_persist));
            self.inflight_writes += 1;
            let events = self.events.clone();
            let queued = self.ctx.writer.submit(WriteTask {
                ops: persist.ops,
                sync: persist.sync,
                done: Box::new(move |r| {
                    let _ = events.send(match r {
                        Ok(()) => PeerEvent::Persisted(number),
                        Err(e) => PeerEvent::PersistFailed(e.to_string()),
                    });
                }),
            });
            if !queued {
                return Err(Error::Shutdown);
            }
        }
        // 7. Advance.
        self.raw.advance_apply_to(self.applied_index);
        Ok(())
    }

    /// The log writer made every ready up to `number` durable.
    pub(crate) fn on_persisted(&mut self, number: u64) {
        self.inflight_writes = self.inflight_writes.saturating_sub(1);
        self.raw.on_persist_ready(number);
        if self
            .pending_snapshot
            .as_ref()
            .is_some_and(|p| p.number <= number)
        {
            if let Some(PendingSnapshot {
                index,
                term,
                file,
                watch_log: (watch_after, watch_changes),
                ..
            }) = self.pending_snapshot.take()
            {
                // The install is durable: its file may go (off the async thread, a
                // large unlink takes a while).
                file.release();
                self.ctx.tracker.spawn_blocking(move || drop(file));
                self.epoch.set_installing(false);
                // The watch log is the one the snapshot brought (its sender's newest),
                // decoded before the install: no read here.
                self.ctx
                    .watch
                    .install(self.shard, index, watch_after, watch_changes);
                self.applied_index = index;
                self.applied_term = term;
                self.epoch.set_applied(index);
                self.raw.advance_apply_to(index);
                self.release_reads();
                self.publish_contact();
            }
        }
        while self
            .persisted_msgs
            .front()
            .is_some_and(|(n, _)| *n <= number)
        {
            if let Some((_, msgs)) = self.persisted_msgs.pop_front() {
                self.send_messages(msgs);
            }
        }
    }

    pub(crate) fn on_role_change(&mut self, role: StateRole) {
        if role == self.role {
            return;
        }
        tracing::info!(shard = %self.shard, replica = %self.replica_id, ?role, term = self.raw.raft.term, "role changed");
        if self.role == StateRole::Leader {
            // Proposals may still commit under the new leader, but this replica can
            // no longer vouch for them: the client retries under the same request id.
            let e = self.not_leader();
            let failed = self.proposals.len() as u64;
            self.ctx.metrics.proposals_failed.inc_by(failed);
            for p in self.proposals.drain(..) {
                p.reply.fail(e.clone_routing());
            }
            for (_, ws) in self.inflight_reads.drain() {
                for w in ws {
                    let _ = w.send(Err(e.clone_routing()));
                }
            }
            for r in self.pending_reads.drain(..) {
                let _ = r.send(Err(e.clone_routing()));
            }
        }
        if role == StateRole::Leader {
            self.ctx.meta.wake();
        }
        if role == StateRole::Leader {
            self.count_leadership(true);
        } else if self.role == StateRole::Leader {
            self.count_leadership(false);
            // A split proposed by this leader may never apply now.
            self.splitting = false;
        }
        self.role = role;
    }

    /// Keeps the node's count of leading data-shard replicas (leader balancing ignores
    /// the meta shard), on every gain or loss of leadership.
    pub(crate) fn count_leadership(&self, gained: bool) {
        if self.shard == META_SHARD {
            return;
        }
        let leaders = &self.ctx.leaders;
        if gained {
            leaders.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        } else {
            leaders.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Wraps raft messages for their nodes and hands them to the transport.
    pub(crate) fn send_messages(&mut self, msgs: Vec<Message>) {
        // Followers use it to bound the staleness of their reads (`replica_read`). A
        // new leader's commit index may lag writes its predecessor acknowledged until
        // it commits an entry of its own term: until then it vouches for nothing.
        let leader_commit = if self.is_leader() && self.raw.raft.commit_to_current_term() {
            self.raw.raft.raft_log.committed
        } else {
            0
        };
        for m in msgs {
            let Some(node) = self.replica_nodes.get(&m.to).copied() else {
                tracing::debug!(shard = %self.shard, to = m.to, "no node known for replica");
                continue;
            };
            let lineage = (self.desc.split_from, self.desc.split_index);
            if m.get_msg_type() == MessageType::MsgHeartbeat {
                self.heartbeats_sent.insert(m.to, std::time::Instant::now());
            }
            let hibernate =
                self.hibernation.announcing && m.get_msg_type() == MessageType::MsgHeartbeat;
            self.ctx.transport.send(
                self.shard,
                lineage,
                node,
                m,
                Stamp {
                    leader_commit,
                    hibernate,
                },
                self.events.clone(),
            );
        }
    }

    /// Applies committed entries: conf changes to raft-rs here, then everything to
    /// RocksDB on a blocking thread, then answers proposals and reads.
    async fn apply_committed(&mut self, mut entries: Vec<Entry>) -> Result<()> {
        // A split entry ends its round: the new shard takes the membership as of the
        // split, so later conf changes must not be applied before it.
        while let Some(i) = entries
            .iter()
            .position(|e| e.context.as_ref() == SPLIT_CONTEXT)
        {
            let rest = entries.split_off(i + 1);
            self.apply_round_of(std::mem::replace(&mut entries, rest))
                .await?;
            // Applied or refused, the split is no longer in progress.
            self.splitting = false;
        }
        if !entries.is_empty() {
            self.apply_round_of(entries).await?;
        }
        Ok(())
    }

    /// Applies one round of committed entries: a small round on the replica's own task
    /// (a thread handoff there and back costs more than its write), a larger one on a
    /// blocking thread.
    async fn apply_round_of(&mut self, entries: Vec<Entry>) -> Result<()> {
        let mut desc = self.desc.clone();
        let mut conf_entries: HashMap<u64, u64> = HashMap::new();
        for e in &entries {
            let cc = match e.get_entry_type() {
                EntryType::EntryConfChangeV2 => {
                    ConfChangeV2::parse_from_bytes(&e.data).err_into()?
                }
                EntryType::EntryConfChange => {
                    v1_to_v2(ConfChange::parse_from_bytes(&e.data).err_into()?)
                }
                EntryType::EntryNormal => continue,
            };
            let cs = self.raw.apply_conf_change(&cc).err_into()?;
            self.raw.mut_store().set_conf_state(cs.clone());
            self.update_descriptor(&mut desc, &cc);
            conf_entries.insert(e.index, e.term);
            let me = self.replica_id.0;
            if !cs.voters.contains(&me) && !cs.learners.contains(&me) {
                self.removed = true;
            }
        }
        let engine = self.ctx.engine.clone();
        let shard = self.shard;
        let cs = self.raw.store().conf_state().write_to_bytes().err_into()?;
        let started = std::time::Instant::now();
        let gc = self.ctx.watch.take_gc(shard);
        let bytes: usize = entries.iter().map(|e| e.data.len()).sum();
        let small = entries.len() <= INLINE_APPLY_ENTRIES && bytes <= INLINE_APPLY_BYTES;
        let inline = if small {
            try_apply_round(&engine, shard, &entries, desc.clone(), cs.clone(), &gc)?
        } else {
            None
        };
        let applied = match inline {
            Some(applied) => applied,
            None => self
                .ctx
                .tracker
                .spawn_blocking(move || apply_round(&engine, shard, &entries, desc, cs, &gc))
                .await
                .map_err(|e| Error::Internal(format!("apply task: {e}")))??,
        };
        self.ctx
            .metrics
            .apply_seconds
            .observe(started.elapsed().as_secs_f64());
        self.desc = applied.desc;
        self.epoch.set(&self.desc);
        self.epoch.set_applied(applied.applied_index);
        self.ctx.note_descriptor(&self.desc);
        self.ctx.watch.publish(shard, applied.changes);
        if let Some(state) = applied.meta {
            self.ctx.note_routes(&state.shards);
            if let Some(doc) = &state.cluster_config {
                self.ctx.apply_cluster_config(doc);
            }
            if let Some(auth) = &state.auth {
                self.ctx.install_auth(auth);
            }
            self.ctx.meta.set_state(state);
        }
        if let Some(child) = applied.split {
            self.start_split_child(child);
        }
        if !conf_entries.is_empty() && self.role == StateRole::Leader {
            // Report the new epoch to the meta shard now, not at the next heartbeat.
            self.ctx.meta.wake();
        }
        self.applied_index = applied.applied_index;
        self.applied_term = applied.applied_term;
        self.publish_contact();
        let mut results: HashMap<u64, _> = applied
            .results
            .into_iter()
            .map(|(i, t, r)| (i, (t, r)))
            .collect();
        while self
            .proposals
            .front()
            .is_some_and(|p| p.index <= self.applied_index)
        {
            let Some(p) = self.proposals.pop_front() else {
                break;
            };
            let lost = || Error::ShardUnavailable {
                shard: self.shard,
                reason: "proposal was superseded by a new leader; outcome unknown".into(),
                outcome_unknown: true,
            };
            match p.reply {
                Reply::Command(tx) => {
                    let r = match results.remove(&p.index) {
                        Some((t, r)) if t == p.term => Ok(r),
                        _ => Err(lost()),
                    };
                    let _ = tx.send(r);
                }
                Reply::Member(tx) => {
                    let r = match conf_entries.get(&p.index) {
                        Some(t) if *t == p.term => Ok(self.desc.clone()),
                        _ => Err(lost()),
                    };
                    let _ = tx.send(r);
                }
                Reply::None => {}
            }
        }
        self.release_reads();
        Ok(())
    }

    /// Reflects a conf change in the descriptor, using the replica info in its context.
    fn update_descriptor(&mut self, desc: &mut crate::proto::ShardDescriptor, cc: &ConfChangeV2) {
        let info = ConfChangeContext::decode(cc.context.as_ref())
            .ok()
            .and_then(|c| c.replica);
        for ch in cc.get_changes() {
            apply_change(desc, ch, info.as_ref());
            desc.next_replica_id = desc.next_replica_id.max(ch.node_id + 1);
        }
        if !cc.get_changes().is_empty() {
            desc.conf_ver += 1;
        }
        for r in &desc.replicas {
            self.replica_nodes.insert(r.replica_id, NodeId(r.node_id));
            self.ctx.addresses.learn(NodeId(r.node_id), &r.addr);
        }
    }

    /// Installs a snapshot from raft-rs (see `storage::snapshot` for the steps and
    /// why they are crash-safe): verifies the received file, writes the marker and
    /// clears the old state through the log writer (synced, behind every earlier
    /// write of this replica), loads the records, and returns the last writes, which
    /// go into this ready's synced batch with the new Raft state, and the file, to
    /// delete once that batch is durable. Updates the mirror and the descriptor.
    async fn on_install_snapshot(
        &mut self,
        snap: &Snapshot,
    ) -> Result<(
        Vec<LogOp>,
        Arc<SnapshotFile>,
        (u64, Vec<crate::fsm::watch::Change>),
    )> {
        let meta = snap.get_metadata();
        let sm = SnapshotMeta::decode(snap.data.as_ref())?;
        let shard = self.shard;
        let file = self
            .ctx
            .snapshots
            .take_incoming(shard, meta.index, meta.term)
            .ok_or_else(|| {
                Error::Internal(format!(
                    "snapshot {}/{} of shard {shard} has no received file",
                    meta.index, meta.term
                ))
            })?;
        if file.size != sm.size || file.checksum != sm.checksum {
            return Err(Error::Storage(format!(
                "shard {shard}: snapshot file does not match its checksum"
            )));
        }
        // 1. Check the whole file before touching anything.
        let (header, watch_changes) = {
            let file = file.clone();
            self.ctx
                .tracker
                .spawn_blocking(move || {
                    let header = snapshot::verify(&file, shard)?;
                    let changes = crate::fsm::watch::decode_shipped(shard, &header.watch_log);
                    Ok::<_, Error>((header, changes))
                })
                .await
                .map_err(|e| Error::Internal(format!("snapshot verify task: {e}")))??
        };
        // The watch log the snapshot brings; one that does not decode is no history
        // (the replica starts its log at the snapshot).
        let watch_log = match watch_changes {
            Ok(changes) => (header.watch_log_after.unwrap_or(meta.index), changes),
            Err(e) => {
                tracing::warn!(%shard, %e, "the snapshot's watch log does not decode; the log starts at the snapshot");
                (meta.index, Vec::new())
            }
        };
        let me = self.replica_id.0;
        // A replica created empty for a split's new shard (its parent here skipped
        // the split by installing a snapshot) legitimately holds nothing yet.
        let lost_identity = self.applied_index == 0
            && !self.from_split
            && header
                .descriptor
                .as_ref()
                .is_some_and(|d| d.replicas.iter().any(|r| r.replica_id == me && r.started));
        if lost_identity {
            // This replica was created empty here, but the cluster records that it
            // persisted entries before: its data (and Raft vote) was lost. Refuse to
            // take the old identity back (DESIGN §1).
            self.ctx.on_replica_removed(shard, self.replica_id);
            return Err(Error::Config {
                field: "data-dir".into(),
                reason: format!(
                    "replica {me} of shard {shard} lost its data on this node; remove it \
                     (`ctxctl member remove {}`) and add this node under a new id",
                    self.ctx.node_id
                ),
            });
        }
        // Arcs this replica held that neither the snapshot's descriptor nor another
        // replica on this node owns: a split this replica skipped moved them away, and
        // their data must not stay behind (it would be read back if they returned).
        let new_arcs = header
            .descriptor
            .as_ref()
            .map(crate::ranges::arcs_of)
            .unwrap_or_default();
        let mut keep: Vec<crate::ranges::Arc> = new_arcs;
        for p in self.ctx.peers() {
            if p.shard != shard {
                keep.extend(p.epoch.arcs().iter().copied());
            }
        }
        let orphans = crate::ranges::subtract(&self.epoch.arcs(), &keep);
        tracing::info!(%shard, index = meta.index, term = meta.term, bytes = file.size, "installing snapshot");
        // 2. The marker and the clearing of the old state, durable before any record
        // of the file is written. From here the file outlives this replica until
        // the install is durable (a restart redoes it from the file).
        self.epoch.set_installing(true);
        file.keep();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let queued = self.ctx.writer.submit(WriteTask {
            ops: snapshot::begin_install_ops(shard, &header, &file, &orphans),
            sync: true,
            done: Box::new(move |r| {
                let _ = tx.send(r);
            }),
        });
        if !queued {
            return Err(Error::Shutdown);
        }
        rx.await.map_err(|_| Error::Shutdown)??;
        // 3. The records, in bounded batches.
        let loaded = {
            let engine = self.ctx.engine.clone();
            let file = file.clone();
            let cancel = self.ctx.cancel.clone();
            let cleared = snapshot::install_ranges(&header, &orphans);
            self.ctx
                .tracker
                .spawn_blocking(move || {
                    snapshot::load(&engine, &file, shard, &cleared, &|| cancel.is_cancelled())
                })
                .await
                .map_err(|e| Error::Internal(format!("snapshot load task: {e}")))??
        };
        tracing::info!(%shard, index = meta.index, data = loaded.data, dedup = loaded.dedup, batches = loaded.batches, "snapshot records loaded");
        let ops = snapshot::finish_install_ops(shard, &header);
        self.raw.mut_store().apply_snapshot(snap);
        if let Some(mut state) = header.meta {
            crate::meta::state::upgrade(&mut state);
            self.ctx.note_routes(&state.shards);
            self.ctx.meta.set_state(state);
        }
        if let Some(mut desc) = header.descriptor {
            crate::meta::state::upgrade_descriptor(&mut desc, &[]);
            for r in &desc.replicas {
                self.replica_nodes.insert(r.replica_id, NodeId(r.node_id));
                self.ctx.addresses.learn(NodeId(r.node_id), &r.addr);
            }
            self.ctx.note_descriptor(&desc);
            self.epoch.set(&desc);
            self.desc = desc;
        }
        Ok((ops, file, watch_log))
    }

    /// Starts building a snapshot if raft-rs asked for one.
    pub(crate) fn maybe_build_snapshot(&mut self) {
        if self.building_snapshot {
            return;
        }
        if self.raw.store().take_snapshot_wanted().is_none() {
            return;
        }
        self.building_snapshot = true;
        let engine = self.ctx.engine.clone();
        let store = self.ctx.snapshots.clone();
        let shard = self.shard;
        let events = self.events.clone();
        self.ctx.tracker.spawn_blocking(move || {
            let r = snapshot::build(&engine, &store, shard);
            let _ = events.send(PeerEvent::SnapshotBuilt(Box::new(r)));
        });
    }

    pub(crate) fn on_snapshot_built(&mut self, r: Result<snapshot::BuiltSnapshot>) {
        self.building_snapshot = false;
        let built = match r {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(shard = %self.shard, error = %e, "snapshot build failed");
                return;
            }
        };
        let st = &built.apply_state;
        let cs = match raft::eraftpb::ConfState::parse_from_bytes(&st.conf_state) {
            Ok(cs) => cs,
            Err(e) => {
                tracing::error!(shard = %self.shard, error = %e, "corrupt conf state");
                return;
            }
        };
        let sm = SnapshotMeta {
            shard_id: self.shard.0,
            index: st.applied_index,
            term: st.applied_term,
            size: built.file.size,
            checksum: built.file.checksum,
            format: snapshot::FORMAT_FRAMES,
        };
        let mut snap = Snapshot {
            data: sm.encode_to_vec().into(),
            ..Default::default()
        };
        let m = snap.mut_metadata();
        m.index = st.applied_index;
        m.term = st.applied_term;
        m.set_conf_state(cs);
        tracing::info!(shard = %self.shard, index = sm.index, bytes = sm.size, "snapshot built");
        self.ctx.snapshots.put_outgoing(built.file);
        self.raw.mut_store().set_snapshot(snap);
    }
}

fn apply_change(
    desc: &mut crate::proto::ShardDescriptor,
    ch: &ConfChangeSingle,
    info: Option<&Replica>,
) {
    let id = ch.node_id;
    let pos = desc.replicas.iter().position(|r| r.replica_id == id);
    match ch.get_change_type() {
        ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
            let role = if ch.get_change_type() == ConfChangeType::AddNode {
                ReplicaRole::Voter
            } else {
                ReplicaRole::Learner
            };
            match pos {
                Some(p) => desc.replicas[p].role = role as i32,
                None => {
                    let (node_id, addr) = info
                        .filter(|i| i.replica_id == id)
                        .map(|i| (i.node_id, i.addr.clone()))
                        .unwrap_or((id, String::new()));
                    desc.replicas.push(Replica {
                        replica_id: id,
                        node_id,
                        addr,
                        role: role as i32,
                        started: false,
                    });
                }
            }
        }
        ConfChangeType::RemoveNode => {
            if let Some(p) = pos {
                desc.replicas.remove(p);
            }
        }
    }
}

/// The single-change V2 form of a legacy conf change.
fn v1_to_v2(cc: ConfChange) -> ConfChangeV2 {
    let mut single = ConfChangeSingle::default();
    single.set_change_type(cc.get_change_type());
    single.node_id = cc.node_id;
    let mut v2 = ConfChangeV2::default();
    v2.set_changes(vec![single].into());
    v2.context = cc.context;
    v2
}
