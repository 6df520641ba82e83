//! One `ctxd` process: opens the data directory, loads or bootstraps its replicas,
//! serves gRPC, and drives every replica with one tick timer.
//!
//! Invariants:
//! - a data directory belongs to one node id forever (recorded at first start);
//! - a node bootstraps at most once: only with an empty data directory, and never when
//!   a reachable peer records this node's replica as started (its vote and log were
//!   lost with the data: it must come back as a new replica, DESIGN §1);
//! - messages for a shard this node does not host create an empty replica only if they
//!   come from a leader and target a replica id above the shard's tombstone.

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::keys;
use crate::proto::cluster_client::ClusterClient;
use crate::proto::{ApplyState, ShardDescriptor, StatusRequest, StatusResponse};
use crate::raft::peer::{Peer, PeerEvent, PeerHandle, PeerMsg};
use crate::raft::transport::{AddressBook, MessageFilter, Transport};
use crate::storage::peer_storage::{INIT_INDEX, INIT_TERM};
use crate::storage::snapshot::SnapshotStore;
use crate::storage::{Engine, LogWriter, PeerStorage};
use crate::types::{NodeId, ReplicaId, ShardId};
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Message, MessageType};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Services shared by every replica on the node.
pub(crate) struct NodeCtx {
    /// This node.
    pub(crate) node_id: NodeId,
    /// Address peers and clients use.
    pub(crate) addr: String,
    /// The node's configuration.
    pub(crate) config: NodeConfig,
    /// The node's RocksDB.
    pub(crate) engine: Engine,
    /// Group-committing log writer shared by all replicas.
    pub(crate) writer: LogWriter,
    /// Raft message transport.
    pub(crate) transport: Transport,
    /// Snapshot payloads in flight.
    pub(crate) snapshots: Arc<SnapshotStore>,
    /// Node id → address.
    pub(crate) addresses: Arc<AddressBook>,
    /// Replicas hosted here.
    peers: RwLock<HashMap<ShardId, PeerHandle>>,
    /// Shard → highest replica id removed from this node.
    tombstones: RwLock<HashMap<ShardId, u64>>,
    /// Shards whose replica failed in this process; never recreated until restart.
    failed: RwLock<std::collections::HashSet<ShardId>>,
    /// How many of this node's replicas lead their shard now.
    pub(crate) leaders: std::sync::atomic::AtomicUsize,
    /// The ring over `ring_shards` of the descriptors (None: one shard owns all).
    ring: RwLock<Option<Arc<crate::ring::Ring>>>,
    /// Whether messages for unknown shards may create replicas (false while the node
    /// is still deciding whether to bootstrap).
    accept_new_replicas: std::sync::atomic::AtomicBool,
    /// The meta shard's state (on its replicas) and the node's routing-table copy.
    pub(crate) meta: crate::meta::MetaCtx,
    /// Recent changes per replica, for watches.
    pub(crate) watch: crate::context::watch::WatchHub,
    /// Shards that applied records with an expiry (the purge scans only those).
    pub(crate) purge: crate::context::purge::PurgeHints,
    /// Stops everything.
    pub(crate) cancel: CancellationToken,
    /// Tracks every task the node spawned.
    pub(crate) tracker: TaskTracker,
}

impl NodeCtx {
    /// The `data` CF ranges of a shard's ring arcs (everything when one shard owns
    /// the whole ring).
    pub(crate) fn data_ranges(&self, shard: ShardId) -> Vec<(Vec<u8>, Vec<u8>)> {
        match self.ring() {
            Some(ring) => ring
                .arcs(shard)
                .into_iter()
                .map(|(lo, hi)| crate::keys::data_range(lo, hi))
                .collect(),
            None => vec![crate::keys::data_range(0, u64::MAX)],
        }
    }

    /// The replica of `shard` on this node.
    pub(crate) fn peer(&self, shard: ShardId) -> Option<PeerHandle> {
        self.peers.read().ok()?.get(&shard).cloned()
    }

