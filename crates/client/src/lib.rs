//! The bundled Rust client.
//!
//! It keeps one lazily connected gRPC channel per node, sends each request to the node
//! it believes leads, follows `NotLeader` hints at once, backs off (2 ms doubling to
//! 500 ms, jittered) on `ShardUnavailable` and connection errors while rotating through
//! the nodes it knows, and gives up at the per-request deadline. Mutating requests
//! carry a request id that stays the same across retries, so the server applies each
//! at most once.
//!
//! The crate builds without RocksDB or Raft: it links only the wire API
//! (`ctxstore-api`, re-exported here) and tonic.

mod agent;
mod balance;
mod batch;
mod lease;
mod queue;
mod read;
mod routing;
pub mod trace;

pub use agent::Watcher;
pub use balance::{EndpointLoad, ReadBalance};
pub use ctxstore_api::tls::ClientTls;
pub use ctxstore_api::{
    backup, context, error, keys, proto, ranges, ring, tls, types, util, Error, NodeId, ReplicaId,
    Result, ShardId,
};
pub use lease::{service_prefix, Lease, LeaseKeeper, LeaseState, LockGuard};
pub use queue::Enqueue;
pub use read::ReadMode;

use crate::keys::key_hash;
use crate::proto::auth_client::AuthClient;
use crate::proto::cluster_client::ClusterClient;
use crate::proto::kv_client::KvClient;
use crate::proto::{
    AddMemberRequest, AddMemberResponse, AuthChange, AuthChangeRequest, AuthChangeResponse,
    AuthStore, BackupChunk, BackupShardRequest, BatchOp, BatchRequest, ClusterConfig,
    CompareAndSwapRequest, ConfigChange, DeleteRequest, DeleteResponse, GetAuthRequest,
    GetConfigRequest, GetConfigResponse, GetRequest, KeyValue, NodeAdmin, NodeInfo,
    PdStatusRequest, PdStatusResponse, PutRequest, RemoveMemberRequest, RequestHeader,
    RoutingTable, RoutingTableRequest, ScanRequest, ScanResponse, SetConfigRequest,
    SetNodeAdminRequest, SetPdPausedRequest, ShardDescriptor, SplitShardRequest, StatusRequest,
    StatusResponse, TransferLeaderRequest, WhoAmIRequest, WhoAmIResponse,
};
use crate::util::Backoff;
use bytes::Bytes;
use ctxstore_api::tls::Channels;
use parking_lot::Mutex;
use rand::Rng;
use routing::Routing;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use trace::Channel;

/// How often a connection with calls in flight is pinged (HTTP/2 PING).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// How long a ping may go unanswered before the connection is given up: a node
/// that stopped answering is left within about 5 s, well inside a call's default
/// 10 s deadline, and a busy node has 3 s to answer.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Deadline for one request including all retries (default 10 s).
    pub timeout: Duration,
    /// Timeout for establishing a connection (default 1 s).
    pub connect_timeout: Duration,
    /// How [`Client::get`] and [`Client::get_many`] read (default
    /// [`ReadMode::Leader`]: linearizable at the leader).
    pub read_mode: ReadMode,
    /// How reads that any replica may serve (every mode but `Leader`) pick the
    /// replica (default [`ReadBalance::P2cPeakEwma`]; docs/architecture.md says why).
    pub read_balance: ReadBalance,
    /// TLS (default `None`: plaintext). The files are looked at again at most once a
    /// second and read for every new channel, so rotated ones are picked up without
    /// a new client.
    pub tls: Option<ClientTls>,
    /// A bearer token (`ctx_<id>_<secret>`, from `ctxctl auth token create`), sent
    /// on every request as `authorization: Bearer <token>` (default `None`). Use it
    /// over TLS only: it is a password.
    pub token: Option<String>,
    /// Send `get` and `put` calls, and the agent calls of a step (`append`, `read`,
    /// `put_checkpoint`, `put_writes`, `get_checkpoint`), to each node on one
    /// `Kv.BatchCommands` stream,
    /// many calls per message under load, instead of one HTTP/2 stream per call
    /// (default `true`; docs/performance.md, "Batched calls", has what it saves).
    pub batch_calls: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(1),
            read_mode: ReadMode::Leader,
            read_balance: ReadBalance::P2cPeakEwma,
            tls: None,
            token: None,
            batch_calls: true,
        }
    }
}

/// Result of a write: the Raft index it took effect at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteResult {
    /// Version of the key after the write.
    pub version: u64,
    /// Version at which the key was created.
    pub create_version: u64,
}

/// A connection to a ctxstore cluster. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    opts: ClientOptions,
    /// Every address known: seeds first, then ones learned from hints.
    addrs: Mutex<Vec<String>>,
    /// Lazily connected channels by address, remade when the TLS files change.
    channels: Channels<Channel>,
    /// `Bearer <token>`, when the options name a token.
    authorization: Option<tonic::codegen::http::HeaderValue>,
    /// Index in `addrs` of the node believed to lead.
    leader: AtomicU64,
    /// Random per-client prefix of request ids.
    client_id: u64,
    /// Counter making request ids unique within the client.
    next_request: AtomicU64,
    /// Shard placement and leader hints.
    routing: Mutex<Routing>,
    /// Picks the replica of reads any replica may serve, and keeps each endpoint's
    /// load.
    balancer: balance::Balancer,
    /// The highest version seen per shard (the floor of bounded-staleness reads).
    session: read::Session,
}

