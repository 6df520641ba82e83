//! The placement driver's decisions, as pure logic (no I/O; the runtime that feeds it
//! and carries its steps out is `meta::pd`, on the meta leader).
//!
//! The driver looks at a [`View`] of the cluster — every node with its liveness, admin
//! state and load, every shard with its descriptor, leader and replicas' progress — and
//! decides, shard by shard, what one membership step to take next. It is level
//! triggered: an [`Operator`] records the intent (replace the replica on node A by one
//! on node B) and which step it is at, but every step's completion is read off the
//! descriptors, so a new meta leader that derives operators afresh from the same
//! descriptors continues where the old one stopped.
//!
//! Order and safety (each is tested here and in `sim`):
//! - checkers in priority order: replace replicas on `Down` nodes; replace replicas on
//!   `Draining` nodes; add voters below the replication factor; remove extras; then
//!   the schedulers: balance replicas (by count, with a tolerance band so moves do not
//!   ping-pong; bytes choose which shard moves and break ties between targets — see
//!   `balance_replicas` for why not bytes first) and leaders (by count weighted by
//!   write load, a move only when the source stays above the destination);
//! - one operator per shard at a time; at most `max_replica_ops` membership operators
//!   and `max_leader_ops` leader transfers cluster-wide, and at most
//!   `max_snapshots_per_node` snapshots being received per node, repair first;
//! - never remove a voter unless the live, caught-up voters left form a quorum; no
//!   change to a shard that has lost quorum; never target a node that is down,
//!   draining, removed, full or already hosts the shard; with no node to target, the
//!   shard is reported under-replicated instead of retried in a loop.

#[cfg(test)]
mod sim;

use crate::proto::{ReplicaRole, ShardDescriptor};
use std::collections::{BTreeMap, BTreeSet};

/// How a node is doing, as the meta leader judges from heartbeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Live {
    /// Heartbeats arrive.
    Up,
    /// A few heartbeats missed: not a target, but its replicas are not replaced yet.
    Disconnected,
    /// No heartbeat for `pd.node-down-after`: its replicas are replaced.
    Down,
}

/// What the operator wants of a node (replicated in the meta shard).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Admin {
    /// Takes replicas.
    Serving,
    /// Its replicas and leaders move away; it takes none.
    Draining,
    /// Drained and out of the cluster; its id is never reused.
    Removed,
}

/// One node.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NodeView {
    /// Liveness.
    pub(crate) live: Live,
    /// Admin state.
    pub(crate) admin: Admin,
    /// Bytes its data takes on disk (0: unknown).
    pub(crate) used_bytes: u64,
    /// Bytes free on its disk (None: unknown).
    pub(crate) free_bytes: Option<u64>,
}

impl NodeView {
    /// Whether the node may receive a new replica.
    fn takes_replicas(&self, min_free: u64) -> bool {
        self.live == Live::Up
            && self.admin == Admin::Serving
            && self.free_bytes.is_none_or(|f| f >= min_free)
    }
}

/// One shard.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ShardView {
    /// Its descriptor as its leader last reported it.
    pub(crate) desc: ShardDescriptor,
    /// The node of its leader (None: unknown).
    pub(crate) leader: Option<u64>,
    /// Replica id → whether its log is caught up with the leader's and it answered
    /// recently (from the leader's report; the leader itself is always caught up).
    pub(crate) caught_up: BTreeSet<u64>,
    /// Approximate bytes.
    pub(crate) bytes: u64,
    /// Writes per second.
    pub(crate) write_rate: f64,
}

/// The cluster as the driver sees it.
#[derive(Clone, Debug, Default)]
pub(crate) struct View {
    /// Node id → node.
    pub(crate) nodes: BTreeMap<u64, NodeView>,
    /// Shard id → shard (the meta shard included).
    pub(crate) shards: BTreeMap<u64, ShardView>,
}

