//! The client's routing cache: which shard owns each hash (from the descriptors'
//! arcs), each shard's newest descriptor, the leader it last answered from, and every
//! node's address. Pure state, no I/O: the client fills it from routing tables and
//! from the `current` descriptors a `StaleEpoch` answer carries.

use crate::proto::{RoutingTable, ShardDescriptor, ShardRoute};
use crate::ranges::RangeMap;
use std::collections::HashMap;

/// A node's read weight when the routing table does not show it (the server's
/// default `read-weight`).
const DEFAULT_READ_WEIGHT: u32 = 100;

/// What the client knows of the cluster's layout.
#[derive(Default, Debug)]
pub(crate) struct Routing {
    /// Hash → shard, newer `ring_ver` winning where descriptors overlap.
    ranges: RangeMap,
    /// Newest descriptor per shard, by `(ring_ver, conf_ver)`.
    descs: HashMap<u64, ShardDescriptor>,
    /// Address of the node believed to lead each shard.
    leaders: HashMap<u64, String>,
    /// Node id → address, from the routing table's node list (a node's own word).
    nodes: HashMap<u64, String>,
    /// Node id → read weight, from the nodes' last heartbeats in the routing table.
    weights: HashMap<u64, u32>,
}

impl Routing {
    /// Whether the client knows a data shard: until then (no table yet, or only a
    /// node's empty cache right after start) every request fetches the table first.
    pub(crate) fn fetched(&self) -> bool {
        self.descs.keys().any(|s| *s != 0)
    }

    /// Learns a routing table; returns the addresses it mentions.
    pub(crate) fn learn_table(&mut self, t: &RoutingTable) -> Vec<String> {
        let mut addrs = Vec::new();
        for n in &t.nodes {
            if !n.addr.is_empty() {
                self.nodes.insert(n.node_id, n.addr.clone());
                addrs.push(n.addr.clone());
            }
            if let Some(w) = n.stats.as_ref().map(|s| s.read_weight).filter(|w| *w > 0) {
                self.weights.insert(n.node_id, w);
            }
        }
        addrs.extend(self.learn_routes(&t.shards));
        addrs
    }

    /// Learns shard routes (from a table or a `StaleEpoch`); returns the addresses
    /// of their replicas.
    pub(crate) fn learn_routes(&mut self, routes: &[ShardRoute]) -> Vec<String> {
        let mut addrs = Vec::new();
        for route in routes {
            let Some(d) = &route.descriptor else { continue };
            addrs.extend(d.replicas.iter().map(|r| self.addr_of(r.node_id, &r.addr)));
            let newer = self
                .descs
                .get(&d.shard_id)
                .is_none_or(|old| (old.ring_ver, old.conf_ver) <= (d.ring_ver, d.conf_ver));
            if !newer {
                continue;
            }
            if let Some(l) = &route.leader {
                let addr = self.addr_of(l.node_id, &l.addr);
                if !addr.is_empty() {
                    self.leaders.insert(d.shard_id, addr);
                }
            }
            self.ranges.insert_descriptor(d);
            self.descs.insert(d.shard_id, d.clone());
        }
        addrs.retain(|a| !a.is_empty());
        addrs
    }

    /// A node's address: as the routing table lists the node, else as recorded in a
    /// descriptor or hint (which may name an address the node no longer uses).
    pub(crate) fn node_addr(&self, node: u64, recorded: &str) -> String {
        self.addr_of(node, recorded)
    }

    fn addr_of(&self, node: u64, recorded: &str) -> String {
        self.nodes
            .get(&node)
            .cloned()
            .unwrap_or_else(|| recorded.to_string())
    }

    /// The shard owning hash `h`, if known.
    pub(crate) fn shard_for_hash(&self, h: u64) -> Option<u64> {
        self.ranges.shard_for_hash(h).map(|s| s.0)
    }

    /// Every data shard known, ascending.
    pub(crate) fn shards(&self) -> Vec<u64> {
        self.ranges.shards().into_iter().map(|s| s.0).collect()
    }

    /// `(conf_ver, ring_ver)` of a shard's cached descriptor (zeros: unknown, which
    /// skips the server's check).
    pub(crate) fn epoch(&self, shard: u64) -> (u64, u64) {
        self.descs
            .get(&shard)
            .map(|d| (d.conf_ver, d.ring_ver))
            .unwrap_or_default()
    }

    /// Where to send a request for `shard` on attempt `attempt`: the believed leader,
    /// else the shard's replicas in turn (None: nothing known).
    pub(crate) fn target(&self, shard: u64, attempt: u32) -> Option<String> {
        if let Some(a) = self.leaders.get(&shard) {
            return Some(a.clone());
        }
        let d = self.descs.get(&shard)?;
        let n = d.replicas.len().max(1);
        let r = d.replicas.get(attempt as usize % n)?;
        Some(self.addr_of(r.node_id, &r.addr)).filter(|a| !a.is_empty())
    }

