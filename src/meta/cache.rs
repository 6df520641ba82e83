//! What a node keeps of the meta shard in memory: its local meta replica's applied
//! state, the routing table its last heartbeat brought back, the meta leader's view
//! of node liveness, and one channel per node address for meta calls.

use crate::error::{Error, Result};
use crate::proto::{MetaState, NodeState, NodeStats, RoutingTable, ShardLoad, ShardRoute};
use crate::types::ShardId;
use ctxstore_api::tls::{Channels, ClientTls};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tonic::transport::Channel;

/// What the meta leader knows of node liveness and load (not replicated: a new meta
/// leader starts with nothing and learns it from the next heartbeats).
#[derive(Default)]
pub(crate) struct Liveness {
    /// The meta term these observations belong to.
    pub(crate) term: u64,
    /// When this replica started watching as leader in `term`.
    pub(crate) since: Option<Instant>,
    /// Node → last heartbeat received.
    pub(crate) seen: HashMap<u64, Instant>,
    /// Node → its load as last reported.
    pub(crate) stats: HashMap<u64, NodeStats>,
    /// Shard → its load and replicas' progress, as its leader last reported them.
    pub(crate) loads: HashMap<u64, ShardLoad>,
    /// Node → the auth revision it last reported having in effect.
    pub(crate) auth_revisions: HashMap<u64, u64>,
    /// Node → whether its transport is fit for auth, as it last reported.
    pub(crate) auth_transport_ok: HashMap<u64, bool>,
}

impl Liveness {
    /// A node's liveness: `Up` when heard from within `disconnected_after`; `Down`
    /// when silent for `down_after` and this leader has watched at least that long;
    /// `Disconnected` in between; `Unknown` while this leader has watched for less
    /// than `disconnected_after` and not heard from the node.
    pub(crate) fn judge(
        &self,
        node: u64,
        disconnected_after: std::time::Duration,
        down_after: std::time::Duration,
    ) -> NodeState {
        let watched = self.since.map(|s| s.elapsed()).unwrap_or_default();
        let silent = match self.seen.get(&node) {
            Some(t) => t.elapsed(),
            None if watched < disconnected_after => return NodeState::Unknown,
            None => watched,
        };
        if silent < disconnected_after {
            NodeState::Up
        } else if silent >= down_after && watched >= down_after {
            NodeState::Down
        } else {
            NodeState::Disconnected
        }
    }
}

/// The meta-shard services of one node.
#[derive(Default)]
pub(crate) struct MetaCtx {
    /// The local meta replica's applied state (None: this node hosts no meta replica)
    /// and the hash of its routes ([`shards_hash`]).
    state: RwLock<Option<(Arc<MetaState>, u64)>>,
    /// The routing table the last heartbeat brought back.
    pub(crate) cached: RwLock<Option<RoutingTable>>,
    /// Heartbeats seen while this node led the meta shard.
    pub(crate) liveness: Mutex<Liveness>,
    /// Address of the meta leader as last found.
    pub(crate) leader_addr: Mutex<Option<String>>,
    /// One lazily connected channel per node address, dialled with this node's TLS
    /// files (remade when they change).
    channels: Channels<Channel>,
    /// Wakes the heartbeat loop early (leadership or membership changed here).
    pub(crate) wake: Notify,
    /// The placement driver's last round, while this node leads the meta shard.
    pub(crate) pd_status: Mutex<Option<crate::proto::PdStatusResponse>>,
    /// Tokens this node made for `create_token` changes with a request id, for 10
    /// minutes: a retry that reaches it again gets the same token.
    made_tokens: Mutex<HashMap<Vec<u8>, (String, crate::proto::TokenRecord, Instant)>>,
}

impl MetaCtx {
    pub(crate) fn new(tls: Option<ClientTls>) -> Self {
        Self {
            channels: Channels::new(tls),
            ..Default::default()
        }
    }

    /// Records the local meta replica's applied state.
    pub(crate) fn set_state(&self, state: MetaState) {
        let hash = shards_hash(&state.shards);
        *self.state.write() = Some((Arc::new(state), hash));
    }

    /// Forgets the local meta replica's state (it was removed from this node).
    pub(crate) fn clear_state(&self) {
        *self.state.write() = None;
    }

    /// The local meta replica's applied state.
    pub(crate) fn state(&self) -> Option<Arc<MetaState>> {
        self.state.read().as_ref().map(|(s, _)| s.clone())
    }

    /// [`MetaCtx::state`] with the [`shards_hash`] of its routes.
    pub(crate) fn state_and_hash(&self) -> Option<(Arc<MetaState>, u64)> {
        self.state.read().clone()
    }

    /// The token (and its record) for the `create_token` change `request_id`: the one
    /// made for an earlier attempt of it on this node, or `make()`'s.
    pub(crate) fn token_for(
        &self,
        request_id: &[u8],
        make: impl FnOnce() -> (String, crate::proto::TokenRecord),
    ) -> (String, crate::proto::TokenRecord) {
        const KEEP: Duration = Duration::from_secs(600);
        if request_id.is_empty() {
            return make();
        }
        let mut made = self.made_tokens.lock();
        made.retain(|_, (_, _, at)| at.elapsed() < KEEP);
        let (token, record, _) = made.entry(request_id.to_vec()).or_insert_with(|| {
            let (t, r) = make();
            (t, r, Instant::now())
        });
        (token.clone(), record.clone())
    }

    /// Asks for a heartbeat now (coalesced with one already pending).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// The routing entry of `shard` as this node last learned it.
    pub(crate) fn route_of(&self, shard: ShardId) -> Option<ShardRoute> {
        let find = |routes: &[ShardRoute]| {
            routes
                .iter()
                .find(|r| r.descriptor.as_ref().map(|d| d.shard_id) == Some(shard.0))
                .cloned()
        };
        if let Some(s) = self.state() {
            if let Some(r) = find(&s.shards) {
                return Some(r);
            }
        }
        let cached = self.cached.read();
        find(&cached.as_ref()?.shards)
    }

    /// A lazily connected channel to `addr`, each call bounded by `timeout`.
    pub(crate) fn channel(&self, addr: &str, timeout: Duration) -> Result<Channel> {
        self.channels
            .get(addr, |ep| {
                ep.connect_timeout(timeout)
                    .timeout(timeout)
                    .tcp_nodelay(true)
                    .connect_lazy()
            })
            .map_err(|e| Error::Transport(format!("cannot dial {addr}: {e}")))
    }
}

/// A hash of a routing table's routes, never 0 (a heartbeat's "no table held"): equal
/// for equal routes, so a node that holds routes of this hash needs none sent.
pub(crate) fn shards_hash(shards: &[ShardRoute]) -> u64 {
    use prost::Message as _;
    let mut buf = Vec::new();
    for r in shards {
        // Length-delimited, so no two route lists encode alike.
        r.encode_length_delimited(&mut buf)
            .expect("encoding to a Vec cannot run out of room");
    }
    xxhash_rust::xxh3::xxh3_64(&buf).max(1)
}