/// Tuning of the driver.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    /// Voters each shard should have.
    pub(crate) replicas: usize,
    /// Membership operators (adds and removes) in flight cluster-wide.
    pub(crate) max_replica_ops: usize,
    /// Leader transfers in flight cluster-wide.
    pub(crate) max_leader_ops: usize,
    /// Replicas being added (snapshots being received) per node.
    pub(crate) max_snapshots_per_node: usize,
    /// A node with less free space takes no replica.
    pub(crate) min_free_bytes: u64,
    /// Balance replicas only when the busiest node holds more than the least busy
    /// one by more than this many replicas' worth (in count), so moves do not
    /// ping-pong.
    pub(crate) balance_tolerance: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            replicas: 3,
            max_replica_ops: 4,
            max_leader_ops: 4,
            max_snapshots_per_node: 1,
            min_free_bytes: 1 << 30,
            balance_tolerance: 1,
        }
    }
}

/// Why an operator exists, highest priority first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Why {
    /// A replica is on a down node.
    Repair,
    /// A replica is on a draining node.
    Drain,
    /// Fewer voters than the replication factor.
    AddVoter,
    /// More voters than the replication factor.
    RemoveExtra,
    /// Replicas are unevenly spread.
    BalanceReplicas,
    /// Leaders are unevenly spread.
    BalanceLeaders,
}

/// An intent on one shard: which replica goes, which comes, and whose leadership
/// moves. Its steps are derived from the shard's descriptor each time.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Operator {
    /// The shard.
    pub(crate) shard: u64,
    /// Why.
    pub(crate) why: Why,
    /// The node whose replica is removed (None: none).
    pub(crate) from: Option<u64>,
    /// The node that gets a new replica (None: none).
    pub(crate) to: Option<u64>,
    /// For a leader move: the node that should lead.
    pub(crate) lead: Option<u64>,
}

/// One action on a shard, carried out through its leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Add a learner on the node (promoted by the leader once caught up).
    AddLearner(u64),
    /// Move leadership to the node (a caught-up voter).
    TransferLeader(u64),
    /// Remove the replica on the node.
    Remove(u64),
}

/// What an operator needs now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Take this step (at the shard's current `conf_ver`).
    Step(Step),
    /// Wait (a learner catching up, a step in flight).
    Wait,
    /// Finished.
    Done,
    /// No longer possible or needed (the shard changed under it, a target went
    /// away); drop it.
    Cancel(String),
}

fn voters(d: &ShardDescriptor) -> impl Iterator<Item = &crate::proto::Replica> {
    d.replicas
        .iter()
        .filter(|r| r.role == ReplicaRole::Voter as i32)
}

fn hosts(d: &ShardDescriptor, node: u64) -> Option<&crate::proto::Replica> {
    d.replicas.iter().find(|r| r.node_id == node)
}

impl View {
    fn node(&self, id: u64) -> Option<&NodeView> {
        self.nodes.get(&id)
    }

    fn is_up(&self, id: u64) -> bool {
        self.node(id).is_some_and(|n| n.live == Live::Up)
    }

    /// Whether a shard can commit: a majority of its voters are up.
    pub(crate) fn has_quorum(&self, s: &ShardView) -> bool {
        let all: Vec<u64> = voters(&s.desc).map(|r| r.node_id).collect();
        let up = all.iter().filter(|n| self.is_up(**n)).count();
        up * 2 > all.len()
    }

    /// Whether removing the replica on `node` leaves a quorum of live, caught-up
    /// voters among the voters that remain.
    pub(crate) fn removal_is_safe(&self, s: &ShardView, node: u64) -> bool {
        let remaining: Vec<&crate::proto::Replica> =
            voters(&s.desc).filter(|r| r.node_id != node).collect();
        let healthy = remaining
            .iter()
            .filter(|r| self.is_up(r.node_id) && s.caught_up.contains(&r.replica_id))
            .count();
        !remaining.is_empty() && healthy * 2 > remaining.len()
    }

    /// Replicas hosted per node (nodes with none included).
    pub(crate) fn replica_counts(&self) -> BTreeMap<u64, usize> {
        let mut out: BTreeMap<u64, usize> = self.nodes.keys().map(|n| (*n, 0)).collect();
        for s in self.shards.values() {
            for r in &s.desc.replicas {
                *out.entry(r.node_id).or_default() += 1;
            }
        }
        out
    }

    /// The mean write rate of the shards.
    fn average_write_rate(&self) -> f64 {
        let n = self.shards.len().max(1) as f64;
        self.shards.values().map(|s| s.write_rate).sum::<f64>() / n
    }

