//! The replica actor: one tokio task owns one `RawNode`; everyone else talks to it
//! through a cloneable [`PeerHandle`] (a bounded queue in, a oneshot reply out).
//!
//! Invariants:
//! - nothing but this task touches the `RawNode` (no locks around it);
//! - the loop checks shutdown first, then internal events (persistence, snapshots,
//!   ticks), then requests and raft messages;
//! - a proposal is answered exactly once: with its applied result, or with
//!   `NotLeader`/`ShardUnavailable` when it can no longer commit as proposed (its
//!   outcome is then unknown and the client retries under the same request id).

use crate::error::{ErrInto, Error, Result};
use crate::node::ctx::NodeCtx;
use crate::proto::{CommandResult, RaftCommand, ReplicaInfo, ShardDescriptor};
use crate::raft::handle::{Epoch, PeerEvent, PeerHandle, PeerMsg, Stamp};
use crate::raft::logger::replica_logger;
use crate::storage::PeerStorage;
use crate::types::{NodeId, ReplicaId, ShardId};
use prost::Message as _;
use raft::eraftpb::{Message, MessageType};
use raft::{RawNode, StateRole};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Capacity of a replica's request queue.
pub(crate) const INBOX_CAPACITY: usize = 4096;
/// Most queued items handled between two readies.
const DRAIN_LIMIT: usize = 1024;

/// How to answer a proposal once its entry is applied.
pub(crate) enum Reply {
    /// A client command.
    Command(oneshot::Sender<Result<CommandResult>>),
    /// A membership change.
    Member(oneshot::Sender<Result<ShardDescriptor>>),
    /// An internal proposal nobody waits for.
    None,
}

/// The `ShardUnavailable` reason of a replica that knows no leader: nothing was
/// proposed, so the caller may try again once an election is over.
pub(crate) const NO_LEADER: &str = "no leader (election in progress)";
/// How the `ShardUnavailable` reason starts when raft-rs refused a proposal (e.g.
/// during a leader transfer): the entry was never appended.
pub(crate) const PROPOSAL_DROPPED: &str = "proposal dropped";

impl Reply {
    pub(crate) fn fail(self, e: Error) {
        match self {
            Reply::Command(tx) => {
                let _ = tx.send(Err(e));
            }
            Reply::Member(tx) => {
                let _ = tx.send(Err(e));
            }
            Reply::None => {}
        }
    }
}

/// A proposal waiting for its entry to apply.
pub(crate) struct Proposal {
    /// Log index the proposal got.
    pub(crate) index: u64,
    /// Term it was proposed in; a different term at that index means it was lost.
    pub(crate) term: u64,
    /// Who waits.
    pub(crate) reply: Reply,
}

