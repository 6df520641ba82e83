//! The meta shard's replicated state machine (pure logic, no I/O): the descriptors and
//! `MetaState` of a brand-new cluster, and what applying a node's heartbeat does to
//! the state. Every meta replica applies the same reports to the same state and gets
//! the same result.

use crate::proto::{
    AllocShardRequest, HashRange, MetaState, NodeAdmin, NodeHeartbeat, NodeInfo, NodeState,
    PendingSplit, Replica, ReplicaRole, SetNodeAdminRequest, ShardDescriptor, ShardRoute,
};
use crate::ranges;
use crate::types::{NodeId, ShardId, META_SHARD};

/// How many replicas the meta shard gets at bootstrap.
const META_REPLICAS: usize = 3;

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

/// A descriptor of `shard` with one voter on each `placed` node (bootstrap replica
/// ids, the first the preferred leader), at `(conf_ver, ring_ver)`, owning `arcs`.
pub(crate) fn bootstrap_descriptor(
    shard: ShardId,
    placed: &[(NodeId, &String)],
    (conf_ver, ring_ver): (u64, u64),
    arcs: Vec<HashRange>,
) -> ShardDescriptor {
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
        conf_ver,
        ring_ver,
        arcs,
        ..Default::default()
    }
}

/// A descriptor of `shard` without replicas owning the whole hash space, as shard 1
/// of a one-shard cluster does (benches and tests of the apply path).
pub(crate) fn whole_ring_descriptor(shard: ShardId) -> ShardDescriptor {
    bootstrap_descriptor(shard, &[], (1, 1), ranges::to_proto(&ranges::even_arcs(1)))
}

/// The descriptors of a brand-new cluster, meta shard first: shard 0 on the first
/// (up to) three members, data shard `s` on up to 3 consecutive members starting at
/// member `s - 1` (round-robin), owning the `s`-th of `shards` equal contiguous arcs
/// of the hash space. The first replica of each is its preferred leader. Every
/// initial member computes the same result from the same arguments.
pub(crate) fn initial_descriptors(
    members: &std::collections::BTreeMap<NodeId, String>,
    shards: u64,
) -> Vec<ShardDescriptor> {
    let nodes: Vec<(NodeId, &String)> = members.iter().map(|(n, a)| (*n, a)).collect();
    if nodes.is_empty() {
        return Vec::new();
    }
    let arcs = ranges::even_arcs(shards);
    let per_shard = nodes.len().min(3);
    let describe = |shard: ShardId, placed: Vec<(NodeId, &String)>, arcs: Vec<HashRange>| {
        bootstrap_descriptor(shard, &placed, (1, 1), arcs)
    };
    let mut out = vec![describe(
        META_SHARD,
        nodes.iter().take(META_REPLICAS).copied().collect(),
        Vec::new(),
    )];
    for (s, arc) in (1..=shards).zip(arcs) {
        let placed = (0..per_shard)
            .map(|j| nodes[((s - 1) as usize + j) % nodes.len()])
            .collect();
        out.push(describe(ShardId(s), placed, ranges::to_proto(&[arc])));
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
                ..Default::default()
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
        ring_shards: Vec::new(),
        next_shard_id: descriptors.iter().map(|d| d.shard_id).max().unwrap_or(0) + 1,
        pending_splits: Vec::new(),
        pd_paused: false,
        cluster_config: None,
        auth: None,
    }
}

/// Brings a state written by a version before explicit arcs up to date (idempotent,
/// deterministic: every meta replica gets the same): each data shard's descriptor gets
/// the arcs its `ring_shards` gave it, and split allocation starts above every
/// existing shard id.
pub(crate) fn upgrade(state: &mut MetaState) {
    let ring = std::mem::take(&mut state.ring_shards);
    for route in &mut state.shards {
        if let Some(d) = route.descriptor.as_mut() {
            upgrade_descriptor(d, &ring);
        }
    }
    if state.next_shard_id == 0 {
        state.next_shard_id = state
            .shards
            .iter()
            .filter_map(|r| r.descriptor.as_ref())
            .map(|d| d.shard_id)
            .max()
            .unwrap_or(0)
            + 1;
    }
}