/// Where a request goes.
#[derive(Clone, Copy)]
enum Route {
    /// Any node (cluster administration, single-shard clusters).
    Any,
    /// The shard owning this ring position.
    Key(u64),
    /// This shard.
    Shard(u64),
}

/// How long one node may take to answer a routing-table request.
const ROUTING_FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// What a call does, for the retry rules.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    /// Reads: any attempt may go wherever the routing says.
    Read,
    /// Writes: once sent to a shard, retries stay on that shard until it answers
    /// definitively (its result, or `StaleEpoch`: "not applied here"), so a request
    /// id is never sent to a new owner while the old one might still apply it.
    Write,
    /// One part of a scatter over shards: `StaleEpoch` goes back to the caller,
    /// which scatters again over the new set of shards.
    Part,
    /// A request that must not be repeated (a split): only `NotLeader` redirects are
    /// followed; any other error goes back to the caller.
    Once,
}

enum Step {
    /// Retry now at this address.
    Redirect(String),
    /// Back off, then retry at the next known address.
    Backoff,
}

/// Ring position of a batch: that of its first key (the server checks the rest).
fn batch_hash(ops: &[BatchOp]) -> u64 {
    use crate::proto::batch_op::Op;
    ops.iter()
        .find_map(|o| match &o.op {
            Some(Op::Put(p)) => Some(key_hash(&p.key)),
            Some(Op::Delete(d)) => Some(key_hash(&d.key)),
            Some(Op::Check(c)) => Some(key_hash(&c.key)),
            None => None,
        })
        .unwrap_or(0)
}

/// The auth changes that make tenant `name` (`ctxctl auth tenant add`): role and
/// user `name`, read-write on the names starting with `name/` of every kind (kv keys,
/// conversations, threads, models), and a token for the user.
pub fn tenant_changes(name: &str) -> Vec<AuthChange> {
    use crate::proto::{
        auth_change::Op, Access, Permission, ResourceKind, RolePermission, UserRole,
    };
    let kinds = [
        ResourceKind::Kv,
        ResourceKind::Conversation,
        ResourceKind::Thread,
        ResourceKind::Model,
    ];
    let grants = kinds.into_iter().map(|kind| {
        Op::GrantPermission(RolePermission {
            role: name.into(),
            permission: Some(Permission {
                kind: kind as i32,
                prefix: format!("{name}/").into_bytes().into(),
                access: Access::Readwrite as i32,
            }),
        })
    });
    std::iter::once(Op::AddRole(name.into()))
        .chain(grants)
        .chain([
            Op::AddUser(name.into()),
            Op::GrantRole(UserRole {
                user: name.into(),
                role: name.into(),
            }),
            Op::CreateToken(name.into()),
        ])
        .map(|op| AuthChange { op: Some(op) })
        .collect()
}

impl Client {
    /// Connects to a cluster through any of `endpoints` (`host:port`). Connections are
    /// made lazily, so this fails only on malformed addresses.
    pub async fn connect<S: AsRef<str>>(endpoints: &[S]) -> Result<Client> {
        Self::connect_with(endpoints, ClientOptions::default()).await
    }

