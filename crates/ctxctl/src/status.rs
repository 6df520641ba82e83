//! `ctxctl status`: one table row per shard and one per node, etcdctl-style, or one
//! JSON document with `-o json`.
//!
//! Replicas are shown by the node that hosts them (`n2`), not by their raw 64-bit
//! Raft ids; the JSON output carries both.

use ctxstore_client::proto::{
    NodeState, ReplicaRole, RoutingTable, ShardDescriptor, ShardStatus, StatusResponse,
};
use serde::Serialize;
use std::collections::BTreeMap;

/// A replica this many entries behind its leader's commit counts as lagging.
const LAG_ENTRIES: u64 = 64;

/// One shard as the status report shows it.
#[derive(Serialize, Debug, PartialEq)]
pub struct ShardRow {
    /// The shard id (0 is the meta shard).
    pub shard: u64,
    /// Node hosting the leader (None: no leader seen).
    pub leader_node: Option<u64>,
    /// The leader's term (or the highest term any replica reported).
    pub term: u64,
    /// The leader's commit index.
    pub commit: u64,
    /// The leader's applied index.
    pub applied: u64,
    /// The first index of the leader's Raft log (entries below it were compacted).
    pub first_index: u64,
    /// Every replica: `(node, raft replica id, voter?)`.
    pub replicas: Vec<ReplicaCell>,
    /// Replicas more than `LAG_ENTRIES` behind the leader's commit (by node).
    pub lagging: Vec<u64>,
    /// Membership and range epoch.
    pub conf_ver: u64,
    /// Range epoch.
    pub ring_ver: u64,
    /// Nodes whose replica hibernates (`raft.hibernate`: idle, not ticking).
    pub hibernating: Vec<u64>,
}

/// One replica of a shard.
#[derive(Serialize, Debug, PartialEq)]
pub struct ReplicaCell {
    /// The node hosting it.
    pub node: u64,
    /// Its raft-rs id.
    pub replica_id: u64,
    /// Voter (false: learner).
    pub voter: bool,
}

/// One node as the status report shows it.
#[derive(Serialize, Debug, PartialEq)]
pub struct NodeRow {
    /// The node id.
    pub node: u64,
    /// Its address.
    pub addr: String,
    /// `up`, `down`, `unknown` (as the meta leader judges), or `unreachable` when
    /// this client could not ask it for its status.
    pub state: String,
    /// Replicas it hosts.
    pub replicas: usize,
    /// Replicas of it that lead their shard.
    pub leaders: usize,
    /// WAL syncs its log writer did.
    pub wal_syncs: u64,
    /// Records whose expiry has passed, waiting for the TTL purge (counted up to
    /// 100,000, over all its replicas).
    pub expired_waiting: u64,
}

/// The whole report.
#[derive(Serialize, Debug)]
pub struct Report {
    /// The routing table's version (0 if it could not be fetched).
    pub routing_version: u64,
    /// Where the routing table came from (`meta-leader` or `cache`).
    pub source: String,
    /// One row per shard, by id.
    pub shards: Vec<ShardRow>,
    /// One row per node, by id.
    pub nodes: Vec<NodeRow>,
}

fn is_voter(role: i32) -> bool {
    role == ReplicaRole::Voter as i32
}

