//! A graceful stop (SIGTERM): before a node closes, it stops being ready and hands the
//! leadership of every shard it leads to another voter, so clients are redirected to
//! a live leader at once instead of waiting out an election timeout on each shard.
//!
//! Order, as etcd's `Stop` → `TransferLeadership`:
//! 1. mark the node stopping: `/readyz` and gRPC health turn NOT_SERVING, and the
//!    next heartbeat (sent at once) tells the placement driver, which then moves no
//!    replica or leadership here (the node counts as disconnected, not as down);
//! 2. for each shard led here, ask raft-rs to transfer leadership to the voter on
//!    another node whose log matches the leader's furthest (voters on nodes not
//!    stopping too first, then caught-up ones),
//!    re-asking now and then (a transfer raft-rs aborted, or a leadership that came
//!    back), until no shard is led here or the drain timeout passes;
//! 3. the caller then shuts the node down as before.
//!
//! A shard with no other voter (one replica) keeps its leader: nothing can take over.

use crate::node::ctx::NodeCtx;
use crate::proto::{ReplicaRole, ShardStatus};
use crate::raft::handle::PeerMsg;
use crate::types::{NodeId, ShardId};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How often the drain looks at which shards are still led here.
const POLL: Duration = Duration::from_millis(20);

/// How long a transfer gets before it is asked for again (raft-rs aborts one that did
/// not finish within an election timeout).
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// What a drain did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Shards this node led when the drain began.
    pub led: Vec<u64>,
    /// Shards it still led when the drain ended (timeout, or no voter to take over).
    pub still_led: Vec<u64>,
}

/// Marks the node stopping and hands its leaderships away, waiting at most `timeout`.
pub(crate) async fn drain(ctx: &NodeCtx, timeout: Duration) -> DrainReport {
    ctx.stopping.store(true, Ordering::Relaxed);
    ctx.meta.wake();
    let deadline = Instant::now() + timeout;
    let mut asked: HashMap<u64, Instant> = HashMap::new();
    let mut report = DrainReport::default();
    let mut first = true;
    loop {
        let status = ctx.status().await;
        let led: Vec<&ShardStatus> = status
            .shards
            .iter()
            .filter(|s| s.role == "leader")
            .collect();
        let ids: Vec<u64> = led.iter().map(|s| shard_of(s)).collect();
        if first {
            report.led = ids.clone();
            first = false;
        }
        let now = Instant::now();
        let stopping = stopping_nodes(ctx);
        let movable: Vec<(u64, NodeId)> = led
            .iter()
            .filter_map(|s| successor(ctx.node_id, s, &stopping).map(|n| (shard_of(s), n)))
            .collect();
        if movable.is_empty() || now >= deadline {
            report.still_led = ids;
            return report;
        }
        for (shard, to) in movable {
            if asked.get(&shard).is_some_and(|t| now < *t + RETRY_AFTER) {
                continue;
            }
            asked.insert(shard, now);
            let Some(peer) = ctx.peer(ShardId(shard)) else {
                continue;
            };
            let (tx, _rx) = oneshot::channel();
            if !peer.try_send(PeerMsg::TransferLeader(to, tx)) {
                // The replica's queue is full; the next pass asks again.
                asked.remove(&shard);
            }
            tracing::info!(shard, to = %to, "stopping: handing leadership away");
        }
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(now))).await;
    }
}

fn shard_of(s: &ShardStatus) -> u64 {
    s.descriptor.as_ref().map_or(0, |d| d.shard_id)
}

/// The nodes the meta shard last reported stopping: draining too, they decline a
/// transfer (`raft::peer`), and one asked for would hold the shard's writes until it
/// lapses.
fn stopping_nodes(ctx: &NodeCtx) -> HashSet<u64> {
    ctx.meta
        .cached
        .read()
        .as_ref()
        .map(|t| {
            t.nodes
                .iter()
                .filter(|n| n.stats.as_ref().is_some_and(|s| s.stopping))
                .map(|n| n.node_id)
                .collect()
        })
        .unwrap_or_default()
}

/// The voter on another node best placed to lead `s` next: one not `stopping` first,
/// then caught up, then the furthest log, then the lowest replica id.
fn successor(me: NodeId, s: &ShardStatus, stopping: &HashSet<u64>) -> Option<NodeId> {
    let desc = s.descriptor.as_ref()?;
    desc.replicas
        .iter()
        .filter(|r| r.node_id != me.0 && r.role == ReplicaRole::Voter as i32)
        .max_by_key(|r| {
            (
                !stopping.contains(&r.node_id),
                s.caught_up.contains(&r.replica_id),
                s.progress.get(&r.replica_id).copied().unwrap_or(0),
                std::cmp::Reverse(r.replica_id),
            )
        })
        .map(|r| NodeId(r.node_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Replica, ShardDescriptor};

    fn status(
        replicas: &[(u64, u64, ReplicaRole)],
        caught_up: &[u64],
        progress: &[(u64, u64)],
    ) -> ShardStatus {
        ShardStatus {
            descriptor: Some(ShardDescriptor {
                shard_id: 7,
                replicas: replicas
                    .iter()
                    .map(|(id, node, role)| Replica {
                        replica_id: *id,
                        node_id: *node,
                        role: *role as i32,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            caught_up: caught_up.to_vec(),
            progress: progress.iter().copied().collect(),
            role: "leader".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_successor_is_a_caught_up_voter_elsewhere_with_the_furthest_log() {
        use ReplicaRole::{Learner, Voter};
        let me = NodeId(1);
        let none = HashSet::new();
        // Replica 4 (a learner) is furthest but cannot lead; 2 is behind and not
        // caught up; 3 is caught up.
        let s = status(
            &[(1, 1, Voter), (2, 2, Voter), (3, 3, Voter), (4, 4, Learner)],
            &[1, 3],
            &[(1, 100), (2, 90), (3, 99), (4, 100)],
        );
        assert_eq!(successor(me, &s, &none), Some(NodeId(3)));
        // Both caught up: the furthest log wins; equal logs: the lowest replica id.
        let s = status(
            &[(1, 1, Voter), (2, 2, Voter), (3, 3, Voter)],
            &[1, 2, 3],
            &[(2, 99), (3, 100)],
        );
        assert_eq!(successor(me, &s, &none), Some(NodeId(3)));
        let s = status(
            &[(1, 1, Voter), (2, 2, Voter), (3, 3, Voter)],
            &[1, 2, 3],
            &[(2, 100), (3, 100)],
        );
        assert_eq!(successor(me, &s, &none), Some(NodeId(2)));
        // None caught up: still the furthest voter (raft-rs catches it up first).
        let s = status(&[(1, 1, Voter), (2, 2, Voter)], &[1], &[(2, 5)]);
        assert_eq!(successor(me, &s, &none), Some(NodeId(2)));
        // A voter on a stopping node comes last, however far its log.
        let s = status(
            &[(1, 1, Voter), (2, 2, Voter), (3, 3, Voter)],
            &[1, 2, 3],
            &[(2, 90), (3, 100)],
        );
        assert_eq!(successor(me, &s, &HashSet::from([3])), Some(NodeId(2)));
        assert_eq!(successor(me, &s, &HashSet::from([2, 3])), Some(NodeId(3)));
        // A single voter: nobody to hand over to.
        let s = status(&[(1, 1, Voter), (4, 4, Learner)], &[1, 4], &[(4, 100)]);
        assert_eq!(successor(me, &s, &none), None);
    }
}
