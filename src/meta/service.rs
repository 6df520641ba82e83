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
//! - Node liveness (`UP`/`DOWN`) is judged by the meta leader from the heartbeats it
//!   received while leader; it is not replicated (a new meta leader reports `UNKNOWN`
//!   until it has watched for three heartbeat intervals).
//! - Any node answers `Cluster.GetRoutingTable`: the meta leader from its state, other
//!   nodes by asking it (one hop, never forwarded further), or from the copy their last
//!   heartbeat brought back when the meta shard is unreachable.

use crate::error::{Error, Result};
use crate::node::NodeCtx;
use crate::proto::cluster_client::ClusterClient;
use crate::proto::{
    raft_command, MetaState, NodeHeartbeat, NodeInfo, NodeState, Replica, ReplicaInfo, ReplicaRole,
    RoutingTable, ShardDescriptor, ShardRoute,
};
use crate::raft::PeerMsg;
use crate::types::{NodeId, ShardId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};
use tonic::transport::Channel;

/// The meta shard's id.
pub const META_SHARD: ShardId = ShardId(0);

/// How many replicas the meta shard gets at bootstrap.
const META_REPLICAS: usize = 3;

/// How long one heartbeat or forwarded request may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Heartbeats missed before a node counts as down.
const MISSED_HEARTBEATS: u32 = 3;

/// Replica id of node `node`'s bootstrap replica of the meta shard (data shards use
/// `((s - 1) << 32) | node`, so the top block is free).
pub(crate) fn meta_replica_id(node: NodeId) -> u64 {
    (u64::from(u32::MAX) << 32) | node.0
}

/// Replica id of node `node`'s bootstrap replica of `shard`: unique in the cluster,
/// and equal to the node id for shard 1.
pub(crate) fn bootstrap_replica_id(shard: ShardId, node: NodeId) -> u64 {
    if shard == META_SHARD {
        meta_replica_id(node)
    } else {
        ((shard.0 - 1) << 32) | node.0
    }
}

/// The descriptors of a brand-new cluster, meta shard first: shard 0 on the first
/// (up to) three members, data shard `s` on up to 3 consecutive members starting at
/// member `s - 1` (round-robin). The first replica of each is its preferred leader.
/// Every initial member computes the same result from the same arguments.
pub(crate) fn initial_descriptors(
    members: &std::collections::BTreeMap<NodeId, String>,
    shards: u64,
) -> Vec<ShardDescriptor> {
    let nodes: Vec<(NodeId, &String)> = members.iter().map(|(n, a)| (*n, a)).collect();
    if nodes.is_empty() {
        return Vec::new();
    }
    let ring_shards: Vec<u64> = if shards > 1 {
        (1..=shards).collect()
    } else {
        Vec::new()
    };
    let per_shard = nodes.len().min(3);
    let describe = |shard: ShardId, placed: Vec<(NodeId, &String)>, ring: Vec<u64>| {
        let replicas: Vec<Replica> = placed
            .iter()
            .map(|(n, addr)| Replica {
                replica_id: bootstrap_replica_id(shard, *n),
                node_id: n.0,
                addr: (*addr).clone(),
                role: ReplicaRole::Voter as i32,
                started: false,
            })
            .collect();
        ShardDescriptor {
            shard_id: shard.0,
            next_replica_id: replicas.iter().map(|r| r.replica_id).max().unwrap_or(0) + 1,
            replicas,
            conf_ver: 1,
            ring_ver: 1,
            ring_shards: ring,
        }
    };
    let mut out = vec![describe(
        META_SHARD,
        nodes.iter().take(META_REPLICAS).copied().collect(),
        Vec::new(),
    )];
    for s in 1..=shards {
        let placed = (0..per_shard)
            .map(|j| nodes[((s - 1) as usize + j) % nodes.len()])
            .collect();
        out.push(describe(ShardId(s), placed, ring_shards.clone()));
    }
    out
}