/// Gives a data shard's descriptor written before explicit arcs the arcs its
/// `ring_shards` (or, if it has none, `ring`) gave it; a no-op on any other.
pub(crate) fn upgrade_descriptor(desc: &mut ShardDescriptor, ring: &[u64]) {
    if desc.shard_id == META_SHARD.0 || !desc.arcs.is_empty() || desc.conf_ver == 0 {
        return;
    }
    let ring_shards = if desc.ring_shards.is_empty() {
        ring
    } else {
        &desc.ring_shards
    };
    let arcs = ranges::legacy_arcs(ring_shards, ShardId(desc.shard_id));
    desc.arcs = ranges::to_proto(&arcs);
    desc.ring_shards.clear();
}

/// Allocates the id of the shard a split of `req.parent_shard` creates. Asking again
/// for the same split (same parent and `ring_ver`) returns the same id.
pub(crate) fn alloc_shard(state: &mut MetaState, req: &AllocShardRequest) -> Result<u64, String> {
    let parent = state
        .shards
        .iter()
        .filter_map(|r| r.descriptor.as_ref())
        .find(|d| d.shard_id == req.parent_shard);
    let Some(parent) = parent else {
        return Err(format!(
            "shard {} is not in the routing table",
            req.parent_shard
        ));
    };
    if parent.shard_id == META_SHARD.0 {
        return Err("the meta shard is never split".into());
    }
    if let Some(p) = state
        .pending_splits
        .iter()
        .find(|p| p.parent == req.parent_shard && p.parent_ring_ver == req.parent_ring_ver)
    {
        return Ok(p.child);
    }
    if state.next_shard_id == 0 {
        upgrade(state);
    }
    let child = state.next_shard_id;
    state.next_shard_id += 1;
    // One pending split per parent: a newer allocation replaces an abandoned one.
    state
        .pending_splits
        .retain(|p| p.parent != req.parent_shard);
    state.pending_splits.push(PendingSplit {
        parent: req.parent_shard,
        parent_ring_ver: req.parent_ring_ver,
        child,
        parent_arcs: req.parent_arcs.clone(),
    });
    Ok(child)
}

/// The stored descriptor of `shard`, if the table lists it.
fn descriptor_mut(state: &mut MetaState, shard: u64) -> Option<&mut ShardDescriptor> {
    let i = route_index(state, shard)?;
    state.shards[i].descriptor.as_mut()
}

/// Where the table lists `shard`'s route. Routes are kept ordered by id
/// ([`insert_route`]), so this is a binary search; a table out of order (none is
/// known) is searched in full rather than trusted. A heartbeat looks up every shard
/// its node leads: with 1,000 shards a linear search was a million comparisons a
/// second on an idle meta leader.
fn route_index(state: &MetaState, shard: u64) -> Option<usize> {
    let id = |r: &ShardRoute| r.descriptor.as_ref().map_or(0, |d| d.shard_id);
    let at = state.shards.partition_point(|r| id(r) < shard);
    if state
        .shards
        .get(at)
        .is_some_and(|r| r.descriptor.as_ref().is_some_and(|d| d.shard_id == shard))
    {
        return Some(at);
    }
    state
        .shards
        .iter()
        .position(|r| r.descriptor.as_ref().is_some_and(|d| d.shard_id == shard))
}

/// Adds a route for a shard the table does not list yet, keeping routes ordered by id.
fn insert_route(state: &mut MetaState, desc: ShardDescriptor) {
    let at = state
        .shards
        .partition_point(|r| r.descriptor.as_ref().map_or(0, |d| d.shard_id) < desc.shard_id);
    state.shards.insert(
        at,
        ShardRoute {
            descriptor: Some(desc),
            ..Default::default()
        },
    );
}

/// Whether `desc` is the new shard of a pending split: its parent and id match, and
/// its arcs lie within the parent's arcs at the time of the allocation.
fn pending_child(state: &MetaState, desc: &ShardDescriptor) -> Option<usize> {
    state.pending_splits.iter().position(|p| {
        let parent_arcs: Vec<ranges::Arc> = p.parent_arcs.iter().map(|r| (r.lo, r.hi)).collect();
        p.child == desc.shard_id
            && p.parent == desc.split_from
            && !desc.arcs.is_empty()
            && ranges::subtract(&ranges::arcs_of(desc), &parent_arcs).is_empty()
    })
}