    /// Leaders per node, each weighted by its shard's share of the write load (a
    /// shard with average load weighs 1).
    fn leader_weights(&self) -> BTreeMap<u64, f64> {
        let avg = self.average_write_rate();
        let mut out: BTreeMap<u64, f64> = self.nodes.keys().map(|n| (*n, 0.0)).collect();
        for s in self.shards.values() {
            if let Some(l) = s.leader {
                *out.entry(l).or_default() += leader_weight(s, avg);
            }
        }
        out
    }

    /// The shards each node hosts, smallest (then lowest id) first: where the replica
    /// balancer looks for the shard to move off a node.
    fn hosted_smallest_first(&self) -> BTreeMap<u64, Vec<u64>> {
        let mut out: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
        for (id, s) in &self.shards {
            for r in &s.desc.replicas {
                out.entry(r.node_id).or_default().push((s.bytes, *id));
            }
        }
        out.into_iter()
            .map(|(n, mut v)| {
                v.sort_unstable();
                (n, v.into_iter().map(|(_, id)| id).collect())
            })
            .collect()
    }
}

/// One leadership's weight: 1 for a shard with the average write rate, between 0.5
/// (idle) and more for busier ones.
fn leader_weight(s: &ShardView, avg: f64) -> f64 {
    if avg > 0.0 {
        0.5 + 0.5 * s.write_rate / avg
    } else {
        1.0
    }
}

/// Decides the next step of `op` from the shard's current state.
pub(crate) fn next_step(view: &View, op: &Operator) -> Next {
    let Some(s) = view.shards.get(&op.shard) else {
        return Next::Cancel("the shard is gone".into());
    };
    if !view.has_quorum(s) {
        return Next::Cancel("the shard lost quorum".into());
    }
    let d = &s.desc;
    if let Some(to) = op.to {
        match hosts(d, to) {
            None => {
                if !view.node(to).is_some_and(|n| n.takes_replicas(0)) {
                    return Next::Cancel(format!("node {to} no longer takes replicas"));
                }
                return Next::Step(Step::AddLearner(to));
            }
            Some(r) if r.role != ReplicaRole::Voter as i32 => {
                // A learner on a node that died or is being drained never catches up
                // (or should not): drop the operator so the repair checker removes it.
                if !view.node(to).is_some_and(|n| n.takes_replicas(0)) {
                    return Next::Cancel(format!("node {to} no longer takes replicas"));
                }
                return Next::Wait;
            }
            Some(_) => {}
        }
    }
    if let Some(from) = op.from {
        if hosts(d, from).is_some() {
            if s.leader == Some(from) {
                return match leader_target(view, s, from) {
                    Some(t) => Next::Step(Step::TransferLeader(t)),
                    None => Next::Wait,
                };
            }
            if !view.removal_is_safe(s, from) {
                return Next::Wait;
            }
            return Next::Step(Step::Remove(from));
        }
    }
    if let Some(lead) = op.lead {
        if s.leader != Some(lead) {
            if hosts(d, lead).is_none_or(|r| {
                r.role != ReplicaRole::Voter as i32 || !s.caught_up.contains(&r.replica_id)
            }) || !view.is_up(lead)
            {
                return Next::Cancel(format!("node {lead} cannot lead now"));
            }
            return Next::Step(Step::TransferLeader(lead));
        }
    }
    Next::Done
}

/// A caught-up, live voter other than `away` to hand leadership to: the one on the
/// node leading the fewest shards.
fn leader_target(view: &View, s: &ShardView, away: u64) -> Option<u64> {
    let weights = view.leader_weights();
    voters(&s.desc)
        .filter(|r| r.node_id != away && view.is_up(r.node_id))
        .filter(|r| s.caught_up.contains(&r.replica_id))
        .filter(|r| {
            view.node(r.node_id)
                .is_some_and(|n| n.admin == Admin::Serving)
        })
        .min_by(|a, b| {
            let wa = weights.get(&a.node_id).copied().unwrap_or(0.0);
            let wb = weights.get(&b.node_id).copied().unwrap_or(0.0);
            wa.total_cmp(&wb).then(a.node_id.cmp(&b.node_id))
        })
        .map(|r| r.node_id)
}

