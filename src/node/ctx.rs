//! `NodeCtx`: the services one node shares between its replicas and gRPC handlers, and
//! the registries of the replicas it hosts.
//!
//! It holds handles (RocksDB, the log writer, the transport, snapshot files, the
//! address book, config, cancellation) and registries (replicas, tombstones, failed
//! replicas, the ring, leader count, meta shard state, watch logs).
//! It never creates replicas: that is `node::replicas`, above the replica actor.

use crate::config::NodeConfig;
use crate::error::Result;
use crate::fsm::watch::WatchHub;
use crate::meta::cache::MetaCtx;
use crate::metrics::Metrics;
use crate::proto::{ClusterConfig, ShardDescriptor, ShardRoute, ShardStatus, StatusResponse};
use crate::raft::handle::{PeerHandle, PeerMsg};
use crate::raft::transport::{AddressBook, Transport};
use crate::ranges::RangeMap;
use crate::storage::snapshot::SnapshotStore;
use crate::storage::{Engine, LogWriter};
use crate::types::{NodeId, ReplicaId, ShardId, META_SHARD};
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The directory under the data dir holding snapshot files.
pub(crate) const SNAPSHOT_DIR: &str = "snap";
/// The auth state this node last learned, in its data dir.
pub(crate) const AUTH_FILE: &str = "auth.pb";

/// How long a status collection waits for one replica to answer.
const STATUS_WAIT: Duration = Duration::from_secs(2);

/// Services shared by every replica on the node.
pub(crate) struct NodeCtx {
    /// This node.
    pub(crate) node_id: NodeId,
    /// Address peers and clients use.
    pub(crate) addr: String,
    /// The node's own configuration (flags, file, defaults).
    base_config: NodeConfig,
    /// `base_config` with the cluster's dynamic settings on top ([`Self::config`]).
    config: RwLock<Arc<NodeConfig>>,
    /// The cluster's dynamic settings in effect here (`version` 0: none yet).
    cluster_config: Mutex<ClusterConfig>,
    /// Users, roles and tokens in effect here (learned from the meta shard, kept in
    /// the data dir).
    pub(crate) auth: crate::auth::AuthHub,
    /// The node's RocksDB.
    pub(crate) engine: Engine,
    /// Group-committing log writer shared by all replicas.
    pub(crate) writer: LogWriter,
    /// Raft message transport.
    pub(crate) transport: Transport,
    /// Snapshot files being sent, received or installed.
    pub(crate) snapshots: Arc<SnapshotStore>,
    /// Node id → address.
    pub(crate) addresses: Arc<AddressBook>,
    /// Replicas hosted here.
    peers: RwLock<HashMap<ShardId, PeerHandle>>,
    /// Replicas registered here since the node started ([`NodeCtx::registered`]).
    registered: AtomicU64,
    /// Shard → highest replica id removed from this node.
    tombstones: RwLock<HashMap<ShardId, u64>>,
    /// Shards whose replica failed in this process; never recreated until restart.
    failed: RwLock<HashSet<ShardId>>,
    /// How many of this node's replicas lead their data shard now.
    pub(crate) leaders: AtomicUsize,
    /// Which shard owns each hash, from the descriptors of the local replicas and the
    /// routing table (newer `ring_ver` wins where they overlap).
    ranges: RwLock<Arc<RangeMap>>,
    /// Whether messages for unknown shards may create replicas (false while the node
    /// is still deciding whether to bootstrap).
    accept_new_replicas: AtomicBool,
    /// The node is stopping ([`crate::Node::drain`]): not ready, no target for
    /// replicas or leaders, and its leaderships are being handed away.
    pub(crate) stopping: AtomicBool,
    /// The meta shard's state (on its replicas) and the node's routing-table copy.
    pub(crate) meta: MetaCtx,
    /// Recent changes per replica, for watches.
    pub(crate) watch: WatchHub,
    /// The deadlines of the leases of the shards led here.
    pub(crate) leases: crate::node::lease::LeaseKeeper,
    /// Splits in progress on this node (`split.max-concurrent-per-node`).
    pub(crate) splits_in_progress: std::sync::atomic::AtomicU64,
    /// Whether a replica removal may have left listing index entries behind
    /// (true at start too): the purge loop sweeps the index until a pass finds none.
    pub(crate) listing_sweep: AtomicBool,
    /// Shard → its size as the splitter last measured it.
    sizes: Mutex<HashMap<ShardId, Measured>>,
    /// Reads this node served, and the test seam that slows them.
    pub(crate) reads: ReadProbe,
    /// The node's metrics (`/metrics` on the status listener).
    pub(crate) metrics: Arc<Metrics>,
    /// Stops everything.
    pub(crate) cancel: CancellationToken,
    /// Tracks every task the node spawned.
    pub(crate) tracker: TaskTracker,
}