/// The meta shard's state right after bootstrap.
pub(crate) fn initial_state(
    members: &std::collections::BTreeMap<NodeId, String>,
    descriptors: &[ShardDescriptor],
) -> MetaState {
    MetaState {
        routing_version: 1,
        nodes: members
            .iter()
            .map(|(n, a)| NodeInfo {
                node_id: n.0,
                addr: a.clone(),
                state: NodeState::Unknown as i32,
            })
            .collect(),
        shards: descriptors
            .iter()
            .map(|d| ShardRoute {
                descriptor: Some(d.clone()),
                leader: None,
                leader_term: 0,
            })
            .collect(),
        ring_shards: descriptors
            .iter()
            .find(|d| d.shard_id != META_SHARD.0)
            .map(|d| d.ring_shards.clone())
            .unwrap_or_default(),
    }
}

/// Applies a node's heartbeat to the meta state (deterministic: every replica applies
/// the same report to the same state and gets the same result).
pub(crate) fn apply_heartbeat(state: &mut MetaState, hb: &NodeHeartbeat) {
    let mut bump = false;
    if hb.node_id != 0 && !hb.addr.is_empty() {
        match state.nodes.iter_mut().find(|n| n.node_id == hb.node_id) {
            Some(n) if n.addr != hb.addr => {
                n.addr = hb.addr.clone();
                bump = true;
            }
            Some(_) => {}
            None => {
                state.nodes.push(NodeInfo {
                    node_id: hb.node_id,
                    addr: hb.addr.clone(),
                    state: NodeState::Unknown as i32,
                });
                state.nodes.sort_by_key(|n| n.node_id);
                bump = true;
            }
        }
    }
    for report in &hb.leading {
        let (Some(desc), Some(leader)) = (&report.descriptor, &report.leader) else {
            continue;
        };
        // Only plausible reports count: about a shard the state lists (shards are only
        // created at bootstrap), from a node holding a replica in the reported
        // descriptor, naming that replica as the leader.
        let from_its_leader = leader.node_id == hb.node_id
            && desc
                .replicas
                .iter()
                .any(|r| r.node_id == hb.node_id && r.replica_id == leader.replica_id);
        let route = state.shards.iter_mut().find(|s| {
            s.descriptor
                .as_ref()
                .is_some_and(|d| d.shard_id == desc.shard_id)
        });
        let (Some(route), true) = (route, from_its_leader) else {
            continue;
        };
        let old_epoch = route
            .descriptor
            .as_ref()
            .map_or((0, 0), |d| (d.conf_ver, d.ring_ver));
        let new_epoch = (desc.conf_ver, desc.ring_ver);
        if new_epoch < old_epoch {
            // A deposed leader's late report.
            continue;
        }
        if new_epoch > old_epoch {
            bump = true;
        }
        // Same epoch may still differ in `started` flags: keep the newest view.
        route.descriptor = Some(desc.clone());
        if report.leader_term >= route.leader_term {
            route.leader = Some(leader.clone());
            route.leader_term = report.leader_term;
        }
    }
    if bump {
        state.routing_version += 1;
    }
}

/// What the meta leader knows of node liveness (not replicated).
#[derive(Default)]
struct Liveness {
    /// The meta term these observations belong to.
    term: u64,
    /// When this replica started watching as leader in `term`.
    since: Option<Instant>,
    /// Node → last heartbeat received.
    seen: HashMap<u64, Instant>,
}

/// The meta-shard services of one node.
#[derive(Default)]
pub(crate) struct MetaCtx {
    /// The local meta replica's applied state (None: this node hosts no meta replica).
    state: RwLock<Option<Arc<MetaState>>>,
    /// The routing table the last heartbeat brought back.
    cached: RwLock<Option<RoutingTable>>,
    /// Heartbeats seen while this node led the meta shard.
    liveness: Mutex<Liveness>,
    /// Address of the meta leader as last found.
    leader_addr: Mutex<Option<String>>,
    /// One lazily connected channel per node address.
    channels: Mutex<HashMap<String, Channel>>,
    /// Wakes the heartbeat loop early (leadership or membership changed here).
    wake: Notify,
}

impl MetaCtx {
    /// Records the local meta replica's applied state.
    pub(crate) fn set_state(&self, state: MetaState) {
        if let Ok(mut s) = self.state.write() {
            *s = Some(Arc::new(state));
        }
    }

    /// Forgets the local meta replica's state (it was removed from this node).
    pub(crate) fn clear_state(&self) {
        if let Ok(mut s) = self.state.write() {
            *s = None;
        }
    }