/// What a planning round found besides operators.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Report {
    /// Shards with fewer voters on live serving nodes than the replication factor
    /// and no node to add one on.
    pub(crate) under_replicated: Vec<u64>,
    /// Shards without a quorum of live voters: nothing is changed on them.
    pub(crate) unavailable: Vec<u64>,
}

/// New operators for shards that have none, within the limits, highest priority
/// first. `active` are the operators in flight.
pub(crate) fn plan(view: &View, active: &[Operator], limits: &Limits) -> (Vec<Operator>, Report) {
    let mut report = Report::default();
    let busy: BTreeSet<u64> = active.iter().map(|o| o.shard).collect();
    let mut replica_ops = active
        .iter()
        .filter(|o| o.why != Why::BalanceLeaders)
        .count();
    let mut leader_ops = active
        .iter()
        .filter(|o| o.why == Why::BalanceLeaders)
        .count();
    // Replicas being added per node: each is a snapshot being received.
    let mut incoming: BTreeMap<u64, usize> = BTreeMap::new();
    for o in active {
        if let Some(to) = o.to {
            *incoming.entry(to).or_default() += 1;
        }
    }
    let mut counts = view.replica_counts();
    let mut candidates: Vec<Operator> = Vec::new();
    for (id, s) in &view.shards {
        if busy.contains(id) {
            continue;
        }
        if !view.has_quorum(s) {
            report.unavailable.push(*id);
            continue;
        }
        if let Some(op) = check(view, *id, s, limits, &counts) {
            candidates.push(op);
        } else if under_replicated(view, s, limits) {
            report.under_replicated.push(*id);
        }
    }
    candidates.sort_by_key(|o| (o.why, o.shard));
    let mut out = Vec::new();
    let mut taken: BTreeSet<u64> = BTreeSet::new();
    for op in candidates {
        if taken.contains(&op.shard) || replica_ops >= limits.max_replica_ops {
            continue;
        }
        let Some(to) = op.to else {
            // A removal: no snapshot involved.
            replica_ops += 1;
            taken.insert(op.shard);
            out.push(op);
            continue;
        };
        if incoming.get(&to).copied().unwrap_or(0) >= limits.max_snapshots_per_node {
            continue;
        }
        *incoming.entry(to).or_default() += 1;
        *counts.entry(to).or_default() += 1;
        replica_ops += 1;
        taken.insert(op.shard);
        out.push(op);
    }
    // Schedulers run only when no repair, drain or replication work is pending.
    let checker_work = out
        .iter()
        .chain(active)
        .any(|o| o.why < Why::BalanceReplicas);
    if !checker_work {
        // Replica counts as they will be once the moves in flight have finished.
        let mut counts = view.replica_counts();
        // The descriptors already show the steps taken (a learner added on `to`, the
        // replica on `from` removed): count only the part still to come.
        for o in active.iter().filter(|o| o.why == Why::BalanceReplicas) {
            let Some(s) = view.shards.get(&o.shard) else {
                continue;
            };
            if let Some(f) = o.from.filter(|f| hosts(&s.desc, *f).is_some()) {
                let c = counts.entry(f).or_default();
                *c = c.saturating_sub(1);
            }
            if let Some(t) = o.to.filter(|t| hosts(&s.desc, *t).is_none()) {
                *counts.entry(t).or_default() += 1;
            }
        }
        let hosted = view.hosted_smallest_first();
        while replica_ops < limits.max_replica_ops {
            let Some(op) =
                balance_replicas(view, limits, &busy, &taken, &incoming, &counts, &hosted)
            else {
                break;
            };
            if let (Some(f), Some(t)) = (op.from, op.to) {
                *counts.entry(f).or_default() -= 1;
                *counts.entry(t).or_default() += 1;
                *incoming.entry(t).or_default() += 1;
            }
            replica_ops += 1;
            taken.insert(op.shard);
            out.push(op);
        }
        // Leader weights as they will be once each planned transfer is done, so one
        // round does not pile every transfer onto the same node.
        let mut weights = view.leader_weights();
        while leader_ops < limits.max_leader_ops {
            let Some((op, w)) = balance_leaders(view, &busy, &taken, &weights) else {
                break;
            };
            if let (Some(src), Some(dst)) =
                (view.shards.get(&op.shard).and_then(|s| s.leader), op.lead)
            {
                *weights.entry(src).or_default() -= w;
                *weights.entry(dst).or_default() += w;
            }
            leader_ops += 1;
            taken.insert(op.shard);
            out.push(op);
        }
    }
    (out, report)
}