/// Shards whose descriptor lists a replica on `node`.
pub(crate) fn shards_on(state: &MetaState, node: u64) -> Vec<u64> {
    state
        .shards
        .iter()
        .filter_map(|r| r.descriptor.as_ref())
        .filter(|d| d.replicas.iter().any(|r| r.node_id == node))
        .map(|d| d.shard_id)
        .collect()
}

/// Changes a node's admin state (deterministic; refusals change nothing):
/// - `Draining` from `Serving`, unless the serving nodes left would be fewer than
///   `req.min_serving` (the replication factor);
/// - `Serving` from `Draining` (undrain);
/// - `Removed` from `Draining`, once no descriptor lists a replica on the node;
/// - a removed node stays removed; asking for the current state is a no-op.
pub(crate) fn set_node_admin(
    state: &mut MetaState,
    req: &SetNodeAdminRequest,
) -> Result<NodeInfo, String> {
    let Ok(want) = NodeAdmin::try_from(req.admin) else {
        return Err(format!("unknown admin state {}", req.admin));
    };
    let serving_others = state
        .nodes
        .iter()
        .filter(|n| n.node_id != req.node_id && n.admin == NodeAdmin::Serving as i32)
        .count();
    let hosted = shards_on(state, req.node_id);
    let Some(node) = state.nodes.iter_mut().find(|n| n.node_id == req.node_id) else {
        return Err(format!(
            "node {} is not a member of the cluster",
            req.node_id
        ));
    };
    let have = NodeAdmin::try_from(node.admin).unwrap_or(NodeAdmin::Serving);
    if have == want {
        return Ok(node.clone());
    }
    match (have, want) {
        (NodeAdmin::Removed, _) => {
            return Err(format!(
                "node {} was removed from the cluster; its id is never reused",
                req.node_id
            ))
        }
        (NodeAdmin::Serving, NodeAdmin::Draining) if serving_others < req.min_serving as usize => {
            return Err(format!(
                "draining node {} would leave {serving_others} serving node(s), fewer than the replication factor ({}); add a node first",
                req.node_id, req.min_serving
            ));
        }
        (NodeAdmin::Draining, NodeAdmin::Removed) if !hosted.is_empty() => {
            return Err(format!(
                "node {} still hosts replicas of shards {hosted:?}; wait until the drain has moved them (`ctxctl node list`)",
                req.node_id
            ));
        }
        (NodeAdmin::Serving, NodeAdmin::Removed) => {
            return Err(format!(
                "node {} is serving; drain it first (`ctxctl node drain {}`)",
                req.node_id, req.node_id
            ))
        }
        _ => {}
    }
    node.admin = want as i32;
    let out = node.clone();
    state.routing_version += 1;
    Ok(out)
}

/// Whether [`apply_heartbeat`] would leave `state` as it is, known without copying
/// the state: the node is recorded at its address and has run, and every shard it
/// reports is listed exactly as reported, with no split pending on it and every
/// started replica's node recorded as having run. A heartbeat from an idle node is
/// this, every second, and the meta leader need not copy its whole state for it.
/// False when unsure (the full path decides then). Debug builds check a "nothing"
/// against [`apply_heartbeat`] itself, so the two cannot drift apart unseen.
pub(crate) fn heartbeat_changes_nothing(state: &MetaState, hb: &NodeHeartbeat) -> bool {
    let nothing = heartbeat_known(state, hb);
    if cfg!(debug_assertions) && nothing {
        let mut applied = state.clone();
        apply_heartbeat(&mut applied, hb);
        debug_assert!(
            applied == *state,
            "heartbeat_changes_nothing said nothing, apply_heartbeat changed the state: {hb:?}"
        );
    }
    nothing
}

fn heartbeat_known(state: &MetaState, hb: &NodeHeartbeat) -> bool {
    let ran = |node: u64| state.nodes.iter().any(|n| n.node_id == node && n.has_run);
    let node_known = hb.node_id == 0
        || state
            .nodes
            .iter()
            .any(|n| n.node_id == hb.node_id && n.addr == hb.addr && n.has_run);
    node_known
        && hb.leading.iter().all(|report| {
            let Some(desc) = &report.descriptor else {
                return true;
            };
            !state
                .pending_splits
                .iter()
                .any(|p| p.parent == desc.shard_id)
                && desc
                    .replicas
                    .iter()
                    .filter(|r| r.started)
                    .all(|r| ran(r.node_id))
                && route_index(state, desc.shard_id).is_some_and(|i| state.shards[i] == *report)
        })
}