    /// The local meta replica's applied state.
    pub(crate) fn state(&self) -> Option<Arc<MetaState>> {
        self.state.read().ok()?.clone()
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
        let cached = self.cached.read().ok()?;
        find(&cached.as_ref()?.shards)
    }

    fn channel(&self, addr: &str) -> Result<Channel> {
        let mut m = self
            .channels
            .lock()
            .map_err(|_| Error::Internal("meta channel cache poisoned".into()))?;
        if let Some(c) = m.get(addr) {
            return Ok(c.clone());
        }
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Error::Transport(format!("bad address {addr}: {e}")))?
            .connect_timeout(CALL_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        m.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }
}

/// The heartbeat period: one election timeout.
fn heartbeat_interval(ctx: &NodeCtx) -> Duration {
    let r = &ctx.config.raft;
    r.tick_interval
        .saturating_mul(u32::try_from(r.election_ticks).unwrap_or(10))
        .max(Duration::from_millis(10))
}

/// Serves a heartbeat (or, with `node_id == 0`, a routing-table request) on this node:
/// only the meta leader answers; others fail with `NotLeader` (with a hint when known)
/// or `ShardUnavailable`.
pub(crate) async fn handle_heartbeat(ctx: &NodeCtx, hb: NodeHeartbeat) -> Result<RoutingTable> {
    let unavailable = |reason: &str| Error::ShardUnavailable {
        shard: META_SHARD,
        reason: reason.into(),
    };
    let bad_addr = hb.addr.contains(|c: char| c == ',' || c.is_whitespace())
        || crate::config::check_host_port("addr", &hb.addr).is_err();
    if hb.node_id != 0 && bad_addr {
        return Err(Error::invalid(
            "addr",
            format!("`{}` is not host:port", hb.addr),
        ));
    }
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
    if let Ok(mut live) = ctx.meta.liveness.lock() {
        if live.term != status.term || live.since.is_none() {
            *live = Liveness {
                term: status.term,
                since: Some(Instant::now()),
                seen: HashMap::new(),
            };
        }
        if hb.node_id != 0 {
            live.seen.insert(hb.node_id, Instant::now());
        }
    }
    let current = ctx.meta.state().unwrap_or_default();
    let mut next = (*current).clone();
    apply_heartbeat(&mut next, &hb);
    if next != *current {
        tracing::debug!(
            node = hb.node_id,
            version = next.routing_version,
            "meta: recording a heartbeat"
        );
        let cmd = raft_command::Cmd::MetaHeartbeat(hb);
        peer.propose(Default::default(), crate::server::now_ms(), cmd)
            .await?;
    }
    let state = ctx.meta.state().unwrap_or_default();
    Ok(routing_table(ctx, &state))
}

/// The routing table of a meta state, with liveness as this meta leader judges it.
fn routing_table(ctx: &NodeCtx, state: &MetaState) -> RoutingTable {
    let down_after = heartbeat_interval(ctx) * MISSED_HEARTBEATS;
    let (since, seen) = match ctx.meta.liveness.lock() {
        Ok(l) => (l.since, l.seen.clone()),
        Err(_) => (None, HashMap::new()),
    };
    let nodes = state
        .nodes
        .iter()
        .map(|n| {
            let node_state = if n.node_id == ctx.node_id.0 {
                NodeState::Up
            } else {
                match (seen.get(&n.node_id), since) {
                    (Some(t), _) if t.elapsed() < down_after => NodeState::Up,
                    (_, Some(s)) if s.elapsed() >= down_after => NodeState::Down,
                    _ => NodeState::Unknown,
                }
            };
            NodeInfo {
                state: node_state as i32,
                ..n.clone()
            }
        })
        .collect();
    RoutingTable {
        shards: state.shards.clone(),
        ring_shards: state.ring_shards.clone(),
        routing_version: state.routing_version,
        nodes,
        source: "meta-leader".into(),
    }
}

