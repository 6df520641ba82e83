//! Node-to-node Raft transport (DESIGN §2): one long-lived client stream per
//! destination node carrying batches of raft messages of every shard, reconnecting
//! with backoff; snapshots travel over their own RPC in chunks.
//!
//! Messages are best effort: when a queue is full or a node is unreachable they are
//! dropped, and Raft retransmits. [`MessageFilter`] is the seam tests use to drop or
//! partition traffic without touching the network.

use crate::proto::raft_client::RaftClient;
use crate::proto::{RaftBatch, RaftEnvelope, SnapshotChunk, SnapshotMeta};
use crate::raft::handle::{PeerEvent, Stamp};
use crate::storage::snapshot::{SnapshotFile, SnapshotStore};
use crate::types::{NodeId, ShardId};
use crate::util::Backoff;
use ctxstore_api::tls::ClientTls;
use futures::StreamExt as _;
use parking_lot::{Mutex, RwLock};
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Decides whether a message from one node to another is delivered. Tests install one
/// to simulate partitions; production has none.
pub trait MessageFilter: Send + Sync {
    /// Whether traffic from `from` to `to` passes.
    fn allow(&self, from: NodeId, to: NodeId) -> bool;

    /// How long to hold a message from `from` to `to` before sending it (none by
    /// default). Delayed messages may overtake each other, as on a real network.
    fn delay(&self, _from: NodeId, _to: NodeId) -> Option<Duration> {
        None
    }
}

/// Queue depth per destination node.
pub(crate) const QUEUE: usize = 8192;
/// Most envelopes in one batch.
pub(crate) const MAX_BATCH: usize = 512;
/// Snapshot chunk size.
pub(crate) const CHUNK: usize = 1 << 20;

/// Where each node listens.
#[derive(Default)]
pub(crate) struct AddressBook {
    /// Node id → `host:port`.
    map: RwLock<HashMap<NodeId, String>>,
}

impl AddressBook {
    pub(crate) fn get(&self, node: NodeId) -> Option<String> {
        self.map.read().get(&node).cloned()
    }

    /// Every known `(node, address)`, ordered by node id.
    pub(crate) fn all(&self) -> Vec<(NodeId, String)> {
        let mut v: Vec<_> = self
            .map
            .read()
            .iter()
            .map(|(n, a)| (*n, a.clone()))
            .collect();
        v.sort();
        v
    }

    /// Records `node`'s address from a source that speaks for it now: the node's own
    /// messages and heartbeats (via the meta shard), or the operator's
    /// `--initial-cluster`. Replaces what was known.
    pub(crate) fn insert(&self, node: NodeId, addr: String) {
        if addr.is_empty() {
            return;
        }
        self.map.write().insert(node, addr);
    }

    /// Records `node`'s address from a stored descriptor, only if none is known: a
    /// descriptor may name an address the node no longer uses.
    pub(crate) fn learn(&self, node: NodeId, addr: &str) {
        if addr.is_empty() {
            return;
        }
        self.map
            .write()
            .entry(node)
            .or_insert_with(|| addr.to_string());
    }
}

/// Sends raft messages to other nodes.
pub(crate) struct Transport {
    /// This node.
    node_id: NodeId,
    /// This node's advertised address, sent so receivers can answer.
    self_addr: String,
    /// Where the other nodes are.
    addresses: Arc<AddressBook>,
    /// One queue per destination node, drained by its connection task.
    conns: Mutex<HashMap<NodeId, mpsc::Sender<RaftEnvelope>>>,
    /// Test hook deciding which messages pass.
    filter: RwLock<Option<Arc<dyn MessageFilter>>>,
    /// Built snapshot files to ship.
    snapshots: Arc<SnapshotStore>,
    /// Messages sent and dropped; snapshot bytes and times.
    metrics: Arc<crate::metrics::Metrics>,
    /// Stops the connection tasks.
    cancel: CancellationToken,
    /// Tracks the connection tasks.
    tracker: TaskTracker,
    /// What this node trusts and presents when it dials a peer (None: plaintext).
    tls: Option<ClientTls>,
}