/// Whether a shard has fewer voters on live serving nodes than it should.
fn under_replicated(view: &View, s: &ShardView, limits: &Limits) -> bool {
    let good = voters(&s.desc)
        .filter(|r| {
            view.node(r.node_id)
                .is_some_and(|n| n.live != Live::Down && n.admin == Admin::Serving)
        })
        .count();
    good < limits.replicas
}

/// The best node for a new replica of `d`: takes replicas, does not host the shard,
/// fewest replicas (then least bytes, then lowest id).
fn target(
    view: &View,
    d: &ShardDescriptor,
    limits: &Limits,
    counts: &BTreeMap<u64, usize>,
) -> Option<u64> {
    view.nodes
        .iter()
        .filter(|(id, n)| n.takes_replicas(limits.min_free_bytes) && hosts(d, **id).is_none())
        .min_by_key(|(id, n)| (counts.get(id).copied().unwrap_or(0), n.used_bytes, **id))
        .map(|(id, _)| *id)
}

/// The checkers, in priority order, for one shard without an operator.
fn check(
    view: &View,
    id: u64,
    s: &ShardView,
    limits: &Limits,
    counts: &BTreeMap<u64, usize>,
) -> Option<Operator> {
    let d = &s.desc;
    let node = |n: u64| view.node(n);
    // A learner on a node that takes replicas is the target of a move a previous
    // meta leader started: adopt it rather than add another.
    let adopt = d
        .replicas
        .iter()
        .find(|r| {
            r.role != ReplicaRole::Voter as i32
                && node(r.node_id).is_some_and(|n| n.takes_replicas(0))
        })
        .map(|r| r.node_id);
    let target =
        |view: &View, d: &ShardDescriptor, limits: &Limits, counts: &BTreeMap<u64, usize>| {
            adopt.or_else(|| target(view, d, limits, counts))
        };
    let replace = |why: Why, from: u64| {
        target(view, d, limits, counts).map(|to| Operator {
            shard: id,
            why,
            from: Some(from),
            to: Some(to),
            lead: None,
        })
    };
    // A learner left behind (its add was abandoned, or it sits on a node that went
    // down or is draining): remove it first, it blocks other changes.
    if let Some(r) = d.replicas.iter().find(|r| {
        r.role != ReplicaRole::Voter as i32
            && node(r.node_id).is_none_or(|n| n.live == Live::Down || n.admin != Admin::Serving)
    }) {
        return Some(Operator {
            shard: id,
            why: Why::Repair,
            from: Some(r.node_id),
            to: None,
            lead: None,
        });
    }
    let nvoters = voters(d).count();
    let down = |n: &NodeView| n.live == Live::Down || n.admin == Admin::Removed;
    let draining = |n: &NodeView| n.admin == Admin::Draining;
    for (why, bad) in [
        (Why::Repair, &down as &dyn Fn(&NodeView) -> bool),
        (Why::Drain, &draining),
    ] {
        if let Some(r) = voters(d).find(|r| node(r.node_id).is_none_or(bad)) {
            if nvoters > limits.replicas {
                // One extra already: remove this one.
                return Some(Operator {
                    shard: id,
                    why,
                    from: Some(r.node_id),
                    to: None,
                    lead: None,
                });
            }
            if let Some(op) = replace(why, r.node_id) {
                return Some(op);
            }
        }
    }
    if nvoters < limits.replicas {
        return target(view, d, limits, counts).map(|to| Operator {
            shard: id,
            why: Why::AddVoter,
            from: None,
            to: Some(to),
            lead: None,
        });
    }
    if nvoters > limits.replicas {
        // The voter on the busiest node goes (never the only leader candidate).
        let from = voters(d)
            .max_by_key(|r| (counts.get(&r.node_id).copied().unwrap_or(0), r.node_id))
            .map(|r| r.node_id)?;
        return Some(Operator {
            shard: id,
            why: Why::RemoveExtra,
            from: Some(from),
            to: None,
            lead: None,
        });
    }
    None
}

