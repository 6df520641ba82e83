//! The handle to a replica actor: the messages it takes, the internal events it hears,
//! its shared epoch, and how callers wait for its answers. Everything that talks to a
//! replica (services, the transport, the node) goes through a [`PeerHandle`]; only the
//! actor itself (`raft::peer`) touches its `RawNode`.

use crate::error::{Error, Result};
use crate::proto::{
    CommandResult, RaftCommand, ReplicaInfo, ShardDescriptor, ShardRoute, ShardStatus,
};
use crate::types::{NodeId, ReplicaId, ShardId};
use parking_lot::RwLock;
use raft::eraftpb::Message;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
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
        /// Refuse unless the shard is at this `conf_ver` (the placement driver's steps).
        expect: Option<u64>,
    },
    /// Remove the replica hosted on `node`.
    Remove {
        /// Node whose replica goes.
        node: NodeId,
        /// Refuse unless the shard is at this `conf_ver`, and unless the voters left
        /// keep a caught-up quorum (the placement driver's steps).
        expect: Option<u64>,
    },
    /// Turn a caught-up learner into a voter.
    Promote {
        /// The learner.
        replica: ReplicaId,
    },
}

/// What a raft message's envelope (`RaftEnvelope`) says beside the message.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stamp {
    /// The sender's commit index if it sent the message as the shard's leader, else 0.
    pub(crate) leader_commit: u64,
    /// A leader's hibernation heartbeat (`raft::hibernate`).
    pub(crate) hibernate: bool,
}

/// Requests and raft messages for a replica (bounded queue).
pub(crate) enum PeerMsg {
    /// A raft message from another node, with its envelope's stamp.
    Raft {
        msg: Box<Message>,
        from: NodeId,
        stamp: Stamp,
    },
    /// Replicate a command (touching partition hash `hash`, if one); answered once
    /// applied.
    Propose(
        Box<RaftCommand>,
        Option<u64>,
        oneshot::Sender<Result<CommandResult>>,
    ),
    /// Split the shard at `at` into a new shard `child`, if the shard is still at
    /// `expected_ring_ver`; answered with the applied result (`SplitDone` or why not).
    Split {
        /// The new shard's id (allocated by the meta shard).
        child: ShardId,
        /// The first hash of the new shard.
        at: u64,
        /// The `ring_ver` the split was planned at.
        expected_ring_ver: u64,
        /// Who waits.
        reply: oneshot::Sender<Result<CommandResult>>,
    },
    /// Answered once the local state is at least as new as the leader's commit at the
    /// time of the request (ReadIndex), so a local read is linearizable.
    ReadIndex(oneshot::Sender<Result<()>>),
    /// As `ReadIndex`, but a follower may answer too: it asks the leader for the
    /// commit index (follower ReadIndex) and answers once it has applied it.
    ReplicaReadIndex(oneshot::Sender<Result<()>>),
    /// Change membership; answered with the descriptor once applied.
    ChangeMember(MemberChange, oneshot::Sender<Result<ShardDescriptor>>),
    /// Hand leadership to the replica on a node.
    TransferLeader(NodeId, oneshot::Sender<Result<()>>),
    /// Report status.
    Status(oneshot::Sender<ShardStatus>),
    /// The hashes sampled from the writes of the last load window, ascending.
    LoadSamples(oneshot::Sender<Vec<u64>>),
    /// Start an election now (the preferred leader of a new shard).
    Campaign,
    /// Wake if hibernating: the node that held the leader is lost (`raft::hibernate`).
    Wake,
    /// The meta shard lists the shard at `conf_ver` with these replica ids: a replica
    /// with an older descriptor that is not among them was removed while it could not
    /// hear of it, and destroys itself (replica GC).
    Gc {
        /// The meta shard's `conf_ver` of the shard.
        conf_ver: u64,
        /// The replica ids at that `conf_ver`.
        replicas: Vec<u64>,
        /// The descriptor's `next_replica_id`: every id below it was allocated by a
        /// membership change that descriptor already reflects.
        next_replica_id: u64,
    },
}