/// The replica actor's state.
pub(crate) struct Peer {
    /// Shard of this replica.
    pub(crate) shard: ShardId,
    /// Raft id of this replica.
    pub(crate) replica_id: ReplicaId,
    /// Node-wide services (engine, log writer, transport).
    pub(crate) ctx: Arc<NodeCtx>,
    /// raft-rs; owned by this task only.
    pub(crate) raw: RawNode<PeerStorage>,
    /// The applied shard descriptor.
    pub(crate) desc: ShardDescriptor,
    /// Last applied index.
    pub(crate) applied_index: u64,
    /// Term of the last applied index.
    pub(crate) applied_term: u64,
    /// Which node hosts each replica (from the descriptor and from received messages).
    pub(crate) replica_nodes: HashMap<u64, NodeId>,
    /// Proposals in log order.
    pub(crate) proposals: VecDeque<Proposal>,
    /// Reads waiting for this leader to commit in its term.
    pub(crate) pending_reads: Vec<oneshot::Sender<Result<()>>>,
    /// Reads whose ReadIndex request is in flight, by context.
    pub(crate) inflight_reads: HashMap<u64, Vec<oneshot::Sender<Result<()>>>>,
    /// Reads waiting for `applied_index` to reach their read index.
    pub(crate) ready_reads: VecDeque<(u64, Vec<oneshot::Sender<Result<()>>>)>,
    /// Next ReadIndex context.
    pub(crate) next_read_ctx: u64,
    /// `raft.lease-reads`: this leader's own reads may skip the heartbeat round while
    /// its lease holds (see [`Peer::lease_holds`]).
    lease_reads: bool,
    /// One election timeout.
    election_timeout: std::time::Duration,
    /// When this replica last asked raft-rs to hand its leadership over.
    pub(crate) transfer_asked: Option<std::time::Instant>,
    /// Replica → when the last heartbeat to it went out (for the round-trip metric).
    pub(crate) heartbeats_sent: HashMap<u64, std::time::Instant>,
    /// Follower reads waiting for the next read index this follower asks for.
    pub(crate) pending_follower_reads: ReadWaiters,
    /// Follower read indexes asked of the leader, by context: (tick sent, waiters).
    pub(crate) follower_reads: HashMap<u64, (u64, ReadWaiters)>,
    /// Leader messages received, waiting for the commit index they carried to apply:
    /// (receive time, the leader's commit index, the leader's replica id).
    pub(crate) contacts: VecDeque<(std::time::Instant, u64, u64)>,
    /// On the leader: when each voter last answered an append or heartbeat, and in
    /// which term.
    pub(crate) acks: HashMap<u64, (std::time::Instant, u64)>,
    /// Messages to send once the ready with the given number is durable.
    pub(crate) persisted_msgs: VecDeque<(u64, Vec<Message>)>,
    /// Readies handed to the log writer and not yet durable.
    pub(crate) inflight_writes: usize,
    /// A snapshot install whose apply completes when its ready is durable.
    pub(crate) pending_snapshot: Option<PendingSnapshot>,
    /// Whether a snapshot build is running.
    pub(crate) building_snapshot: bool,
    /// Role seen at the last ready.
    pub(crate) role: StateRole,
    /// Ticks since the replica started (drives periodic housekeeping).
    pub(crate) ticks: u64,
    /// This replica was removed from the shard; the task ends and its data goes.
    pub(crate) removed: bool,
    /// A fatal error (failed log write) stopped the replica.
    pub(crate) fatal: bool,
    /// The epoch shared with this replica's handles.
    pub(crate) epoch: Arc<Epoch>,
    /// Own event sender, given to the log writer and snapshot builders.
    pub(crate) events: mpsc::UnboundedSender<PeerEvent>,
    /// Created empty for a split's new shard on a node whose parent replica skipped
    /// the split (it installed a later snapshot): holding nothing yet is expected.
    pub(crate) from_split: bool,
    /// A split of this shard was proposed and has not applied yet: no membership
    /// change and no second split until it has.
    pub(crate) splitting: bool,
    /// Load counted while leading, for splits by load and `ctxctl shard list`.
    pub(crate) load: crate::load::LoadSampler,
    /// Whether the shard sleeps (`raft.hibernate`, `raft::hibernate`).
    pub(crate) hibernation: Hibernation,
}

/// A replica's hibernation state (`raft::hibernate`: the logic).
#[derive(Default)]
pub(crate) struct Hibernation {
    /// `raft.hibernate` when the replica started.
    pub(crate) enabled: bool,
    /// Asleep: no ticks until something wakes it.
    pub(crate) asleep: bool,
    /// Consecutive idle ticks of a leader.
    pub(crate) idle_ticks: usize,
    /// The heartbeats going out now announce the sleep.
    pub(crate) announcing: bool,
}

impl Hibernation {
    /// Awake, hibernating when idle if `enabled`.
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            ..Default::default()
        }
    }
}

/// A snapshot install whose last writes (apply state, descriptor, Raft state, the
/// marker's deletion) went to the log writer with a ready.
pub(crate) struct PendingSnapshot {
    /// The ready's number.
    pub(crate) number: u64,
    /// The snapshot's index.
    pub(crate) index: u64,
    /// The snapshot's term.
    pub(crate) term: u64,
    /// The installed file: kept until the ready is durable, then deleted.
    pub(crate) file: Arc<crate::storage::snapshot::SnapshotFile>,
    /// The watch log the snapshot brought: where it starts, and its changes.
    pub(crate) watch_log: (u64, Vec<crate::fsm::watch::Change>),
}