/// Moves one replica from the node holding the most to the one holding the fewest
/// (by `counts`, which include the moves already planned), when they differ by more
/// than the tolerance. Counts rather than bytes: RocksDB's sizes are approximate
/// (flushed data only), so byte-balanced nodes can hold very different numbers of
/// replicas; bytes break ties when choosing which shard moves (the smallest) and where
/// new replicas go.
fn balance_replicas(
    view: &View,
    limits: &Limits,
    busy: &BTreeSet<u64>,
    taken: &BTreeSet<u64>,
    incoming: &BTreeMap<u64, usize>,
    counts: &BTreeMap<u64, usize>,
    hosted: &BTreeMap<u64, Vec<u64>>,
) -> Option<Operator> {
    let eligible: Vec<(u64, usize)> = counts
        .iter()
        .filter(|(id, _)| {
            view.node(**id)
                .is_some_and(|n| n.takes_replicas(limits.min_free_bytes))
        })
        .filter(|(id, _)| incoming.get(id).copied().unwrap_or(0) < limits.max_snapshots_per_node)
        .map(|(id, c)| (*id, *c))
        .collect();
    let (dst, low) = eligible.iter().min_by_key(|(id, c)| (*c, *id)).copied()?;
    let (src, high) = counts
        .iter()
        .filter(|(id, _)| {
            view.node(**id)
                .is_some_and(|n| n.admin == Admin::Serving && n.live == Live::Up)
        })
        .max_by_key(|(id, c)| (**c, std::cmp::Reverse(**id)))
        .map(|(id, c)| (*id, *c))?;
    if high <= low + limits.balance_tolerance {
        return None;
    }
    // The smallest shard on the source that the destination lacks.
    let shard = hosted.get(&src)?.iter().find(|id| {
        **id != 0
            && !busy.contains(id)
            && !taken.contains(id)
            && view.shards.get(id).is_some_and(|s| {
                hosts(&s.desc, dst).is_none()
                    && voters(&s.desc).count() == limits.replicas
                    && view.has_quorum(s)
            })
    })?;
    Some(Operator {
        shard: *shard,
        why: Why::BalanceReplicas,
        from: Some(src),
        to: Some(dst),
        lead: None,
    })
}