impl Transport {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        node_id: NodeId,
        self_addr: String,
        addresses: Arc<AddressBook>,
        snapshots: Arc<SnapshotStore>,
        metrics: Arc<crate::metrics::Metrics>,
        cancel: CancellationToken,
        tracker: TaskTracker,
        tls: Option<ClientTls>,
    ) -> Self {
        Self {
            node_id,
            self_addr,
            tls,
            addresses,
            conns: Mutex::new(HashMap::new()),
            filter: RwLock::new(None),
            snapshots,
            metrics,
            cancel,
            tracker,
        }
    }

    /// Installs (or clears) the message filter.
    pub(crate) fn set_filter(&self, f: Option<Arc<dyn MessageFilter>>) {
        *self.filter.write() = f;
    }

    fn allowed(&self, to: NodeId) -> bool {
        self.filter
            .read()
            .as_ref()
            .is_none_or(|f| f.allow(self.node_id, to))
    }

    fn delay_to(&self, to: NodeId) -> Option<Duration> {
        self.filter
            .read()
            .as_ref()
            .and_then(|f| f.delay(self.node_id, to))
    }

    /// Whether traffic from `from` to this node passes the filter.
    pub(crate) fn allowed_from(&self, from: NodeId) -> bool {
        self.filter
            .read()
            .as_ref()
            .is_none_or(|f| f.allow(from, self.node_id))
    }

    /// Queues a raft message of `shard` for node `to`, its envelope stamped with
    /// `stamp`; `events` hears how a snapshot send ended. `lineage` is the shard's
    /// `(split_from, split_index)` (zeros for a shard made at bootstrap).
    pub(crate) fn send(
        &self,
        shard: ShardId,
        lineage: (u64, u64),
        to: NodeId,
        msg: Message,
        stamp: Stamp,
        events: mpsc::UnboundedSender<PeerEvent>,
    ) {
        let kind = msg.get_msg_type();
        let is_snap = kind == MessageType::MsgSnapshot;
        if !self.allowed(to) {
            self.metrics.raft_message(kind, false);
            if is_snap {
                let _ = events.send(PeerEvent::SnapshotSent(msg.to, false));
            }
            return;
        }
        let to_replica = msg.to;
        let bytes = match msg.write_to_bytes() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode raft message");
                return;
            }
        };
        let env = RaftEnvelope {
            shard_id: shard.0,
            from_node: self.node_id.0,
            to_node: to.0,
            message: bytes.into(),
            split_from: lineage.0,
            split_index: lineage.1,
            leader_commit: stamp.leader_commit,
            hibernate: stamp.hibernate,
        };
        if is_snap {
            self.metrics.raft_message(kind, true);
            self.send_snapshot(to, to_replica, env, &msg, events);
            return;
        }
        let tx = {
            let mut conns = self.conns.lock();
            conns
                .entry(to)
                .or_insert_with(|| self.start_connection(to))
                .clone()
        };
        match self.delay_to(to) {
            Some(d) => {
                self.metrics.raft_message(kind, true);
                self.tracker.spawn(async move {
                    tokio::time::sleep(d).await;
                    let _ = tx.try_send(env);
                });
            }
            // A full queue means the node is slow or gone: drop, Raft retries.
            None => {
                let queued = tx.try_send(env).is_ok();
                self.metrics.raft_message(kind, queued);
            }
        }
    }

    fn start_connection(&self, to: NodeId) -> mpsc::Sender<RaftEnvelope> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let conn = Connection {
            from: self.node_id,
            from_addr: self.self_addr.clone(),
            to,
            addresses: self.addresses.clone(),
            cancel: self.cancel.clone(),
            tls: self.tls.clone(),
        };
        self.tracker.spawn(conn.run(rx));
        tx
    }

    fn send_snapshot(
        &self,
        to: NodeId,
        to_replica: u64,
        env: RaftEnvelope,
        msg: &Message,
        events: mpsc::UnboundedSender<PeerEvent>,
    ) {
        let meta = match SnapshotMeta::decode(msg.get_snapshot().data.as_ref()) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "snapshot message without metadata");
                let _ = events.send(PeerEvent::SnapshotSent(to_replica, false));
                return;
            }
        };
        let file = self
            .snapshots
            .get_outgoing(ShardId(meta.shard_id), meta.index, meta.term);
        let addr = self.addresses.get(to);
        let from_addr = self.self_addr.clone();
        let cancel = self.cancel.clone();
        let metrics = self.metrics.clone();
        let tls = self.tls.clone();
        self.tracker.spawn(async move {
            let ok = match (file, addr) {
                (Some(file), Some(addr)) => {
                    let started = std::time::Instant::now();
                    let size = file.size;
                    let sent = tokio::select! {
                        _ = cancel.cancelled() => Err("shutting down".to_string()),
                        r = ship_snapshot(addr, tls.as_ref(), from_addr, env, file) => r,
                    };
                    match sent {
                        Ok(()) => {
                            metrics.snapshot_sent_bytes.inc_by(size);
                            metrics
                                .snapshot_send_seconds
                                .observe(started.elapsed().as_secs_f64());
                            true
                        }
                        Err(e) => {
                            tracing::warn!(to = %to, error = %e, "snapshot send failed");
                            false
                        }
                    }
                }
                _ => false,
            };
            let _ = events.send(PeerEvent::SnapshotSent(to_replica, ok));
        });
    }
}

