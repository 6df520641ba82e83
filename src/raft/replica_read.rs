//! Reads served by followers (docs/architecture.md, "Replica reads").
//!
//! - **Follower ReadIndex** (linearizable): the follower asks raft-rs for a read index;
//!   raft-rs forwards `MsgReadIndex` to the leader, which confirms its leadership
//!   (a heartbeat quorum, or its lease) and answers with its commit index. The follower
//!   answers the read once it has applied that index. raft-rs drops the request when
//!   no leader is known or the leader has not committed in its term yet, and a lost
//!   message is never answered, so unanswered requests are sent again every
//!   [`RETRY_TICKS`] ticks while someone still waits for them.
//! - **Leader contact** (bounded staleness): every append or heartbeat a leader sends
//!   carries its commit index in the envelope. A follower notes the receive time with
//!   that index, and once it has applied the index it records the time as its last
//!   contact ([`Epoch::set_contact`](crate::raft::handle::Epoch::set_contact)). A
//!   follower whose contact is at most `max` old held every write committed up to
//!   `max` (plus the message's one-way delay) ago. A deposed leader that does not know
//!   it yet keeps a partitioned follower in contact for at most `check_quorum`'s
//!   election timeout.
//! - **The leader's contact** is the time by which a quorum of voters (itself
//!   included) last answered an append or heartbeat of its term: no other leader can
//!   have been elected before then (its quorum would share a voter, which answered
//!   this leader later), so no write it does not have was acknowledged before then.

use crate::raft::peer::{Peer, ReadWaiters};
use raft::eraftpb::MessageType;
use std::time::Instant;
use tokio::sync::oneshot;

/// Ticks after which an unanswered follower read index is requested again.
pub(crate) const RETRY_TICKS: u64 = 3;

/// Contacts waiting for their commit index to apply; the oldest go first when full.
const MAX_PENDING_CONTACTS: usize = 64;

impl Peer {
    /// A read any replica may serve linearizably: the leader queues it as usual; a
    /// follower that knows a leader queues it for the next read index it asks for
    /// (one per pass of the replica's loop, as the leader batches its own).
    pub(crate) fn on_replica_read_index(
        &mut self,
        reply: oneshot::Sender<crate::error::Result<()>>,
    ) {
        if self.is_leader() {
            self.load.read();
            self.pending_reads.push(reply);
        } else if self.raw.raft.leader_id == 0 {
            let _ = reply.send(Err(self.not_leader()));
        } else {
            self.pending_follower_reads.push(reply);
        }
    }

    /// Asks the leader for one read index for every follower read queued since the
    /// last pass; a replica that has become the leader serves them itself.
    pub(crate) fn flush_follower_reads(&mut self) {
        if self.pending_follower_reads.is_empty() {
            return;
        }
        let waiters = std::mem::take(&mut self.pending_follower_reads);
        if self.is_leader() {
            self.pending_reads.extend(waiters);
            return;
        }
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        self.follower_reads.insert(ctx, (self.ticks, waiters));
        self.raw.read_index(ctx.to_be_bytes().to_vec());
    }

    /// Sends again the follower read indexes nobody answered; a replica that has
    /// become the leader serves its followers' waiters itself.
    pub(crate) fn retry_follower_reads(&mut self) {
        if self.follower_reads.is_empty() {
            return;
        }
        if self.is_leader() {
            for (_, (_, ws)) in self.follower_reads.drain() {
                self.pending_reads.extend(ws);
            }
            return;
        }
        // Reads whose callers gave up (deadline, cancelled request) are dropped.
        self.follower_reads.retain(|_, (_, ws)| {
            ws.retain(|w| !w.is_closed());
            !ws.is_empty()
        });
        let now = self.ticks;
        let due: Vec<u64> = self
            .follower_reads
            .iter()
            .filter(|(_, (at, _))| now >= at + RETRY_TICKS)
            .map(|(ctx, _)| *ctx)
            .collect();
        for ctx in due {
            if let Some((at, _)) = self.follower_reads.get_mut(&ctx) {
                *at = now;
            }
            self.raw.read_index(ctx.to_be_bytes().to_vec());
        }
    }

    /// The waiters of the read index request with context `ctx`, leader or follower.
    pub(crate) fn take_read_waiters(&mut self, ctx: u64) -> Option<ReadWaiters> {
        if let Some(ws) = self.inflight_reads.remove(&ctx) {
            return Some(ws);
        }
        self.follower_reads.remove(&ctx).map(|(_, ws)| ws)
    }

    /// Notes a message from the shard's leader that carried its commit index; called
    /// after raft-rs has stepped it, so the replica's leader is known.
    /// `msg` is the message's (type, sender replica, term).
    pub(crate) fn note_leader_contact(&mut self, msg: (MessageType, u64, u64), leader_commit: u64) {
        let (kind, from, term) = msg;
        if leader_commit == 0
            || !matches!(kind, MessageType::MsgAppend | MessageType::MsgHeartbeat)
            || from != self.raw.raft.leader_id
            || term != self.raw.raft.term
        {
            return;
        }
        if self.contacts.len() >= MAX_PENDING_CONTACTS {
            self.contacts.pop_front();
        }
        self.contacts
            .push_back((Instant::now(), leader_commit, self.raw.raft.leader_id));
        self.publish_contact();
    }

    /// Notes, on the leader, a voter's answer to an append or heartbeat of its term,
    /// and records the time by which a quorum had answered as the leader's contact.
    /// `msg` is the message's (type, sender replica, term).
    pub(crate) fn note_follower_ack(&mut self, msg: (MessageType, u64, u64)) {
        let (kind, from, term) = msg;
        // Until it has applied an entry of its own term, a new leader may miss writes
        // its predecessor acknowledged.
        if !self.is_leader()
            || self.applied_term != self.raw.raft.term
            || term != self.raw.raft.term
            || !matches!(
                kind,
                MessageType::MsgAppendResponse | MessageType::MsgHeartbeatResponse
            )
        {
            return;
        }
        let now = Instant::now();
        self.acks.insert(from, (now, term));
        let me = self.replica_id.0;
        let acks = &self.acks;
        let mut times: Vec<Option<Instant>> = self
            .raw
            .store()
            .conf_state()
            .voters
            .iter()
            .map(|&id| {
                if id == me {
                    Some(now)
                } else {
                    acks.get(&id).filter(|(_, t)| *t == term).map(|(at, _)| *at)
                }
            })
            .collect();
        // Newest first: the quorum-th newest answer is when a quorum had answered.
        times.sort_unstable_by(|a, b| b.cmp(a));
        let quorum = times.len() / 2 + 1;
        if let Some(Some(at)) = times.get(quorum - 1) {
            self.epoch.set_contact(*at);
        }
    }

    /// Records the newest contact whose commit index is applied.
    pub(crate) fn publish_contact(&mut self) {
        let mut newest = None;
        let leader = self.raw.raft.leader_id;
        while let Some((at, commit, from)) = self.contacts.front() {
            if *from == leader && *commit > self.applied_index {
                break;
            }
            if *from == leader {
                newest = Some(*at);
            }
            self.contacts.pop_front();
        }
        if let Some(at) = newest {
            self.epoch.set_contact(at);
        }
    }
}
