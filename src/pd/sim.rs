//! A simulation of the placement driver (pure logic, no I/O, like raft-rs's own
//! tests): 100 nodes, 10,000 shards, random node failures, recoveries and joins. Each round the
//! driver plans, and the simulated cluster carries out one step per operator (a
//! learner added this round is caught up and promoted by the next). Checked every
//! round: never two operators on one shard; a removal never leaves a shard without a
//! quorum of live, caught-up voters; and at the end, the cluster converges (every shard
//! has its voters on live serving nodes, replica counts within the tolerance) and stays
//! put: no operator for many rounds, so no oscillation.

use super::*;
use crate::proto::Replica;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const NODES: u64 = 100;
const SHARDS: u64 = 10_000;
/// Nodes that exist from the start; the rest join during the run.
const FIRST: u64 = 80;

struct Sim {
    view: View,
    active: BTreeMap<u64, Operator>,
    /// Learners added last round: caught up and promoted at the start of the next.
    catching_up: Vec<(u64, u64)>,
    rng: StdRng,
    steps: usize,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut view = View::default();
        for n in 1..=NODES {
            let mut v = tests::node(Live::Up, Admin::Serving);
            if n > FIRST {
                // Not started yet: down and never a target until it joins.
                v.live = Live::Down;
                v.admin = Admin::Removed;
            }
            view.nodes.insert(n, v);
        }
        for id in 0..SHARDS {
            let mut placed: Vec<u64> = Vec::new();
            while placed.len() < 3 {
                let n = rng.random_range(1..=FIRST);
                if !placed.contains(&n) {
                    placed.push(n);
                }
            }
            view.shards.insert(id, tests::shard(id, &placed));
        }
        Self {
            view,
            active: BTreeMap::new(),
            catching_up: Vec::new(),
            rng,
            steps: 0,
        }
    }

    /// One round: promote last round's learners, plan, then one step per operator.
    fn round(&mut self, limits: &Limits) -> usize {
        for (shard, node) in std::mem::take(&mut self.catching_up) {
            let Some(s) = self.view.shards.get_mut(&shard) else {
                continue;
            };
            if let Some(r) = s.desc.replicas.iter_mut().find(|r| r.node_id == node) {
                r.role = ReplicaRole::Voter as i32;
                s.caught_up.insert(r.replica_id);
            }
        }
        let active: Vec<Operator> = self.active.values().cloned().collect();
        let (new, _) = plan(&self.view, &active, limits);
        for op in new {
            assert!(
                self.active.insert(op.shard, op.clone()).is_none(),
                "two operators on shard {}",
                op.shard
            );
        }
        let mut steps = 0;
        let ops: Vec<Operator> = self.active.values().cloned().collect();
        for op in ops {
            match next_step(&self.view, &op) {
                Next::Done | Next::Cancel(_) => {
                    self.active.remove(&op.shard);
                }
                Next::Wait => {}
                Next::Step(step) => {
                    steps += 1;
                    self.apply(op.shard, step);
                }
            }
        }
        self.steps += steps;
        steps + self.active.len()
    }

    fn apply(&mut self, shard: u64, step: Step) {
        let view = &self.view;
        let s = &view.shards[&shard];
        match step {
            Step::AddLearner(node) => {
                assert!(
                    view.nodes[&node].takes_replicas(0),
                    "target node {node} cannot take replicas"
                );
                assert!(!s.desc.replicas.iter().any(|r| r.node_id == node));
                let id = s
                    .desc
                    .replicas
                    .iter()
                    .map(|r| r.replica_id)
                    .max()
                    .unwrap_or(0)
                    + 1000;
                let s = self.view.shards.get_mut(&shard).expect("shard");
                s.desc.replicas.push(Replica {
                    replica_id: id,
                    node_id: node,
                    role: ReplicaRole::Learner as i32,
                    ..Default::default()
                });
                s.desc.conf_ver += 1;
                self.catching_up.push((shard, node));
            }
            Step::TransferLeader(node) => {
                let r = s
                    .desc
                    .replicas
                    .iter()
                    .find(|r| r.node_id == node)
                    .expect("target replica");
                assert_eq!(r.role, ReplicaRole::Voter as i32);
                assert!(
                    s.caught_up.contains(&r.replica_id),
                    "transfer to a lagging replica"
                );
                assert_eq!(view.nodes[&node].live, Live::Up);
                self.view.shards.get_mut(&shard).expect("shard").leader = Some(node);
            }
            Step::Remove(node) => {
                let r = s
                    .desc
                    .replicas
                    .iter()
                    .find(|r| r.node_id == node)
                    .expect("replica");
                if r.role == ReplicaRole::Voter as i32 {
                    // The quorum rule, judged independently of the driver's own check.
                    let left: Vec<&Replica> = s
                        .desc
                        .replicas
                        .iter()
                        .filter(|x| x.node_id != node && x.role == ReplicaRole::Voter as i32)
                        .collect();
                    let healthy = left
                        .iter()
                        .filter(|x| {
                            view.nodes[&x.node_id].live == Live::Up
                                && s.caught_up.contains(&x.replica_id)
                        })
                        .count();
                    assert!(
                        healthy * 2 > left.len(),
                        "removing node {node}'s voter from shard {shard} breaks quorum"
                    );
                    assert_ne!(s.leader, Some(node), "removing the leader");
                }
                let s = self.view.shards.get_mut(&shard).expect("shard");
                s.desc.replicas.retain(|x| x.node_id != node);
                s.desc.conf_ver += 1;
            }
        }
    }

    /// Whether every shard has exactly `replicas` voters, all on live serving nodes.
    fn healthy(&self, replicas: usize) -> bool {
        self.view.shards.values().all(|s| {
            s.desc.replicas.len() == replicas
                && s.desc.replicas.iter().all(|r| {
                    r.role == ReplicaRole::Voter as i32 && {
                        let n = &self.view.nodes[&r.node_id];
                        n.live == Live::Up && n.admin == Admin::Serving
                    }
                })
        })
    }

    /// A leader for every shard whose leader is gone: the lowest live voter (what an
    /// election does).
    fn elect(&mut self) {
        let nodes = self.view.nodes.clone();
        for s in self.view.shards.values_mut() {
            let ok = s.leader.is_some_and(|l| {
                nodes[&l].live == Live::Up && s.desc.replicas.iter().any(|r| r.node_id == l)
            });
            if !ok {
                s.leader = s
                    .desc
                    .replicas
                    .iter()
                    .filter(|r| {
                        r.role == ReplicaRole::Voter as i32 && nodes[&r.node_id].live == Live::Up
                    })
                    .map(|r| r.node_id)
                    .min();
            }
        }
    }
}