/// Builds the report from every node status this client got and the routing table.
pub fn report(statuses: &[StatusResponse], table: Option<&RoutingTable>) -> Report {
    // Per shard: the replica reports, the leader's first.
    let mut by_shard: BTreeMap<u64, Vec<(u64, &ShardStatus)>> = BTreeMap::new();
    for s in statuses {
        for sh in &s.shards {
            let id = sh.descriptor.as_ref().map_or(0, |d| d.shard_id);
            by_shard.entry(id).or_default().push((s.node_id, sh));
        }
    }
    let mut shards = Vec::new();
    for (id, reps) in &by_shard {
        let leader = reps
            .iter()
            .filter(|(_, s)| s.role == "leader")
            .max_by_key(|(_, s)| s.term);
        let newest: Option<&ShardDescriptor> = reps
            .iter()
            .filter_map(|(_, s)| s.descriptor.as_ref())
            .max_by_key(|d| (d.ring_ver, d.conf_ver));
        let desc = leader.and_then(|(_, s)| s.descriptor.as_ref()).or(newest);
        let replicas = desc
            .map(|d| {
                d.replicas
                    .iter()
                    .map(|r| ReplicaCell {
                        node: r.node_id,
                        replica_id: r.replica_id,
                        voter: is_voter(r.role),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let first_index = leader.map_or(0, |(_, l)| l.first_index);
        let (commit, applied, term, lagging) = match leader {
            Some((_, l)) => {
                let lagging = desc
                    .map(|d| {
                        d.replicas
                            .iter()
                            .filter(|r| {
                                l.progress
                                    .get(&r.replica_id)
                                    .is_none_or(|m| m + LAG_ENTRIES < l.commit_index)
                            })
                            .map(|r| r.node_id)
                            .collect()
                    })
                    .unwrap_or_default();
                (l.commit_index, l.applied_index, l.term, lagging)
            }
            None => (
                0,
                0,
                reps.iter().map(|(_, s)| s.term).max().unwrap_or(0),
                Vec::new(),
            ),
        };
        shards.push(ShardRow {
            shard: *id,
            leader_node: leader.map(|(n, _)| *n),
            term,
            commit,
            applied,
            first_index,
            replicas,
            lagging,
            conf_ver: desc.map_or(0, |d| d.conf_ver),
            ring_ver: desc.map_or(0, |d| d.ring_ver),
            hibernating: reps
                .iter()
                .filter(|(_, s)| s.hibernating)
                .map(|(n, _)| *n)
                .collect(),
        });
    }
    let mut nodes: BTreeMap<u64, NodeRow> = BTreeMap::new();
    if let Some(t) = table {
        for n in &t.nodes {
            let state = state_name(n.state);
            nodes.insert(
                n.node_id,
                NodeRow {
                    node: n.node_id,
                    addr: n.addr.clone(),
                    state: state.into(),
                    replicas: 0,
                    leaders: 0,
                    wal_syncs: 0,
                    expired_waiting: 0,
                },
            );
        }
    }
    for s in statuses {
        let row = nodes.entry(s.node_id).or_insert_with(|| NodeRow {
            node: s.node_id,
            addr: s.addr.clone(),
            state: "unknown".into(),
            replicas: 0,
            leaders: 0,
            wal_syncs: 0,
            expired_waiting: 0,
        });
        row.replicas = s.shards.len();
        row.leaders = s.shards.iter().filter(|x| x.role == "leader").count();
        row.wal_syncs = s.wal_syncs;
        row.expired_waiting = s.expired_waiting;
    }
    let answered: Vec<u64> = statuses.iter().map(|s| s.node_id).collect();
    for row in nodes.values_mut() {
        if !answered.contains(&row.node) && row.state != "down" {
            row.state = "unreachable".into();
        }
    }
    Report {
        routing_version: table.map_or(0, |t| t.routing_version),
        source: table.map_or(String::new(), |t| t.source.clone()),
        shards,
        nodes: nodes.into_values().collect(),
    }
}

fn node_list(nodes: &[u64]) -> String {
    if nodes.is_empty() {
        return "-".into();
    }
    nodes
        .iter()
        .map(|n| format!("n{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The report as two aligned tables.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let mut rows = vec![[
        "SHARD", "LEADER", "TERM", "COMMIT", "APPLIED", "REPLICAS", "LAGGING", "EPOCH",
    ]
    .map(String::from)
    .to_vec()];
    for s in &r.shards {
        let replicas = s
            .replicas
            .iter()
            .map(|c| {
                if c.voter {
                    format!("n{}", c.node)
                } else {
                    format!("n{}(learner)", c.node)
                }
            })
            .collect::<Vec<_>>()
            .join(",");
        rows.push(vec![
            if s.shard == 0 {
                "0 (meta)".into()
            } else {
                s.shard.to_string()
            },
            s.leader_node.map_or("none".into(), |n| format!("n{n}")),
            s.term.to_string(),
            s.commit.to_string(),
            s.applied.to_string(),
            replicas,
            node_list(&s.lagging),
            format!("{}/{}", s.conf_ver, s.ring_ver),
        ]);
    }
    out.push_str(&table(&rows));
    out.push('\n');
    let mut rows = vec![[
        "NODE",
        "ADDRESS",
        "STATE",
        "REPLICAS",
        "LEADERS",
        "WAL SYNCS",
        "EXPIRED",
    ]
    .map(String::from)
    .to_vec()];
    for n in &r.nodes {
        rows.push(vec![
            format!("n{}", n.node),
            n.addr.clone(),
            n.state.clone(),
            n.replicas.to_string(),
            n.leaders.to_string(),
            n.wal_syncs.to_string(),
            n.expired_waiting.to_string(),
        ]);
    }
    out.push_str(&table(&rows));
    if r.routing_version > 0 {
        out.push_str(&format!(
            "\nrouting table version {} (from {})\n",
            r.routing_version, r.source
        ));
    } else {
        out.push_str("\nrouting table: unavailable\n");
    }
    out
}

/// A node's liveness as `ctxctl` prints it.
pub fn state_name(state: i32) -> &'static str {
    match NodeState::try_from(state) {
        Ok(NodeState::Up) => "up",
        Ok(NodeState::Down) => "down",
        Ok(NodeState::Disconnected) => "disconnected",
        _ => "unknown",
    }
}

/// Left-aligned columns separated by two spaces.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// One shard in `ctxctl shard list`.
#[derive(Serialize, Debug, PartialEq)]
pub struct ShardListRow {
    /// The shard id.
    pub shard: u64,
    /// Its arcs, inclusive `[lo, hi]`.
    pub arcs: Vec<(u64, u64)>,
    /// Its share of the hash space.
    pub share: f64,
    /// Range epoch.
    pub ring_ver: u64,
    /// Approximate bytes on disk (flushed data), as its leader last measured.
    pub approx_bytes: u64,
    /// Approximate keys.
    pub approx_keys: u64,
    /// Writes per second over the leader's last load window.
    pub writes_per_sec: f64,
    /// Node of the leader (None: none seen).
    pub leader_node: Option<u64>,
    /// The hash of a partition key taking most of the shard's writes.
    pub hot_hash: Option<u64>,
    /// The shard it was split from (0: made at bootstrap).
    pub split_from: u64,
}

/// The data shards (not the meta shard), with what their leaders report.
pub fn shard_list(statuses: &[StatusResponse], table: Option<&RoutingTable>) -> Vec<ShardListRow> {
    let mut leaders: BTreeMap<u64, (u64, &ShardStatus)> = BTreeMap::new();
    let mut descs: BTreeMap<u64, ShardDescriptor> = BTreeMap::new();
    for s in statuses {
        for sh in &s.shards {
            let Some(d) = sh.descriptor.as_ref() else {
                continue;
            };
            let newer = descs
                .get(&d.shard_id)
                .is_none_or(|o| (o.ring_ver, o.conf_ver) < (d.ring_ver, d.conf_ver));
            if newer {
                descs.insert(d.shard_id, d.clone());
            }
            if sh.role == "leader"
                && leaders
                    .get(&d.shard_id)
                    .is_none_or(|(_, l)| l.term < sh.term)
            {
                leaders.insert(d.shard_id, (s.node_id, sh));
            }
        }
    }
    for d in table
        .into_iter()
        .flat_map(|t| t.shards.iter())
        .filter_map(|r| r.descriptor.as_ref())
    {
        let newer = descs
            .get(&d.shard_id)
            .is_none_or(|o| (o.ring_ver, o.conf_ver) < (d.ring_ver, d.conf_ver));
        if newer {
            descs.insert(d.shard_id, d.clone());
        }
    }
    descs
        .into_values()
        .filter(|d| d.shard_id != 0)
        .map(|d| {
            let arcs: Vec<(u64, u64)> = ctxstore_client::ranges::arcs_of(&d);
            let share = ctxstore_client::ranges::width(&arcs) as f64 / 2f64.powi(64);
            let leader = leaders.get(&d.shard_id);
            ShardListRow {
                shard: d.shard_id,
                share,
                ring_ver: d.ring_ver,
                approx_bytes: leader.map_or(0, |(_, l)| l.approx_bytes),
                approx_keys: leader.map_or(0, |(_, l)| l.approx_keys),
                writes_per_sec: leader.map_or(0.0, |(_, l)| l.writes_per_sec),
                leader_node: leader.map(|(n, _)| *n),
                hot_hash: leader.and_then(|(_, l)| l.hot_hash),
                split_from: d.split_from,
                arcs,
            }
        })
        .collect()
}

/// A descriptor's arcs, compactly: one arc as `[lo, hi]` in hex; several as their
/// count and the first.
pub fn show_arcs(d: &ShardDescriptor) -> String {
    let arcs = ctxstore_client::ranges::arcs_of(d);
    match arcs.as_slice() {
        [] => "-".into(),
        [(lo, hi)] => format!("[{lo:#018x}, {hi:#018x}]"),
        [(lo, hi), rest @ ..] => {
            format!("[{lo:#018x}, {hi:#018x}] and {} more", rest.len())
        }
    }
}

/// Bytes in binary units.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `ctxctl shard list` as a table.
pub fn render_shard_list(rows: &[ShardListRow]) -> String {
    let mut out = vec![[
        "SHARD",
        "ARCS",
        "SHARE",
        "SIZE",
        "KEYS",
        "WRITES/S",
        "LEADER",
        "FROM",
        "HOT KEY HASH",
    ]
    .map(String::from)
    .to_vec()];
    for r in rows {
        let arcs = match r.arcs.as_slice() {
            [(lo, hi)] => format!("[{lo:#018x}, {hi:#018x}]"),
            many => format!("{} arcs", many.len()),
        };
        out.push(vec![
            r.shard.to_string(),
            arcs,
            format!("{:.2}%", r.share * 100.0),
            human_bytes(r.approx_bytes),
            r.approx_keys.to_string(),
            format!("{:.0}", r.writes_per_sec),
            r.leader_node.map_or("none".into(), |n| format!("n{n}")),
            if r.split_from == 0 {
                "-".into()
            } else {
                r.split_from.to_string()
            },
            r.hot_hash.map_or("-".into(), |h| format!("{h:#018x}")),
        ]);
    }
    table(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctxstore_client::proto::{NodeInfo, Replica};

    fn desc(shard: u64, nodes: &[u64]) -> ShardDescriptor {
        ShardDescriptor {
            shard_id: shard,
            replicas: nodes
                .iter()
                .map(|n| Replica {
                    replica_id: (shard << 32) | n,
                    node_id: *n,
                    addr: format!("127.0.0.1:700{n}"),
                    role: ReplicaRole::Voter as i32,
                    started: true,
                })
                .collect(),
            conf_ver: 2,
            ring_ver: 1,
            ..Default::default()
        }
    }

    #[test]
    fn shards_show_the_leader_node_and_lagging_replicas_by_node() {
        let d = desc(1, &[1, 2, 3]);
        let leader = ShardStatus {
            descriptor: Some(d.clone()),
            replica_id: (1 << 32) | 2,
            leader_id: (1 << 32) | 2,
            term: 7,
            commit_index: 1000,
            applied_index: 1000,
            role: "leader".into(),
            progress: [
                ((1 << 32) | 1, 1000),
                ((1 << 32) | 2, 1000),
                ((1 << 32) | 3, 10),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let follower = ShardStatus {
            descriptor: Some(d),
            role: "follower".into(),
            term: 7,
            ..Default::default()
        };
        let statuses = vec![
            StatusResponse {
                node_id: 1,
                addr: "127.0.0.1:7001".into(),
                shards: vec![follower],
                ..Default::default()
            },
            StatusResponse {
                node_id: 2,
                addr: "127.0.0.1:7002".into(),
                shards: vec![leader],
                wal_syncs: 9,
                expired_waiting: 12,
                ..Default::default()
            },
        ];
        let table = RoutingTable {
            routing_version: 4,
            source: "meta-leader".into(),
            nodes: (1..=3)
                .map(|n| NodeInfo {
                    node_id: n,
                    addr: format!("127.0.0.1:700{n}"),
                    state: NodeState::Up as i32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let r = report(&statuses, Some(&table));
        assert_eq!(r.shards.len(), 1);
        assert_eq!(r.shards[0].leader_node, Some(2));
        assert_eq!(r.shards[0].lagging, vec![3]);
        assert_eq!(r.nodes.len(), 3);
        assert_eq!(r.nodes[1].leaders, 1);
        assert_eq!(r.nodes[1].expired_waiting, 12);
        assert_eq!(r.nodes[2].state, "unreachable", "node 3 did not answer");
        let text = render(&r);
        assert!(text.contains("n1,n2,n3"), "{text}");
        assert!(text.contains("EXPIRED"), "{text}");
        assert!(
            !text.contains(&((1u64 << 32) | 2).to_string()),
            "no raw ids: {text}"
        );
        let json = serde_json::to_string(&r).expect("json");
        assert!(json.contains("\"leader_node\":2"), "{json}");
    }

    #[test]
    fn shard_list_shows_arcs_share_and_the_leaders_numbers() {
        let mut d = desc(1, &[1, 2, 3]);
        d.arcs = vec![ctxstore_client::proto::HashRange {
            lo: 0,
            hi: u64::MAX / 2,
        }];
        let leader = ShardStatus {
            descriptor: Some(d),
            role: "leader".into(),
            term: 3,
            approx_bytes: 3 << 20,
            approx_keys: 1234,
            writes_per_sec: 55.0,
            hot_hash: Some(7),
            ..Default::default()
        };
        let statuses = vec![StatusResponse {
            node_id: 2,
            shards: vec![leader],
            ..Default::default()
        }];
        let rows = shard_list(&statuses, None);
        assert_eq!(rows.len(), 1);
        assert!((rows[0].share - 0.5).abs() < 1e-9, "{rows:?}");
        assert_eq!(rows[0].leader_node, Some(2));
        let text = render_shard_list(&rows);
        assert!(
            text.contains("50.00%") && text.contains("3.0 MiB") && text.contains("1234"),
            "{text}"
        );
        assert!(text.contains("0x0000000000000007"), "hot key shown: {text}");
    }
}
