//! The meta shard (shard 0): the cluster's nodes, every shard's descriptor with a leader
//! hint, the ring and `routing_version` (DESIGN §1, §5).
//!
//! - It is a Raft group like any other, replicated on the first (up to) three initial
//!   members, and its state is one small `MetaState` record written in the same
//!   `WriteBatch` as its applied index.
//! - Every node sends a heartbeat to the meta leader once per election timeout, and at
//!   once when one of its replicas becomes leader or applies a membership change: its
//!   address and, for every shard it leads, the descriptor and term. The meta leader
//!   proposes the report only when it changes the state (a newer descriptor, a newer
//!   leader, a new node or address), so a quiet cluster writes nothing.
//! - `routing_version` bumps on any change of the ring, of a shard's replicas or epoch,
//!   or of a node's address; leader changes travel as hints and do not bump it.
//! - Node liveness is judged by the meta leader from the heartbeats it received while
//!   leader, and is not replicated: `UP` when heard from within three heartbeat
//!   intervals, `DISCONNECTED` after that, `DOWN` after `pd.node-down-after`. A new
//!   meta leader reports `UNKNOWN` for nodes it has not heard from until it has
//!   watched for three intervals, and judges no node `DOWN` before it has watched for
//!   `pd.node-down-after` (a meta failover must not look like every node failing).
//! - Heartbeats also carry the node's load and, per shard it leads, the shard's load
//!   and which replicas are caught up: the meta leader keeps the latest in memory for
//!   the placement driver (`meta::pd`) and never replicates it.
//! - Any node answers `Cluster.GetRoutingTable`: the meta leader from its state, other
//!   nodes by asking it (one hop, never forwarded further), or from the copy their last
//!   heartbeat brought back when the meta shard is unreachable.

use crate::error::{Error, Result};
use crate::meta::cache::Liveness;
use crate::meta::state::apply_heartbeat;
use crate::node::ctx::NodeCtx;
use crate::proto::cluster_client::ClusterClient;
use crate::proto::{
    command_result, raft_command, AllocShardRequest, AuthChangeRequest, AuthChangeResponse,
    ClusterConfig, MetaState, NodeHeartbeat, NodeInfo, NodeState, NodeStats, ReplicaInfo,
    RoutingTable, SetConfigRequest, SetNodeAdminRequest, SetPdPausedRequest, ShardLoad, ShardRoute,
    ShardStatus,
};
use crate::raft::handle::{PeerHandle, PeerMsg};
use crate::types::{NodeId, META_SHARD};
use crate::util::now_ms;
use parking_lot::{MappedRwLockReadGuard, RwLockReadGuard, RwLockWriteGuard};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// How long one heartbeat or forwarded request may take.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Heartbeats missed before a node counts as down.
const MISSED_HEARTBEATS: u32 = 3;

/// The heartbeat period: one election timeout.
fn heartbeat_interval(ctx: &NodeCtx) -> Duration {
    let cfg = ctx.config();
    let r = &cfg.raft;
    r.tick_interval
        .saturating_mul(u32::try_from(r.election_ticks).unwrap_or(10))
        .max(Duration::from_millis(10))
}

/// After this long without a heartbeat a node is `DISCONNECTED`.
pub(crate) fn disconnected_after(ctx: &NodeCtx) -> Duration {
    heartbeat_interval(ctx) * MISSED_HEARTBEATS
}

/// This node's meta replica if it leads the meta shard (with its status); otherwise
/// `NotLeader` with the leader it knows, or `ShardUnavailable`.
pub(crate) async fn meta_leader(ctx: &NodeCtx) -> Result<(PeerHandle, ShardStatus)> {
    let unavailable = |reason: &str| Error::ShardUnavailable {
        shard: META_SHARD,
        reason: reason.into(),
        outcome_unknown: false,
    };
    let Some(peer) = ctx.peer(META_SHARD) else {
        return Err(match ctx.meta.route_of(META_SHARD).and_then(|r| r.leader) {
            Some(l) if l.node_id != ctx.node_id.0 => Error::NotLeader {
                shard: META_SHARD,
                leader: Some(l),
            },
            _ => unavailable("this node hosts no meta replica and knows no meta leader"),
        });
    };
    let (tx, rx) = oneshot::channel();
    peer.send(PeerMsg::Status(tx)).await?;
    let status = rx.await.map_err(|_| Error::Shutdown)?;
    if status.role != "leader" {
        let leader = status.descriptor.as_ref().and_then(|d| {
            d.replicas
                .iter()
                .find(|r| r.replica_id == status.leader_id && status.leader_id != 0)
                .map(|r| ReplicaInfo {
                    replica_id: r.replica_id,
                    node_id: r.node_id,
                    addr: r.addr.clone(),
                })
        });
        return Err(match leader {
            Some(l) => Error::NotLeader {
                shard: META_SHARD,
                leader: Some(l),
            },
            None => unavailable("no meta leader (election in progress)"),
        });
    }
    Ok((peer, status))
}

/// Serves `Cluster.AllocShard` on the meta leader: proposes the allocation and
/// answers with the new shard's id.
pub(crate) async fn handle_alloc_shard(ctx: &NodeCtx, req: AllocShardRequest) -> Result<u64> {
    let (peer, _) = meta_leader(ctx).await?;
    let r = peer
        .propose(
            Default::default(),
            now_ms(),
            None,
            raft_command::Cmd::AllocShard(req),
        )
        .await?;
    match r.result {
        Some(command_result::Result::AllocatedShard(id)) => Ok(id),
        Some(command_result::Result::Refused(why)) => Err(Error::invalid("parent_shard", why)),
        _ => Err(Error::Internal(
            "unexpected result of a shard allocation".into(),
        )),
    }
}