/// Internal notifications (unbounded: they must never be dropped).
pub(crate) enum PeerEvent {
    /// One node-wide tick.
    Tick,
    /// The log writer made the ready with this number durable.
    Persisted(u64),
    /// The log writer failed; the replica stops.
    PersistFailed(String),
    /// A snapshot for followers finished building (boxed: the event channel's
    /// blocks hold 32 events each, and every replica has one).
    SnapshotBuilt(Box<Result<crate::storage::snapshot::BuiltSnapshot>>),
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

/// What a replica's handles may read without asking the actor: its applied
/// descriptor (epoch and arcs), applied index, leader and role. The actor updates it
/// after every applied round, snapshot install and role change.
#[derive(Default)]
pub(crate) struct Epoch {
    /// Configuration version (membership changes).
    conf_ver: AtomicU64,
    /// Ring version (arc ownership changes).
    ring_ver: AtomicU64,
    /// The last applied index.
    applied: AtomicU64,
    /// The commit index as of the last ready.
    committed: AtomicU64,
    /// The leader's replica id as this replica knows it (0: none).
    leader: AtomicU64,
    /// Whether the replica leads its shard (as of its last ready).
    leading: AtomicBool,
    /// How many times the replica has become leader: a reign changes whenever it
    /// stopped leading in between (what the lease keeper starts counting from).
    reigns: AtomicU64,
    /// The index of the current reign's first entry (the leader's empty entry): once
    /// applied, the replica has applied everything earlier leaders committed.
    reign_start: AtomicU64,
    /// Whether the replica is replacing its data with a snapshot's (its local data
    /// is incomplete until the install is durable).
    installing: AtomicBool,
    /// Snapshot installs started so far: a reader of local state that must not see a
    /// half-replaced shard compares it before and after reading.
    installs: AtomicU64,
    /// The replica was removed from its shard and its data is being deleted.
    removed: AtomicBool,
    /// The replica hibernates: the node's ticker skips it (`raft.hibernate`).
    hibernating: AtomicBool,
    /// When the replica last heard from its current leader, counted once it has
    /// applied the commit index that leader sent then (None: not in this leader's
    /// reign). Bounded-staleness reads compare it with the local monotonic clock.
    contact: parking_lot::Mutex<Option<Instant>>,
    /// The applied descriptor.
    desc: RwLock<Arc<ShardDescriptor>>,
    /// The arcs of `desc`, as ranges.
    arcs: RwLock<Arc<Vec<crate::ranges::Arc>>>,
}

impl Epoch {
    /// Records the applied descriptor.
    pub(crate) fn set(&self, desc: &ShardDescriptor) {
        self.conf_ver.store(desc.conf_ver, Ordering::Release);
        self.ring_ver.store(desc.ring_ver, Ordering::Release);
        *self.arcs.write() = Arc::new(crate::ranges::arcs_of(desc));
        *self.desc.write() = Arc::new(desc.clone());
    }

    /// Records the applied index.
    pub(crate) fn set_applied(&self, index: u64) {
        self.applied.store(index, Ordering::Release);
    }

    /// Records the commit index (at each ready).
    pub(crate) fn set_committed(&self, index: u64) {
        self.committed.store(index, Ordering::Release);
    }

    /// The commit index as of the last ready.
    pub(crate) fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// The leader's replica id as this replica knows it (0: none).
    pub(crate) fn leader_id(&self) -> u64 {
        self.leader.load(Ordering::Acquire)
    }

    /// Records whether the replica leads, and who does; returns whether the leader
    /// changed. A new leader (or none) voids the contact with the previous one.
    /// `last_index`: the replica's last log index, which holds, when it has just
    /// become leader, the empty entry of its term (its reign's first entry).
    pub(crate) fn set_leader(&self, leading: bool, leader: u64, last_index: u64) -> bool {
        // The reign's start and number before `leading`: whoever sees it leading sees
        // the new reign.
        if leading && !self.leading.load(Ordering::Acquire) {
            self.reign_start.store(last_index, Ordering::Release);
            self.reigns.fetch_add(1, Ordering::AcqRel);
        }
        self.leading.store(leading, Ordering::Release);
        let changed = self.leader.swap(leader, Ordering::AcqRel) != leader;
        if changed {
            *self.contact.lock() = None;
        }
        changed
    }

    /// Records that the replica heard from its leader at `at` and has applied the
    /// commit index the leader sent then.
    pub(crate) fn set_contact(&self, at: Instant) {
        let mut c = self.contact.lock();
        if c.is_none_or(|old| old < at) {
            *c = Some(at);
        }
    }

    /// How long ago the replica last heard from its current leader (with that
    /// leader's commit applied); None if it has not in this leader's reign.
    pub(crate) fn contact_age(&self) -> Option<Duration> {
        let at = (*self.contact.lock())?;
        Some(at.elapsed())
    }