    /// Every replica on this node.
    pub(crate) fn peers(&self) -> Vec<PeerHandle> {
        self.peers
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn register(&self, handle: PeerHandle) {
        if let Ok(mut m) = self.peers.write() {
            m.insert(handle.shard, handle);
        }
    }

    /// Learns the ring from a descriptor's `ring_shards` (empty: a single shard).
    pub(crate) fn set_ring(&self, ring_shards: &[u64]) {
        if let Ok(mut r) = self.ring.write() {
            if r.is_none() {
                *r = crate::ring::Ring::from_ring_shards(ring_shards).map(Arc::new);
            }
        }
    }

    /// The ring, once known (None: one shard owns the whole hash space).
    pub(crate) fn ring(&self) -> Option<Arc<crate::ring::Ring>> {
        self.ring.read().ok()?.clone()
    }

    /// Stops routing to a replica.
    pub(crate) fn cancel_replica(&self, shard: ShardId) {
        if let Ok(mut m) = self.peers.write() {
            m.remove(&shard);
        }
        // Its watchers end (they resume on another replica).
        self.watch.remove(shard);
    }

    /// Stops routing to a replica that failed (a fatal write or apply error, or a
    /// panic). Its state stays on disk for a restart to recover from; until then no
    /// message may recreate it empty (that would forget its vote and log).
    pub(crate) fn on_replica_failed(&self, shard: ShardId) {
        self.cancel_replica(shard);
        if let Ok(mut f) = self.failed.write() {
            f.insert(shard);
        }
    }

    /// Forgets a removed replica and remembers its id as a tombstone.
    pub(crate) fn on_replica_removed(&self, shard: ShardId, replica: ReplicaId) {
        self.cancel_replica(shard);
        if shard == crate::meta::META_SHARD {
            // From now on the node's routing copy comes from heartbeats only.
            self.meta.clear_state();
        }
        if let Ok(mut t) = self.tombstones.write() {
            let e = t.entry(shard).or_default();
            *e = (*e).max(replica.0);
        }
    }

    /// Delivers a raft message from another node, creating an empty replica for a
    /// shard this node was just added to.
    pub(crate) fn on_raft_message(self: &Arc<Self>, shard: ShardId, from: NodeId, msg: Message) {
        if !self.transport.allowed_from(from) {
            return;
        }
        if let Some(p) = self.peer(shard) {
            // Dropped under overload; Raft retransmits.
            let _ = p.try_send(PeerMsg::Raft(Box::new(msg), from));
            return;
        }
        let from_leader = matches!(
            msg.get_msg_type(),
            MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
        );
        let tomb = self
            .tombstones
            .read()
            .ok()
            .and_then(|t| t.get(&shard).copied())
            .unwrap_or(0);
        let accepting = self
            .accept_new_replicas
            .load(std::sync::atomic::Ordering::Acquire);
        if !from_leader || !accepting || msg.to == 0 || msg.to <= tomb || self.cancel.is_cancelled()
        {
            return;
        }
        let failed = self
            .failed
            .read()
            .map(|f| f.contains(&shard))
            .unwrap_or(true);
        // Raft state on disk means a replica exists here that is not running: never
        // shadow it with an empty one. (A point read, only for the rare message that
        // would create a replica.)
        let on_disk = || {
            !matches!(
                self.engine
                    .get(keys::CF_META, &keys::apply_state_key(shard)),
                Ok(None)
            )
        };
        if failed || on_disk() {
            tracing::warn!(%shard, "not recreating a replica whose state is on disk; restart the node");
            return;
        }
        if msg.get_msg_type() == MessageType::MsgHeartbeat && msg.commit > 0 {
            // The leader believes this replica holds entries, but this node has none:
            // its data was lost. Recreating it would reuse a Raft identity (DESIGN §1).
            tracing::error!(
                %shard,
                replica = msg.to,
                "the leader expects replica {} here with data, but this node has none; \
                 remove it (`ctxctl member remove {}`) and add this node under a new id",
                msg.to,
                self.node_id
            );
            return;
        }
        let desc = ShardDescriptor {
            shard_id: shard.0,
            ..Default::default()
        };
        match Peer::spawn(
            self.clone(),
            shard,
            ReplicaId(msg.to),
            PeerStorage::new_empty(),
            desc,
            0,
            0,
        ) {
            Ok(handle) => {
                tracing::info!(%shard, replica = msg.to, "created replica to receive a snapshot");
                let _ = handle.try_send(PeerMsg::Raft(Box::new(msg), from));
                self.register(handle);
            }
            Err(e) => tracing::error!(%shard, error = %e, "cannot create replica"),
        }
    }
}

/// A running `ctxd` node.
pub struct Node {
    /// Shared services; the last reference closes RocksDB.
    ctx: Arc<NodeCtx>,
    /// The gRPC server task.
    server: tokio::task::JoinHandle<()>,
}

impl Node {
    /// Validates the config, binds `listen` and starts the node.
    pub async fn start(config: NodeConfig) -> Result<Node> {
        config.validate()?;
        let listener = TcpListener::bind(&config.listen)
            .await
            .map_err(|e| Error::config("listen", format!("cannot bind {}: {e}", config.listen)))?;
        Self::start_with_listener(config, listener).await
    }