/// Serves a heartbeat (or, with `node_id == 0`, a routing-table request) on this node:
/// only the meta leader answers; others fail with `NotLeader` (with a hint when known)
/// or `ShardUnavailable`.
pub(crate) async fn handle_heartbeat(ctx: &NodeCtx, hb: NodeHeartbeat) -> Result<RoutingTable> {
    let bad_addr = hb.addr.contains(|c: char| c == ',' || c.is_whitespace())
        || crate::config::check_host_port("addr", &hb.addr).is_err();
    if hb.node_id != 0 && bad_addr {
        return Err(Error::invalid(
            "addr",
            format!("`{}` is not host:port", hb.addr),
        ));
    }
    let (peer, status) = meta_leader(ctx).await?;
    let (reporter, reported_auth) = (hb.node_id, hb.auth_revision);
    let known = hb.known_shards_hash;
    let mut hb = hb;
    let stats = hb.stats.take();
    let loads = std::mem::take(&mut hb.loads);
    {
        let mut live = ctx.meta.liveness.lock();
        watch_from(&mut live, status.term);
        if hb.node_id != 0 {
            live.seen.insert(hb.node_id, Instant::now());
            if let Some(st) = stats {
                live.stats.insert(hb.node_id, st);
            }
            for load in loads {
                live.loads.insert(load.shard_id, load);
            }
            live.auth_revisions.insert(hb.node_id, hb.auth_revision);
            live.auth_transport_ok
                .insert(hb.node_id, hb.auth_transport_ok);
        }
    }
    let current = ctx.meta.state().unwrap_or_default();
    if !crate::meta::state::heartbeat_changes_nothing(&current, &hb) {
        record_heartbeat(&peer, &current, hb).await?;
    }
    let (state, hash) = ctx.meta.state_and_hash().unwrap_or_default();
    // A node that holds these routes already gets the rest of the table only.
    let unchanged = known != 0 && known == hash;
    let mut table = routing_table(ctx, &state, !unchanged);
    table.shards_hash = hash;
    table.shards_unchanged = unchanged;
    // A node behind on auth gets the store; clients (node 0) never do.
    if reporter != 0 && reported_auth < table.auth_revision {
        table.auth = state.auth.clone();
    }
    Ok(table)
}

/// Proposes `hb` to the meta shard if applying it changes the state.
async fn record_heartbeat(peer: &PeerHandle, current: &MetaState, hb: NodeHeartbeat) -> Result<()> {
    let mut next = current.clone();
    apply_heartbeat(&mut next, &hb);
    if next != *current {
        tracing::debug!(
            node = hb.node_id,
            version = next.routing_version,
            "meta: recording a heartbeat"
        );
        let cmd = raft_command::Cmd::MetaHeartbeat(hb);
        peer.propose(Default::default(), now_ms(), None, cmd)
            .await?;
    }
    Ok(())
}

/// Starts a fresh record of liveness and load when this replica leads the meta shard
/// in a new term.
pub(crate) fn watch_from(live: &mut Liveness, term: u64) {
    if live.term != term || live.since.is_none() {
        *live = Liveness {
            term,
            since: Some(Instant::now()),
            seen: HashMap::new(),
            stats: HashMap::new(),
            loads: HashMap::new(),
            auth_revisions: HashMap::new(),
            auth_transport_ok: HashMap::new(),
        };
    }
}

/// Every node of `state` with its liveness as this meta leader judges it, its load
/// and how long ago it was heard from.
pub(crate) fn judged_nodes(ctx: &NodeCtx, state: &MetaState) -> Vec<NodeInfo> {
    let live = ctx.meta.liveness.lock();
    let disconnected = disconnected_after(ctx);
    state
        .nodes
        .iter()
        .map(|n| {
            let me = n.node_id == ctx.node_id.0;
            let node_state = if me {
                NodeState::Up
            } else {
                live.judge(n.node_id, disconnected, ctx.config().pd.node_down_after)
            };
            NodeInfo {
                state: node_state as i32,
                stats: live.stats.get(&n.node_id).cloned(),
                last_seen_ms_ago: if me {
                    0
                } else {
                    live.seen
                        .get(&n.node_id)
                        .map_or(0, |t| t.elapsed().as_millis() as u64)
                },
                ..n.clone()
            }
        })
        .collect()
}

/// The routing table of a meta state, with liveness as this meta leader judges it
/// (its routes left out unless `with_shards`).
fn routing_table(ctx: &NodeCtx, state: &MetaState, with_shards: bool) -> RoutingTable {
    let nodes = judged_nodes(ctx, state);
    RoutingTable {
        shards: if with_shards {
            state.shards.clone()
        } else {
            Vec::new()
        },
        ring_shards: Vec::new(),
        routing_version: state.routing_version,
        nodes,
        source: "meta-leader".into(),
        cluster_config: state.cluster_config.clone(),
        auth_revision: state.auth.as_ref().map_or(0, |a| a.revision),
        auth: None,
        shards_hash: 0,
        shards_unchanged: false,
    }
}