    /// Whether the replica led its shard at its last ready (for background work
    /// only: requests still go through raft-rs's own check).
    pub(crate) fn leading(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// The number of the replica's current (or last) reign as leader.
    pub(crate) fn reign(&self) -> u64 {
        self.reigns.load(Ordering::Acquire)
    }

    /// The index of the current reign's first entry.
    pub(crate) fn reign_start(&self) -> u64 {
        self.reign_start.load(Ordering::Acquire)
    }

    /// Records whether a snapshot install is in progress.
    pub(crate) fn set_installing(&self, installing: bool) {
        if installing {
            self.installs.fetch_add(1, Ordering::AcqRel);
        }
        self.installing.store(installing, Ordering::Release);
    }

    /// A token that changes when a snapshot install starts; with [`Epoch::installing`]
    /// false both before and after a local read, and the token unchanged, no install
    /// touched the shard's records during the read.
    pub(crate) fn install_token(&self) -> u64 {
        self.installs.load(Ordering::Acquire)
    }

    /// Records that the replica was removed: set before its data is deleted.
    pub(crate) fn set_removed(&self) {
        self.removed.store(true, Ordering::Release);
    }

    /// Whether the replica was removed (its data is going or gone).
    pub(crate) fn removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    /// Records whether the replica hibernates.
    pub(crate) fn set_hibernating(&self, on: bool) {
        self.hibernating.store(on, Ordering::Release);
    }

    /// Whether the replica hibernates (the node's ticker skips it).
    pub(crate) fn hibernating(&self) -> bool {
        self.hibernating.load(Ordering::Acquire)
    }

    /// Whether a snapshot install is in progress: stale reads of the local data are
    /// refused meanwhile.
    pub(crate) fn installing(&self) -> bool {
        self.installing.load(Ordering::Acquire)
    }

    /// `(conf_ver, ring_ver)`.
    pub(crate) fn get(&self) -> (u64, u64) {
        (
            self.conf_ver.load(Ordering::Acquire),
            self.ring_ver.load(Ordering::Acquire),
        )
    }

    /// The last applied index.
    pub(crate) fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// The applied descriptor.
    pub(crate) fn descriptor(&self) -> Arc<ShardDescriptor> {
        self.desc.read().clone()
    }

    /// The arcs the shard owns, as this replica applied them.
    pub(crate) fn arcs(&self) -> Arc<Vec<crate::ranges::Arc>> {
        self.arcs.read().clone()
    }

    /// Whether the shard owns hash `h`, as this replica applied it.
    pub(crate) fn owns(&self, h: u64) -> bool {
        crate::ranges::contains(&self.arcs.read(), h)
    }

    /// The shard's route as this replica knows it: its descriptor and leader hint.
    pub(crate) fn route(&self) -> ShardRoute {
        let desc = self.descriptor();
        let leader = self.leader.load(Ordering::Acquire);
        let hint = desc
            .replicas
            .iter()
            .find(|r| r.replica_id == leader && leader != 0)
            .map(|r| ReplicaInfo {
                replica_id: r.replica_id,
                node_id: r.node_id,
                addr: r.addr.clone(),
            });
        ShardRoute {
            descriptor: Some((*desc).clone()),
            leader: hint,
            leader_term: 0,
        }
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

    /// Proposes `cmd` (touching partition hash `hash`, if one: the leader's load
    /// statistics count it), stamped with the proposer's clock `now_ms` (TTLs and
    /// dedup windows are computed from it), and waits until it is applied.
    pub(crate) async fn propose(
        &self,
        request_id: bytes::Bytes,
        now_ms: u64,
        hash: Option<u64>,
        cmd: crate::proto::raft_command::Cmd,
    ) -> Result<CommandResult> {
        let cmd = RaftCommand {
            request_id,
            now_ms,
            cmd: Some(cmd),
        };
        let (tx, rx) = oneshot::channel();
        self.send(PeerMsg::Propose(Box::new(cmd), hash, tx)).await?;
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
        // A proposal may have been applied after all.
        Err(_) => Err(Error::ShardUnavailable {
            shard,
            reason: format!("no answer within {REQUEST_TIMEOUT:?}"),
            outcome_unknown: true,
        }),
    }
}

// Every replica's two queues allocate blocks of 32 messages up front: a large variant
// costs each replica its size times 32, twice (box it instead).
const _: () = assert!(std::mem::size_of::<PeerMsg>() <= 64);
const _: () = assert!(std::mem::size_of::<PeerEvent>() <= 32);