/// How long dialling a peer may take, TLS handshake included.
const CONNECT_BUDGET: Duration = Duration::from_secs(3);

/// Dials `addr`; with TLS the files are read now, so a reconnect takes rotated ones.
async fn connect(
    addr: &str,
    tls: Option<&ClientTls>,
) -> Result<RaftClient<tonic::transport::Channel>, String> {
    let ep = ctxstore_api::tls::endpoint(addr, tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true);
    // The connect timeout bounds TCP only; a peer that accepts but stalls in the TLS
    // handshake (a stopped process) must not hold this connection task forever.
    let ch = tokio::time::timeout(CONNECT_BUDGET, ep.connect())
        .await
        .map_err(|_| format!("no connection within {CONNECT_BUDGET:?}"))?
        .map_err(|e| e.to_string())?;
    Ok(RaftClient::new(ch)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

/// Streams a snapshot file to `addr`: the envelope first, then the file in chunks of
/// [`CHUNK`] read as the stream is drained (at most a few chunks in memory), then
/// the checksum. The file stays alive (and on disk) while `file` is held.
async fn ship_snapshot(
    addr: String,
    tls: Option<&ClientTls>,
    from_addr: String,
    env: RaftEnvelope,
    file: Arc<SnapshotFile>,
) -> Result<(), String> {
    let mut client = connect(&addr, tls).await?;
    let reader = tokio::fs::File::open(file.path())
        .await
        .map_err(|e| format!("cannot open {}: {e}", file.path().display()))?;
    let head = SnapshotChunk {
        envelope: Some(env),
        from_addr,
        ..Default::default()
    };
    // A read error ends the stream without its last chunk: the receiver refuses the
    // truncated snapshot and the send fails.
    let body = futures::stream::unfold(Some((reader, file)), |state| async move {
        let (mut reader, file) = state?;
        let mut buf = bytes::BytesMut::with_capacity(CHUNK);
        while buf.len() < CHUNK {
            match tokio::io::AsyncReadExt::read_buf(&mut reader, &mut buf).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(path = %file.path().display(), error = %e, "cannot read snapshot file");
                    return None;
                }
            }
        }
        if buf.is_empty() {
            let last = SnapshotChunk {
                last: true,
                checksum: file.checksum,
                ..Default::default()
            };
            return Some((last, None));
        }
        let chunk = SnapshotChunk {
            data: buf.freeze(),
            ..Default::default()
        };
        Some((chunk, Some((reader, file))))
    });
    let chunks = futures::stream::iter([head]).chain(body);
    client
        .send_snapshot(chunks)
        .await
        .map_err(|s| s.message().to_string())?;
    Ok(())
}

/// The task owning the stream to one destination node.
struct Connection {
    from: NodeId,
    from_addr: String,
    to: NodeId,
    addresses: Arc<AddressBook>,
    cancel: CancellationToken,
    tls: Option<ClientTls>,
}

impl Connection {
    async fn run(self, mut rx: mpsc::Receiver<RaftEnvelope>) {
        let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_secs(1));
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            let client = match self.addresses.get(self.to) {
                Some(addr) => connect(&addr, self.tls.as_ref()).await,
                None => Err(format!("no address known for node {}", self.to)),
            };
            let mut client = match client {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(to = %self.to, error = %e, "raft connection failed");
                    // Messages queued while the node is unreachable are stale by the
                    // time it is back: drop them.
                    while rx.try_recv().is_ok() {}
                    tokio::select! {
                        _ = self.cancel.cancelled() => return,
                        _ = tokio::time::sleep(backoff.next_pause()) => {}
                    }
                    continue;
                }
            };
            let connected_at = tokio::time::Instant::now();
            let (btx, brx) = mpsc::channel::<RaftBatch>(64);
            let mut call = tokio::spawn(async move { client.send(ReceiverStream::new(brx)).await });
            loop {
                tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => {
                        call.abort();
                        return;
                    }
                    _ = &mut call => break,
                    env = rx.recv() => {
                        let Some(env) = env else {
                            call.abort();
                            return;
                        };
                        let mut envelopes = vec![env];
                        while envelopes.len() < MAX_BATCH {
                            match rx.try_recv() {
                                Ok(e) => envelopes.push(e),
                                Err(_) => break,
                            }
                        }
                        let batch = RaftBatch {
                            from_node: self.from.0,
                            from_addr: self.from_addr.clone(),
                            envelopes,
                        };
                        if btx.send(batch).await.is_err() {
                            break;
                        }
                    }
                }
            }
            // A stream that broke at once is retried with backoff, not in a tight loop.
            if connected_at.elapsed() < Duration::from_secs(1) {
                tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff.next_pause()) => {}
                }
            } else {
                backoff.reset();
            }
        }
    }
}