/// A shard's size as the splitter last measured it.
struct Measured {
    bytes: u64,
    keys: u64,
    /// The applied index it was measured at, if it needed no split then.
    settled_at: Option<u64>,
}

impl NodeCtx {
    /// A node's context with no replicas yet: the address book starts with the
    /// initial members and this node, and the transport and log writer start.
    pub(crate) fn new(config: NodeConfig, engine: Engine) -> Result<Self> {
        let node_id = NodeId(config.node_id);
        let addr = config.advertise_addr().to_string();
        let addresses = Arc::new(AddressBook::default());
        for (id, a) in config.initial_members()? {
            addresses.insert(id, a);
        }
        addresses.insert(node_id, addr.clone());
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let snapshots = Arc::new(SnapshotStore::new(config.data_dir.join(SNAPSHOT_DIR)));
        let auth = crate::auth::AuthHub::load(Some(config.data_dir.join(AUTH_FILE)))?;
        let metrics = Arc::new(Metrics::new(node_id.0));
        let transport = Transport::new(
            node_id,
            addr.clone(),
            addresses.clone(),
            snapshots.clone(),
            metrics.clone(),
            cancel.clone(),
            tracker.clone(),
            config.security.peer_client(),
        );
        Ok(Self {
            node_id,
            addr,
            writer: LogWriter::start(engine.clone(), metrics.wal_fsync_seconds.clone()),
            engine,
            transport,
            snapshots,
            addresses,
            peers: RwLock::new(HashMap::new()),
            registered: AtomicU64::new(0),
            tombstones: RwLock::new(HashMap::new()),
            failed: RwLock::new(HashSet::new()),
            leaders: AtomicUsize::new(0),
            ranges: RwLock::new(Arc::new(RangeMap::new())),
            accept_new_replicas: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            meta: MetaCtx::new(config.security.peer_client()),
            watch: WatchHub::new(
                usize::try_from(config.context.watch_retain_bytes).unwrap_or(usize::MAX),
                config.context.watch_retain_age,
            ),
            leases: Default::default(),
            splits_in_progress: Default::default(),
            listing_sweep: AtomicBool::new(true),
            sizes: Mutex::new(HashMap::new()),
            reads: ReadProbe::new(metrics.reads_served.clone()),
            metrics,
            cancel,
            tracker,
            config: RwLock::new(Arc::new(config.clone())),
            base_config: config,
            cluster_config: Mutex::new(ClusterConfig::default()),
            auth,
        })
    }

    /// The configuration in effect: the node's own with the cluster's dynamic
    /// settings on top. Read it at each use, so a `ctxctl config set` takes effect.
    pub(crate) fn config(&self) -> Arc<NodeConfig> {
        self.config.read().clone()
    }

    /// The node's own configuration (flags, file, defaults), without the cluster's.
    pub(crate) fn base_config(&self) -> &NodeConfig {
        &self.base_config
    }

    /// The cluster's dynamic settings as this node applied them.
    pub(crate) fn cluster_config(&self) -> ClusterConfig {
        self.cluster_config.lock().clone()
    }