/// Proposes a meta command on the meta leader and fails with `FailedPrecondition`
/// when the state machine refused it.
async fn propose_meta(ctx: &NodeCtx, cmd: raft_command::Cmd) -> Result<()> {
    let (peer, _) = meta_leader(ctx).await?;
    let r = peer
        .propose(Default::default(), now_ms(), None, cmd)
        .await?;
    match r.result {
        Some(command_result::Result::Refused(why)) => Err(Error::FailedPrecondition(why)),
        _ => Ok(()),
    }
}

/// Serves `Cluster.SetNodeAdmin` on the meta leader: the drain check uses this
/// leader's `pd.replicas`, applied inside the meta shard so two concurrent drains
/// cannot both pass it.
pub(crate) async fn handle_set_node_admin(
    ctx: &NodeCtx,
    mut req: SetNodeAdminRequest,
) -> Result<NodeInfo> {
    if crate::proto::NodeAdmin::try_from(req.admin).is_err() {
        return Err(Error::invalid(
            "admin",
            format!("unknown admin state {}", req.admin),
        ));
    }
    req.min_serving = u32::try_from(ctx.config().pd.replicas).unwrap_or(u32::MAX);
    let node = req.node_id;
    propose_meta(ctx, raft_command::Cmd::SetNodeAdmin(req)).await?;
    let state = ctx.meta.state().unwrap_or_default();
    judged_nodes(ctx, &state)
        .into_iter()
        .find(|n| n.node_id == node)
        .ok_or_else(|| Error::invalid("node_id", format!("node {node} is not a member")))
}

/// Serves `Cluster.SetPdPaused` on the meta leader.
pub(crate) async fn handle_set_pd_paused(ctx: &NodeCtx, req: SetPdPausedRequest) -> Result<()> {
    propose_meta(ctx, raft_command::Cmd::SetPdPaused(req)).await
}

/// Serves `Cluster.SetConfig` on the meta leader: checks the changes against the
/// cluster's current settings and this node's configuration, then proposes them.
pub(crate) async fn handle_set_config(
    ctx: &NodeCtx,
    req: SetConfigRequest,
) -> Result<ClusterConfig> {
    let current = ctx
        .meta
        .state()
        .and_then(|s| s.cluster_config.clone())
        .unwrap_or_default();
    let changes = crate::cluster_config::check_changes(ctx.base_config(), &current, &req.changes)?;
    propose_meta(
        ctx,
        raft_command::Cmd::SetConfig(SetConfigRequest { changes }),
    )
    .await?;
    let doc = ctx
        .meta
        .state()
        .and_then(|s| s.cluster_config.clone())
        .unwrap_or_default();
    // This node need not wait for its next heartbeat.
    ctx.apply_cluster_config(&doc);
    ctx.meta.wake();
    Ok(doc)
}

/// `Cluster.SetConfig` on any node: runs on the meta leader (one hop at most).
pub(crate) async fn set_config(
    ctx: &NodeCtx,
    req: SetConfigRequest,
    forward: bool,
) -> Result<ClusterConfig> {
    if !forward {
        return handle_set_config(ctx, req).await;
    }
    through_meta_elections(|| {
        ask_meta_leader(
            ctx,
            || handle_set_config(ctx, req.clone()),
            |mut c| {
                let req = req.clone();
                async move {
                    Ok(c.set_config(forwarded(req))
                        .await?
                        .into_inner()
                        .config
                        .unwrap_or_default())
                }
            },
        )
    })
    .await
}

/// Metadata marking a request one node forwarded to the meta leader: it is answered
/// there or refused, never forwarded again.
pub(crate) const FORWARDED: &str = "ctxstore-forwarded";

pub(crate) fn forwarded<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    r
}

/// Serves `Auth.Change` on the meta leader: checks the change on a copy of the store
/// (a refused change is never proposed), makes a token's secret here so only its
/// digest enters the log, proposes, then waits until every up node reports the new
/// revision in effect (or `AUTH_FENCE` passes: those still behind are named).
pub(crate) async fn handle_auth_change(
    ctx: &NodeCtx,
    req: AuthChangeRequest,
) -> Result<AuthChangeResponse> {
    use crate::proto::auth_change::Op;
    let change = req
        .change
        .filter(|c| c.op.is_some())
        .ok_or_else(|| Error::invalid("change", "no change given"))?;
    if req.more.iter().any(|c| c.op.is_none()) {
        return Err(Error::invalid("more", "a change without an operation"));
    }
    if req.more.len() >= crate::auth::MAX_CHANGES {
        return Err(Error::invalid(
            "more",
            format!("at most {} changes at once", crate::auth::MAX_CHANGES),
        ));
    }
    // Elsewhere than on the meta leader: NotLeader, and the caller asks the leader.
    // Checked first: only the leader hears every node's heartbeat, and only its
    // memory of the tokens it made answers a retried create_token.
    meta_leader(ctx).await?;
    let mut token = String::new();
    let mut cmd = crate::auth::AuthCommand {
        new_token: None,
        now_ms: now_ms(),
        change: Some(change),
        request_id: req.request_id,
        more: req.more,
    };
    let any = |f: fn(&Op) -> bool| crate::auth::changes(&cmd).any(|c| c.op.as_ref().is_some_and(f));
    if any(|op| matches!(op, Op::SetEnabled(true))) {
        check_auth_transport(&ctx.config().security)?;
        check_members_transport(ctx).await?;
    }
    if any(|op| matches!(op, Op::CreateToken(_))) {
        let now = cmd.now_ms;
        let (t, record) = ctx
            .meta
            .token_for(&cmd.request_id, || crate::auth::new_token(now));
        token = t;
        cmd.new_token = Some(record);
    }
    let current = || {
        ctx.meta
            .state()
            .and_then(|s| s.auth.clone())
            .unwrap_or_default()
    };
    let mut trial = current();
    // A retry of a change already applied is not proposed again.
    if crate::auth::applied_as(&trial, &cmd.request_id).is_none() {
        crate::auth::apply(&mut trial, &cmd).map_err(Error::FailedPrecondition)?;
        propose_meta(ctx, raft_command::Cmd::Auth(cmd.clone())).await?;
    }
    let state = current();
    let revision = match crate::auth::applied_as(&state, &cmd.request_id) {
        Some(a) => {
            let made = cmd.new_token.as_ref().map(|t| t.id.as_str());
            if !a.token_id.is_empty() && made != Some(a.token_id.as_str()) {
                return Err(Error::FailedPrecondition(format!(
                    "an earlier attempt of this request made token {id} and its answer was \
                     lost: revoke it (ctxctl auth token revoke {id}) and make another",
                    id = a.token_id
                )));
            }
            a.revision
        }
        None => state.revision,
    };
    let nodes_behind = wait_auth_revision(ctx, revision).await;
    Ok(AuthChangeResponse {
        revision,
        token,
        nodes_behind,
    })
}

