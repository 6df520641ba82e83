//! Replica housekeeping and administration: ticks, learner promotion, marking replicas
//! as started, Raft log GC, membership changes, leader transfer, status, removal.

use crate::error::{Error, Result};
use crate::keys;
use crate::proto::{
    raft_command, ConfChangeContext, RaftCommand, Replica, ReplicaRole, ShardDescriptor,
    ShardStatus,
};
use crate::raft::handle::MemberChange;
use crate::raft::peer::{Peer, Reply};
use crate::storage::peer_storage::INIT_INDEX;
use crate::storage::{snapshot, LogOp, WriteTask};
use crate::types::{NodeId, META_SHARD};
use crate::util::now_ms;
use prost::Message as _;
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
use raft::StateRole;
use tokio::sync::oneshot;

/// Housekeeping runs every this many ticks.
const HOUSEKEEPING_TICKS: u64 = 5;
/// A learner within this many entries of the commit index is promoted.
const PROMOTE_LAG: u64 = 64;

impl Peer {
    pub(crate) fn on_tick(&mut self) {
        // While an installed snapshot is being made durable, raft-rs already counts it
        // as stable but this replica has not applied it: an election timeout now would
        // look for the entries between the old applied index and the snapshot, which
        // are gone (raft-rs aborts with "unexpected error getting unapplied entries").
        // The replica waits for the write, as TiKV's does while applying a snapshot.
        if !self.installing_snapshot() {
            self.raw.tick();
        }
        self.ticks += 1;
        self.maybe_hibernate();
        self.load.roll(std::time::Instant::now());
        self.retry_follower_reads();
        if !self.ticks.is_multiple_of(HOUSEKEEPING_TICKS) {
            return;
        }
        self.maybe_compact_log();
        if self.is_leader() {
            self.maybe_promote_learners();
            self.maybe_mark_started();
            self.maybe_balance_leader();
        }
    }