    /// Every replica of `shard` with an address, as `(address, read weight)` in
    /// descriptor order; a node whose weight the table does not show yet (no
    /// heartbeat to this meta leader) counts as the default weight.
    pub(crate) fn replicas(&self, shard: u64) -> Vec<(String, u32)> {
        let Some(d) = self.descs.get(&shard) else {
            return Vec::new();
        };
        d.replicas
            .iter()
            .map(|r| {
                let w = self
                    .weights
                    .get(&r.node_id)
                    .copied()
                    .unwrap_or(DEFAULT_READ_WEIGHT);
                (self.addr_of(r.node_id, &r.addr), w)
            })
            .filter(|(a, _)| !a.is_empty())
            .collect()
    }

    /// Records that `addr` answered for (or leads) `shard`.
    pub(crate) fn set_leader(&mut self, shard: u64, addr: &str) {
        self.leaders.insert(shard, addr.to_string());
    }

    /// The believed leader of `shard`.
    pub(crate) fn leader(&self, shard: u64) -> Option<String> {
        self.leaders.get(&shard).cloned()
    }

    /// Forgets the believed leader of `shard` (the next attempts rotate).
    pub(crate) fn forget_leader(&mut self, shard: u64) {
        self.leaders.remove(&shard);
    }

    /// Every shard's descriptor with its believed leader, by shard id.
    pub(crate) fn routes(&self) -> Vec<(ShardDescriptor, Option<String>)> {
        let mut out: Vec<_> = self
            .descs
            .values()
            .map(|d| (d.clone(), self.leaders.get(&d.shard_id).cloned()))
            .collect();
        out.sort_by_key(|(d, _)| d.shard_id);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{HashRange, NodeInfo, Replica, ReplicaInfo};

    fn desc(shard: u64, ring_ver: u64, arcs: &[(u64, u64)]) -> ShardDescriptor {
        ShardDescriptor {
            shard_id: shard,
            replicas: (1..=3)
                .map(|n| Replica {
                    replica_id: n,
                    node_id: n,
                    addr: format!("old-{n}:1"),
                    ..Default::default()
                })
                .collect(),
            conf_ver: 1,
            ring_ver,
            arcs: arcs.iter().map(|&(lo, hi)| HashRange { lo, hi }).collect(),
            ..Default::default()
        }
    }

    fn route(d: ShardDescriptor, leader_node: Option<u64>) -> ShardRoute {
        ShardRoute {
            leader: leader_node.map(|n| ReplicaInfo {
                replica_id: n,
                node_id: n,
                addr: format!("old-{n}:1"),
            }),
            descriptor: Some(d),
            leader_term: 1,
        }
    }

    #[test]
    fn a_stale_epoch_answer_moves_keys_to_the_new_shard_without_a_refresh() {
        let mut r = Routing::default();
        r.learn_table(&RoutingTable {
            shards: vec![route(desc(1, 1, &[(0, u64::MAX)]), Some(1))],
            nodes: (1..=3)
                .map(|n| NodeInfo {
                    node_id: n,
                    addr: format!("node-{n}:7000"),
                    state: 1,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
        assert_eq!(r.shard_for_hash(500), Some(1));
        assert_eq!(
            r.target(1, 0).as_deref(),
            Some("node-1:7000"),
            "the node table's address wins"
        );
        // The answer of a split: the parent's new descriptor and the child's.
        r.learn_routes(&[
            route(desc(1, 2, &[(0, 99)]), Some(1)),
            route(desc(7, 2, &[(100, u64::MAX)]), Some(2)),
        ]);
        assert_eq!(r.shard_for_hash(50), Some(1));
        assert_eq!(r.shard_for_hash(500), Some(7));
        assert_eq!(r.epoch(7), (1, 2));
        assert_eq!(r.target(7, 0).as_deref(), Some("node-2:7000"));
        assert_eq!(r.shards(), vec![1, 7]);
        // A late copy of the old parent descriptor changes nothing.
        r.learn_routes(&[route(desc(1, 1, &[(0, u64::MAX)]), Some(3))]);
        assert_eq!(r.shard_for_hash(500), Some(7));
        assert_eq!(r.target(1, 0).as_deref(), Some("node-1:7000"));
    }

    #[test]
    fn without_a_leader_requests_rotate_over_the_replicas() {
        let mut r = Routing::default();
        r.learn_routes(&[route(desc(1, 1, &[(0, u64::MAX)]), None)]);
        let targets: Vec<String> = (0..3).filter_map(|a| r.target(1, a)).collect();
        assert_eq!(targets, vec!["old-1:1", "old-2:1", "old-3:1"]);
        r.set_leader(1, "x:1");
        assert_eq!(r.target(1, 2).as_deref(), Some("x:1"));
        r.forget_leader(1);
        assert_eq!(r.target(1, 2).as_deref(), Some("old-3:1"));
        assert_eq!(r.target(9, 0), None);
    }
}