/// Every member node (all but removed ones) must have reported a transport fit for
/// auth to this meta leader: a node without TLS would take tokens in clear text. A
/// member not heard from yet (the leader is new, or the cluster just started) is
/// waited for, as long as a change's fence.
async fn check_members_transport(ctx: &NodeCtx) -> Result<()> {
    let deadline = Instant::now() + AUTH_FENCE;
    loop {
        let Some((node, reported)) = unfit_member(ctx) else {
            return Ok(());
        };
        if reported {
            return Err(Error::FailedPrecondition(format!(
                "node {node} has no TLS or no peer certificate check (ca-path, cert-path, \
                 key-path, client-cert-auth, peer-cert-allowed-cn): auth would not be safe \
                 there"
            )));
        }
        if Instant::now() >= deadline {
            return Err(Error::FailedPrecondition(format!(
                "node {node} has not reported its TLS settings to this meta leader (it is \
                 down, or the leader is new): try again once it is up, or remove it \
                 (ctxctl node remove)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first member (not removed, not this node) whose transport is not known to be
/// fit for auth, and whether it reported at all.
fn unfit_member(ctx: &NodeCtx) -> Option<(u64, bool)> {
    let state = ctx.meta.state().unwrap_or_default();
    let live = ctx.meta.liveness.lock();
    state
        .nodes
        .iter()
        .filter(|n| n.node_id != ctx.node_id.0)
        .filter(|n| n.admin != crate::proto::NodeAdmin::Removed as i32)
        .find_map(|n| match live.auth_transport_ok.get(&n.node_id) {
            Some(true) => None,
            Some(false) => Some((n.node_id, true)),
            None => Some((n.node_id, false)),
        })
}

/// Auth is only as good as its transport: tokens must not travel in clear text, and
/// without peer certificates anyone could call the Raft service.
fn check_auth_transport(sec: &crate::config::SecurityConfig) -> Result<()> {
    if sec.ca_path.is_none() {
        return Err(Error::FailedPrecondition(
            "auth needs TLS: start the nodes with --ca-path, --cert-path and --key-path \
             (ctxd certs makes a set)"
                .into(),
        ));
    }
    if sec.client_cert_auth == crate::config::ClientCertAuth::None
        || sec.peer_cert_allowed_cn.is_empty()
    {
        return Err(Error::FailedPrecondition(
            "auth needs peer certificates: set client-cert-auth to optional or require and \
             peer-cert-allowed-cn to the nodes' certificate names, or a client certificate \
             could act as a node"
                .into(),
        ));
    }
    Ok(())
}

/// How long an auth change waits for the up nodes to have it in effect (less than a
/// client's default deadline, so the answer, naming the nodes behind, gets back).
const AUTH_FENCE: Duration = Duration::from_secs(5);

/// Waits until every up node has reported auth `revision` in effect; returns those
/// that had not when `AUTH_FENCE` passed.
async fn wait_auth_revision(ctx: &NodeCtx, revision: u64) -> Vec<u64> {
    let deadline = Instant::now() + AUTH_FENCE;
    loop {
        let state = ctx.meta.state().unwrap_or_default();
        let behind: Vec<u64> = {
            let nodes = judged_nodes(ctx, &state);
            let live = ctx.meta.liveness.lock();
            nodes
                .iter()
                .filter(|n| n.state == NodeState::Up as i32)
                .filter(|n| {
                    let have = if n.node_id == ctx.node_id.0 {
                        ctx.auth.kept_revision()
                    } else {
                        live.auth_revisions.get(&n.node_id).copied().unwrap_or(0)
                    };
                    have < revision
                })
                .map(|n| n.node_id)
                .collect()
        };
        if behind.is_empty() || Instant::now() >= deadline {
            return behind;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `Auth.Change` on any node: runs on the meta leader (one hop at most).
pub(crate) async fn auth_change(
    ctx: &NodeCtx,
    req: AuthChangeRequest,
    forward: bool,
) -> Result<AuthChangeResponse> {
    if !forward {
        return handle_auth_change(ctx, req).await;
    }
    through_meta_elections(|| {
        // The meta leader answers once the change is in effect everywhere (or
        // `AUTH_FENCE` passed): give it that long.
        ask_meta_leader_on(
            ctx,
            AUTH_FENCE + CALL_TIMEOUT * 2,
            || handle_auth_change(ctx, req.clone()),
            |ch| {
                let req = req.clone();
                async move {
                    Ok(crate::proto::auth_client::AuthClient::new(ch)
                        .change(forwarded(req))
                        .await?
                        .into_inner())
                }
            },
        )
    })
    .await
}

/// `Cluster.SetNodeAdmin` on any node: runs on the meta leader (one hop at most).
pub(crate) async fn set_node_admin(
    ctx: &NodeCtx,
    req: SetNodeAdminRequest,
    forward: bool,
) -> Result<NodeInfo> {
    if !forward {
        return handle_set_node_admin(ctx, req).await;
    }
    through_meta_elections(|| {
        ask_meta_leader(
            ctx,
            || handle_set_node_admin(ctx, req),
            |mut c| async move {
                Ok(c.set_node_admin(forwarded(req))
                    .await?
                    .into_inner()
                    .node
                    .unwrap_or_default())
            },
        )
    })
    .await
}

/// `Cluster.SetPdPaused` on any node: runs on the meta leader (one hop at most).
pub(crate) async fn set_pd_paused(
    ctx: &NodeCtx,
    req: SetPdPausedRequest,
    forward: bool,
) -> Result<()> {
    if !forward {
        return handle_set_pd_paused(ctx, req).await;
    }
    through_meta_elections(|| {
        ask_meta_leader(
            ctx,
            || handle_set_pd_paused(ctx, req),
            |mut c| async move {
                c.set_pd_paused(forwarded(req)).await?;
                Ok(())
            },
        )
    })
    .await
}

/// Sends `hb` to the meta leader (this node included) and returns its routing table.
/// Tries the last known meta leader, then the meta replicas, then every known node,
/// following `NotLeader` hints.
pub(crate) async fn call_meta(ctx: &NodeCtx, hb: NodeHeartbeat) -> Result<RoutingTable> {
    ask_meta_leader(
        ctx,
        || handle_heartbeat(ctx, hb.clone()),
        |mut c| {
            let hb = hb.clone();
            async move { Ok(c.heartbeat(hb).await?.into_inner()) }
        },
    )
    .await
}

/// Asks the meta leader for the id of the shard a split creates (see
/// `meta::state::alloc_shard`).
pub(crate) async fn alloc_shard(ctx: &NodeCtx, req: AllocShardRequest) -> Result<u64> {
    through_meta_elections(|| {
        ask_meta_leader(
            ctx,
            || handle_alloc_shard(ctx, req.clone()),
            |mut c| {
                let req = req.clone();
                async move { Ok(c.alloc_shard(req).await?.into_inner().child_shard) }
            },
        )
    })
    .await
}

/// How long an admin call waits for the meta shard to elect a leader (a leader
/// transfer or a failover takes an election timeout or two).
const META_ELECTION_WAIT: Duration = Duration::from_secs(5);

/// Runs `call` again while no meta leader answers (between two leaders, or all
/// unreachable), for up to `META_ELECTION_WAIT`; any other outcome is returned. The
/// calls retried this way are idempotent (setting an admin state, pausing) or
/// harmless to repeat (a shard id allocated twice leaves a gap).
pub(crate) async fn through_meta_elections<T, F, Fut>(mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + META_ELECTION_WAIT;
    let mut pause = Duration::from_millis(50);
    loop {
        match call().await {
            Err(e) if elsewhere(&e) && tokio::time::Instant::now() + pause < deadline => {
                tracing::debug!(error = %e, "no meta leader yet; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            r => return r,
        }
    }
}

/// Runs a call on the meta leader: `local` if this node hosts a meta replica (it
/// answers `NotLeader` when it does not lead), else `remote` on the last known meta
/// leader, the meta replicas, then every known node, following `NotLeader` hints,
/// each within `CALL_TIMEOUT`.
pub(crate) async fn ask_meta_leader<T, L, LF, R, RF>(
    ctx: &NodeCtx,
    local: L,
    remote: R,
) -> Result<T>
where
    L: FnOnce() -> LF,
    LF: std::future::Future<Output = Result<T>>,
    R: Fn(ClusterClient<Channel>) -> RF,
    RF: std::future::Future<Output = std::result::Result<T, tonic::Status>>,
{
    ask_meta_leader_on(ctx, CALL_TIMEOUT, local, |ch| {
        remote(ClusterClient::new(ch))
    })
    .await
}

/// [`ask_meta_leader`] for a call of any service that may take `within` on the meta
/// leader: `remote` gets the channel.
pub(crate) async fn ask_meta_leader_on<T, L, LF, R, RF>(
    ctx: &NodeCtx,
    within: Duration,
    local: L,
    remote: R,
) -> Result<T>
where
    L: FnOnce() -> LF,
    LF: std::future::Future<Output = Result<T>>,
    R: Fn(Channel) -> RF,
    RF: std::future::Future<Output = std::result::Result<T, tonic::Status>>,
{
    let mut candidates: Vec<String> = Vec::new();
    let mut last_err = Error::ShardUnavailable {
        shard: META_SHARD,
        reason: "no meta leader reachable".into(),
        outcome_unknown: false,
    };
    if ctx.peer(META_SHARD).is_some() {
        match local().await {
            Ok(t) => return Ok(t),
            Err(Error::NotLeader {
                leader: Some(l), ..
            }) => candidates.push(l.addr),
            Err(e) if !elsewhere(&e) => return Err(e),
            Err(e) => last_err = e,
        }
    }
    if let Some(a) = ctx.meta.leader_addr.lock().clone() {
        candidates.push(a);
    }
    if let Some(d) = ctx.meta.route_of(META_SHARD).and_then(|r| r.descriptor) {
        candidates.extend(d.replicas.into_iter().map(|r| r.addr));
    }
    candidates.extend(ctx.addresses.all().into_iter().map(|(_, a)| a));
    // A joining node knows the cluster only by the addresses it was given.
    candidates.extend(ctx.config().peer_addrs().map(str::to_string));
    let mut tried: Vec<String> = vec![ctx.addr.clone()];
    let mut i = 0;
    while i < candidates.len() && tried.len() < 16 {
        let addr = candidates[i].clone();
        i += 1;
        if addr.is_empty() || tried.contains(&addr) {
            continue;
        }
        tried.push(addr.clone());
        let ch = match ctx.meta.channel(&addr, CALL_TIMEOUT) {
            Ok(c) => c,
            Err(e) => {
                last_err = e;
                continue;
            }
        };
        let err = match tokio::time::timeout(within, remote(ch)).await {
            Ok(Ok(t)) => {
                *ctx.meta.leader_addr.lock() = Some(addr);
                return Ok(t);
            }
            Ok(Err(status)) => Error::from(status),
            Err(_) => Error::Transport(format!("no answer from {addr} within {within:?}")),
        };
        if !elsewhere(&err) {
            // The meta leader's answer (a refusal, a bad argument): final.
            return Err(err);
        }
        if let Error::NotLeader {
            leader: Some(l), ..
        } = &err
        {
            // Try the hint next.
            candidates.insert(i, l.addr.clone());
        }
        last_err = err;
    }
    Err(last_err)
}

/// Whether an error means "not here, ask another node" (not the leader, unreachable,
/// no meta replica: what a client would retry) rather than the meta leader's own
/// answer; this node shutting down is final.
fn elsewhere(e: &Error) -> bool {
    e.is_retryable() && !matches!(e, Error::Shutdown)
}

/// How often a node that has not learned the cluster's auth state asks the meta
/// leader (see `AuthHub::learned`).
const UNLEARNED_RETRY: Duration = Duration::from_millis(100);

/// How long `GetRoutingTable` waits for the meta leader before answering from the
/// node's copy (below the client's 1 s per-node refresh timeout).
const FORWARD_BUDGET: Duration = Duration::from_millis(800);

/// `Cluster.GetRoutingTable` on any node: asks the meta leader within
/// `FORWARD_BUDGET`, then falls back to the node's last copy.
pub(crate) async fn routing_table_any(ctx: &NodeCtx) -> Result<RoutingTable> {
    let asked = tokio::time::timeout(FORWARD_BUDGET, call_meta(ctx, NodeHeartbeat::default()));
    let answer = asked.await.unwrap_or_else(|_| {
        Err(Error::ShardUnavailable {
            shard: META_SHARD,
            reason: "the meta leader did not answer in time".into(),
            outcome_unknown: true,
        })
    });
    match answer {
        Ok(t) => Ok(t),
        Err(e) => {
            let cached = ctx.meta.cached.read().clone();
            match cached {
                Some(mut t) => {
                    t.source = "cache".into();
                    Ok(t)
                }
                None => Err(e),
            }
        }
    }
}

/// This node's report: its address, its load, and every shard it leads with the
/// shard's load and replicas' progress. Only leading replicas are asked for their
/// status, and a hibernating leader's last answer (in `asleep`) is sent again
/// without asking while it has applied nothing since: nothing in it changes while it
/// sleeps, and asking every replica
/// every second was most of what a node with many idle shards spent.
async fn collect_report(ctx: &NodeCtx, asleep: &mut HashMap<u64, ShardStatus>) -> NodeHeartbeat {
    let peers = ctx.peers();
    let mut stats = NodeStats {
        used_bytes: ctx.engine.used_bytes(),
        free_bytes: crate::storage::engine::disk_free(&ctx.config().data_dir).unwrap_or(0),
        replicas: peers.len() as u64,
        read_weight: ctx.config().read_weight,
        stopping: ctx.stopping.load(std::sync::atomic::Ordering::Relaxed),
        ..Default::default()
    };
    let mut statuses = Vec::new();
    let mut still_asleep = HashMap::new();
    for p in peers {
        if !p.epoch.leading() {
            continue;
        }
        // Still the same sleep: a replica that woke, changed and slept again since
        // (a new term, a split, a membership change) has applied something since.
        let cached = asleep
            .remove(&p.shard.0)
            .filter(|s| p.epoch.hibernating() && s.applied_index == p.epoch.applied());
        let Some(mut s) = (match cached {
            Some(s) => Some(s),
            None => ctx.replica_status(&p).await,
        }) else {
            continue;
        };
        if s.hibernating {
            // Asleep, it serves nothing (a request would have woken it); the rates
            // of its last load window are history.
            s.reads_per_sec = 0.0;
            s.writes_per_sec = 0.0;
            still_asleep.insert(p.shard.0, s.clone());
        }
        statuses.push(s);
    }
    *asleep = still_asleep;
    let mut leading = Vec::new();
    let mut loads = Vec::new();
    for s in statuses {
        if s.role != "leader" {
            continue;
        }
        stats.leaders += 1;
        stats.reads_per_sec += s.reads_per_sec;
        stats.writes_per_sec += s.writes_per_sec;
        let Some(desc) = s.descriptor else { continue };
        let Some(me) = desc.replicas.iter().find(|r| r.replica_id == s.replica_id) else {
            continue;
        };
        let leader = ReplicaInfo {
            replica_id: me.replica_id,
            node_id: me.node_id,
            addr: me.addr.clone(),
        };
        loads.push(ShardLoad {
            shard_id: desc.shard_id,
            approx_bytes: s.approx_bytes,
            approx_keys: s.approx_keys,
            writes_per_sec: s.writes_per_sec,
            reads_per_sec: s.reads_per_sec,
            caught_up: s.caught_up,
            conf_ver: desc.conf_ver,
        });
        leading.push(ShardRoute {
            descriptor: Some(desc),
            leader: Some(leader),
            leader_term: s.term,
        });
    }
    NodeHeartbeat {
        node_id: ctx.node_id.0,
        addr: ctx.addr.clone(),
        leading,
        stats: Some(stats),
        loads,
        auth_revision: ctx.auth.kept_revision(),
        auth_transport_ok: check_auth_transport(&ctx.config().security).is_ok(),
        known_shards_hash: 0,
    }
}

/// Replica GC: every local replica whose shard the meta shard lists at a newer
/// `conf_ver` without it, with the message that tells it so (it then destroys
/// itself: it was removed while it could not hear of it, the node being down or cut
/// off).
fn stale_replicas(ctx: &NodeCtx, table: &RoutingTable) -> Vec<(PeerHandle, PeerMsg)> {
    let mut stale = Vec::new();
    if table.source != "meta-leader" {
        return stale;
    }
    for route in &table.shards {
        let Some(d) = &route.descriptor else { continue };
        let Some(peer) = ctx.peer(crate::types::ShardId(d.shard_id)) else {
            continue;
        };
        let local = peer.epoch.descriptor();
        let listed = d.replicas.iter().any(|r| {
            local
                .replicas
                .iter()
                .any(|l| l.node_id == ctx.node_id.0 && l.replica_id == r.replica_id)
        });
        if listed || local.conf_ver >= d.conf_ver {
            continue;
        }
        let msg = PeerMsg::Gc {
            conf_ver: d.conf_ver,
            replicas: d.replicas.iter().map(|r| r.replica_id).collect(),
            next_replica_id: d.next_replica_id,
        };
        stale.push((peer, msg));
    }
    stale
}

/// Keeps `table`, a heartbeat's answer, as the node's routing table, notes its
/// routes, and gives it back to read; None if it could not be kept
/// ([`merge_table`]).
fn hold_table(
    ctx: &NodeCtx,
    table: RoutingTable,
) -> Option<MappedRwLockReadGuard<'_, RoutingTable>> {
    let new_routes = !table.shards_unchanged;
    let mut held = ctx.meta.cached.write();
    if !merge_table(&mut held, table) {
        return None;
    }
    let held = RwLockReadGuard::try_map(RwLockWriteGuard::downgrade(held), |t| t.as_ref()).ok()?;
    if new_routes {
        ctx.note_routes(&held.shards);
    }
    Some(held)
}

/// Puts `table` in `held`. An answer without routes (`shards_unchanged`) takes those
/// of the table held, whose hash it names; if the table held is not that one, it is
/// kept, its hash cleared so that the next heartbeat asks for every route, and the
/// answer is dropped (false).
fn merge_table(held: &mut Option<RoutingTable>, mut table: RoutingTable) -> bool {
    if table.shards_unchanged {
        match held.as_mut() {
            Some(old) if old.shards_hash == table.shards_hash => {
                table.shards = std::mem::take(&mut old.shards);
            }
            Some(old) => {
                old.shards_hash = 0;
                return false;
            }
            None => return false,
        }
    }
    *held = Some(table);
    true
}

/// When the heartbeat loop checks its replicas against the table ([`stale_replicas`]).
/// A replica becomes stale only through a newer route or a new replica here (its own
/// `conf_ver` only grows): without either, the check runs every `STALE_CHECK_EVERY`
/// heartbeats.
#[derive(Default)]
struct StaleCheck {
    /// The routes' hash and the replicas registered here at the last check.
    last: Option<(u64, u64)>,
    /// Heartbeats since.
    skipped: u32,
}

impl StaleCheck {
    /// Whether this heartbeat's table (routes of `hash`, 0: unknown) needs the check.
    fn due(&mut self, hash: u64, registered: u64) -> bool {
        self.skipped += 1;
        let now = Some((hash, registered));
        if hash != 0 && self.last == now && self.skipped < STALE_CHECK_EVERY {
            return false;
        }
        self.last = now;
        self.skipped = 0;
        true
    }
}

/// Wakes the hibernating replicas whose leader is on a node the meta leader no longer
/// hears from (disconnected or down). Awake, they tick, miss the leader's heartbeats
/// and elect a new one, so the placement driver (which works through shard leaders)
/// can repair the shard without waiting for a request to wake it.
fn wake_orphans(ctx: &NodeCtx, table: &RoutingTable) {
    if table.source != "meta-leader" {
        return;
    }
    let lost: Vec<u64> = table
        .nodes
        .iter()
        .filter(|n| n.state == NodeState::Disconnected as i32 || n.state == NodeState::Down as i32)
        .map(|n| n.node_id)
        .collect();
    if lost.is_empty() {
        return;
    }
    ctx.for_each_peer(|p| {
        if !p.epoch.hibernating() || p.epoch.leading() {
            return;
        }
        let leader = p.epoch.leader_id();
        let orphan = p
            .epoch
            .descriptor()
            .replicas
            .iter()
            .any(|r| r.replica_id == leader && lost.contains(&r.node_id));
        if orphan {
            let _ = p.try_send(PeerMsg::Wake);
        }
    });
}

/// Heartbeats between two stale-replica checks while neither the routes nor the
/// node's replicas changed (a check visits every route: 1,000 a second otherwise).
const STALE_CHECK_EVERY: u32 = 10;

/// Starts the node's heartbeat loop.
pub(crate) fn spawn_heartbeats(ctx: Arc<NodeCtx>) {
    let tracker = ctx.tracker.clone();
    tracker.spawn(async move {
        let interval = heartbeat_interval(&ctx);
        let mut asleep = HashMap::new();
        let mut stale_check = StaleCheck::default();
        loop {
            // A node that does not know the cluster's auth state yet serves no
            // client: it asks every `UNLEARNED_RETRY` until it knows.
            let pause = if ctx.auth.learned() {
                interval
            } else {
                interval.min(UNLEARNED_RETRY)
            };
            tokio::select! {
                _ = ctx.cancel.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
                _ = ctx.meta.wake.notified() => {}
            }
            let mut hb = collect_report(&ctx, &mut asleep).await;
            hb.known_shards_hash = ctx.meta.cached.read().as_ref().map_or(0, |t| t.shards_hash);
            match call_meta(&ctx, hb).await {
                Ok(mut table) => {
                    ctx.learn_auth(table.auth.take());
                    for n in &table.nodes {
                        ctx.addresses.insert(NodeId(n.node_id), n.addr.clone());
                    }
                    let stale = {
                        let Some(table) = hold_table(&ctx, table) else {
                            continue;
                        };
                        if let Some(doc) = &table.cluster_config {
                            ctx.apply_cluster_config(doc);
                        }
                        wake_orphans(&ctx, &table);
                        if stale_check.due(table.shards_hash, ctx.registered()) {
                            stale_replicas(&ctx, &table)
                        } else {
                            Vec::new()
                        }
                    };
                    for (peer, msg) in stale {
                        let _ = peer.send(msg).await;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "meta heartbeat failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ShardDescriptor;

    fn route(shard: u64) -> ShardRoute {
        ShardRoute {
            descriptor: Some(ShardDescriptor {
                shard_id: shard,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn table(hash: u64, unchanged: bool, shards: Vec<ShardRoute>, version: u64) -> RoutingTable {
        RoutingTable {
            shards,
            shards_hash: hash,
            shards_unchanged: unchanged,
            routing_version: version,
            ..Default::default()
        }
    }

    /// An answer without routes keeps those held when it names their hash, and is
    /// dropped otherwise (the held table then asks for every route next time).
    #[test]
    fn a_table_without_routes_takes_the_held_ones_of_its_hash() {
        let mut held = None;
        assert!(
            !merge_table(&mut held, table(7, true, vec![], 1)),
            "nothing held"
        );
        assert!(held.is_none());
        assert!(merge_table(
            &mut held,
            table(7, false, vec![route(1), route(2)], 1)
        ));
        assert!(merge_table(&mut held, table(7, true, vec![], 2)));
        let t = held.as_ref().expect("held");
        assert_eq!(
            (t.shards.len(), t.shards_hash, t.routing_version),
            (2, 7, 2)
        );
        assert!(
            !merge_table(&mut held, table(8, true, vec![], 3)),
            "another hash"
        );
        let t = held.as_ref().expect("held");
        assert_eq!(
            (t.shards.len(), t.shards_hash, t.routing_version),
            (2, 0, 2)
        );
        assert!(merge_table(&mut held, table(8, false, vec![route(3)], 4)));
        assert_eq!(held.expect("held").shards, vec![route(3)]);
    }

    /// The stale-replica check runs at first, when the routes or the replicas
    /// change, when the routes' hash is unknown, and every `STALE_CHECK_EVERY`
    /// heartbeats otherwise.
    #[test]
    fn the_stale_check_runs_when_something_changed_or_its_rounds_are_up() {
        let mut c = StaleCheck::default();
        assert!(c.due(7, 1), "the first heartbeat");
        let skipped = (1..STALE_CHECK_EVERY).filter(|_| c.due(7, 1)).count();
        assert_eq!(skipped, 0, "nothing changed");
        assert!(c.due(7, 1), "its rounds are up");
        assert!(!c.due(7, 1));
        assert!(c.due(8, 1), "new routes");
        assert!(c.due(8, 2), "a new replica here");
        assert!(
            c.due(0, 2) && c.due(0, 2),
            "a meta leader that sends no hash"
        );
    }
}
