//! The replica's split feature (`impl Peer`): proposing a `Split` entry, and starting
//! the new shard's replica on this node once the entry has applied.

use crate::error::{Error, Result};
use crate::fsm::split::ChildInit;
use crate::proto::{raft_command, CommandResult, RaftCommand, ReplicaRole, SplitCommand};
use crate::raft::handle::PeerMsg;
use crate::raft::peer::{Peer, ReplicaInit, Reply};
use crate::raft::ready::SPLIT_CONTEXT;
use crate::storage::PeerStorage;
use crate::types::ShardId;
use crate::util::now_ms;
use protobuf::Message as _;
use tokio::sync::oneshot;

impl Peer {
    /// Proposes splitting the shard at hash `at` into the new shard `child`. Refused
    /// while another split or a membership change is in progress (the new shard
    /// copies the membership at the split), or when the shard moved on from
    /// `expected_ring_ver`.
    pub(crate) fn on_split(
        &mut self,
        child: ShardId,
        at: u64,
        expected_ring_ver: u64,
        reply: oneshot::Sender<Result<CommandResult>>,
    ) {
        if let Err(e) = self.check_split(at, expected_ring_ver) {
            let _ = reply.send(Err(e));
            return;
        }
        let cmd = RaftCommand {
            request_id: Default::default(),
            now_ms: now_ms(),
            cmd: Some(raft_command::Cmd::Split(SplitCommand {
                child_shard: child.0,
                split_hash: at,
                expected_ring_ver,
            })),
        };
        let before = self.proposals.len();
        self.propose_with_context(SPLIT_CONTEXT.to_vec(), cmd, Reply::Command(reply));
        // In progress only if raft-rs took the proposal.
        self.splitting = self.proposals.len() > before;
    }

    fn check_split(&self, at: u64, expected_ring_ver: u64) -> Result<()> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let busy = |why: &str| Error::FailedPrecondition(format!("shard {}: {why}", self.shard));
        if self.splitting {
            return Err(busy("a split is already in progress"));
        }
        let learners = self
            .desc
            .replicas
            .iter()
            .any(|r| r.role == ReplicaRole::Learner as i32);
        if self.raw.raft.has_pending_conf() || learners {
            return Err(busy(
                "a membership change is in progress; split once it has finished",
            ));
        }
        if self.desc.ring_ver != expected_ring_ver {
            return Err(busy(&format!(
                "its arcs changed (ring_ver {} now, {expected_ring_ver} planned)",
                self.desc.ring_ver
            )));
        }
        if crate::ranges::split_at(&self.epoch.arcs(), at).is_none() {
            return Err(Error::invalid(
                "at_hash",
                format!(
                    "{at} is not strictly inside one of shard {}'s arcs (a cut must leave \
                     hashes on both sides and may not be an arc's first hash)",
                    self.shard
                ),
            ));
        }
        Ok(())
    }

    /// Starts this node's replica of the shard a split just created, from the state
    /// the split wrote. On the parent leader's node it campaigns at once, so the new
    /// shard has a leader within one round trip.
    pub(crate) fn start_split_child(&mut self, child: ChildInit) {
        let shard = ShardId(child.desc.shard_id);
        if self.ctx.peer(shard).is_some() {
            tracing::error!(%shard, "a replica of the new shard already runs here");
            return;
        }
        let conf_state = match raft::eraftpb::ConfState::parse_from_bytes(&child.apply.conf_state) {
            Ok(cs) => cs,
            Err(e) => {
                tracing::error!(%shard, error = %e, "corrupt conf state of a new shard");
                return;
            }
        };
        let storage = PeerStorage::new_split(
            conf_state,
            child.apply.applied_index,
            child.apply.applied_term,
        );
        let init = ReplicaInit {
            shard,
            replica_id: self.replica_id,
            storage,
            desc: child.desc,
            applied: (child.apply.applied_index, child.apply.applied_term),
            from_split: false,
        };
        match Peer::spawn(self.ctx.clone(), init) {
            Ok(handle) => {
                if self.is_leader() {
                    let _ = handle.try_send(PeerMsg::Campaign);
                }
                self.ctx.register(handle);
                tracing::info!(parent = %self.shard, %shard, "split: started the new shard's replica");
                self.ctx.meta.wake();
            }
            Err(e) => tracing::error!(%shard, error = %e, "cannot start the new shard's replica"),
        }
    }
}