    /// Starts the node on an already bound listener (tests bind port 0 first).
    pub async fn start_with_listener(config: NodeConfig, listener: TcpListener) -> Result<Node> {
        config.validate()?;
        let node_id = NodeId(config.node_id);
        let (engine, fresh) = {
            let dir = config.data_dir.clone();
            blocking(move || {
                let engine = Engine::open(&dir)?;
                let fresh = check_identity(&engine, node_id)?;
                Ok((engine, fresh))
            })
            .await?
        };
        let addr = config.advertise_addr().to_string();
        let addresses = Arc::new(AddressBook::default());
        for (id, a) in config.initial_members()? {
            addresses.insert(id, a);
        }
        addresses.insert(node_id, addr.clone());
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let snapshots = Arc::new(SnapshotStore::default());
        let transport = Transport::new(
            node_id,
            addr.clone(),
            addresses.clone(),
            snapshots.clone(),
            cancel.clone(),
            tracker.clone(),
        );
        let ctx = Arc::new(NodeCtx {
            node_id,
            addr: addr.clone(),
            writer: LogWriter::start(engine.clone()),
            engine,
            transport,
            snapshots,
            addresses,
            peers: RwLock::new(HashMap::new()),
            tombstones: RwLock::new(HashMap::new()),
            accept_new_replicas: std::sync::atomic::AtomicBool::new(false),
            ring: RwLock::new(None),
            leaders: std::sync::atomic::AtomicUsize::new(0),
            failed: RwLock::new(std::collections::HashSet::new()),
            meta: crate::meta::MetaCtx::default(),
            purge: Default::default(),
            watch: crate::context::watch::WatchHub::new(
                usize::try_from(config.context.watch_retain_bytes).unwrap_or(usize::MAX),
            ),
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            config,
        });
        let loaded = {
            let ctx = ctx.clone();
            blocking(move || load_replicas(&ctx)).await?
        };
        let server = crate::server::spawn(ctx.clone(), listener)?;
        let node = Node { ctx, server };
        if loaded == 0 && fresh {
            let r = match node.bootstrap_or_join().await {
                Ok(()) => {
                    let engine = node.ctx.engine.clone();
                    blocking(move || write_identity(&engine, node_id)).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                node.shutdown().await;
                return Err(e);
            }
        } else if loaded == 0 {
            // This data dir ran before (its replicas were removed): never bootstrap
            // again; wait to be added.
            tracing::info!(
                "no replicas on this node; waiting to be added with `ctxctl member add`"
            );
        }
        node.ctx
            .accept_new_replicas
            .store(true, std::sync::atomic::Ordering::Release);
        node.start_ticker();
        crate::meta::spawn_heartbeats(node.ctx.clone());
        crate::context::purge::spawn_purger(node.ctx.clone());
        tracing::info!(node = %node_id, %addr, replicas = loaded, "node started");
        Ok(node)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.ctx.node_id
    }

    /// The address this node serves on.
    pub fn addr(&self) -> &str {
        &self.ctx.addr
    }

    /// Installs a filter on this node's raft traffic (both directions); `None` heals.
    pub fn set_message_filter(&self, f: Option<Arc<dyn MessageFilter>>) {
        self.ctx.transport.set_filter(f);
    }

    /// Every live user key stored on this node, across all its replicas (for
    /// placement checks; reads the whole data column family).
    pub fn data_keys(&self) -> Result<Vec<Vec<u8>>> {
        let engine = &self.ctx.engine;
        let mut out = Vec::new();
        for item in engine
            .db()
            .iterator_cf(engine.cf(keys::CF_DATA), rocksdb::IteratorMode::Start)
        {
            let (k, _) = item?;
            if let Some(user_key) = keys::decode_data_key(&k) {
                out.push(user_key.to_vec());
            }
        }
        Ok(out)
    }

    /// For every shard hosted here: its applied index and a digest of its data, each
    /// read from one RocksDB snapshot (replicas at the same index must agree).
    pub fn shard_digests(&self) -> Result<std::collections::BTreeMap<u64, (u64, u64)>> {
        let mut out = std::collections::BTreeMap::new();
        for p in self.ctx.peers() {
            let d = crate::storage::snapshot::data_digest(&self.ctx.engine, p.shard)?;
            out.insert(p.shard.0, d);
        }
        Ok(out)
    }

    /// WAL syncs the log writer has done.
    pub fn wal_syncs(&self) -> u64 {
        self.ctx.writer.syncs()
    }

    /// This node's status (the same as `Cluster.Status`).
    pub async fn status(&self) -> StatusResponse {
        crate::server::node_status(&self.ctx).await
    }

    /// Stops serving, stops every replica, and closes RocksDB.
    pub async fn shutdown(self) {
        self.ctx.cancel.cancel();
        let mut server = self.server;
        if tokio::time::timeout(Duration::from_secs(5), &mut server)
            .await
            .is_err()
        {
            tracing::warn!("gRPC server did not stop within 5s; aborting it");
            server.abort();
        }
        self.ctx.tracker.close();
        self.ctx.tracker.wait().await;
        let ctx = self.ctx;
        // Blocking tasks (apply, snapshot builds) may still hold the engine briefly.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&ctx) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let writer_done = ctx.writer.closed_signal();
        drop(ctx);
        let _ =
            tokio::task::spawn_blocking(move || writer_done.wait(Duration::from_secs(10))).await;
    }

    fn start_ticker(&self) {
        let ctx = self.ctx.clone();
        let interval = ctx.config.raft.tick_interval;
        let cancel = ctx.cancel.clone();
        self.ctx.tracker.spawn(async move {
            let mut t = tokio::time::interval(interval);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = t.tick() => {
                        for p in ctx.peers() {
                            p.event(PeerEvent::Tick);
                        }
                    }
                }
            }
        });
    }