/// Sends `hb` to the meta leader (this node included) and returns its routing table.
/// Tries the last known meta leader, then the meta replicas, then every known node,
/// following `NotLeader` hints.
pub(crate) async fn call_meta(ctx: &NodeCtx, hb: NodeHeartbeat) -> Result<RoutingTable> {
    let mut candidates: Vec<String> = Vec::new();
    let mut last_err = Error::ShardUnavailable {
        shard: META_SHARD,
        reason: "no meta leader reachable".into(),
    };
    if ctx.peer(META_SHARD).is_some() {
        match handle_heartbeat(ctx, hb.clone()).await {
            Ok(t) => return Ok(t),
            Err(Error::NotLeader {
                leader: Some(l), ..
            }) => candidates.push(l.addr),
            Err(e) => last_err = e,
        }
    }
    if let Some(a) = ctx.meta.leader_addr.lock().ok().and_then(|a| a.clone()) {
        candidates.push(a);
    }
    if let Some(d) = ctx.meta.route_of(META_SHARD).and_then(|r| r.descriptor) {
        candidates.extend(d.replicas.into_iter().map(|r| r.addr));
    }
    candidates.extend(ctx.addresses.all().into_iter().map(|(_, a)| a));
    let mut tried: Vec<String> = vec![ctx.addr.clone()];
    let mut i = 0;
    while i < candidates.len() && tried.len() < 16 {
        let addr = candidates[i].clone();
        i += 1;
        if addr.is_empty() || tried.contains(&addr) {
            continue;
        }
        tried.push(addr.clone());
        let ch = match ctx.meta.channel(&addr) {
            Ok(c) => c,
            Err(e) => {
                last_err = e;
                continue;
            }
        };
        let mut client = ClusterClient::new(ch);
        let err = match tokio::time::timeout(CALL_TIMEOUT, client.heartbeat(hb.clone())).await {
            Ok(Ok(t)) => {
                if let Ok(mut a) = ctx.meta.leader_addr.lock() {
                    *a = Some(addr);
                }
                return Ok(t.into_inner());
            }
            Ok(Err(status)) => Error::from(status),
            Err(_) => Error::Transport(format!("no answer from {addr} within {CALL_TIMEOUT:?}")),
        };
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
        })
    });
    match answer {
        Ok(t) => Ok(t),
        Err(e) => {
            let cached = ctx.meta.cached.read().ok().and_then(|c| c.clone());
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

/// This node's report: its address and every shard it leads.
async fn collect_report(ctx: &NodeCtx) -> NodeHeartbeat {
    let status = crate::server::node_status(ctx).await;
    let leading = status
        .shards
        .into_iter()
        .filter(|s| s.role == "leader")
        .filter_map(|s| {
            let desc = s.descriptor?;
            let me = desc
                .replicas
                .iter()
                .find(|r| r.replica_id == s.replica_id)?;
            let leader = ReplicaInfo {
                replica_id: me.replica_id,
                node_id: me.node_id,
                addr: me.addr.clone(),
            };
            Some(ShardRoute {
                descriptor: Some(desc),
                leader: Some(leader),
                leader_term: s.term,
            })
        })
        .collect();
    NodeHeartbeat {
        node_id: ctx.node_id.0,
        addr: ctx.addr.clone(),
        leading,
    }
}

/// Starts the node's heartbeat loop.
pub(crate) fn spawn_heartbeats(ctx: Arc<NodeCtx>) {
    let tracker = ctx.tracker.clone();
    tracker.spawn(async move {
        let interval = heartbeat_interval(&ctx);
        loop {
            tokio::select! {
                _ = ctx.cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
                _ = ctx.meta.wake.notified() => {}
            }
            let hb = collect_report(&ctx).await;
            match call_meta(&ctx, hb).await {
                Ok(table) => {
                    for n in &table.nodes {
                        ctx.addresses.insert(NodeId(n.node_id), n.addr.clone());
                    }
                    if let Ok(mut c) = ctx.meta.cached.write() {
                        *c = Some(table);
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
    use std::collections::BTreeMap;

    fn members(n: u64) -> BTreeMap<NodeId, String> {
        (1..=n)
            .map(|i| (NodeId(i), format!("127.0.0.1:{}", 7000 + i)))
            .collect()
    }

    fn report(desc: &ShardDescriptor, node: u64, term: u64) -> ShardRoute {
        let r = desc
            .replicas
            .iter()
            .find(|r| r.node_id == node)
            .cloned()
            .unwrap_or_default();
        ShardRoute {
            descriptor: Some(desc.clone()),
            leader: Some(ReplicaInfo {
                replica_id: r.replica_id,
                node_id: r.node_id,
                addr: r.addr,
            }),
            leader_term: term,
        }
    }

    #[test]
    fn initial_placement_is_round_robin_with_meta_on_the_first_three() {
        let descs = initial_descriptors(&members(5), 8);
        assert_eq!(descs.len(), 9);
        let meta: Vec<u64> = descs[0].replicas.iter().map(|r| r.node_id).collect();
        assert_eq!(meta, vec![1, 2, 3]);
        let s5: Vec<u64> = descs[5].replicas.iter().map(|r| r.node_id).collect();
        assert_eq!(s5, vec![5, 1, 2]);
        let mut ids: Vec<u64> = descs
            .iter()
            .flat_map(|d| d.replicas.iter().map(|r| r.replica_id))
            .collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "replica ids are unique in the cluster");
        assert_eq!(descs[1].replicas[0].replica_id, 1, "shard 1 keeps node ids");
    }

    #[test]
    fn heartbeat_updates_hints_and_bumps_version_only_on_routing_changes() {
        let m = members(3);
        let descs = initial_descriptors(&m, 4);
        let mut st = initial_state(&m, &descs);
        assert_eq!(st.routing_version, 1);
        // A leader report: hint recorded, version unchanged.
        let hb = NodeHeartbeat {
            node_id: 2,
            addr: m[&NodeId(2)].clone(),
            leading: vec![report(&descs[2], 2, 7)],
        };
        apply_heartbeat(&mut st, &hb);
        assert_eq!(st.routing_version, 1);
        assert_eq!(st.shards[2].leader.as_ref().map(|l| l.node_id), Some(2));
        // An older term's report does not replace the hint.
        let stale = NodeHeartbeat {
            node_id: 3,
            addr: m[&NodeId(3)].clone(),
            leading: vec![report(&descs[2], 3, 6)],
        };
        apply_heartbeat(&mut st, &stale);
        assert_eq!(st.shards[2].leader.as_ref().map(|l| l.node_id), Some(2));
        // A membership change (newer conf_ver) bumps the version.
        let mut changed = descs[2].clone();
        changed.conf_ver += 1;
        changed.replicas.pop();
        apply_heartbeat(
            &mut st,
            &NodeHeartbeat {
                node_id: 2,
                addr: m[&NodeId(2)].clone(),
                leading: vec![report(&changed, 2, 7)],
            },
        );
        assert_eq!(st.routing_version, 2);
        assert_eq!(st.shards[2].descriptor.as_ref(), Some(&changed));
        // An older descriptor never replaces a newer one.
        apply_heartbeat(
            &mut st,
            &NodeHeartbeat {
                node_id: 3,
                addr: m[&NodeId(3)].clone(),
                leading: vec![report(&descs[2], 3, 9)],
            },
        );
        assert_eq!(st.shards[2].descriptor.as_ref(), Some(&changed));
        assert_eq!(st.routing_version, 2);
        // A new node is recorded and bumps the version; a repeat changes nothing.
        let join = NodeHeartbeat {
            node_id: 9,
            addr: "127.0.0.1:7009".into(),
            leading: vec![],
        };
        apply_heartbeat(&mut st, &join);
        assert_eq!(st.routing_version, 3);
        let before = st.clone();
        apply_heartbeat(&mut st, &join);
        assert_eq!(st, before);
        // A table fetch (node 0) changes nothing.
        apply_heartbeat(&mut st, &NodeHeartbeat::default());
        assert_eq!(st, before);
        // Implausible reports are ignored: an unknown shard, a node that is not a
        // replica of the shard, a leader that is not the reporting node.
        let mut unknown = descs[2].clone();
        unknown.shard_id = 99;
        unknown.conf_ver = 50;
        for (node, report) in [
            (2, report(&unknown, 2, 20)),
            (9, report(&changed, 9, 20)),
            (3, report(&changed, 1, 20)),
        ] {
            apply_heartbeat(
                &mut st,
                &NodeHeartbeat {
                    node_id: node,
                    addr: format!("127.0.0.1:{}", 7000 + node),
                    leading: vec![report],
                },
            );
        }
        assert_eq!(
            st.shards, before.shards,
            "implausible reports change nothing"
        );
    }
}