    /// Installs `store` if it is newer than the auth state in effect (or writes the
    /// state in effect if an earlier write failed), on a blocking thread: writing and
    /// syncing the data dir's copy must not stall a replica's task or the heartbeat
    /// loop.
    pub(crate) fn install_auth(self: &Arc<Self>, store: &crate::proto::AuthStore) {
        if !self.auth.needs(store) {
            return;
        }
        let (ctx, store) = (self.clone(), store.clone());
        self.tracker
            .spawn_blocking(move || ctx.auth.install(&store));
    }

    /// [`Self::install_auth`] for the auth state of the meta leader's answer (None:
    /// auth never set up), which is also the cluster's: a node that did not know it
    /// (`AuthHub::learned`) serves clients from now on.
    pub(crate) fn learn_auth(self: &Arc<Self>, store: Option<crate::proto::AuthStore>) {
        let needed = store.as_ref().is_some_and(|s| self.auth.needs(s));
        if self.auth.learned() && !needed {
            return;
        }
        let ctx = self.clone();
        self.tracker
            .spawn_blocking(move || ctx.auth.learn(store.as_ref()));
    }

    /// Lays a newer version of the cluster's settings over the node's own
    /// configuration (an older or equal version is ignored). A document this node
    /// cannot apply (it was checked against the meta leader's configuration) is
    /// logged and skipped; the node keeps its settings.
    pub(crate) fn apply_cluster_config(&self, doc: &ClusterConfig) {
        let mut current = self.cluster_config.lock();
        if doc.version <= current.version {
            return;
        }
        let settings = doc
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match crate::cluster_config::overlay(&self.base_config, &settings) {
            Ok(cfg) => {
                if cfg.log.level != self.config().log.level {
                    if let Err(e) = crate::logging::set_filter(&cfg.log.level) {
                        tracing::warn!(error = %e, "cannot change the log filter");
                    }
                }
                self.watch.set_retention(
                    usize::try_from(cfg.context.watch_retain_bytes).unwrap_or(usize::MAX),
                    cfg.context.watch_retain_age,
                );
                *self.config.write() = Arc::new(cfg);
                tracing::info!(version = doc.version, "applied the cluster's settings");
            }
            Err(e) => tracing::warn!(
                version = doc.version,
                error = %e,
                "cannot apply the cluster's settings here; keeping this node's"
            ),
        }
        *current = doc.clone();
    }

    /// The `data` CF ranges of the arcs of a shard this node hosts (as its replica
    /// applied them; none if the node does not host it).
    pub(crate) fn data_ranges(&self, shard: ShardId) -> Vec<(Vec<u8>, Vec<u8>)> {
        let arcs = match self.peer(shard) {
            Some(p) => p.epoch.arcs().to_vec(),
            None => Vec::new(),
        };
        arcs.into_iter()
            .map(|(lo, hi)| crate::keys::data_range(lo, hi))
            .collect()
    }

    /// The replica of `shard` on this node.
    pub(crate) fn peer(&self, shard: ShardId) -> Option<PeerHandle> {
        self.peers.read().get(&shard).cloned()
    }

    /// Every replica on this node.
    pub(crate) fn peers(&self) -> Vec<PeerHandle> {
        self.peers.read().values().cloned().collect()
    }

    /// Runs `f` on every replica on this node without copying their handles (`f`
    /// must not block: the replica map is locked meanwhile).
    pub(crate) fn for_each_peer(&self, mut f: impl FnMut(&PeerHandle)) {
        for p in self.peers.read().values() {
            f(p);
        }
    }

    /// Starts routing to a replica.
    pub(crate) fn register(&self, handle: PeerHandle) {
        self.peers.write().insert(handle.shard, handle);
        self.registered.fetch_add(1, Ordering::Relaxed);
    }

    /// How many replicas were registered here since the node started: a loop that
    /// checks every replica against a table can skip a round in which neither this
    /// nor the table changed.
    pub(crate) fn registered(&self) -> u64 {
        self.registered.load(Ordering::Relaxed)
    }

