//! One `ctxd` process: opens the data directory, loads or bootstraps its replicas,
//! serves gRPC, and drives every replica with one tick timer.
//!
//! - `ctx`: the services and registries shared by the node's replicas and handlers;
//! - `replicas`: creating replicas (load, bootstrap, on a leader's first message) and
//!   the data directory's identity;
//! - `purge`: the TTL purge loop of the shards this node leads;
//! - `split`: splitting shards (the admin call and the automatic splitter);
//! - `drain`: a graceful stop's leadership handoff;
//! - `restore`: a new node built offline from a backup;
//! - this module: [`Node`], which starts and stops all of it.
//!
//! Invariants:
//! - a data directory belongs to one node id forever (recorded at first start);
//! - a node bootstraps at most once: only with an empty data directory, and never when
//!   a reachable peer records this node's replica as started (its vote and log were
//!   lost with the data: it must come back as a new replica, DESIGN §1).

pub(crate) mod ctx;
pub(crate) mod drain;
pub(crate) mod lease;
pub(crate) mod lease_keeper;
pub(crate) mod purge;
pub(crate) mod replicas;
pub mod restore;
pub(crate) mod split;

use crate::config::NodeConfig;
use crate::error::{ErrInto, Error, Result};
use crate::keys;
use crate::proto::cluster_client::ClusterClient;
use crate::proto::{StatusRequest, StatusResponse};
use crate::raft::handle::PeerEvent;
use crate::raft::transport::MessageFilter;
use crate::storage::Engine;
use crate::types::NodeId;
use ctx::NodeCtx;
pub use drain::DrainReport;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// A running `ctxd` node.
pub struct Node {
    /// Shared services; the last reference closes RocksDB.
    ctx: Arc<NodeCtx>,
    /// The gRPC server task.
    server: tokio::task::JoinHandle<()>,
    /// The status listener's address, if it serves one.
    status_addr: Option<std::net::SocketAddr>,
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
        // Before the data dir opens: files that do not load are a config error.
        let tls = crate::server::tls::ServerTls::load(&config.security)?;
        let node_id = NodeId(config.node_id);
        let (engine, fresh) = {
            let dir = config.data_dir.clone();
            blocking(move || {
                let engine = Engine::open(&dir)?;
                let fresh = replicas::check_identity(&engine, node_id)?;
                // Before any replica loads: finish snapshot installs a crash
                // interrupted, delete the files of the previous run.
                crate::storage::snapshot::recover(&engine, &dir.join(ctx::SNAPSHOT_DIR))?;
                let indexed = crate::storage::index::ensure_index(&engine)?;
                if indexed > 0 {
                    tracing::info!(
                        records = indexed,
                        "indexed the records with an expiry and the conversations and threads"
                    );
                }
                Ok((engine, fresh))
            })
            .await?
        };
        let ctx = Arc::new(NodeCtx::new(config, engine)?);
        let addr = ctx.addr.clone();
        let loaded = {
            let ctx = ctx.clone();
            blocking(move || replicas::load_replicas(&ctx)).await?
        };
        let status_addr = match &ctx.config().status.listen {
            Some(addr) => {
                let l = TcpListener::bind(addr).await.map_err(|e| {
                    Error::config("status.listen", format!("cannot bind {addr}: {e}"))
                })?;
                let bound = l.local_addr().ok();
                crate::server::status::spawn(ctx.clone(), l);
                bound
            }
            None => None,
        };
        let server = crate::server::spawn(ctx.clone(), listener, tls)?;
        let node = Node {
            ctx,
            server,
            status_addr,
        };
        if loaded == 0 && fresh {
            let r = match node.bootstrap_or_join().await {
                Ok(()) => {
                    let engine = node.ctx.engine.clone();
                    blocking(move || replicas::write_identity(&engine, node_id)).await
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
        node.ctx.accept_new_replicas();
        node.start_ticker();
        crate::meta::service::spawn_heartbeats(node.ctx.clone());
        crate::meta::pd::spawn_driver(node.ctx.clone());
        purge::spawn_purger(node.ctx.clone());
        lease_keeper::spawn_lease_keeper(node.ctx.clone());
        split::spawn_splitter(node.ctx.clone());
        tracing::info!(node = %node_id, %addr, replicas = loaded, "node started");
        Ok(node)
    }

    /// The address of the status listener (metrics and health over HTTP), if the
    /// node serves one (`status.listen`).
    pub fn status_addr(&self) -> Option<std::net::SocketAddr> {
        self.status_addr
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

    /// Reads this node has served from its local replicas, in any read mode.
    pub fn reads_served(&self) -> u64 {
        self.ctx.reads.count()
    }

    /// Adds `delay` to every read this node serves (None heals): a test seam that
    /// plays a slow replica.
    pub fn set_read_delay(&self, delay: Option<std::time::Duration>) {
        self.ctx.reads.set_delay(delay);
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
            let (k, _) = item.err_into()?;
            if let Some(user_key) = keys::decode_data_key(&k) {
                out.push(user_key.to_vec());
            }
        }
        Ok(out)
    }

    /// The node's expiry index against its records (for tests; reads the whole
    /// `data` CF).
    pub fn check_expiry_index(&self) -> Result<crate::IndexCheck> {
        crate::fsm::read::View::new(&self.ctx.engine, crate::util::now_ms()).check_expiry_index()
    }

    /// The node's listing indexes against its conversation and thread records (for tests;
    /// reads the whole `data` CF).
    pub fn check_listing_index(&self) -> Result<crate::IndexCheck> {
        crate::fsm::read::View::new(&self.ctx.engine, crate::util::now_ms()).check_listing_index()
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

    /// Bytes of all batches this node wrote to RocksDB since it started (what a
    /// split or a snapshot costs in writes).
    pub fn bytes_written(&self) -> u64 {
        self.ctx.engine.bytes_written()
    }

    /// WAL syncs the log writer has done.
    pub fn wal_syncs(&self) -> u64 {
        self.ctx.writer.syncs()
    }

    /// This node's status (the same as `Cluster.Status`).
    pub async fn status(&self) -> StatusResponse {
        self.ctx.status().await
    }

    /// The first half of a graceful stop: the node stops being ready (`/readyz`, gRPC
    /// health), tells the placement driver it is stopping, and hands the leadership
    /// of every shard it leads to another voter, waiting at most `timeout` for all of
    /// them to move. It keeps serving meanwhile (as a follower it redirects clients).
    /// Call [`Node::shutdown`] next.
    pub async fn drain(&self, timeout: Duration) -> DrainReport {
        drain::drain(&self.ctx, timeout).await
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
        // Every task holding the context, blocking ones included (apply, snapshot
        // builds, reads), ran on the tracker: the context is ours alone now.
        let ctx = self.ctx;
        let writer_done = ctx.writer.closed_signal();
        drop(ctx);
        let _ =
            tokio::task::spawn_blocking(move || writer_done.wait(Duration::from_secs(10))).await;
    }

    fn start_ticker(&self) {
        let ctx = self.ctx.clone();
        let interval = ctx.config().raft.tick_interval;
        let cancel = ctx.cancel.clone();
        self.ctx.tracker.spawn(async move {
            let mut t = tokio::time::interval(interval);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = t.tick() => {
                        ctx.for_each_peer(|p| {
                            // A hibernating replica wakes on its next message or
                            // request, not on time.
                            if !p.epoch.hibernating() {
                                p.event(PeerEvent::Tick);
                            }
                        });
                    }
                }
            }
        });
    }

    async fn bootstrap_or_join(&self) -> Result<()> {
        let cfg = self.ctx.config();
        let members = cfg.initial_members()?;
        if cfg.join {
            if cfg.peers.is_empty() {
                tracing::info!("empty data dir: waiting to be added with `ctxctl member add`");
            } else {
                tracing::info!(peers = %cfg.peers, "empty data dir: reporting to the cluster; the placement driver adds replicas here");
            }
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
        blocking(move || {
            replicas::bootstrap(&ctx, &members)?;
            // A new cluster starts with auth off: nothing to learn from anyone.
            ctx.auth.learn(None);
            Ok(())
        })
        .await
    }

    /// Refuses to bootstrap when a running peer records this node's replica as started:
    /// its vote and log were lost with the data dir.
    async fn refuse_if_identity_lost(
        &self,
        members: &std::collections::BTreeMap<NodeId, String>,
    ) -> Result<()> {
        let me = self.ctx.node_id;
        let tls = self.ctx.config().security.peer_client();
        for (id, addr) in members {
            if *id == me {
                continue;
            }
            let Some(status) = query_status(addr, tls.as_ref()).await else {
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
            // Its replicas may all have moved away meanwhile (a drain, or the
            // placement driver replacing a node down for long): the meta shard still
            // remembers that it ran (read from the peer's own meta state: no leader
            // needed).
            if status.nodes_that_ran.contains(&me.0) {
                return Err(Error::config(
                    "data-dir",
                    format!(
                        "the data dir is empty but node {me} already ran in this cluster (the meta shard, asked through node {id}, records it). \
                         Its Raft vote and log were lost, so it must not bootstrap again under its old identity. \
                         Start it with a new --node-id and --join --peers {addr} (the placement driver fills it), \
                         and retire the old id with `ctxctl --endpoints {addr} node drain {me}` then `node remove {me}`"
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

/// A peer's status for the lost-data guard. A peer that does not listen refuses the
/// connection at once (a new cluster whose members start one by one); one that is
/// merely slow (a loaded machine) gets seconds, not a timeout that lets the guard pass.
async fn query_status(
    addr: &str,
    tls: Option<&ctxstore_api::tls::ClientTls>,
) -> Option<StatusResponse> {
    let ep = ctxstore_api::tls::endpoint(addr, tls)
        .ok()?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10));
    // The connect timeout bounds TCP only: a peer that accepts but does not finish
    // the TLS handshake (stopped, or not serving yet) must not hold up the start.
    let ask = async {
        let ch = ep.connect().await.ok()?;
        let mut c = ClusterClient::new(ch);
        c.status(StatusRequest::default())
            .await
            .ok()
            .map(|r| r.into_inner())
    };
    tokio::time::timeout(Duration::from_secs(12), ask)
        .await
        .ok()
        .flatten()
}
