//! The meta shard's replicated state machine (pure logic, no I/O): the descriptors and
//! `MetaState` of a brand-new cluster, and what applying a node's heartbeat does to
//! the state. Every meta replica applies the same reports to the same state and gets
//! the same result.

use crate::proto::{
    MetaState, NodeHeartbeat, NodeInfo, NodeState, Replica, ReplicaRole, ShardDescriptor,
    ShardRoute,
};
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