    /// Learns a shard's arcs from one of its descriptors (ignored if older than
    /// what is known).
    pub(crate) fn note_descriptor(&self, desc: &ShardDescriptor) {
        let mut r = self.ranges.write();
        let mut next = (**r).clone();
        if next.insert_descriptor(desc) {
            *r = Arc::new(next);
        }
    }

    /// Learns every shard's arcs from a routing table or meta state.
    pub(crate) fn note_routes(&self, routes: &[ShardRoute]) {
        let mut r = self.ranges.write();
        let mut next = (**r).clone();
        let mut changed = false;
        for d in routes.iter().filter_map(|r| r.descriptor.as_ref()) {
            changed |= next.insert_descriptor(d);
        }
        if changed {
            *r = Arc::new(next);
        }
    }

    /// The shard owning hash `h` as this node knows it.
    pub(crate) fn owner_of(&self, h: u64) -> Option<ShardId> {
        self.ranges.read().shard_for_hash(h)
    }

    /// Which shard owns each hash, as this node knows it.
    pub(crate) fn ranges(&self) -> Arc<RangeMap> {
        self.ranges.read().clone()
    }

    /// Routes of `shard` and of the shards split from it that this node hosts, with
    /// leader hints: what a `StaleEpoch` answer tells the client.
    pub(crate) fn current_routes(&self, shard: ShardId) -> Vec<ShardRoute> {
        let mut out = Vec::new();
        for p in self.peers() {
            let d = p.epoch.descriptor();
            if p.shard == shard || d.split_from == shard.0 {
                out.push(p.epoch.route());
            }
        }
        out.sort_by_key(|r| r.descriptor.as_ref().map_or(0, |d| d.shard_id));
        out
    }

    /// `StaleEpoch` for `peer`'s shard, with what this node knows now.
    pub(crate) fn stale_epoch(&self, peer: &PeerHandle) -> crate::error::Error {
        let (conf_ver, ring_ver) = peer.epoch.get();
        crate::error::Error::StaleEpoch {
            shard: peer.shard,
            conf_ver,
            ring_ver,
            current: self.current_routes(peer.shard),
        }
    }

    /// The highest replica id of `shard` removed from this node (0: none).
    pub(crate) fn tombstone(&self, shard: ShardId) -> u64 {
        self.tombstones.read().get(&shard).copied().unwrap_or(0)
    }

    /// Remembers that replica `replica` of `shard` was removed from this node.
    pub(crate) fn set_tombstone(&self, shard: ShardId, replica: u64) {
        let mut t = self.tombstones.write();
        let e = t.entry(shard).or_default();
        *e = (*e).max(replica);
    }

    /// Whether the replica of `shard` failed in this process.
    pub(crate) fn failed(&self, shard: ShardId) -> bool {
        self.failed.read().contains(&shard)
    }

    /// Whether messages for unknown shards may create replicas yet.
    pub(crate) fn accepting_new_replicas(&self) -> bool {
        self.accept_new_replicas.load(Ordering::Acquire)
    }

    /// From now on, messages for unknown shards may create replicas.
    pub(crate) fn accept_new_replicas(&self) {
        self.accept_new_replicas.store(true, Ordering::Release);
    }

    /// Stops routing to a replica.
    pub(crate) fn cancel_replica(&self, shard: ShardId) {
        self.peers.write().remove(&shard);
        // Its watchers end (they resume on another replica).
        self.watch.remove(shard);
    }

    /// Stops routing to a replica that failed (a fatal write or apply error, or a
    /// panic). Its state stays on disk for a restart to recover from; until then no
    /// message may recreate it empty (that would forget its vote and log).
    pub(crate) fn on_replica_failed(&self, shard: ShardId) {
        self.cancel_replica(shard);
        self.failed.write().insert(shard);
    }

    /// Forgets a removed replica and remembers its id as a tombstone.
    pub(crate) fn on_replica_removed(&self, shard: ShardId, replica: ReplicaId) {
        self.cancel_replica(shard);
        if shard == META_SHARD {
            // From now on the node's routing copy comes from heartbeats only.
            self.meta.clear_state();
        }
        self.set_tombstone(shard, replica.0);
        self.listing_sweep.store(true, Ordering::Release);
    }