/// What a replica starts from.
pub(crate) struct ReplicaInit {
    /// The shard.
    pub(crate) shard: ShardId,
    /// The replica's raft-rs id.
    pub(crate) replica_id: ReplicaId,
    /// Its Raft log and state.
    pub(crate) storage: PeerStorage,
    /// Its applied descriptor.
    pub(crate) desc: ShardDescriptor,
    /// Its applied index and that index's term.
    pub(crate) applied: (u64, u64),
    /// Created empty for a split's new shard (see `Peer::from_split`).
    pub(crate) from_split: bool,
}

/// Waiters of one read-index request.
pub(crate) type ReadWaiters = Vec<oneshot::Sender<Result<()>>>;

/// Where a replica's read-index contexts start: at random, so that neither another
/// replica of the shard nor an earlier run of this one (before a restart) uses the
/// same contexts. A leader keys the read-index requests it has not answered yet by
/// context and ignores a duplicate, and it may answer a request of a follower's
/// previous run after the follower restarted: a reused context would take that old,
/// lower index as the answer to a new read.
fn first_read_ctx() -> u64 {
    // Half the range: counting up from there never wraps in practice.
    rand::random::<u64>() >> 1
}

impl Peer {
    /// Creates the replica and starts its task.
    pub(crate) fn spawn(ctx: Arc<NodeCtx>, init: ReplicaInit) -> Result<PeerHandle> {
        let ReplicaInit {
            shard,
            replica_id,
            storage,
            mut desc,
            applied: (applied_index, applied_term),
            from_split,
        } = init;
        // A descriptor written before shards had explicit arcs gets them now (the same
        // on every replica; written with the next applied round).
        crate::meta::state::upgrade_descriptor(&mut desc, &[]);
        let cfg = ctx.config();
        let rc = &cfg.raft;
        let cfg = raft::Config {
            id: replica_id.0,
            election_tick: rc.election_ticks,
            heartbeat_tick: rc.heartbeat_ticks,
            applied: applied_index,
            max_size_per_msg: rc.max_size_per_msg,
            max_inflight_msgs: rc.max_inflight_msgs,
            max_uncommitted_size: rc.max_uncommitted_size,
            check_quorum: true,
            pre_vote: true,
            // Every read index takes a heartbeat round, followers' included; a
            // leader's own reads switch to the lease only while it holds
            // (`flush_reads`).
            read_only_option: raft::ReadOnlyOption::Safe,
            ..Default::default()
        };
        cfg.validate().err_into()?;
        let logger = replica_logger(shard, replica_id);
        let raw = RawNode::new(&cfg, storage, &logger).err_into()?;
        let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
        let (etx, erx) = mpsc::unbounded_channel();
        let mut replica_nodes = HashMap::new();
        for r in &desc.replicas {
            replica_nodes.insert(r.replica_id, NodeId(r.node_id));
        }
        let epoch = Arc::new(Epoch::default());
        epoch.set(&desc);
        epoch.set_applied(applied_index);
        if desc.conf_ver > 0 {
            ctx.note_descriptor(&desc);
        }
        ctx.watch.load(&ctx.engine, shard, applied_index)?;
        let load = crate::load::LoadSampler::new(ctx.config().split.load_window);
        let peer = Peer {
            epoch: epoch.clone(),
            shard,
            replica_id,
            ctx: ctx.clone(),
            raw,
            desc,
            applied_index,
            applied_term,
            replica_nodes,
            proposals: VecDeque::new(),
            pending_reads: Vec::new(),
            inflight_reads: HashMap::new(),
            ready_reads: VecDeque::new(),
            next_read_ctx: first_read_ctx(),
            lease_reads: rc.lease_reads,
            election_timeout: rc
                .tick_interval
                .saturating_mul(u32::try_from(rc.election_ticks).unwrap_or(u32::MAX)),
            transfer_asked: None,
            heartbeats_sent: HashMap::new(),
            pending_follower_reads: Vec::new(),
            follower_reads: HashMap::new(),
            contacts: VecDeque::new(),
            acks: HashMap::new(),
            persisted_msgs: VecDeque::new(),
            inflight_writes: 0,
            pending_snapshot: None,
            building_snapshot: false,
            role: StateRole::Follower,
            ticks: 0,
            removed: false,
            fatal: false,
            events: etx.clone(),
            from_split,
            splitting: false,
            load,
            hibernation: Hibernation::new(rc.hibernate),
        };
        let cancel = ctx.cancel.child_token();
        let task = tokio::spawn(peer.run(rx, erx, cancel));
        let watcher = ctx.clone();
        ctx.tracker.spawn(async move {
            if let Err(e) = task.await {
                // A panic is a bug; stop routing to the dead replica rather than
                // answering "shutting down" forever.
                tracing::error!(%shard, error = %e, "replica task failed");
                watcher.on_replica_failed(shard);
            }
        });
        Ok(PeerHandle::new(shard, epoch, tx, etx))
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<PeerMsg>,
        mut events: mpsc::UnboundedReceiver<PeerEvent>,
        cancel: CancellationToken,
    ) {
        tracing::info!(shard = %self.shard, replica = %self.replica_id, "replica started");
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                Some(ev) = events.recv() => self.on_event(ev),
                Some(msg) = rx.recv() => self.on_msg(msg),
                else => break,
            }
            for _ in 0..DRAIN_LIMIT {
                match events.try_recv() {
                    Ok(ev) => self.on_event(ev),
                    Err(_) => break,
                }
            }
            for _ in 0..DRAIN_LIMIT {
                match rx.try_recv() {
                    Ok(msg) => self.on_msg(msg),
                    Err(_) => break,
                }
            }
            self.flush_follower_reads();
            self.flush_reads();
            let mut failed = false;
            // Advancing can produce more work (e.g. leaving joint consensus): drain it.
            for _ in 0..4 {
                if !self.raw.has_ready() {
                    break;
                }
                if let Err(e) = self.handle_ready().await {
                    tracing::error!(shard = %self.shard, error = %e, "replica stopped on error");
                    failed = true;
                    break;
                }
            }
            if failed || self.fatal {
                self.ctx.on_replica_failed(self.shard);
                break;
            }
            self.hibernation.announcing = false;
            self.maybe_build_snapshot();
            if self.removed {
                self.destroy();
                break;
            }
        }
        if self.role == StateRole::Leader {
            self.count_leadership(false);
        }
        self.fail_all(|| Error::Shutdown);
        tracing::info!(shard = %self.shard, replica = %self.replica_id, "replica stopped");
    }

    fn on_event(&mut self, ev: PeerEvent) {
        match ev {
            PeerEvent::Tick => self.on_tick(),
            PeerEvent::Persisted(number) => self.on_persisted(number),
            PeerEvent::PersistFailed(e) => {
                // Raft cannot continue without durable writes: stop this replica.
                tracing::error!(shard = %self.shard, error = %e, "log write failed");
                self.fatal = true;
                self.ctx.on_replica_failed(self.shard);
            }
            PeerEvent::SnapshotBuilt(r) => self.on_snapshot_built(*r),
            PeerEvent::SnapshotSent(to, ok) => {
                let status = if ok {
                    raft::SnapshotStatus::Finish
                } else {
                    raft::SnapshotStatus::Failure
                };
                self.raw.report_snapshot(to, status);
            }
        }
    }

    fn on_msg(&mut self, msg: PeerMsg) {
        // A request that may need the leader wakes a hibernating shard; raft messages
        // decide below, status and GC queries do not.
        if !matches!(
            msg,
            PeerMsg::Raft { .. }
                | PeerMsg::Status(_)
                | PeerMsg::LoadSamples(_)
                | PeerMsg::Gc { .. }
        ) {
            self.wake();
        }
        match msg {
            PeerMsg::Raft {
                msg: m,
                from: from_node,
                stamp:
                    Stamp {
                        leader_commit,
                        hibernate,
                    },
            } => {
                if Self::wakes(m.get_msg_type(), hibernate) {
                    self.wake();
                }
                if m.to > self.replica_id.0 {
                    // The shard's leader addresses a newer replica on this node: this
                    // one was removed from the membership while it could not hear of
                    // it (the node was down), and the placement driver has since put
                    // the shard back here. Replica GC cannot tell for a replica that
                    // never got its first snapshot (it knows no membership), and
                    // messages to the new replica would reach this one forever. It
                    // goes; the leader's next message creates the new replica.
                    tracing::info!(
                        shard = %self.shard,
                        replica = %self.replica_id,
                        newer = m.to,
                        "a newer replica of this shard is placed on this node: removing this one"
                    );
                    self.removed = true;
                    return;
                }
                self.replica_nodes.entry(m.from).or_insert(from_node);
                if m.get_msg_type() == MessageType::MsgTimeoutNow && self.installing_snapshot() {
                    // It would campaign at once; see `on_tick`.
                    tracing::debug!(shard = %self.shard, "ignored a leader transfer while installing a snapshot");
                    return;
                }
                if m.get_msg_type() == MessageType::MsgTimeoutNow
                    && self.ctx.stopping.load(std::sync::atomic::Ordering::Relaxed)
                {
                    // A draining node hands leadership away; one the placement driver
                    // sent here before it heard of the drain is declined (the leader's
                    // transfer lapses after an election timeout). An election it still
                    // wins on its own (no other voter left) it keeps.
                    tracing::debug!(shard = %self.shard, "stopping: declined a leader transfer");
                    self.ctx.metrics.transfers_declined.inc();
                    return;
                }
                let header = (m.get_msg_type(), m.from, m.term);
                if let Err(e) = self.raw.step(*m) {
                    tracing::debug!(shard = %self.shard, error = %e, "dropped raft message");
                }
                if header.0 == MessageType::MsgHeartbeatResponse {
                    if let Some(sent) = self.heartbeats_sent.remove(&header.1) {
                        self.ctx
                            .metrics
                            .peer_rtt_seconds
                            .get_or_create(&crate::metrics::PeerNode { to: from_node.0 })
                            .observe(sent.elapsed().as_secs_f64());
                    }
                }
                self.note_leader_contact(header, leader_commit);
                self.note_follower_ack(header);
                if hibernate && header.0 == MessageType::MsgHeartbeat {
                    self.follow_into_hibernation(header.1);
                }
            }
            PeerMsg::Propose(cmd, hash, reply) => {
                if self.is_leader() {
                    self.load.write(hash, cmd.encoded_len());
                }
                self.on_propose(*cmd, Reply::Command(reply))
            }
            PeerMsg::Split {
                child,
                at,
                expected_ring_ver,
                reply,
            } => self.on_split(child, at, expected_ring_ver, reply),
            PeerMsg::ReadIndex(reply) => {
                if self.is_leader() {
                    self.load.read();
                    self.pending_reads.push(reply);
                } else {
                    let _ = reply.send(Err(self.not_leader()));
                }
            }
            PeerMsg::ReplicaReadIndex(reply) => self.on_replica_read_index(reply),
            PeerMsg::ChangeMember(change, reply) => self.on_change_member(change, reply),
            PeerMsg::TransferLeader(node, reply) => self.on_transfer_leader(node, reply),
            PeerMsg::Status(reply) => {
                let _ = reply.send(self.status());
            }
            PeerMsg::LoadSamples(reply) => {
                let _ = reply.send(self.load.last().samples.clone());
            }
            PeerMsg::Campaign if self.installing_snapshot() => {
                tracing::debug!(shard = %self.shard, "no campaign while installing a snapshot");
            }
            // Woken above: it ticks again and elects a leader if there is none.
            PeerMsg::Wake => {}
            PeerMsg::Campaign => {
                if let Err(e) = self.raw.campaign() {
                    tracing::debug!(shard = %self.shard, error = %e, "campaign refused");
                }
            }
            PeerMsg::Gc {
                conf_ver,
                replicas,
                next_replica_id,
            } => {
                // An initialized replica is stale when the meta shard's membership is
                // newer than its own and does not list it. One still waiting for its
                // first snapshot knows no membership yet: it is stale only if the
                // meta shard's descriptor already reflects the change that allocated
                // its id (ids are never reused) and does not list it. Such a replica
                // is created by a message queued for a node before its replica was
                // removed and delivered after the node restarted; no leader ever
                // sends it a snapshot.
                let initialized = self.desc.conf_ver > 0 && self.applied_index > 0;
                let newer = if initialized {
                    self.desc.conf_ver < conf_ver
                } else {
                    self.replica_id.0 < next_replica_id
                };
                if newer && !replicas.contains(&self.replica_id.0) {
                    tracing::info!(
                        shard = %self.shard,
                        replica = %self.replica_id,
                        local_conf_ver = self.desc.conf_ver,
                        conf_ver,
                        "the meta shard no longer lists this replica: removing it"
                    );
                    self.ctx.metrics.stale_replicas_collected.inc();
                    self.removed = true;
                }
            }
        }
    }

    /// Whether this replica leads its shard now.
    pub(crate) fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The leader as this replica knows it.
    pub(crate) fn leader_hint(&self) -> Option<ReplicaInfo> {
        let lead = self.raw.raft.leader_id;
        if lead == 0 {
            return None;
        }
        let node = self.replica_nodes.get(&lead)?;
        Some(ReplicaInfo {
            replica_id: lead,
            node_id: node.0,
            addr: self.ctx.addresses.get(*node).unwrap_or_default(),
        })
    }

    /// Whether an installed snapshot is still being made durable (see `on_tick`).
    pub(crate) fn installing_snapshot(&self) -> bool {
        self.pending_snapshot.is_some()
    }

    /// `NotLeader` with the best hint, or `ShardUnavailable` ([`NO_LEADER`]) during an
    /// election.
    ///
    /// A replica that knows no leader yet (it just restarted, and has not heard the
    /// leader's first heartbeat) passes on the leader the meta shard last recorded,
    /// when that leader was elected in this replica's term or later: the client goes
    /// there at once instead of backing off through an election that is not happening.
    pub(crate) fn not_leader(&self) -> Error {
        let hint = self.leader_hint().or_else(|| {
            let route = self.ctx.meta.route_of(self.shard)?;
            let mut l = route.leader?;
            if route.leader_term < self.raw.raft.term || l.node_id == self.ctx.node_id.0 {
                return None;
            }
            if let Some(addr) = self.ctx.addresses.get(NodeId(l.node_id)) {
                l.addr = addr;
            }
            Some(l)
        });
        match hint {
            Some(h) if h.replica_id != self.replica_id.0 => Error::NotLeader {
                shard: self.shard,
                leader: Some(h),
            },
            _ => Error::ShardUnavailable {
                shard: self.shard,
                reason: NO_LEADER.into(),
                outcome_unknown: false,
            },
        }
    }

    pub(crate) fn on_propose(&mut self, cmd: RaftCommand, reply: Reply) {
        self.propose_with_context(Vec::new(), cmd, reply);
    }

    /// Proposes `cmd` with an entry context (how the actor recognises some entries
    /// without decoding them, e.g. splits).
    pub(crate) fn propose_with_context(
        &mut self,
        context: Vec<u8>,
        cmd: RaftCommand,
        reply: Reply,
    ) {
        if !self.is_leader() {
            self.ctx.metrics.proposals_failed.inc();
            reply.fail(self.not_leader());
            return;
        }
        let data = cmd.encode_to_vec();
        self.ctx.metrics.proposal_bytes.observe(data.len() as f64);
        if let Err(e) = self.raw.propose(context, data) {
            self.ctx.metrics.proposals_failed.inc();
            reply.fail(Error::ShardUnavailable {
                shard: self.shard,
                reason: format!("{PROPOSAL_DROPPED}: {e}"),
                outcome_unknown: false,
            });
            return;
        }
        self.track_proposal(reply);
    }

    /// Remembers the proposal just appended to the leader's log.
    pub(crate) fn track_proposal(&mut self, reply: Reply) {
        let index = self.raw.raft.raft_log.last_index();
        let term = self.raw.raft.term;
        self.proposals.push_back(Proposal { index, term, reply });
    }

    /// Moves queued reads into one ReadIndex request once this leader may serve them.
    fn flush_reads(&mut self) {
        if self.pending_reads.is_empty() {
            return;
        }
        if !self.is_leader() {
            let e = self.not_leader();
            for r in self.pending_reads.drain(..) {
                let _ = r.send(Err(e.clone_routing()));
            }
            return;
        }
        // raft-rs ignores ReadIndex until the leader commits an entry of its term.
        if !self.raw.raft.commit_to_current_term() {
            return;
        }
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        let waiters = std::mem::take(&mut self.pending_reads);
        self.inflight_reads.insert(ctx, waiters);
        let lease = self.lease_holds();
        if lease {
            self.raw.raft.read_only.option = raft::ReadOnlyOption::LeaseBased;
        }
        self.raw.read_index(ctx.to_be_bytes().to_vec());
        if lease {
            self.raw.raft.read_only.option = raft::ReadOnlyOption::Safe;
        }
    }

    /// Whether this leader may answer a read from its commit index without a
    /// heartbeat round (`raft.lease-reads`). raft-rs's `LeaseBased` trusts the lease
    /// until `check_quorum` steps the leader down, up to two election timeouts after
    /// it lost its quorum, and a leadership transfer does not wait out the
    /// followers' lease at all: the transferee campaigns at once, and the old leader
    /// may not hear of the new term for a while. So the lease holds only
    /// - while no transfer is in progress, nor was asked for within two election
    ///   timeouts (an aborted transfer's campaign may still be under way);
    /// - and a quorum of voters answered this leader within half an election timeout
    ///   (a voter refuses other candidates for an election timeout after it heard
    ///   from the leader; the half left covers the answer's delay).
    fn lease_holds(&self) -> bool {
        if !self.lease_reads || self.raw.raft.lead_transferee.is_some() {
            return false;
        }
        let et = self.election_timeout;
        if self
            .transfer_asked
            .is_some_and(|t| t.elapsed() < et.saturating_mul(2))
        {
            return false;
        }
        self.epoch.contact_age().is_some_and(|a| a < et / 2)
    }

    /// Answers reads whose read index has been applied.
    pub(crate) fn release_reads(&mut self) {
        while let Some((index, _)) = self.ready_reads.front() {
            if *index > self.applied_index {
                break;
            }
            if let Some((_, waiters)) = self.ready_reads.pop_front() {
                for w in waiters {
                    let _ = w.send(Ok(()));
                }
            }
        }
    }

    /// Fails everything waiting on this replica.
    pub(crate) fn fail_all(&mut self, err: impl Fn() -> Error) {
        let failed = self.proposals.len() as u64;
        self.ctx.metrics.proposals_failed.inc_by(failed);
        for p in self.proposals.drain(..) {
            p.reply.fail(err());
        }
        for r in self.pending_reads.drain(..) {
            let _ = r.send(Err(err()));
        }
        for (_, ws) in self.inflight_reads.drain() {
            for w in ws {
                let _ = w.send(Err(err()));
            }
        }
        for (_, ws) in self.ready_reads.drain(..) {
            for w in ws {
                let _ = w.send(Err(err()));
            }
        }
        for (_, (_, ws)) in self.follower_reads.drain() {
            for w in ws {
                let _ = w.send(Err(err()));
            }
        }
        for w in self.pending_follower_reads.drain(..) {
            let _ = w.send(Err(err()));
        }
    }
}
