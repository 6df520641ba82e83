//! Hibernation of idle shards (`raft.hibernate`, TiKV's hibernate regions,
//! CockroachDB's quiescence): a shard with nothing to do stops ticking and
//! heartbeating, so a node with many idle shards spends nothing on them.
//!
//! - The leader falls asleep after two election timeouts in which nothing was in flight
//!   (no proposal, read, membership change, leadership transfer or snapshot) and every
//!   replica held its whole log, committed and applied. It sends one last heartbeat
//!   marked `hibernate` in its envelope, then its ticks stop (the node's ticker skips
//!   a hibernating replica).
//! - A follower that gets that heartbeat from its leader, holding the leader's whole
//!   log, falls asleep too.
//! - Any raft message but a hibernation heartbeat or a heartbeat's answer wakes a
//!   replica, and so does any request that needs the leader (a proposal, a read
//!   index, a membership change, a transfer, a split, a campaign). A woken leader
//!   heartbeats at once; its followers wake on the heartbeat.
//! - A leader that dies while its shard sleeps is missed when a request reaches a
//!   follower, or when the meta shard reports its node disconnected (no heartbeat for
//!   three intervals): every node then wakes its sleeping replicas that follow a
//!   leader there (`meta::service::wake_orphans`). The follower ticks, hears no
//!   leader and campaigns. Its first campaign may be ignored by a follower still
//!   inside the old leader's lease (its clock did not move while it slept), so the new
//!   leader comes after one to two election timeouts, like after any leader loss.
//! - Not with `raft.lease-reads`: a sleeping leader's lease would not age, and a
//!   leader that slept through its replacement could answer a read from it.

use crate::raft::peer::Peer;
use crate::types::META_SHARD;
use raft::eraftpb::MessageType;
use raft::StateRole;

impl Peer {
    /// On every tick: a leader idle for two election timeouts falls asleep.
    pub(crate) fn maybe_hibernate(&mut self) {
        if !self.hibernation.enabled || self.hibernation.asleep || !self.idle_leader() {
            self.hibernation.idle_ticks = 0;
            return;
        }
        self.hibernation.idle_ticks += 1;
        if self.hibernation.idle_ticks < 2 * self.raw.raft.election_timeout() {
            return;
        }
        tracing::debug!(shard = %self.shard, "idle: the shard hibernates");
        self.hibernation.announcing = true;
        self.raw.ping();
        self.sleep();
    }

    /// After stepping a leader's hibernation heartbeat: a follower holding the
    /// leader's whole log falls asleep with it.
    pub(crate) fn follow_into_hibernation(&mut self, from: u64) {
        let log = &self.raw.raft.raft_log;
        if self.hibernation.enabled
            && !self.hibernation.asleep
            && self.raw.raft.state == StateRole::Follower
            && self.raw.raft.leader_id == from
            && log.last_index() == log.committed
            && self.pending_follower_reads.is_empty()
            && self.follower_reads.is_empty()
        {
            self.sleep();
        }
    }

    /// Whether a raft message of type `kind` (with the envelope's `hibernate`) wakes a
    /// sleeping replica: all but the hibernation heartbeat and heartbeat answers.
    pub(crate) fn wakes(kind: MessageType, hibernate: bool) -> bool {
        !(hibernate && kind == MessageType::MsgHeartbeat)
            && kind != MessageType::MsgHeartbeatResponse
    }

    /// Something to do: wake if asleep, and start counting idle ticks afresh. A woken
    /// leader heartbeats at once, which wakes its followers.
    pub(crate) fn wake(&mut self) {
        self.hibernation.idle_ticks = 0;
        if self.hibernation.asleep {
            tracing::debug!(shard = %self.shard, "woken");
            self.ctx.metrics.replica_wakes.inc();
            self.hibernation.asleep = false;
            self.epoch.set_hibernating(false);
            if self.raw.raft.state == StateRole::Leader {
                self.raw.ping();
            }
        }
    }

    fn sleep(&mut self) {
        // Housekeeping runs on ticks, which stop: the log a burst left is compacted
        // now rather than kept for the whole sleep.
        self.maybe_compact_log();
        self.release_buffers();
        self.hibernation.asleep = true;
        self.hibernation.idle_ticks = 0;
        self.epoch.set_hibernating(true);
    }

    /// Gives back what the queues of a busy spell grew to: a node with many idle
    /// shards keeps only what each needs to wake (they are empty; see
    /// `idle_leader` and `follow_into_hibernation`).
    fn release_buffers(&mut self) {
        self.proposals.shrink_to_fit();
        self.pending_reads.shrink_to_fit();
        self.inflight_reads.shrink_to_fit();
        self.ready_reads.shrink_to_fit();
        self.pending_follower_reads.shrink_to_fit();
        self.follower_reads.shrink_to_fit();
        self.contacts.shrink_to_fit();
        self.heartbeats_sent.shrink_to_fit();
        self.persisted_msgs.shrink_to_fit();
        self.raw.raft.msgs.shrink_to_fit();
        self.raw.raft.raft_log.unstable.entries.shrink_to_fit();
        self.raw.mut_store().shrink();
    }

    /// A leader with nothing in flight whose every replica holds its whole log,
    /// committed and applied.
    fn idle_leader(&self) -> bool {
        let raft = &self.raw.raft;
        let last = raft.raft_log.last_index();
        self.shard != META_SHARD
            && raft.state == StateRole::Leader
            && raft.raft_log.committed == last
            && self.applied_index == last
            && raft.lead_transferee.is_none()
            && raft.pending_read_count() == 0
            && !raft.has_pending_conf()
            && raft.prs().conf().learners().is_empty()
            && raft.prs().iter().all(|(_, p)| p.matched == last)
            && self.proposals.is_empty()
            && self.pending_reads.is_empty()
            && self.inflight_reads.is_empty()
            && self.ready_reads.is_empty()
            && self.persisted_msgs.is_empty()
            && self.inflight_writes == 0
            && self.pending_snapshot.is_none()
            && !self.building_snapshot
            && !self.splitting
    }
}