    /// Records a shard's size as just measured.
    pub(crate) fn record_size(&self, shard: ShardId, bytes: u64, keys: u64) {
        self.sizes.lock().insert(
            shard,
            Measured {
                bytes,
                keys,
                settled_at: None,
            },
        );
    }

    /// Records that the shard, measured at applied index `applied`, needs no split.
    pub(crate) fn record_settled(&self, shard: ShardId, applied: u64) {
        if let Some(m) = self.sizes.lock().get_mut(&shard) {
            m.settled_at = Some(applied);
        }
    }

    /// Whether the shard needed no split when last measured, at applied index
    /// `applied`: nothing was written since, so it still does not.
    pub(crate) fn settled_at(&self, shard: ShardId, applied: u64) -> bool {
        self.sizes
            .lock()
            .get(&shard)
            .is_some_and(|m| m.settled_at == Some(applied))
    }

    /// The status of one replica (None: it did not answer in time or stopped), with
    /// its shard's size as last measured here.
    pub(crate) async fn replica_status(&self, peer: &PeerHandle) -> Option<ShardStatus> {
        let (tx, rx) = oneshot::channel();
        peer.send(PeerMsg::Status(tx)).await.ok()?;
        let mut s = tokio::time::timeout(STATUS_WAIT, rx).await.ok()?.ok()?;
        if let Some(m) = self.sizes.lock().get(&peer.shard) {
            s.approx_bytes = m.bytes;
            s.approx_keys = m.keys;
        }
        Some(s)
    }

    /// This node's status: every replica's, in shard order (`Cluster.Status`).
    pub(crate) async fn status(&self) -> StatusResponse {
        let mut shards = Vec::new();
        for p in self.peers() {
            if let Some(s) = self.replica_status(&p).await {
                shards.push(s);
            }
        }
        shards.sort_by_key(|s| s.descriptor.as_ref().map_or(0, |d| d.shard_id));
        let ran = |nodes: &[crate::proto::NodeInfo]| -> Vec<u64> {
            nodes
                .iter()
                .filter(|n| n.has_run)
                .map(|n| n.node_id)
                .collect()
        };
        let nodes_that_ran = match self.meta.state() {
            Some(state) => ran(&state.nodes),
            None => self
                .meta
                .cached
                .read()
                .as_ref()
                .map(|t| ran(&t.nodes))
                .unwrap_or_default(),
        };
        StatusResponse {
            node_id: self.node_id.0,
            addr: self.addr.clone(),
            bootstrapped: !shards.is_empty(),
            shards,
            wal_syncs: self.writer.syncs(),
            nodes_that_ran,
            // Counted by the `Status` call only (it reads the expiry index).
            expired_waiting: 0,
        }
    }
}

/// Reads a node served from its local replicas (any read mode), and a service delay
/// tests add to them to play a slow replica (the read-side counterpart of the
/// transport's `MessageFilter`).
pub(crate) struct ReadProbe {
    served: prometheus_client::metrics::counter::Counter,
    delay_micros: std::sync::atomic::AtomicU64,
}

impl ReadProbe {
    /// Counts reads served in `served` (the node's `ctxstore_reads_served` metric).
    pub(crate) fn new(served: prometheus_client::metrics::counter::Counter) -> Self {
        Self {
            served,
            delay_micros: Default::default(),
        }
    }

    /// Counts one read served; returns the delay to add before answering it.
    pub(crate) fn served(&self) -> Option<Duration> {
        self.served.inc();
        match self.delay_micros.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Reads served so far.
    pub(crate) fn count(&self) -> u64 {
        self.served.get()
    }

    /// Delays every read by `delay` (None or zero: no delay).
    pub(crate) fn set_delay(&self, delay: Option<Duration>) {
        let us = delay.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        self.delay_micros.store(us, Ordering::Relaxed);
    }
}