/// Moves one leadership from the node with the most (weighted) leaders to a voter on
/// the node with the fewest, when they differ by more than one shard's worth. Returns
/// the operator and the weight of the leadership it moves.
fn balance_leaders(
    view: &View,
    busy: &BTreeSet<u64>,
    taken: &BTreeSet<u64>,
    weights: &BTreeMap<u64, f64>,
) -> Option<(Operator, f64)> {
    let serving: BTreeMap<u64, f64> = weights
        .iter()
        .filter(|(id, _)| {
            view.node(**id)
                .is_some_and(|n| n.live == Live::Up && n.admin == Admin::Serving)
        })
        .map(|(id, w)| (*id, *w))
        .collect();
    let (src, high) = serving
        .iter()
        .map(|(n, w)| (*n, *w))
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))?;
    let avg = view.average_write_rate();
    let mut best: Option<(f64, u64, u64, f64)> = None;
    for (id, s) in &view.shards {
        // The meta shard's leadership stays put: a new meta leader waits a whole
        // `node-down-after` before it judges any node down.
        if *id == 0 || s.leader != Some(src) || busy.contains(id) || taken.contains(id) {
            continue;
        }
        let moved = leader_weight(s, avg);
        for r in voters(&s.desc) {
            if r.node_id == src || !s.caught_up.contains(&r.replica_id) {
                continue;
            }
            let Some(w) = serving.get(&r.node_id).copied() else {
                continue;
            };
            // Moving must leave the source above the destination: no ping-pong.
            if high - moved > w + moved && best.is_none_or(|(bw, _, _, _)| w < bw) {
                best = Some((w, *id, r.node_id, moved));
            }
        }
    }
    let (_, shard, lead, moved) = best?;
    Some((
        Operator {
            shard,
            why: Why::BalanceLeaders,
            from: None,
            to: None,
            lead: Some(lead),
        },
        moved,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Replica;

    pub(crate) fn node(live: Live, admin: Admin) -> NodeView {
        NodeView {
            live,
            admin,
            used_bytes: 0,
            free_bytes: None,
        }
    }

    /// A shard with voters on `nodes` (replica id = node id), all caught up, led by
    /// the first.
    pub(crate) fn shard(id: u64, nodes: &[u64]) -> ShardView {
        ShardView {
            desc: ShardDescriptor {
                shard_id: id,
                replicas: nodes
                    .iter()
                    .map(|n| Replica {
                        replica_id: *n,
                        node_id: *n,
                        role: ReplicaRole::Voter as i32,
                        ..Default::default()
                    })
                    .collect(),
                conf_ver: 1,
                ..Default::default()
            },
            leader: nodes.first().copied(),
            caught_up: nodes.iter().copied().collect(),
            bytes: 0,
            write_rate: 0.0,
        }
    }

    fn view(n: u64, shards: &[(u64, &[u64])]) -> View {
        View {
            nodes: (1..=n)
                .map(|i| (i, node(Live::Up, Admin::Serving)))
                .collect(),
            shards: shards
                .iter()
                .map(|(id, ns)| (*id, shard(*id, ns)))
                .collect(),
        }
    }

    #[test]
    fn a_replica_on_a_down_node_is_replaced_before_anything_else() {
        let mut v = view(5, &[(1, &[1, 2, 3]), (2, &[3, 4, 5])]);
        v.nodes.get_mut(&3).expect("node").live = Live::Down;
        let (ops, _) = plan(&v, &[], &Limits::default());
        assert_eq!(ops.len(), 2);
        for op in &ops {
            assert_eq!((op.why, op.from), (Why::Repair, Some(3)));
            let to = op.to.expect("a target");
            assert!(!v.shards[&op.shard]
                .desc
                .replicas
                .iter()
                .any(|r| r.node_id == to));
            assert_eq!(v.nodes[&to].live, Live::Up);
        }
        assert_ne!(ops[0].to, ops[1].to, "one snapshot per receiving node");
    }

    #[test]
    fn a_disconnected_node_is_not_replaced_yet_nor_targeted() {
        let mut v = view(4, &[(1, &[1, 2, 3])]);
        v.nodes.get_mut(&3).expect("node").live = Live::Disconnected;
        v.nodes.get_mut(&4).expect("node").live = Live::Disconnected;
        let (ops, report) = plan(&v, &[], &Limits::default());
        assert!(ops.iter().all(|o| o.why >= Why::BalanceReplicas), "{ops:?}");
        assert!(ops.iter().all(|o| o.to != Some(4)), "{ops:?}");
        assert!(report.unavailable.is_empty());
    }

    #[test]
    fn a_move_whose_target_dies_while_its_learner_catches_up_is_cancelled_then_repaired() {
        let mut v = view(4, &[(1, &[1, 2, 3])]);
        let op = Operator {
            shard: 1,
            why: Why::BalanceReplicas,
            from: Some(1),
            to: Some(4),
            lead: None,
        };
        let s = v.shards.get_mut(&1).expect("shard");
        s.desc.replicas.push(Replica {
            replica_id: 40,
            node_id: 4,
            role: ReplicaRole::Learner as i32,
            ..Default::default()
        });
        assert_eq!(next_step(&v, &op), Next::Wait);
        v.nodes.get_mut(&4).expect("node").live = Live::Down;
        assert!(matches!(next_step(&v, &op), Next::Cancel(_)));
        // With the operator gone, the checker removes the stranded learner.
        let (ops, _) = plan(&v, &[], &Limits::default());
        assert_eq!(ops.len(), 1);
        assert_eq!(
            (ops[0].why, ops[0].from, ops[0].to),
            (Why::Repair, Some(4), None)
        );
    }

    #[test]
    fn no_target_means_under_replicated_not_a_loop() {
        let mut v = view(3, &[(1, &[1, 2, 3])]);
        v.nodes.get_mut(&3).expect("node").live = Live::Down;
        let (ops, report) = plan(&v, &[], &Limits::default());
        assert!(ops.is_empty(), "{ops:?}");
        assert_eq!(report.under_replicated, vec![1]);
    }

    #[test]
    fn a_shard_without_quorum_is_left_alone() {
        let mut v = view(5, &[(1, &[1, 2, 3])]);
        v.nodes.get_mut(&2).expect("node").live = Live::Down;
        v.nodes.get_mut(&3).expect("node").live = Live::Down;
        let (ops, report) = plan(&v, &[], &Limits::default());
        assert!(ops.is_empty(), "{ops:?}");
        assert_eq!(report.unavailable, vec![1]);
        let op = Operator {
            shard: 1,
            why: Why::Repair,
            from: Some(2),
            to: Some(4),
            lead: None,
        };
        assert!(matches!(next_step(&v, &op), Next::Cancel(_)));
    }

    #[test]
    fn a_replace_adds_first_waits_for_the_voter_moves_leadership_then_removes() {
        let mut v = view(4, &[(1, &[1, 2, 3])]);
        v.nodes.get_mut(&1).expect("node").admin = Admin::Draining;
        let (ops, _) = plan(&v, &[], &Limits::default());
        let op = ops[0].clone();
        assert_eq!((op.why, op.from, op.to), (Why::Drain, Some(1), Some(4)));
        assert_eq!(next_step(&v, &op), Next::Step(Step::AddLearner(4)));
        let s = v.shards.get_mut(&1).expect("shard");
        s.desc.replicas.push(Replica {
            replica_id: 4,
            node_id: 4,
            role: ReplicaRole::Learner as i32,
            ..Default::default()
        });
        assert_eq!(
            next_step(&v, &op),
            Next::Wait,
            "the learner catches up first"
        );
        let s = v.shards.get_mut(&1).expect("shard");
        s.desc.replicas[3].role = ReplicaRole::Voter as i32;
        s.caught_up.insert(4);
        match next_step(&v, &op) {
            Next::Step(Step::TransferLeader(t)) => assert!(t != 1 && t != 0),
            other => panic!("expected a transfer away from the draining leader, got {other:?}"),
        }
        v.shards.get_mut(&1).expect("shard").leader = Some(2);
        assert_eq!(next_step(&v, &op), Next::Step(Step::Remove(1)));
        v.shards.get_mut(&1).expect("shard").desc.replicas.remove(0);
        assert_eq!(next_step(&v, &op), Next::Done);
    }

    #[test]
    fn a_voter_is_not_removed_unless_caught_up_live_voters_keep_a_quorum() {
        let mut v = view(4, &[(1, &[1, 2, 3, 4])]);
        // Node 4's replica is extra, but only 1 of the others is caught up.
        let s = v.shards.get_mut(&1).expect("shard");
        s.caught_up = [1, 4].into_iter().collect();
        let op = Operator {
            shard: 1,
            why: Why::RemoveExtra,
            from: Some(4),
            to: None,
            lead: None,
        };
        assert_eq!(next_step(&v, &op), Next::Wait);
        v.shards.get_mut(&1).expect("shard").caught_up.insert(2);
        assert_eq!(next_step(&v, &op), Next::Step(Step::Remove(4)));
    }

    #[test]
    fn new_nodes_get_replicas_and_balance_stops_within_the_tolerance() {
        let shards: Vec<(u64, &[u64])> = (1..=6).map(|i| (i, &[1u64, 2, 3][..])).collect();
        let mut v = view(5, &shards);
        let mut moved = 0;
        for _ in 0..40 {
            let (ops, _) = plan(&v, &[], &Limits::default());
            let Some(op) = ops.into_iter().find(|o| o.why == Why::BalanceReplicas) else {
                break;
            };
            // Carry the move out at once.
            let s = v.shards.get_mut(&op.shard).expect("shard");
            let from = op.from.expect("from");
            let to = op.to.expect("to");
            let r = s
                .desc
                .replicas
                .iter_mut()
                .find(|r| r.node_id == from)
                .expect("source");
            r.node_id = to;
            r.replica_id = to;
            s.caught_up = s.desc.replicas.iter().map(|r| r.replica_id).collect();
            s.leader = s.desc.replicas.first().map(|r| r.node_id);
            moved += 1;
        }
        let counts = v.replica_counts();
        let (min, max) = (
            counts.values().min().copied().unwrap_or(0),
            counts.values().max().copied().unwrap_or(0),
        );
        assert!(max - min <= 1, "{counts:?} after {moved} moves");
        assert!(moved >= 6, "new nodes got replicas: {counts:?}");
    }
}