    /// Compacts the log below the applied index once enough has accumulated, keeping
    /// what healthy followers still need (DESIGN §4, log GC).
    pub(crate) fn maybe_compact_log(&mut self) {
        let config = self.ctx.config();
        let cfg = &config.raft;
        let first = self.raw.store().first();
        let applied = self.applied_index;
        if applied < first || applied - first < cfg.log_gc_threshold {
            return;
        }
        let mut target = applied.saturating_sub(cfg.log_gc_keep);
        if self.is_leader() {
            // Keep entries a live follower still needs, unless the log grew far past
            // the threshold: then the follower is sent a snapshot instead.
            let me = self.replica_id.0;
            let slowest = self
                .raw
                .raft
                .prs()
                .iter()
                .filter(|(id, p)| **id != me && p.recent_active)
                .map(|(_, p)| p.matched)
                .min();
            if let Some(m) = slowest {
                if applied - first < 4 * cfg.log_gc_threshold {
                    target = target.min(m);
                }
            }
        }
        if target < first {
            return;
        }
        let term = match self.raw.mut_store().compact(target) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(shard = %self.shard, error = %e, "log compaction skipped");
                return;
            }
        };
        tracing::debug!(shard = %self.shard, index = target, term, "compacted raft log");
        let state = self.raw.store().local_state().encode_to_vec();
        let ops = vec![
            LogOp::DeleteRange(
                keys::CF_RAFT,
                keys::raft_log_key(self.shard, first),
                keys::raft_log_key(self.shard, target + 1),
            ),
            LogOp::Put(keys::CF_RAFT, keys::raft_state_key(self.shard), state),
        ];
        self.ctx.writer.submit(WriteTask {
            ops,
            sync: false,
            done: Box::new(|_| {}),
        });
    }

    /// Hands leadership to the shard's preferred (first) replica when this node leads
    /// more than its share of the shards it hosts and that replica is caught up, so
    /// leaders spread out again after restarts and failures.
    fn maybe_balance_leader(&mut self) {
        if !self.ctx.config().raft.leader_balance
            || self.ctx.config().pd.enabled
            || self.raw.raft.lead_transferee.is_some()
        {
            return;
        }
        let Some(preferred) = self.desc.replicas.first() else {
            return;
        };
        if preferred.replica_id == self.replica_id.0 || preferred.role != ReplicaRole::Voter as i32
        {
            return;
        }
        if self.shard == META_SHARD {
            return;
        }
        let hosted = self
            .ctx
            .peers()
            .iter()
            .filter(|p| p.shard != META_SHARD)
            .count();
        let per_shard = self.desc.replicas.len().max(1);
        let fair = hosted.div_ceil(per_shard);
        if self.ctx.leaders.load(std::sync::atomic::Ordering::Relaxed) <= fair {
            return;
        }
        let last = self.raw.raft.raft_log.last_index();
        let caught_up = self
            .raw
            .raft
            .prs()
            .get(preferred.replica_id)
            .is_some_and(|p| p.recent_active && p.matched == last);
        if caught_up {
            tracing::info!(shard = %self.shard, to = preferred.replica_id, "rebalancing leadership");
            self.transfer_asked = Some(std::time::Instant::now());
            self.raw.transfer_leader(preferred.replica_id);
        }
    }

    /// On the leader: the replicas whose log is within `PROMOTE_LAG` entries of the
    /// leader's and that answered within the last election timeout (`recent_active`,
    /// which `check_quorum` resets), the leader included; ascending.
    pub(crate) fn caught_up_replicas(&self) -> Vec<u64> {
        let last = self.raw.raft.raft_log.last_index();
        let me = self.replica_id.0;
        let mut out: Vec<u64> = self
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(id, p)| {
                **id == me
                    || (p.recent_active
                        && p.matched + PROMOTE_LAG >= last
                        && p.matched > INIT_INDEX)
            })
            .map(|(id, _)| *id)
            .collect();
        out.sort_unstable();
        out
    }

    fn maybe_promote_learners(&mut self) {
        if self.raw.raft.has_pending_conf() {
            return;
        }
        let committed = self.raw.raft.raft_log.committed;
        let ready =
            self.desc.replicas.iter().find(|r| {
                r.role == ReplicaRole::Learner as i32
                    && self.raw.raft.prs().get(r.replica_id).is_some_and(|p| {
                        p.matched + PROMOTE_LAG >= committed && p.matched > INIT_INDEX
                    })
            });
        if let Some(r) = ready {
            let id = r.replica_id;
            tracing::info!(shard = %self.shard, replica = id, "promoting caught-up learner");
            if let Err(e) =
                self.propose_member(MemberChange::Promote { replica: id.into() }, Reply::None)
            {
                tracing::debug!(shard = %self.shard, error = %e, "promotion not proposed");
            }
        }
    }

    /// Records in the descriptor which replicas have persisted log entries, so an
    /// empty data dir claiming one of them can be refused (DESIGN §1).
    fn maybe_mark_started(&mut self) {
        let me = self.replica_id.0;
        let pending: Vec<u64> = self
            .desc
            .replicas
            .iter()
            .filter(|r| !r.started)
            .filter(|r| {
                r.replica_id == me
                    || self
                        .raw
                        .raft
                        .prs()
                        .get(r.replica_id)
                        .is_some_and(|p| p.matched > INIT_INDEX)
            })
            .map(|r| r.replica_id)
            .collect();
        for id in pending {
            let cmd = RaftCommand {
                request_id: format!("mark-started-{}-{id}", self.shard)
                    .into_bytes()
                    .into(),
                now_ms: now_ms(),
                cmd: Some(raft_command::Cmd::MarkStarted(id)),
            };
            self.on_propose(cmd, Reply::None);
        }
    }

    pub(crate) fn on_change_member(
        &mut self,
        change: MemberChange,
        reply: oneshot::Sender<Result<ShardDescriptor>>,
    ) {
        if let Err(e) = self.propose_member(change, Reply::Member(reply)) {
            // propose_member hands the reply back only through `Reply`; on error the
            // reply was already failed inside.
            tracing::debug!(shard = %self.shard, error = %e, "membership change refused");
        }
    }

    fn propose_member(&mut self, change: MemberChange, reply: Reply) -> Result<()> {
        let result = self.build_conf_change(&change);
        let cc = match result {
            Ok(cc) => cc,
            Err(e) => {
                let text = e.to_string();
                self.ctx.metrics.proposals_failed.inc();
                reply.fail(e);
                return Err(Error::Internal(text));
            }
        };
        if let Err(e) = self.raw.propose_conf_change(vec![], cc) {
            let text = e.to_string();
            self.ctx.metrics.proposals_failed.inc();
            reply.fail(Error::ShardUnavailable {
                shard: self.shard,
                reason: format!("membership change dropped: {e}"),
                outcome_unknown: false,
            });
            return Err(Error::Internal(text));
        }
        self.track_proposal(reply);
        Ok(())
    }

    fn build_conf_change(&self, change: &MemberChange) -> Result<ConfChangeV2> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        if self.raw.raft.has_pending_conf() {
            return Err(Error::ShardUnavailable {
                shard: self.shard,
                reason: "another membership change is in progress".into(),
                outcome_unknown: false,
            });
        }
        if self.splitting {
            return Err(Error::FailedPrecondition(format!(
                "shard {}: a split is in progress; change membership once it has applied",
                self.shard
            )));
        }
        let expected = match change {
            MemberChange::Add { expect, .. } | MemberChange::Remove { expect, .. } => *expect,
            MemberChange::Promote { .. } => None,
        };
        if let Some(v) = expected {
            if v != self.desc.conf_ver {
                return Err(Error::FailedPrecondition(format!(
                    "shard {} is at conf_ver {}, the step was planned at {v}",
                    self.shard, self.desc.conf_ver
                )));
            }
        }
        let find_node = |node: NodeId| self.desc.replicas.iter().find(|r| r.node_id == node.0);
        let (kind, replica) = match change {
            MemberChange::Add { node, addr, .. } => {
                if let Some(r) = find_node(*node) {
                    return Err(Error::invalid(
                        "node_id",
                        format!(
                            "node {node} already hosts replica {} of shard {}",
                            r.replica_id, self.shard
                        ),
                    ));
                }
                let max_id = self
                    .desc
                    .replicas
                    .iter()
                    .map(|r| r.replica_id)
                    .max()
                    .unwrap_or(0);
                let id = self.desc.next_replica_id.max(max_id + 1);
                let r = Replica {
                    replica_id: id,
                    node_id: node.0,
                    addr: addr.clone(),
                    role: ReplicaRole::Learner as i32,
                    started: false,
                };
                (ConfChangeType::AddLearnerNode, r)
            }
            MemberChange::Remove { node, expect } => {
                let r = find_node(*node).cloned().ok_or_else(|| {
                    Error::invalid(
                        "node_id",
                        format!("node {node} hosts no replica of shard {}", self.shard),
                    )
                })?;
                if expect.is_some() && r.role == ReplicaRole::Voter as i32 {
                    // The driver's removals keep a quorum of healthy voters, checked
                    // here with the leader's own progress, not the driver's view.
                    let caught_up = self.caught_up_replicas();
                    let remaining: Vec<u64> = self
                        .desc
                        .replicas
                        .iter()
                        .filter(|x| {
                            x.role == ReplicaRole::Voter as i32 && x.replica_id != r.replica_id
                        })
                        .map(|x| x.replica_id)
                        .collect();
                    let healthy = remaining.iter().filter(|id| caught_up.contains(id)).count();
                    if remaining.is_empty() || healthy * 2 <= remaining.len() {
                        return Err(Error::FailedPrecondition(format!(
                            "shard {}: removing the voter on node {node} would leave {healthy} caught-up voter(s) of {}, not a quorum",
                            self.shard,
                            remaining.len()
                        )));
                    }
                }
                let voters = self
                    .desc
                    .replicas
                    .iter()
                    .filter(|r| r.role == ReplicaRole::Voter as i32)
                    .count();
                if r.role == ReplicaRole::Voter as i32 && voters <= 1 {
                    return Err(Error::invalid("node_id", "cannot remove the last voter"));
                }
                (ConfChangeType::RemoveNode, r)
            }
            MemberChange::Promote { replica } => {
                let r = self
                    .desc
                    .replicas
                    .iter()
                    .find(|r| r.replica_id == replica.0)
                    .cloned()
                    .ok_or_else(|| Error::invalid("replica_id", format!("no replica {replica}")))?;
                (ConfChangeType::AddNode, r)
            }
        };
        let mut single = ConfChangeSingle::default();
        single.set_change_type(kind);
        single.node_id = replica.replica_id;
        let mut cc = ConfChangeV2::default();
        cc.set_changes(vec![single].into());
        cc.context = ConfChangeContext {
            replica: Some(replica),
        }
        .encode_to_vec()
        .into();
        Ok(cc)
    }

    pub(crate) fn on_transfer_leader(&mut self, node: NodeId, reply: oneshot::Sender<Result<()>>) {
        if !self.is_leader() {
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        let target = self
            .desc
            .replicas
            .iter()
            .find(|r| r.node_id == node.0 && r.role == ReplicaRole::Voter as i32);
        match target {
            Some(r) => {
                self.transfer_asked = Some(std::time::Instant::now());
                self.raw.transfer_leader(r.replica_id);
                let _ = reply.send(Ok(()));
            }
            None => {
                let _ = reply.send(Err(Error::invalid(
                    "node_id",
                    format!("node {node} hosts no voter of shard {}", self.shard),
                )));
            }
        }
    }

    pub(crate) fn status(&mut self) -> ShardStatus {
        let raft = &self.raw.raft;
        let role = match raft.state {
            StateRole::Leader => "leader",
            StateRole::Follower => "follower",
            StateRole::Candidate => "candidate",
            StateRole::PreCandidate => "pre-candidate",
        };
        let progress = if self.is_leader() {
            raft.prs().iter().map(|(id, p)| (*id, p.matched)).collect()
        } else {
            Default::default()
        };
        let caught_up = if self.is_leader() {
            self.caught_up_replicas()
        } else {
            Vec::new()
        };
        // Ticks roll the load window; a hibernating replica has none, so its last
        // window would otherwise outlive the load it measured.
        self.load.roll(std::time::Instant::now());
        let load = self.load.last();
        let hot_hash = match crate::load::load_split_point(&load.samples) {
            crate::load::LoadSplit::Hot(h) if self.is_leader() => Some(h),
            _ => None,
        };
        ShardStatus {
            pending_proposals: self.proposals.len() as u64,
            hibernating: self.hibernation.asleep,
            writes_per_sec: load.writes_per_sec,
            write_bytes_per_sec: load.write_bytes_per_sec,
            reads_per_sec: load.reads_per_sec,
            hot_hash,
            splitting: self.splitting,
            approx_bytes: 0,
            approx_keys: 0,
            digest: None,
            digest_index: 0,
            descriptor: Some(self.desc.clone()),
            replica_id: self.replica_id.0,
            leader_id: raft.leader_id,
            term: raft.term,
            commit_index: raft.raft_log.committed,
            applied_index: self.applied_index,
            first_index: self.raw.store().first(),
            last_index: self.raw.store().last(),
            role: role.into(),
            progress,
            caught_up,
        }
    }

    /// Deletes this replica's state after it was removed from the shard and leaves a
    /// tombstone so stale messages cannot recreate it.
    pub(crate) fn destroy(&mut self) {
        tracing::info!(shard = %self.shard, replica = %self.replica_id, "replica removed; deleting its data");
        // Readers that passed their barrier before this check it after reading.
        self.epoch.set_removed();
        let shard = self.shard;
        let ops = snapshot::removal_ops(&self.desc, self.replica_id.0);
        self.ctx.writer.submit(WriteTask {
            ops,
            sync: true,
            done: Box::new(|_| {}),
        });
        self.ctx.on_replica_removed(shard, self.replica_id);
    }
}