#[test]
fn the_driver_converges_without_oscillation_and_never_breaks_quorum() {
    let limits = Limits {
        max_replica_ops: 256,
        max_leader_ops: 64,
        max_snapshots_per_node: 4,
        ..Limits::default()
    };
    let mut sim = Sim::new(7);
    let mut failures = 0;
    let mut joins = 0;
    let mut recoveries = 0;
    // Chaos: for 300 rounds, every 10 rounds a node fails (at most one down at a
    // time, so no shard loses two voters), the failed node comes back (empty by then,
    // or nearly), or a new node joins.
    for round in 0..300 {
        if round % 10 == 0 {
            let down = sim
                .view
                .nodes
                .iter()
                .find(|(_, n)| n.live == Live::Down && n.admin == Admin::Serving)
                .map(|(id, _)| *id);
            let joining = sim
                .view
                .nodes
                .iter()
                .find(|(_, n)| n.admin == Admin::Removed)
                .map(|(id, _)| *id);
            match (sim.rng.random_range(0..3), down, joining) {
                (0, None, _) | (1, None, None) => {
                    let victim = sim.rng.random_range(1..=FIRST);
                    sim.view.nodes.get_mut(&victim).expect("node").live = Live::Down;
                    failures += 1;
                }
                (1, Some(id), _) | (0, Some(id), None) => {
                    sim.view.nodes.get_mut(&id).expect("node").live = Live::Up;
                    recoveries += 1;
                }
                (_, _, Some(id)) => {
                    let n = sim.view.nodes.get_mut(&id).expect("node");
                    n.live = Live::Up;
                    n.admin = Admin::Serving;
                    joins += 1;
                }
                _ => {}
            }
        }
        sim.elect();
        sim.round(&limits);
    }
    assert!(
        failures > 2 && recoveries > 0 && joins > 2,
        "{failures} failures, {recoveries} recoveries, {joins} joins"
    );
    // Calm: the driver must converge, then stay put.
    let mut quiet = 0;
    let mut rounds = 0;
    while quiet < 50 {
        rounds += 1;
        assert!(rounds < 1_000, "no convergence after {rounds} calm rounds");
        sim.elect();
        if sim.round(&limits) == 0 {
            quiet += 1;
        } else {
            quiet = 0;
        }
    }
    assert!(
        sim.healthy(limits.replicas),
        "every shard has 3 voters on live serving nodes"
    );
    let counts: Vec<usize> = sim
        .view
        .replica_counts()
        .into_iter()
        .filter(|(id, _)| sim.view.nodes[id].live == Live::Up)
        .map(|(_, c)| c)
        .collect();
    let (min, max) = (
        counts.iter().min().copied().unwrap_or(0),
        counts.iter().max().copied().unwrap_or(0),
    );
    assert!(
        max - min <= limits.balance_tolerance + 1,
        "replica counts {min}..{max} after {} steps",
        sim.steps
    );
    eprintln!(
        "simulation: {failures} failures, {recoveries} recoveries, {joins} joins, {} steps, converged in {rounds} calm rounds; replicas per live node {min}..{max}",
        sim.steps
    );
}