    async fn bootstrap_or_join(&self) -> Result<()> {
        let cfg = &self.ctx.config;
        let members = cfg.initial_members()?;
        if cfg.join {
            tracing::info!("empty data dir: waiting to be added with `ctxctl member add`");
            return Ok(());
        }
        if members.is_empty() {
            return Err(Error::config(
                "initial-cluster",
                "the data dir is empty: pass --initial-cluster to create a new cluster, or --join to be added to a running one",
            ));
        }
        self.refuse_if_identity_lost(&members).await?;
        let ctx = self.ctx.clone();
        blocking(move || bootstrap(&ctx, &members)).await
    }

    /// Refuses to bootstrap when a running peer records this node's replica as started:
    /// its vote and log were lost with the data dir.
    async fn refuse_if_identity_lost(
        &self,
        members: &std::collections::BTreeMap<NodeId, String>,
    ) -> Result<()> {
        let me = self.ctx.node_id;
        for (id, addr) in members {
            if *id == me {
                continue;
            }
            let Some(status) = query_status(addr).await else {
                continue;
            };
            let started: Vec<u64> = status
                .shards
                .iter()
                .filter_map(|s| s.descriptor.as_ref())
                .filter(|d| d.replicas.iter().any(|r| r.node_id == me.0 && r.started))
                .map(|d| d.shard_id)
                .collect();
            if let Some(first) = started.first() {
                let list = started
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Error::config(
                    "data-dir",
                    format!(
                        "the data dir is empty but node {me} already ran in this cluster (node {id} records its replicas of shards {list} as started). \
                         Its Raft vote and log were lost, so it must not rejoin under its old identity. \
                         Remove it from every shard it hosted (`ctxctl --endpoints {addr} member --shard {first} remove {me}`, and so on for each shard), \
                         then start this node with a new --node-id and --join \
                         and add it with `ctxctl --endpoints {addr} member --shard S add NEW_ID ADDR`"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Runs RocksDB work off the async worker threads (DESIGN §3); replicas spawned inside
/// still land on the runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("blocking task: {e}")))?
}

async fn query_status(addr: &str) -> Option<StatusResponse> {
    let ep = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(1));
    let ch = ep.connect().await.ok()?;
    let mut c = ClusterClient::new(ch);
    c.status(StatusRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// Checks the data dir belongs to `node`; returns whether it is brand new.
fn check_identity(engine: &Engine, node: NodeId) -> Result<bool> {
    match engine.get(keys::CF_META, keys::NODE_IDENT_KEY)? {
        Some(v) => {
            let stored = v
                .as_slice()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| Error::Storage("corrupt node identity record".into()))?;
            if stored != node.0 {
                return Err(Error::config(
                    "node-id",
                    format!("this data dir belongs to node {stored}, not node {node}"),
                ));
            }
            Ok(false)
        }
        None => Ok(true),
    }
}

/// Records that this data dir belongs to `node` (after bootstrapping or joining).
fn write_identity(engine: &Engine, node: NodeId) -> Result<()> {
    let mut opts = rocksdb::WriteOptions::default();
    opts.set_sync(true);
    engine.db().put_cf_opt(
        engine.cf(keys::CF_META),
        keys::NODE_IDENT_KEY,
        node.0.to_be_bytes(),
        &opts,
    )?;
    Ok(())
}

/// Starts every replica found in the data dir; returns how many.
fn load_replicas(ctx: &Arc<NodeCtx>) -> Result<usize> {
    let engine = &ctx.engine;
    let mut shards = Vec::new();
    for item in engine
        .db()
        .iterator_cf(engine.cf(keys::CF_META), rocksdb::IteratorMode::Start)
    {
        let (k, v) = item?;
        if let Some(shard) = keys::decode_apply_state_key(&k) {
            shards.push(shard);
        } else if let Some(shard) = keys::decode_tombstone_key(&k) {
            let id = v.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
            if let Ok(mut t) = ctx.tombstones.write() {
                t.insert(shard, id);
            }
        }
    }
    for shard in &shards {
        let (storage, apply) = PeerStorage::load(engine, *shard)?;
        let desc: ShardDescriptor = engine
            .get_decoded(keys::CF_META, &keys::desc_key(*shard))?
            .ok_or_else(|| Error::Storage(format!("shard {shard}: no descriptor")))?;
        for r in &desc.replicas {
            ctx.addresses.insert(NodeId(r.node_id), r.addr.clone());
        }
        ctx.set_ring(&desc.ring_shards);
        let Some(me) = desc
            .replicas
            .iter()
            .find(|r| r.node_id == ctx.node_id.0)
            .map(|r| ReplicaId(r.replica_id))
        else {
            // The replica applied its own removal but the node stopped before the
            // cleanup: finish it (delete its state, leave a tombstone).
            tracing::warn!(%shard, "this node's replica was removed; cleaning up its state");
            let removed = desc.next_replica_id.saturating_sub(1);
            let mut batch = rocksdb::WriteBatch::default();
            crate::storage::log_writer::add_to_batch(
                engine,
                &mut batch,
                crate::storage::snapshot::removal_ops(&desc, removed),
            );
            let mut opts = rocksdb::WriteOptions::default();
            opts.set_sync(true);
            engine.db().write_opt(batch, &opts)?;
            if let Ok(mut t) = ctx.tombstones.write() {
                t.insert(*shard, removed);
            }
            continue;
        };
        if *shard == crate::meta::META_SHARD {
            if let Some(state) = engine.get_decoded(keys::CF_META, &keys::meta_state_key())? {
                ctx.meta.set_state(state);
            }
        }
        let handle = Peer::spawn(
            ctx.clone(),
            *shard,
            me,
            storage,
            desc,
            apply.applied_index,
            apply.applied_term,
        )?;
        ctx.register(handle);
    }
    Ok(ctx.peers().len())
}

/// Writes the initial state of every shard this node hosts (the meta shard 0 and the
/// data shards, placed by `meta::initial_descriptors`) and starts their replicas. Each
/// shard's first replica campaigns at once, spreading leaders.
fn bootstrap(
    ctx: &Arc<NodeCtx>,
    members: &std::collections::BTreeMap<NodeId, String>,
) -> Result<()> {
    let shards = ctx.config.initial_shards;
    let descriptors = crate::meta::initial_descriptors(members, shards);
    let engine = &ctx.engine;
    let mut batch = rocksdb::WriteBatch::default();
    let mut mine = Vec::new();
    for desc in &descriptors {
        let shard = ShardId(desc.shard_id);
        let Some(me) = desc.replicas.iter().find(|r| r.node_id == ctx.node_id.0) else {
            continue;
        };
        let me = ReplicaId(me.replica_id);
        let voters: Vec<u64> = desc.replicas.iter().map(|r| r.replica_id).collect();
        let storage = PeerStorage::new_bootstrap(voters.clone());
        let mut cs = ConfState::default();
        cs.set_voters(voters);
        let apply = ApplyState {
            applied_index: INIT_INDEX,
            applied_term: INIT_TERM,
            conf_state: cs.write_to_bytes().map_err(Error::from)?.into(),
        };
        batch.put_cf(
            engine.cf(keys::CF_RAFT),
            keys::raft_state_key(shard),
            storage.local_state().encode_to_vec(),
        );
        batch.put_cf(
            engine.cf(keys::CF_META),
            keys::apply_state_key(shard),
            apply.encode_to_vec(),
        );
        batch.put_cf(
            engine.cf(keys::CF_META),
            keys::desc_key(shard),
            desc.encode_to_vec(),
        );
        if shard == crate::meta::META_SHARD {
            let state = crate::meta::initial_state(members, &descriptors);
            batch.put_cf(
                engine.cf(keys::CF_META),
                keys::meta_state_key(),
                state.encode_to_vec(),
            );
            ctx.meta.set_state(state);
        }
        let preferred = desc.replicas.first().map(|r| r.replica_id) == Some(me.0);
        mine.push((shard, me, storage, desc.clone(), preferred));
    }
    let mut opts = rocksdb::WriteOptions::default();
    opts.set_sync(true);
    engine.db().write_opt(batch, &opts)?;
    tracing::info!(
        shards,
        hosted = mine.len(),
        members = members.len(),
        "bootstrapped a new cluster"
    );
    if let Some(d) = descriptors.get(1) {
        ctx.set_ring(&d.ring_shards);
    }
    for (shard, me, storage, desc, preferred) in mine {
        let handle = Peer::spawn(ctx.clone(), shard, me, storage, desc, INIT_INDEX, INIT_TERM)?;
        if preferred {
            let _ = handle.try_send(PeerMsg::Campaign);
        }
        ctx.register(handle);
    }
    Ok(())
}