/// Applies a node's heartbeat to the meta state (deterministic: every replica applies
/// the same report to the same state and gets the same result).
pub(crate) fn apply_heartbeat(state: &mut MetaState, hb: &NodeHeartbeat) {
    let mut bump = false;
    if hb.node_id != 0 && !hb.addr.is_empty() {
        match state.nodes.iter_mut().find(|n| n.node_id == hb.node_id) {
            Some(n) => {
                if n.addr != hb.addr {
                    n.addr = hb.addr.clone();
                    bump = true;
                }
                // Recorded once; the node must never bootstrap again.
                n.has_run = true;
            }
            None => {
                state.nodes.push(NodeInfo {
                    node_id: hb.node_id,
                    addr: hb.addr.clone(),
                    state: NodeState::Unknown as i32,
                    has_run: true,
                    ..Default::default()
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
        // Only plausible reports count: about a shard the state lists, or the new
        // shard of a split it allocated, from a node holding a replica in the
        // reported descriptor, naming that replica as the leader.
        let from_its_leader = leader.node_id == hb.node_id
            && desc
                .replicas
                .iter()
                .any(|r| r.node_id == hb.node_id && r.replica_id == leader.replica_id);
        if !from_its_leader {
            continue;
        }
        // A replica its leader records as started has persisted entries: its node
        // ran, even if it never got a heartbeat through before it stopped.
        for r in desc.replicas.iter().filter(|r| r.started) {
            if let Some(n) = state.nodes.iter_mut().find(|n| n.node_id == r.node_id) {
                n.has_run = true;
            }
        }
        if route_index(state, desc.shard_id).is_none() {
            let Some(i) = pending_child(state, desc) else {
                continue;
            };
            let split = state.pending_splits.remove(i);
            // The new shard reported before its parent's post-split descriptor: the
            // parent gives up the arcs now, so the table never lists a hash twice.
            let child_arcs = ranges::arcs_of(desc);
            if let Some(p) = descriptor_mut(state, split.parent) {
                if p.ring_ver < desc.ring_ver {
                    p.arcs = ranges::to_proto(&ranges::subtract(&ranges::arcs_of(p), &child_arcs));
                    p.ring_ver = desc.ring_ver;
                }
            }
            insert_route(
                state,
                ShardDescriptor {
                    shard_id: desc.shard_id,
                    ..Default::default()
                },
            );
        } else if let Some(i) = state
            .pending_splits
            .iter()
            .position(|p| p.parent == desc.shard_id && desc.ring_ver == p.parent_ring_ver + 1)
        {
            // The parent reports its post-split descriptor before the new shard has
            // reported: the new shard enters the table now with the arcs the parent
            // gave up, so no hash is left without an owner. Its descriptor is the one
            // the split entry creates, replayed on the parent as the allocation saw
            // it (the cut is the lowest hash the parent gave up), marked provisional
            // (`conf_ver` 0, no leader): the new shard's own first report replaces it.
            let split = state.pending_splits.remove(i);
            let mut before = desc.clone();
            before.arcs = split.parent_arcs.clone();
            before.ring_ver = split.parent_ring_ver;
            let gave_up = ranges::subtract(&ranges::arcs_of(&before), &ranges::arcs_of(desc));
            let replayed = gave_up.first().and_then(|&(cut, _)| {
                let cmd = crate::proto::SplitCommand {
                    child_shard: split.child,
                    split_hash: cut,
                    expected_ring_ver: split.parent_ring_ver,
                };
                crate::fsm::split::apply_split(&mut before, &cmd, 0, 0, &[]).ok()
            });
            if let Some(child) = replayed {
                insert_route(
                    state,
                    ShardDescriptor {
                        conf_ver: 0,
                        ..child.desc
                    },
                );
                bump = true;
            }
        }
        let Some(route) = route_index(state, desc.shard_id).map(|i| &mut state.shards[i]) else {
            continue;
        };
        // Newer: a higher `ring_ver` (a split), or the same with a higher `conf_ver`.
        let old_epoch = route
            .descriptor
            .as_ref()
            .map_or((0, 0), |d| (d.ring_ver, d.conf_ver));
        let new_epoch = (desc.ring_ver, desc.conf_ver);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ReplicaInfo;
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
    fn routes_are_found_by_id_in_order_and_out_of_it() {
        let found_by_id = |st: &MetaState| {
            (0..=16).all(|id| {
                route_index(st, id).is_some_and(|i| {
                    st.shards[i].descriptor.as_ref().map(|d| d.shard_id) == Some(id)
                })
            }) && route_index(st, 17).is_none()
        };
        let mut st = initial_state(&members(3), &initial_descriptors(&members(3), 16));
        assert!(found_by_id(&st));
        // A table out of order is still searched in full.
        st.shards.swap(3, 12);
        assert!(found_by_id(&st));
    }

    /// The data shards' arcs cover the hash space exactly once.
    fn partitions(st: &MetaState) -> bool {
        let descs: Vec<&ShardDescriptor> = st
            .shards
            .iter()
            .filter_map(|r| r.descriptor.as_ref())
            .filter(|d| d.shard_id != META_SHARD.0)
            .collect();
        let total: u128 = descs
            .iter()
            .map(|d| ranges::width(&ranges::arcs_of(d)))
            .sum();
        let mut m = ranges::RangeMap::new();
        for d in &descs {
            m.insert_descriptor(d);
        }
        total == 1u128 << 64 && m.covers_everything()
    }

    /// Whichever of a split's two shards reports first, the table never leaves a hash
    /// without an owner nor lists one twice (an automatic split in `tests/split.rs`
    /// once saw a hole: the parent's report came before the new shard's).
    #[test]
    fn a_split_reported_in_either_order_keeps_the_table_a_partition() {
        for parent_first in [true, false] {
            let m = members(3);
            let descs = initial_descriptors(&m, 2);
            let mut st = initial_state(&m, &descs);
            let mut parent = descs[1].clone();
            let child_id = alloc_shard(
                &mut st,
                &AllocShardRequest {
                    parent_shard: 1,
                    parent_ring_ver: parent.ring_ver,
                    parent_arcs: parent.arcs.clone(),
                },
            )
            .expect("alloc");
            let cut = parent.arcs[0].lo / 2 + parent.arcs[0].hi / 2;
            let split = crate::proto::SplitCommand {
                child_shard: child_id,
                split_hash: cut,
                expected_ring_ver: parent.ring_ver,
            };
            let child = crate::fsm::split::apply_split(&mut parent, &split, 50, 2, b"")
                .expect("split")
                .desc;
            let from = |d: &ShardDescriptor| NodeHeartbeat {
                node_id: d.replicas[0].node_id,
                addr: d.replicas[0].addr.clone(),
                leading: vec![report(d, d.replicas[0].node_id, 3)],
                ..Default::default()
            };
            let (first, second) = if parent_first {
                (&parent, &child)
            } else {
                (&child, &parent)
            };
            let version = st.routing_version;
            apply_heartbeat(&mut st, &from(first));
            assert!(
                partitions(&st),
                "after the first report ({parent_first}): {st:?}"
            );
            assert!(st.routing_version > version, "the table changed");
            assert!(
                st.pending_splits.is_empty(),
                "the split is no longer pending"
            );
            if parent_first {
                let provisional = st
                    .shards
                    .iter()
                    .filter_map(|r| r.descriptor.clone())
                    .find(|d| d.shard_id == child_id);
                assert_eq!(
                    provisional,
                    Some(ShardDescriptor {
                        conf_ver: 0,
                        split_index: 0,
                        ..child.clone()
                    }),
                    "the provisional descriptor is the split's, marked provisional"
                );
            }
            apply_heartbeat(&mut st, &from(second));
            assert!(
                partitions(&st),
                "after both reports ({parent_first}): {st:?}"
            );
            let listed = |id: u64| {
                st.shards
                    .iter()
                    .filter_map(|r| r.descriptor.clone())
                    .find(|d| d.shard_id == id)
            };
            assert_eq!(
                listed(child_id),
                Some(child.clone()),
                "the shard's own report wins"
            );
            assert_eq!(listed(1), Some(parent.clone()));
        }
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
            ..Default::default()
        };
        assert!(!heartbeat_changes_nothing(&st, &hb), "a new leader hint");
        apply_heartbeat(&mut st, &hb);
        assert_eq!(st.routing_version, 1);
        assert_eq!(st.shards[2].leader.as_ref().map(|l| l.node_id), Some(2));
        // The same report again changes nothing, and is known to without applying.
        assert!(heartbeat_changes_nothing(&st, &hb));
        let before = st.clone();
        apply_heartbeat(&mut st, &hb);
        assert_eq!(st, before);
        // An older term's report does not replace the hint.
        let stale = NodeHeartbeat {
            node_id: 3,
            addr: m[&NodeId(3)].clone(),
            leading: vec![report(&descs[2], 3, 6)],
            ..Default::default()
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
                ..Default::default()
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
                ..Default::default()
            },
        );
        assert_eq!(st.shards[2].descriptor.as_ref(), Some(&changed));
        assert_eq!(st.routing_version, 2);
        // A new node is recorded and bumps the version; a repeat changes nothing.
        let join = NodeHeartbeat {
            node_id: 9,
            addr: "127.0.0.1:7009".into(),
            leading: vec![],
            ..Default::default()
        };
        assert!(!heartbeat_changes_nothing(&st, &join), "a new node");
        apply_heartbeat(&mut st, &join);
        assert_eq!(st.routing_version, 3);
        let before = st.clone();
        assert!(heartbeat_changes_nothing(&st, &join));
        apply_heartbeat(&mut st, &join);
        assert_eq!(st, before);
        // A membership change is never taken for nothing.
        let mut again = changed.clone();
        again.conf_ver += 1;
        assert!(!heartbeat_changes_nothing(
            &st,
            &NodeHeartbeat {
                node_id: 2,
                addr: m[&NodeId(2)].clone(),
                leading: vec![report(&again, 2, 7)],
                ..Default::default()
            },
        ));
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
                    ..Default::default()
                },
            );
        }
        assert_eq!(
            st.shards, before.shards,
            "implausible reports change nothing"
        );
    }

    #[test]
    fn drain_undrain_and_remove_follow_the_rules_and_refusals_change_nothing() {
        let m = members(4);
        let descs = initial_descriptors(&m, 4);
        let mut st = initial_state(&m, &descs);
        let req = |node: u64, admin: NodeAdmin| SetNodeAdminRequest {
            node_id: node,
            admin: admin as i32,
            min_serving: 3,
        };
        let before = st.clone();
        for (r, why) in [
            (req(9, NodeAdmin::Draining), "not a member"),
            (req(2, NodeAdmin::Removed), "drain it first"),
        ] {
            let e = set_node_admin(&mut st, &r).expect_err(why);
            assert!(e.contains(why), "{e}");
            assert_eq!(st, before);
        }
        let bad = SetNodeAdminRequest {
            node_id: 2,
            admin: 7,
            min_serving: 3,
        };
        assert!(set_node_admin(&mut st, &bad).is_err());
        // Draining node 2 leaves 3 serving nodes: allowed.
        let n = set_node_admin(&mut st, &req(2, NodeAdmin::Draining)).expect("drain");
        assert_eq!(n.admin, NodeAdmin::Draining as i32);
        assert_eq!(st.routing_version, before.routing_version + 1);
        // A second drain would leave 2 < 3: refused, nothing changes.
        let snap = st.clone();
        let e = set_node_admin(&mut st, &req(3, NodeAdmin::Draining)).expect_err("refused");
        assert!(e.contains("fewer than the replication factor"), "{e}");
        assert_eq!(st, snap);
        // Removing a node that still hosts replicas is refused.
        let e = set_node_admin(&mut st, &req(2, NodeAdmin::Removed)).expect_err("hosts");
        assert!(e.contains("still hosts"), "{e}");
        // Undrain, drain again, then remove once no descriptor lists it.
        set_node_admin(&mut st, &req(2, NodeAdmin::Serving)).expect("undrain");
        set_node_admin(&mut st, &req(2, NodeAdmin::Draining)).expect("drain");
        for route in &mut st.shards {
            if let Some(d) = route.descriptor.as_mut() {
                d.replicas.retain(|r| r.node_id != 2);
            }
        }
        set_node_admin(&mut st, &req(2, NodeAdmin::Removed)).expect("remove");
        let e = set_node_admin(&mut st, &req(2, NodeAdmin::Serving)).expect_err("removed");
        assert!(e.contains("never reused"), "{e}");
        // The same state again is a no-op that bumps nothing.
        let v = st.routing_version;
        set_node_admin(&mut st, &req(2, NodeAdmin::Removed)).expect("no-op");
        assert_eq!(st.routing_version, v);
    }
}
