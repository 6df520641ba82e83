//! The handle to a replica actor: the messages it takes, the internal events it hears,
//! its shared epoch, and how callers wait for its answers. Everything that talks to a
//! replica (services, the transport, the node) goes through a [`PeerHandle`]; only the
//! actor itself (`raft::peer`) touches its `RawNode`.

use crate::error::{Error, Result};
use crate::proto::{CommandResult, RaftCommand, ShardDescriptor, ShardStatus};
use crate::types::{NodeId, ReplicaId, ShardId};
use raft::eraftpb::Message;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a caller waits for a proposal to apply or a read index to confirm.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A membership change of a shard.
#[derive(Debug, Clone)]
pub(crate) enum MemberChange {
    /// Add a learner replica on `node` (promoted automatically once caught up).
    Add {
        /// Node to host the new replica.
        node: NodeId,
        /// Its address.
        addr: String,
    },
    /// Remove the replica hosted on `node`.
    Remove {
        /// Node whose replica goes.
        node: NodeId,
    },
    /// Turn a caught-up learner into a voter.
    Promote {
        /// The learner.
        replica: ReplicaId,
    },
}

/// Requests and raft messages for a replica (bounded queue).
pub(crate) enum PeerMsg {
    /// A raft message from another node.
    Raft(Box<Message>, NodeId),
    /// Replicate a command; answered once applied.
    Propose(Box<RaftCommand>, oneshot::Sender<Result<CommandResult>>),
    /// Answered once the local state is at least as new as the leader's commit at the
    /// time of the request (ReadIndex), so a local read is linearizable.
    ReadIndex(oneshot::Sender<Result<()>>),
    /// Change membership; answered with the descriptor once applied.
    ChangeMember(MemberChange, oneshot::Sender<Result<ShardDescriptor>>),
    /// Hand leadership to the replica on a node.
    TransferLeader(NodeId, oneshot::Sender<Result<()>>),
    /// Report status.
    Status(oneshot::Sender<ShardStatus>),
    /// Start an election now (the preferred leader of a new shard).
    Campaign,
}

/// Internal notifications (unbounded: they must never be dropped).
pub(crate) enum PeerEvent {
    /// One node-wide tick.
    Tick,
    /// The log writer made the ready with this number durable.
    Persisted(u64),
    /// The log writer failed; the replica stops.
    PersistFailed(String),
    /// A snapshot for followers finished building.
    SnapshotBuilt(Result<crate::storage::snapshot::BuiltSnapshot>),
    /// A snapshot send to a replica finished.
    SnapshotSent(u64, bool),
}

/// A cloneable handle to a running replica.
#[derive(Clone)]
pub(crate) struct PeerHandle {
    /// The shard.
    pub(crate) shard: ShardId,
    /// The applied descriptor's epoch, for request checks without a round trip.
    pub(crate) epoch: Arc<Epoch>,
    /// Requests and raft messages.
    tx: mpsc::Sender<PeerMsg>,
    /// Internal events.
    events: mpsc::UnboundedSender<PeerEvent>,
}

/// A shard's epoch as its replica last applied it.
#[derive(Default)]
pub(crate) struct Epoch {
    /// Configuration version (membership changes).
    conf_ver: std::sync::atomic::AtomicU64,
    /// Ring version (arc ownership changes).
    ring_ver: std::sync::atomic::AtomicU64,
    /// Whether the replica leads its shard (as of its last ready).
    leading: std::sync::atomic::AtomicBool,
}

impl Epoch {
    /// Records the epoch of `desc`.
    pub(crate) fn set(&self, desc: &ShardDescriptor) {
        use std::sync::atomic::Ordering::Release;
        self.conf_ver.store(desc.conf_ver, Release);
        self.ring_ver.store(desc.ring_ver, Release);
    }

    /// Records whether the replica leads.
    pub(crate) fn set_leading(&self, leading: bool) {
        self.leading
            .store(leading, std::sync::atomic::Ordering::Release);
    }

    /// Whether the replica led its shard at its last ready (for background work
    /// only: requests still go through raft-rs's own check).
    pub(crate) fn leading(&self) -> bool {
        self.leading.load(std::sync::atomic::Ordering::Acquire)
    }

    /// `(conf_ver, ring_ver)`.
    pub(crate) fn get(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Acquire;
        (self.conf_ver.load(Acquire), self.ring_ver.load(Acquire))
    }
}

impl PeerHandle {
    /// A handle over a replica's queues (made by the actor when it starts).
    pub(crate) fn new(
        shard: ShardId,
        epoch: Arc<Epoch>,
        tx: mpsc::Sender<PeerMsg>,
        events: mpsc::UnboundedSender<PeerEvent>,
    ) -> Self {
        Self {
            shard,
            epoch,
            tx,
            events,
        }
    }

    /// Sends a request, waiting for queue space.
    pub(crate) async fn send(&self, msg: PeerMsg) -> Result<()> {
        self.tx.send(msg).await.map_err(|_| Error::Shutdown)
    }

    /// Proposes `cmd`, stamped with the proposer's clock `now_ms` (TTLs and dedup
    /// windows are computed from it), and waits until it is applied.
    pub(crate) async fn propose(
        &self,
        request_id: bytes::Bytes,
        now_ms: u64,
        cmd: crate::proto::raft_command::Cmd,
    ) -> Result<CommandResult> {
        let cmd = RaftCommand {
            request_id,
            now_ms,
            cmd: Some(cmd),
        };
        let (tx, rx) = oneshot::channel();
        self.send(PeerMsg::Propose(Box::new(cmd), tx)).await?;
        await_reply(self.shard, rx).await
    }

    /// Sends without waiting; raft messages are dropped under overload (raft retries).
    pub(crate) fn try_send(&self, msg: PeerMsg) -> bool {
        self.tx.try_send(msg).is_ok()
    }

    /// Queues an internal event.
    pub(crate) fn event(&self, ev: PeerEvent) -> bool {
        self.events.send(ev).is_ok()
    }
}

/// Awaits a replica's answer for at most [`REQUEST_TIMEOUT`].
pub(crate) async fn await_reply<T>(shard: ShardId, rx: oneshot::Receiver<Result<T>>) -> Result<T> {
    match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(Error::Shutdown),
        Err(_) => Err(Error::ShardUnavailable {
            shard,
            reason: format!("no answer within {REQUEST_TIMEOUT:?}"),
        }),
    }
}