    /// [`Client::connect`] with options.
    pub async fn connect_with<S: AsRef<str>>(
        endpoints: &[S],
        opts: ClientOptions,
    ) -> Result<Client> {
        let addrs: Vec<String> = endpoints
            .iter()
            .map(|e| {
                e.as_ref()
                    .trim()
                    .trim_start_matches("http://")
                    .trim_start_matches("https://")
                    .to_string()
            })
            .filter(|e| !e.is_empty())
            .collect();
        if addrs.is_empty() {
            return Err(Error::invalid(
                "endpoints",
                "at least one endpoint is needed",
            ));
        }
        // Malformed addresses and unreadable TLS files fail here, not at first use.
        for a in &addrs {
            ctxstore_api::tls::endpoint(a, opts.tls.as_ref())?;
        }
        let authorization = match &opts.token {
            None => None,
            Some(t) => {
                let mut v =
                    tonic::codegen::http::HeaderValue::try_from(format!("Bearer {}", t.trim()))
                        .map_err(|_| Error::invalid("token", "a token is printable ASCII"))?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        let balancer = balance::Balancer::new(opts.read_balance);
        let channels = Channels::new(opts.tls.clone());
        Ok(Client {
            inner: Arc::new(Inner {
                opts,
                balancer,
                session: read::Session::default(),
                addrs: Mutex::new(addrs),
                channels,
                authorization,
                leader: AtomicU64::new(0),
                client_id: rand::rng().random(),
                next_request: AtomicU64::new(1),
                routing: Mutex::new(Routing::default()),
            }),
        })
    }

    fn new_request_id(&self) -> Bytes {
        let n = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
        let mut id = Vec::with_capacity(16);
        id.extend_from_slice(&self.inner.client_id.to_be_bytes());
        id.extend_from_slice(&n.to_be_bytes());
        id.into()
    }

    fn channel(&self, addr: &str) -> Result<Channel> {
        let connect_timeout = self.inner.opts.connect_timeout;
        let authorization = self.inner.authorization.clone();
        let batch = self.inner.opts.batch_calls;
        self.inner.channels.get(addr, |ep| {
            let ch = trace::Traced::new(
                ep.connect_timeout(connect_timeout)
                    .tcp_nodelay(true)
                    // A node that stops answering without closing its connections (a
                    // paused process, a partition that drops packets) would hold every
                    // call sent to it until the call's deadline. An HTTP/2 ping
                    // unanswered for KEEPALIVE_TIMEOUT ends the connection instead, and
                    // its calls fail over to another replica like after a refused
                    // connection.
                    .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                    .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                    .keep_alive_while_idle(false)
                    .connect_lazy(),
            )
            .with_authorization(authorization);
            if batch {
                ch.with_batching()
            } else {
                ch
            }
        })
    }

    fn current(&self) -> String {
        let addrs = self.inner.addrs.lock().clone();
        let i = self.inner.leader.load(Ordering::Relaxed) as usize;
        addrs
            .get(i % addrs.len().max(1))
            .cloned()
            .unwrap_or_default()
    }

    fn set_current(&self, addr: &str) {
        let mut addrs = self.inner.addrs.lock();
        let i = match addrs.iter().position(|a| a == addr) {
            Some(i) => i,
            None => {
                addrs.push(addr.to_string());
                addrs.len() - 1
            }
        };
        self.inner.leader.store(i as u64, Ordering::Relaxed);
    }

    fn rotate(&self) {
        self.inner.leader.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs `f` against the believed leader, retrying per the routing protocol.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = std::result::Result<T, tonic::Status>>,
    {
        self.call_routed(Route::Any, Call::Read, |ch, _| f(ch))
            .await
    }

    /// Fetches the routing table: asks the known nodes one at a time (starting with the
    /// current one) until one answers from the meta leader; copies served from a
    /// node's cache (meta shard unreachable) are merged, newest epoch per shard.
    async fn refresh_routing(&self) {
        let mut addrs = self.endpoints();
        let start = self.current();
        if let Some(i) = addrs.iter().position(|a| *a == start) {
            addrs.rotate_left(i);
        }
        let mut answers = Vec::new();
        for a in &addrs {
            let Ok(ch) = self.channel(a) else { continue };
            // A node asks the meta leader (one hop): on a loaded machine that can take
            // over a second, and a client without a table routes every key to shard 0.
            let answer = tokio::time::timeout(
                ROUTING_FETCH_TIMEOUT,
                ClusterClient::new(ch).get_routing_table(RoutingTableRequest {}),
            )
            .await;
            if let Ok(Ok(t)) = answer {
                let t = t.into_inner();
                let authoritative = t.source == "meta-leader";
                answers.push(t);
                if authoritative {
                    break;
                }
            }
        }
        let mut new_addrs = Vec::new();
        {
            let mut r = self.inner.routing.lock();
            for t in &answers {
                new_addrs.extend(r.learn_table(t));
            }
        }
        self.add_endpoints(new_addrs);
    }

    /// Learns shard routes a `StaleEpoch` answer carried (a refresh if it carried
    /// none).
    async fn learn_routes(&self, routes: &[crate::proto::ShardRoute]) {
        if routes.is_empty() {
            self.refresh_routing().await;
            return;
        }
        let addrs = self.inner.routing.lock().learn_routes(routes);
        self.add_endpoints(addrs);
    }

    fn add_endpoints(&self, new_addrs: Vec<String>) {
        let mut a = self.inner.addrs.lock();
        for x in new_addrs {
            if !x.is_empty() && !a.contains(&x) {
                a.push(x);
            }
        }
    }

    /// The cached `(conf_ver, ring_ver)` of a shard (zeros when unknown: no check).
    /// Header shard 0 means "the shard the ring names", never the meta shard.
    fn epoch_of(&self, shard: u64) -> (u64, u64) {
        if shard == 0 {
            return (0, 0);
        }
        self.inner.routing.lock().epoch(shard)
    }

    /// Resolves a route to `(shard id for the header, address)`; `None` address means
    /// "use the current node" (cluster administration, or nothing known yet).
    fn resolve(&self, route: Route, attempt: u32) -> (u64, Option<String>) {
        let r = self.inner.routing.lock();
        let shard = match route {
            Route::Shard(s) => s,
            Route::Key(h) => r.shard_for_hash(h).unwrap_or(0),
            Route::Any => 0,
        };
        if shard == 0 {
            return (shard, None);
        }
        (shard, r.target(shard, attempt))
    }

    fn set_leader(&self, shard: u64, addr: &str) {
        self.inner.routing.lock().set_leader(shard, addr);
    }

    fn forget_leader(&self, shard: u64) {
        self.inner.routing.lock().forget_leader(shard);
    }

    fn routing_fetched(&self) -> bool {
        self.inner.routing.lock().fetched()
    }

    /// Every data shard the client knows (after the first refresh).
    async fn shards(&self) -> Vec<u64> {
        if !self.routing_fetched() {
            self.refresh_routing().await;
        }
        self.inner.routing.lock().shards()
    }

    /// Runs `f` against the leader of the shard `route` names, following hints,
    /// updating the routing on `StaleEpoch` (from the descriptors it carries) and
    /// `WrongShard` (by a refresh), and backing off on unavailability, all within the
    /// request deadline. `call` says how a write stays on its shard (see [`Call`]).
    async fn call_routed<T, F, Fut>(&self, route: Route, call: Call, f: F) -> Result<T>
    where
        F: Fn(Channel, RequestHeader) -> Fut,
        Fut: Future<Output = std::result::Result<T, tonic::Status>>,
    {
        if !self.routing_fetched() {
            self.refresh_routing().await;
        }
        let timeout = self.inner.opts.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut backoff =
            Backoff::new(Duration::from_millis(2), Duration::from_millis(500)).jittered();
        let mut redirects = 0;
        let mut moves = 0;
        let mut attempt = 0u32;
        // The shard a write was sent to, until it answers definitively.
        let mut pinned: Option<u64> = None;
        let trace = trace::CallTrace::new();
        loop {
            let (shard, routed) = match pinned {
                Some(p) => (p, self.inner.routing.lock().target(p, attempt)),
                None => self.resolve(route, attempt),
            };
            let on_current = routed.is_none();
            let (conf_ver, mut ring_ver) = self.epoch_of(shard);
            if pinned.is_some() {
                // A retry of a write must reach its shard even if the shard's arcs
                // changed: it answers with the stored result, or `StaleEpoch`.
                ring_ver = 0;
            }
            if call == Call::Write && shard != 0 {
                pinned = Some(shard);
            }
            let addr = routed.unwrap_or_else(|| self.current());
            let ch = self.channel(&addr)?;
            let header = RequestHeader {
                shard_id: shard,
                conf_ver,
                ring_ver,
                ..Default::default()
            };
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let attempt_call = trace.scope(f(ch, header));
            let err = match tokio::time::timeout(remaining, attempt_call).await {
                Ok(Ok(v)) => {
                    if shard != 0 {
                        self.set_leader(shard, &addr);
                    }
                    return Ok(v);
                }
                Ok(Err(status)) => Error::from(status),
                Err(_) => {
                    return Err(Error::Timeout(
                        timeout,
                        Box::new(Error::Transport(format!("no answer from {addr}"))),
                    ))
                }
            };
            let step = match &err {
                Error::NotLeader {
                    leader: Some(l), ..
                } if !l.addr.is_empty() && l.addr != addr && redirects < 8 => {
                    redirects += 1;
                    Step::Redirect(self.inner.routing.lock().node_addr(l.node_id, &l.addr))
                }
                Error::StaleEpoch { current, .. } if call == Call::Part => {
                    self.learn_routes(current).await;
                    return Err(err);
                }
                Error::StaleEpoch { current, .. } => {
                    // Definitive: the shard did not and will not apply this request.
                    pinned = None;
                    self.learn_routes(current).await;
                    moves += 1;
                    if moves <= 8 {
                        continue;
                    }
                    Step::Backoff
                }
                _ if call == Call::Once => return Err(err),
                Error::WrongShard { .. } => {
                    self.refresh_routing().await;
                    Step::Backoff
                }
                e if e.is_retryable() => Step::Backoff,
                _ => return Err(err),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(timeout, Box::new(err)));
            }
            match step {
                Step::Redirect(a) => {
                    if shard != 0 {
                        self.set_leader(shard, &a);
                    } else {
                        self.set_current(&a);
                    }
                }
                Step::Backoff => {
                    redirects = 0;
                    attempt += 1;
                    if shard != 0 {
                        self.forget_leader(shard);
                    }
                    if on_current {
                        self.rotate();
                    }
                    backoff.sleep_until_at_most(deadline).await;
                    if tokio::time::Instant::now() >= deadline {
                        // No time left for another attempt: the last answer is why.
                        return Err(Error::Timeout(timeout, Box::new(err)));
                    }
                    if attempt.is_multiple_of(4) {
                        // Still failing: the routing may name addresses nodes no
                        // longer use, or replicas that moved.
                        self.refresh_routing().await;
                    }
                }
            }
        }
    }

    pub(crate) fn kv(ch: Channel) -> KvClient<Channel> {
        KvClient::new(ch)
            .max_decoding_message_size(crate::proto::MAX_MESSAGE_SIZE)
            .max_encoding_message_size(crate::proto::MAX_MESSAGE_SIZE)
    }

    /// Reads a key in the client's read mode ([`ClientOptions::read_mode`], by default
    /// linearizable at the leader). `None` if it does not exist or has expired.
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<KeyValue>> {
        self.get_with(key, self.inner.opts.read_mode).await
    }

    /// Reads many keys concurrently in the client's read mode, each routed to its own
    /// shard (each read has its mode's guarantee on its own; together they are not
    /// one snapshot). Results follow the order of `keys`.
    pub async fn get_many<K: Into<Bytes>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<Option<KeyValue>>> {
        let mode = self.inner.opts.read_mode;
        futures::future::try_join_all(keys.into_iter().map(|k| self.get_with(k, mode))).await
    }

    /// Reads a key from any replica, possibly stale ([`ReadMode::Stale`]).
    pub async fn get_stale(&self, key: impl Into<Bytes>) -> Result<Option<KeyValue>> {
        self.get_with(key, ReadMode::Stale).await
    }

    /// Reads a key in `mode` (docs/api.md, "Read modes").
    pub async fn get_with(
        &self,
        key: impl Into<Bytes>,
        mode: ReadMode,
    ) -> Result<Option<KeyValue>> {
        let req = GetRequest {
            header: None,
            key: key.into(),
            stale: false,
        };
        let hash = key_hash(&req.key);
        let kv = self
            .read_routed(hash, mode, |ch, header| {
                let mut req = req.clone();
                req.header = Some(header);
                async move { Ok(batch::get(ch, req).await?.kv) }
            })
            .await?;
        if let Some(kv) = &kv {
            self.saw(hash, kv.version);
        }
        Ok(kv)
    }

    /// Runs a write routed by ring position `hash` and raises the session floor of
    /// its shard to the version (`version` of the answer) it took effect at.
    async fn write_key<T, F, Fut>(&self, hash: u64, version: impl Fn(&T) -> u64, f: F) -> Result<T>
    where
        F: Fn(Channel, RequestHeader) -> Fut,
        Fut: Future<Output = std::result::Result<T, tonic::Status>>,
    {
        let r = self.call_routed(Route::Key(hash), Call::Write, f).await?;
        self.saw(hash, version(&r));
        Ok(r)
    }

    /// Notes a version seen for the key at ring position `hash` (the floor of later
    /// bounded-staleness reads of its shard).
    fn saw(&self, hash: u64, version: u64) {
        let shard = self.inner.routing.lock().shard_for_hash(hash).unwrap_or(0);
        self.inner.session.saw(shard, version);
    }

    /// Each endpoint's load as this client sees it: requests in flight, the peak-EWMA
    /// latency the balancer uses, requests and errors (replica reads only).
    pub fn endpoint_loads(&self) -> Vec<EndpointLoad> {
        self.inner.balancer.loads()
    }

    /// Runs a read of the key at ring position `hash` in `mode`: at the leader
    /// through [`Client::call_routed`], or at a replica the balancer picks.
    async fn read_routed<T, F, Fut>(&self, hash: u64, mode: ReadMode, f: F) -> Result<T>
    where
        F: Fn(Channel, RequestHeader) -> Fut,
        Fut: Future<Output = std::result::Result<T, tonic::Status>>,
    {
        if mode == ReadMode::Leader {
            return self.call_routed(Route::Key(hash), Call::Read, f).await;
        }
        if !self.routing_fetched() {
            self.refresh_routing().await;
        }
        let timeout = self.inner.opts.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut backoff =
            Backoff::new(Duration::from_millis(2), Duration::from_millis(500)).jittered();
        let (read_mode, max_staleness_ms) = mode.wire();
        // Replicas that failed this read; cleared once every replica has.
        let mut failed: Vec<String> = Vec::new();
        let mut moves = 0;
        let trace = trace::CallTrace::new();
        loop {
            let (shard, candidates) = {
                let r = self.inner.routing.lock();
                let shard = r.shard_for_hash(hash).unwrap_or(0);
                (shard, r.replicas(shard))
            };
            if candidates.is_empty() {
                // Nothing known of the shard: the leader path finds it.
                return self.call_routed(Route::Key(hash), Call::Read, f).await;
            }
            let replicas = candidates.len();
            let mut eligible: Vec<(String, u32)> = candidates
                .iter()
                .filter(|(a, _)| !failed.contains(a))
                .cloned()
                .collect();
            if eligible.is_empty() {
                failed.clear();
                eligible = candidates;
            }
            let Some(addr) = self.inner.balancer.pick(&eligible, hash) else {
                return Err(Error::Internal("no replica to read from".into()));
            };
            let (conf_ver, ring_ver) = self.epoch_of(shard);
            let header = RequestHeader {
                shard_id: shard,
                conf_ver,
                ring_ver,
                read_mode: read_mode as i32,
                max_staleness_ms,
                min_version: self.inner.session.floor(shard),
            };
            let ch = self.channel(&addr)?;
            let pending = self.inner.balancer.start(&addr);
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let attempt_call = trace.scope(f(ch, header));
            let err = match tokio::time::timeout(remaining, attempt_call).await {
                Ok(Ok(v)) => {
                    pending.finish(balance::Outcome::Ok);
                    return Ok(v);
                }
                Ok(Err(status)) => {
                    pending.finish(balance::Outcome::Error);
                    Error::from(status)
                }
                Err(_) => {
                    return Err(Error::Timeout(
                        timeout,
                        Box::new(Error::Transport(format!("no answer from {addr}"))),
                    ))
                }
            };
            let retry_now = match &err {
                Error::StaleEpoch { current, .. } => {
                    self.learn_routes(current).await;
                    moves += 1;
                    moves <= 8
                }
                Error::WrongShard { .. } => {
                    self.refresh_routing().await;
                    false
                }
                // Another replica may qualify (or the leader, which always does).
                Error::ReplicaTooStale { .. } | Error::NotLeader { .. } => {
                    failed.push(addr);
                    failed.len() < replicas
                }
                e if e.is_retryable() => {
                    failed.push(addr);
                    false
                }
                _ => return Err(err),
            };
            if !retry_now {
                backoff.sleep_until_at_most(deadline).await;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(timeout, Box::new(err)));
            }
        }
    }

    /// Writes a key.
    pub async fn put(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<WriteResult> {
        self.put_with_ttl(key, value, None).await
    }

    /// Writes a key that expires after `ttl`.
    pub async fn put_with_ttl(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> Result<WriteResult> {
        let req = PutRequest {
            header: None,
            key: key.into(),
            value: value.into(),
            ttl_ms: ttl.map_or(0, |t| t.as_millis().max(1) as u64),
            request_id: self.new_request_id(),
            lease_id: 0,
        };
        self.put_request(req).await
    }

    /// Sends a put (routed by its key, retried with its request id).
    async fn put_request(&self, req: PutRequest) -> Result<WriteResult> {
        self.write_key(
            key_hash(&req.key),
            |w: &WriteResult| w.version,
            |ch, header| {
                let mut req = req.clone();
                req.header = Some(header);
                async move {
                    let r = batch::put(ch, req).await?;
                    Ok(WriteResult {
                        version: r.version,
                        create_version: r.create_version,
                    })
                }
            },
        )
        .await
    }

    /// Deletes a key; returns whether a live key was removed.
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<bool> {
        let req = DeleteRequest {
            header: None,
            key: key.into(),
            request_id: self.new_request_id(),
        };
        let r = self
            .write_key(
                key_hash(&req.key),
                |r: &DeleteResponse| r.version,
                |ch, header| {
                    let mut req = req.clone();
                    req.header = Some(header);
                    async move { Ok(Self::kv(ch).delete(req).await?.into_inner()) }
                },
            )
            .await?;
        Ok(r.deleted)
    }

    /// Writes `value` only if the key is at `expected_version` (0 = must not exist).
    /// A mismatch is [`Error::VersionMismatch`] carrying the actual version.
    pub async fn compare_and_swap(
        &self,
        key: impl Into<Bytes>,
        expected_version: u64,
        value: impl Into<Bytes>,
    ) -> Result<WriteResult> {
        let req = CompareAndSwapRequest {
            key: key.into(),
            expected_version,
            value: value.into(),
            request_id: self.new_request_id(),
            ..Default::default()
        };
        self.cas_request(req).await
    }

    /// Deletes the key only if it is at `expected_version`.
    pub async fn compare_and_delete(
        &self,
        key: impl Into<Bytes>,
        expected_version: u64,
    ) -> Result<WriteResult> {
        let req = CompareAndSwapRequest {
            key: key.into(),
            expected_version,
            delete: true,
            request_id: self.new_request_id(),
            ..Default::default()
        };
        self.cas_request(req).await
    }

    async fn cas_request(&self, req: CompareAndSwapRequest) -> Result<WriteResult> {
        self.write_key(
            key_hash(&req.key),
            |w: &WriteResult| w.version,
            |ch, header| {
                let mut req = req.clone();
                req.header = Some(header);
                async move {
                    let r = Self::kv(ch).compare_and_swap(req).await?.into_inner();
                    Ok(WriteResult {
                        version: r.version,
                        create_version: r.create_version,
                    })
                }
            },
        )
        .await
    }

    /// Applies all operations atomically; returns the version they took effect at.
    pub async fn batch(&self, ops: Vec<BatchOp>) -> Result<u64> {
        let req = BatchRequest {
            header: None,
            ops,
            request_id: self.new_request_id(),
        };
        self.write_key(
            batch_hash(&req.ops),
            |v: &u64| *v,
            |ch, header| {
                let mut req = req.clone();
                req.header = Some(header);
                async move { Ok(Self::kv(ch).batch(req).await?.into_inner().version) }
            },
        )
        .await
    }

    /// Lists keys starting with `prefix` after `start_after`, at most `limit`.
    pub async fn scan(
        &self,
        prefix: impl Into<Bytes>,
        start_after: impl Into<Bytes>,
        limit: u32,
    ) -> Result<ScanResponse> {
        let req = ScanRequest {
            header: None,
            prefix: prefix.into(),
            start_after: start_after.into(),
            limit,
            stale: false,
        };
        if let Some(tag) = crate::keys::prefix_partition(&req.prefix) {
            let h = crate::keys::tag_hash(tag);
            return self.scan_shard(Route::Key(h), Call::Read, &req).await;
        }
        let parts = self
            .scatter(|shard| self.scan_shard(Route::Shard(shard), Call::Part, &req))
            .await?;
        // Untagged prefix: every shard's part, merged in key order.
        let mut kvs = Vec::new();
        let mut more = false;
        for p in parts {
            more |= p.more;
            kvs.extend(p.kvs);
        }
        kvs.sort_by(|a, b| a.key.cmp(&b.key));
        let limit = if limit == 0 { 1_000 } else { limit as usize };
        more |= kvs.len() > limit;
        kvs.truncate(limit);
        Ok(ScanResponse { kvs, more })
    }

    /// Runs `part` on every data shard concurrently. If a shard answers `StaleEpoch`
    /// (a split changed the set of shards while the parts ran), the routing learned
    /// from it is used to run every part again over the new set.
    async fn scatter<T, F, Fut>(&self, part: F) -> Result<Vec<T>>
    where
        F: Fn(u64) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut rounds = 0;
        let mut backoff =
            Backoff::new(Duration::from_millis(10), Duration::from_millis(500)).jittered();
        let deadline = tokio::time::Instant::now() + self.inner.opts.timeout;
        loop {
            let shards = self.shards().await;
            if shards.is_empty() {
                // No routing table yet (none could be fetched): an empty answer here
                // would read as "no keys".
                if tokio::time::Instant::now() >= deadline {
                    return Err(Error::ShardUnavailable {
                        shard: ShardId(0),
                        reason: "no data shard known: the routing table could not be fetched"
                            .into(),
                        outcome_unknown: false,
                    });
                }
                backoff.sleep_until_at_most(deadline).await;
                self.refresh_routing().await;
                continue;
            }
            let answers = futures::future::join_all(shards.iter().map(|s| part(*s))).await;
            match answers.into_iter().collect::<Result<Vec<T>>>() {
                Err(Error::StaleEpoch { .. }) if rounds < 8 => rounds += 1,
                r => return r,
            }
        }
    }

    async fn scan_shard(
        &self,
        route: Route,
        call: Call,
        req: &ScanRequest,
    ) -> Result<ScanResponse> {
        self.call_routed(route, call, |ch, header| {
            let mut req = req.clone();
            req.header = Some(header);
            async move { Ok(Self::kv(ch).scan(req).await?.into_inner()) }
        })
        .await
    }

    /// Status of the node at `addr` (no retries elsewhere).
    pub async fn node_status(&self, addr: &str) -> Result<StatusResponse> {
        self.node_status_with(addr, false).await
    }

    /// Status of the node at `addr`, with each replica's data digest when
    /// `digests` (the node reads all of its data for it).
    pub async fn node_status_with(&self, addr: &str, digests: bool) -> Result<StatusResponse> {
        let ch = self.channel(addr)?;
        let req = StatusRequest {
            with_digests: digests,
        };
        let r = tokio::time::timeout(self.inner.opts.timeout, ClusterClient::new(ch).status(req))
            .await
            .map_err(|_| Error::Transport(format!("no answer from {addr}")))??;
        Ok(r.into_inner())
    }

    /// Status of the first node that answers.
    pub async fn status(&self) -> Result<StatusResponse> {
        self.call(|ch| async move {
            Ok(ClusterClient::new(ch)
                .status(StatusRequest::default())
                .await?
                .into_inner())
        })
        .await
    }

    /// Every known address (seeds and learned).
    pub fn endpoints(&self) -> Vec<String> {
        self.inner.addrs.lock().clone()
    }

    /// Adds a node to the default shard as a learner and waits until it is promoted.
    pub async fn add_member(&self, node_id: u64, addr: &str) -> Result<AddMemberResponse> {
        self.add_shard_member(None, node_id, addr).await
    }

    /// Adds a node to `shard` (None: shard 1; 0: the meta shard) as a learner and
    /// waits until it is promoted.
    pub async fn add_shard_member(
        &self,
        shard: Option<u64>,
        node_id: u64,
        addr: &str,
    ) -> Result<AddMemberResponse> {
        let req = AddMemberRequest {
            shard_id: shard,
            node_id,
            addr: addr.to_string(),
            ..Default::default()
        };
        self.call(|ch| {
            let req = req.clone();
            async move {
                Ok(ClusterClient::new(ch)
                    .add_member(tonic::Request::new(req))
                    .await?
                    .into_inner())
            }
        })
        .await
    }

    /// Removes the replica on `node_id` from the default shard.
    pub async fn remove_member(&self, node_id: u64) -> Result<ShardDescriptor> {
        self.remove_shard_member(None, node_id).await
    }

    /// Removes the replica on `node_id` from `shard` (None: shard 1; 0: the meta shard).
    pub async fn remove_shard_member(
        &self,
        shard: Option<u64>,
        node_id: u64,
    ) -> Result<ShardDescriptor> {
        let req = RemoveMemberRequest {
            shard_id: shard,
            node_id,
            ..Default::default()
        };
        self.call(|ch| async move {
            ClusterClient::new(ch)
                .remove_member(req)
                .await?
                .into_inner()
                .descriptor
                .ok_or_else(|| tonic::Status::internal("no descriptor in answer"))
        })
        .await
    }

    /// Sets a node's admin state: `Draining` moves its replicas and leaderships away
    /// (refused when fewer serving nodes than the replication factor would remain),
    /// `Serving` undrains it, `Removed` retires a drained, empty node for good.
    pub async fn set_node_admin(&self, node_id: u64, admin: NodeAdmin) -> Result<NodeInfo> {
        let req = SetNodeAdminRequest {
            node_id,
            admin: admin as i32,
            min_serving: 0,
        };
        self.call(|ch| async move {
            ClusterClient::new(ch)
                .set_node_admin(req)
                .await?
                .into_inner()
                .node
                .ok_or_else(|| tonic::Status::internal("no node in answer"))
        })
        .await
    }

    /// The placement driver's state: operators in flight, under-replicated and
    /// unavailable shards, and every node's liveness, admin state and load.
    pub async fn pd_status(&self) -> Result<PdStatusResponse> {
        self.call(|ch| async move {
            Ok(ClusterClient::new(ch)
                .pd_status(PdStatusRequest {})
                .await?
                .into_inner())
        })
        .await
    }

    /// Pauses (`true`) or resumes the placement driver.
    pub async fn set_pd_paused(&self, paused: bool) -> Result<()> {
        self.call(|ch| async move {
            ClusterClient::new(ch)
                .set_pd_paused(SetPdPausedRequest { paused })
                .await?;
            Ok(())
        })
        .await
    }

    /// Changes the cluster's dynamic settings (`ctxctl config set`); returns the new
    /// document. A bad value or a setting that needs a restart is refused with
    /// `InvalidArgument` naming the setting, and nothing changes.
    pub async fn set_config(&self, changes: Vec<ConfigChange>) -> Result<ClusterConfig> {
        self.call(|ch| {
            let changes = changes.clone();
            async move {
                Ok(ClusterClient::new(ch)
                    .set_config(SetConfigRequest { changes })
                    .await?
                    .into_inner()
                    .config
                    .unwrap_or_default())
            }
        })
        .await
    }

    /// Changes users, roles, tokens or whether auth is on (`ctxctl auth`; needs the
    /// role root once auth is on). Returns after every up node has the change in
    /// effect, except those the answer names in `nodes_behind`; a `create_token`
    /// answer carries the token, shown only there. A refused change (an unknown user,
    /// enabling auth without a root user) is `FailedPrecondition` and changes nothing.
    pub async fn auth_change(&self, change: AuthChange) -> Result<AuthChangeResponse> {
        self.auth_changes(vec![change]).await
    }

    /// Makes tenant `name` in one change ([`tenant_changes`]); the answer carries its
    /// token.
    pub async fn add_tenant(&self, name: &str) -> Result<AuthChangeResponse> {
        self.auth_changes(tenant_changes(name)).await
    }

    /// [`Client::auth_change`] for several changes applied as one: all of them, under
    /// one new revision, or none (at most 64, at most one `create_token`).
    pub async fn auth_changes(&self, changes: Vec<AuthChange>) -> Result<AuthChangeResponse> {
        let mut changes = changes.into_iter();
        let first = changes
            .next()
            .ok_or_else(|| Error::invalid("change", "no change given"))?;
        let req = AuthChangeRequest {
            change: Some(first),
            // One id for every attempt: a retry of a change that was applied is not
            // applied again.
            request_id: self.new_request_id(),
            more: changes.collect(),
        };
        self.call(|ch| {
            let req = req.clone();
            async move { Ok(AuthClient::new(ch).change(req).await?.into_inner()) }
        })
        .await
    }

    /// Users, roles and token ids (never secrets or digests) as a node has them
    /// (needs the role root once auth is on).
    pub async fn auth_get(&self) -> Result<AuthStore> {
        self.call(|ch| async move {
            Ok(AuthClient::new(ch)
                .get(GetAuthRequest {})
                .await?
                .into_inner())
        })
        .await
    }

    /// Who the cluster takes this client for.
    pub async fn who_am_i(&self) -> Result<WhoAmIResponse> {
        self.call(|ch| async move {
            Ok(AuthClient::new(ch)
                .who_am_i(WhoAmIRequest {})
                .await?
                .into_inner())
        })
        .await
    }

    /// The backup of `shard` as a stream of file chunks from its leader, the last one
    /// describing the file (`Cluster.BackupShard`; `ctxctl snapshot save` writes them
    /// to a directory). The leader takes a ReadIndex first: every write acknowledged
    /// before this call is in the file.
    pub async fn backup_shard(&self, shard: u64) -> Result<tonic::Streaming<BackupChunk>> {
        self.call_routed(Route::Shard(shard), Call::Read, |ch, _| async move {
            Ok(ClusterClient::new(ch)
                .max_decoding_message_size(crate::proto::MAX_MESSAGE_SIZE)
                .backup_shard(BackupShardRequest { shard_id: shard })
                .await?
                .into_inner())
        })
        .await
    }

    /// The settings in effect on the node at `addr`, each with its source, and the
    /// cluster's document as that node last applied it.
    pub async fn node_config(&self, addr: &str) -> Result<GetConfigResponse> {
        let ch = self.channel(addr)?;
        let r = tokio::time::timeout(
            self.inner.opts.timeout,
            ClusterClient::new(ch).get_config(GetConfigRequest {}),
        )
        .await
        .map_err(|_| Error::Transport(format!("no answer from {addr}")))??;
        Ok(r.into_inner())
    }

    /// Asks the leader of `shard` to hand leadership to its replica on `node_id`.
    pub async fn transfer_shard_leader(&self, shard: u64, node_id: u64) -> Result<()> {
        self.call_routed(Route::Shard(shard), Call::Read, |ch, _| async move {
            let req = TransferLeaderRequest {
                shard_id: Some(shard),
                node_id,
            };
            ClusterClient::new(ch).transfer_leader(req).await?;
            Ok(())
        })
        .await
    }

    /// The shard owning `key` and its believed leader's address (shard 0 when the
    /// cluster has a single shard).
    pub async fn route(&self, key: &[u8]) -> (u64, Option<String>) {
        if !self.routing_fetched() {
            self.refresh_routing().await;
        }
        self.resolve(Route::Key(key_hash(key)), 0)
    }

    /// The cluster's routing table as any node serves it (DESIGN §5).
    pub async fn routing_table(&self) -> Result<RoutingTable> {
        self.call(|ch| async move {
            Ok(ClusterClient::new(ch)
                .get_routing_table(RoutingTableRequest {})
                .await?
                .into_inner())
        })
        .await
    }

    /// The routing table as the client sees it: shard → (descriptor, leader address).
    pub async fn routing(&self) -> Vec<(ShardDescriptor, Option<String>)> {
        self.refresh_routing().await;
        self.inner.routing.lock().routes()
    }

    /// Splits `shard` at hash `at` (None: where its data divides in halves by size):
    /// the hashes at and above the cut go to a new shard on the same replicas. Returns
    /// the shard's and the new shard's descriptors once the split has applied.
    pub async fn split_shard(
        &self,
        shard: u64,
        at: Option<u64>,
    ) -> Result<(ShardDescriptor, ShardDescriptor)> {
        let req = SplitShardRequest {
            shard_id: shard,
            at_hash: at,
        };
        let r = self
            .call_routed(Route::Shard(shard), Call::Once, |ch, _| async move {
                Ok(ClusterClient::new(ch).split_shard(req).await?.into_inner())
            })
            .await?;
        match (r.parent, r.child) {
            (Some(p), Some(c)) => {
                self.learn_routes(&[
                    crate::proto::ShardRoute {
                        descriptor: Some(p.clone()),
                        ..Default::default()
                    },
                    crate::proto::ShardRoute {
                        descriptor: Some(c.clone()),
                        ..Default::default()
                    },
                ])
                .await;
                // The new shard's first leader is on the parent leader's node, which
                // answered: it campaigns there as soon as it applies the split. Its
                // other replicas may not have applied the split yet.
                let mut routing = self.inner.routing.lock();
                if let Some(a) = routing.leader(p.shard_id) {
                    routing.set_leader(c.shard_id, &a);
                }
                drop(routing);
                Ok((p, c))
            }
            _ => Err(Error::Internal("a split answer without descriptors".into())),
        }
    }

    /// Asks the leader of the default shard to hand leadership to `node_id`.
    pub async fn transfer_leader(&self, node_id: u64) -> Result<()> {
        let req = TransferLeaderRequest {
            shard_id: None,
            node_id,
        };
        self.call(|ch| async move {
            ClusterClient::new(ch).transfer_leader(req).await?;
            Ok(())
        })
        .await
    }
}
