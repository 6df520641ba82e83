//! `ctxctl node …` and `ctxctl pd …`: nodes with their liveness, admin state and
//! load, drains, and the placement driver's state.

use crate::status::{human_bytes, state_name, table};
use ctxstore_client::proto::{NodeAdmin, PdStatusResponse, RoutingTable};
use serde::Serialize;
use std::collections::BTreeMap;

/// One row of `ctxctl node list`.
#[derive(Debug, Serialize, PartialEq)]
pub struct NodeRow {
    pub node: u64,
    pub addr: String,
    /// `up`, `disconnected`, `down` or `unknown`.
    pub state: String,
    /// `serving`, `draining` or `removed`.
    pub admin: String,
    /// Replicas the routing table places on the node, and how many it leads.
    pub replicas: u64,
    pub leaders: u64,
    /// From the node's last heartbeat (None: not reported yet).
    pub used_bytes: Option<u64>,
    pub free_bytes: Option<u64>,
    pub last_seen_ms_ago: u64,
}

/// An admin state's name.
pub fn admin_name(admin: i32) -> &'static str {
    match NodeAdmin::try_from(admin) {
        Ok(NodeAdmin::Serving) => "serving",
        Ok(NodeAdmin::Draining) => "draining",
        Ok(NodeAdmin::Removed) => "removed",
        Err(_) => "unknown",
    }
}

/// The rows of `ctxctl node list`: liveness, admin state and load from the placement
/// driver's status, replica and leader counts from the routing table.
pub fn node_rows(pd: &PdStatusResponse, table: &RoutingTable) -> Vec<NodeRow> {
    let mut replicas: BTreeMap<u64, u64> = BTreeMap::new();
    let mut leaders: BTreeMap<u64, u64> = BTreeMap::new();
    for route in &table.shards {
        let Some(d) = &route.descriptor else { continue };
        for r in &d.replicas {
            *replicas.entry(r.node_id).or_default() += 1;
        }
        if let Some(l) = &route.leader {
            *leaders.entry(l.node_id).or_default() += 1;
        }
    }
    pd.nodes
        .iter()
        .map(|n| NodeRow {
            node: n.node_id,
            addr: n.addr.clone(),
            state: state_name(n.state).into(),
            admin: admin_name(n.admin).into(),
            replicas: replicas.get(&n.node_id).copied().unwrap_or(0),
            leaders: leaders.get(&n.node_id).copied().unwrap_or(0),
            used_bytes: n.stats.as_ref().map(|s| s.used_bytes),
            free_bytes: n.stats.as_ref().map(|s| s.free_bytes),
            last_seen_ms_ago: n.last_seen_ms_ago,
        })
        .collect()
}

/// `ctxctl node list` as a table.
pub fn render_nodes(rows: &[NodeRow]) -> String {
    let mut out = vec![[
        "NODE", "ADDR", "STATE", "ADMIN", "REPLICAS", "LEADERS", "USED", "FREE", "SEEN",
    ]
    .map(String::from)
    .to_vec()];
    let bytes = |b: Option<u64>| b.map_or_else(|| "-".into(), human_bytes);
    for r in rows {
        out.push(vec![
            r.node.to_string(),
            r.addr.clone(),
            r.state.clone(),
            r.admin.clone(),
            r.replicas.to_string(),
            r.leaders.to_string(),
            bytes(r.used_bytes),
            bytes(r.free_bytes),
            if r.last_seen_ms_ago == 0 {
                "-".into()
            } else {
                format!("{:.1}s ago", r.last_seen_ms_ago as f64 / 1000.0)
            },
        ]);
    }
    table(&out)
}

/// `ctxctl pd status` as text.
pub fn render_pd(pd: &PdStatusResponse) -> String {
    let mut out = String::new();
    let state = match (pd.enabled, pd.paused) {
        (false, _) => "disabled (pd.enabled = false)",
        (true, true) => "paused (`ctxctl pd resume` resumes it)",
        (true, false) => "running",
    };
    out.push_str(&format!(
        "placement driver on node {}: {state}\n",
        pd.meta_leader
    ));
    if pd.warming_up {
        out.push_str(
            "  warming up: this meta leader judges no node down before it has watched for pd.node-down-after\n",
        );
    }
    out.push_str(&format!(
        "  operators finished {}, cancelled {} (since this node became meta leader)\n",
        pd.finished, pd.cancelled
    ));
    let list = |v: &[u64]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        }
    };
    out.push_str(&format!(
        "  under-replicated shards (no node to add a replica on): {}\n",
        list(&pd.under_replicated)
    ));
    out.push_str(&format!(
        "  unavailable shards (no quorum of live voters): {}\n",
        list(&pd.unavailable)
    ));
    if pd.operators.is_empty() {
        out.push_str("  no operator in flight\n");
        return out;
    }
    let node = |n: u64| {
        if n == 0 {
            "-".to_string()
        } else {
            n.to_string()
        }
    };
    let mut rows = vec![["SHARD", "KIND", "FROM", "TO", "LEAD", "STEP", "AGE"]
        .map(String::from)
        .to_vec()];
    for o in &pd.operators {
        rows.push(vec![
            o.shard_id.to_string(),
            o.kind.clone(),
            node(o.from_node),
            node(o.to_node),
            node(o.lead_node),
            o.step.clone(),
            format!("{:.1}s", o.age_ms as f64 / 1000.0),
        ]);
    }
    out.push_str(&table(&rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctxstore_client::proto::{
        NodeInfo, NodeState, NodeStats, PdOperator, Replica, ReplicaInfo, ShardDescriptor,
        ShardRoute,
    };

    #[test]
    fn node_rows_count_replicas_and_leaders_from_the_table() {
        let pd = PdStatusResponse {
            enabled: true,
            meta_leader: 1,
            nodes: vec![
                NodeInfo {
                    node_id: 1,
                    addr: "a:1".into(),
                    state: NodeState::Up as i32,
                    stats: Some(NodeStats {
                        used_bytes: 2048,
                        free_bytes: 1 << 30,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                NodeInfo {
                    node_id: 2,
                    addr: "a:2".into(),
                    state: NodeState::Disconnected as i32,
                    admin: NodeAdmin::Draining as i32,
                    last_seen_ms_ago: 4200,
                    ..Default::default()
                },
            ],
            operators: vec![PdOperator {
                shard_id: 3,
                kind: "drain".into(),
                from_node: 2,
                to_node: 1,
                step: "learner on node 1 catching up".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let replica = |n: u64| Replica {
            replica_id: n,
            node_id: n,
            ..Default::default()
        };
        let table = RoutingTable {
            shards: vec![ShardRoute {
                descriptor: Some(ShardDescriptor {
                    shard_id: 3,
                    replicas: vec![replica(1), replica(2)],
                    ..Default::default()
                }),
                leader: Some(ReplicaInfo {
                    replica_id: 2,
                    node_id: 2,
                    addr: "a:2".into(),
                }),
                leader_term: 1,
            }],
            ..Default::default()
        };
        let rows = node_rows(&pd, &table);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].replicas, rows[0].leaders), (1, 0));
        assert_eq!((rows[1].replicas, rows[1].leaders), (1, 1));
        assert_eq!(rows[1].state, "disconnected");
        assert_eq!(rows[1].admin, "draining");
        let text = render_nodes(&rows);
        assert!(text.contains("2.0 KiB"), "{text}");
        assert!(text.contains("4.2s ago"), "{text}");
        let pd_text = render_pd(&pd);
        assert!(pd_text.contains("running"), "{pd_text}");
        assert!(
            pd_text.contains("learner on node 1 catching up"),
            "{pd_text}"
        );
    }
}
