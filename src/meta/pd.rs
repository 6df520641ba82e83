//! The placement driver's runtime: a task on every node that acts only while the node
//! leads the meta shard. Each round (`pd.interval`) it builds a [`View`] from the meta
//! state (descriptors, leader hints, admin states) and what heartbeats reported
//! (liveness, load, which replicas are caught up), advances the operators in flight
//! one step each, and asks the planner (`crate::pd`) for new ones.
//!
//! Invariants:
//! - operators live only in this leader's memory; a new meta leader starts with none
//!   and the planner derives the same work again from the descriptors (a learner left
//!   by a half-done move is adopted as the target, not added twice);
//! - every step is an ordinary admin call to the shard's leader carrying the
//!   `conf_ver` it was planned at (refused on a mismatch), and a voter removal is also
//!   refused by the leader unless, by its own progress, the voters left keep a
//!   caught-up quorum: the driver's view may lag, the leader's check does not;
//! - a step is re-sent only when the shard has not moved on within `STEP_RETRY`;
//! - paused (`ctxctl pd pause`, replicated in the meta shard), the driver takes no
//!   step at all; operators in flight resume where they are.

use crate::error::{Error, Result};
use crate::meta::service::{ask_meta_leader, forwarded, judged_nodes, meta_leader, watch_from};
use crate::node::ctx::NodeCtx;
use crate::pd::{self, Admin, Limits, Live, Next, NodeView, Operator, ShardView, Step, View, Why};
use crate::proto::cluster_client::ClusterClient;
use crate::proto::{
    AddMemberRequest, MetaState, NodeAdmin, NodeState, PdOperator, PdStatusResponse,
    RemoveMemberRequest, TransferLeaderRequest,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A step is sent again only if the shard has not moved on for this long.
const STEP_RETRY: Duration = Duration::from_secs(3);
/// How long one step's call may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// One operator in flight.
struct Active {
    op: Operator,
    started: Instant,
    /// The last step sent, at which `conf_ver` and leader, and when.
    sent: Option<(Step, u64, Option<u64>, Instant)>,
    /// What it waits on, for `ctxctl pd status`.
    doing: String,
}

/// The driver's state on the meta leader.
#[derive(Default)]
struct Driver {
    /// The meta term the operators belong to.
    term: u64,
    active: BTreeMap<u64, Active>,
    finished: u64,
    cancelled: u64,
}

/// Starts the driver's loop (it idles while this node does not lead the meta shard).
pub(crate) fn spawn_driver(ctx: Arc<NodeCtx>) {
    if !ctx.config().pd.enabled {
        return;
    }
    let tracker = ctx.tracker.clone();
    tracker.spawn(async move {
        let mut driver = Driver::default();
        loop {
            tokio::select! {
                _ = ctx.cancel.cancelled() => return,
                _ = tokio::time::sleep(ctx.config().pd.interval) => {}
            }
            driver.round(&ctx).await;
        }
    });
}

/// The driver's tuning from the config.
fn limits(ctx: &NodeCtx) -> Limits {
    let cfg = ctx.config();
    let c = &cfg.pd;
    let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    Limits {
        replicas: n(c.replicas),
        max_replica_ops: n(c.max_replica_ops),
        max_leader_ops: n(c.max_leader_ops),
        max_snapshots_per_node: n(c.max_snapshots_per_node),
        min_free_bytes: c.min_free_bytes,
        balance_tolerance: n(c.balance_tolerance),
    }
}

/// The cluster as the meta leader sees it now.
fn view(ctx: &NodeCtx, state: &MetaState) -> View {
    let nodes = judged_nodes(ctx, state)
        .into_iter()
        .map(|n| {
            let stats = n.stats.unwrap_or_default();
            let live = match NodeState::try_from(n.state) {
                // A stopping node (a restart, most likely) is no target, but its
                // replicas are not replaced for it either: as if disconnected.
                Ok(NodeState::Up) if stats.stopping => Live::Disconnected,
                Ok(NodeState::Up) => Live::Up,
                Ok(NodeState::Down) => Live::Down,
                _ => Live::Disconnected,
            };
            let admin = match NodeAdmin::try_from(n.admin) {
                Ok(NodeAdmin::Draining) => Admin::Draining,
                Ok(NodeAdmin::Removed) => Admin::Removed,
                _ => Admin::Serving,
            };
            let view = NodeView {
                live,
                admin,
                used_bytes: stats.used_bytes,
                free_bytes: (stats.free_bytes > 0).then_some(stats.free_bytes),
            };
            (n.node_id, view)
        })
        .collect();
    let live = ctx.meta.liveness.lock();
    let shards = state
        .shards
        .iter()
        .filter_map(|route| {
            // A provisional descriptor (`conf_ver` 0: a split's new shard, listed from
            // its parent's report) waits for the shard's own report.
            let desc = route.descriptor.clone().filter(|d| d.conf_ver > 0)?;
            let leader = route.leader.as_ref().map(|l| l.node_id);
            let load = live
                .loads
                .get(&desc.shard_id)
                .filter(|l| l.conf_ver == desc.conf_ver);
            // Without a report at this membership only the leader counts as caught up:
            // removals and transfers wait for the next report.
            let caught_up = match load {
                Some(l) => l.caught_up.iter().copied().collect(),
                None => route.leader.iter().map(|l| l.replica_id).collect(),
            };
            let shard = ShardView {
                leader,
                caught_up,
                bytes: load.map_or(0, |l| l.approx_bytes),
                write_rate: load.map_or(0.0, |l| l.writes_per_sec),
                desc,
            };
            Some((shard.desc.shard_id, shard))
        })
        .collect();
    View { nodes, shards }
}

fn kind(why: Why) -> &'static str {
    match why {
        Why::Repair => "repair",
        Why::Drain => "drain",
        Why::AddVoter => "add-voter",
        Why::RemoveExtra => "remove-extra",
        Why::BalanceReplicas => "balance-replicas",
        Why::BalanceLeaders => "balance-leaders",
    }
}

fn describe(step: &Step) -> String {
    match step {
        Step::AddLearner(n) => format!("add a learner on node {n}"),
        Step::TransferLeader(n) => format!("move leadership to node {n}"),
        Step::Remove(n) => format!("remove the replica on node {n}"),
    }
}

impl Driver {
    async fn round(&mut self, ctx: &NodeCtx) {
        let term = match meta_leader(ctx).await {
            Ok((_, status)) => status.term,
            Err(_) => {
                // Not the meta leader (any more): the next one derives the work again.
                self.active.clear();
                *ctx.meta.pd_status.lock() = None;
                return;
            }
        };
        if term != self.term {
            *self = Driver {
                term,
                ..Default::default()
            };
        }
        watch_from(&mut ctx.meta.liveness.lock(), term);
        let Some(state) = ctx.meta.state() else {
            return;
        };
        let view = view(ctx, &state);
        let limits = limits(ctx);
        let mut report = pd::Report::default();
        if !state.pd_paused {
            let steps = self.advance(ctx, &view);
            let ops: Vec<Operator> = self.active.values().map(|a| a.op.clone()).collect();
            let (new, r) = pd::plan(&view, &ops, &limits);
            report = r;
            let mut steps = steps;
            for op in new {
                tracing::info!(
                    shard = op.shard,
                    kind = kind(op.why),
                    from = ?op.from,
                    to = ?op.to,
                    lead = ?op.lead,
                    "placement driver: new operator"
                );
                let shard = op.shard;
                let next = pd::next_step(&view, &op);
                self.active.insert(
                    shard,
                    Active {
                        op,
                        started: Instant::now(),
                        sent: None,
                        doing: "planned".into(),
                    },
                );
                steps.extend(self.step_of(&view, shard, next));
            }
            run_steps(ctx, steps).await;
        }
        self.publish(ctx, &state, &report);
    }

    /// Advances every operator in flight by what the view shows; returns the steps to
    /// send now.
    fn advance(&mut self, ctx: &NodeCtx, view: &View) -> Vec<(u64, Step, u64, String)> {
        let timeout = ctx.config().pd.operator_timeout;
        let mut steps = Vec::new();
        let shards: Vec<u64> = self.active.keys().copied().collect();
        for shard in shards {
            let Some(a) = self.active.get(&shard) else {
                continue;
            };
            if a.started.elapsed() > timeout {
                tracing::warn!(
                    shard,
                    kind = kind(a.op.why),
                    "placement driver: operator timed out"
                );
                self.active.remove(&shard);
                self.cancelled += 1;
                continue;
            }
            match pd::next_step(view, &a.op) {
                Next::Done => {
                    tracing::info!(
                        shard,
                        kind = kind(a.op.why),
                        "placement driver: operator finished"
                    );
                    self.active.remove(&shard);
                    self.finished += 1;
                }
                Next::Cancel(why) => {
                    tracing::info!(shard, kind = kind(a.op.why), %why, "placement driver: operator cancelled");
                    self.active.remove(&shard);
                    self.cancelled += 1;
                }
                next => steps.extend(self.step_of(view, shard, next)),
            }
        }
        steps
    }

    /// The step operator `shard` should send now, given what `pd::next_step` decided
    /// for it, if any (records it as sent).
    fn step_of(&mut self, view: &View, shard: u64, next: Next) -> Option<(u64, Step, u64, String)> {
        let s = view.shards.get(&shard)?;
        let a = self.active.get_mut(&shard)?;
        match next {
            Next::Step(step) => {
                let conf_ver = s.desc.conf_ver;
                let repeat = a.sent.as_ref().is_some_and(|(st, cv, l, at)| {
                    *st == step && *cv == conf_ver && *l == s.leader && at.elapsed() < STEP_RETRY
                });
                a.doing = describe(&step);
                if repeat {
                    return None;
                }
                a.sent = Some((step.clone(), conf_ver, s.leader, Instant::now()));
                let leader_addr = s.leader.and_then(|l| view_leader_addr(s, l))?;
                Some((shard, step, conf_ver, leader_addr))
            }
            Next::Wait => {
                a.doing = match a.op.to {
                    Some(to)
                        if s.desc.replicas.iter().any(|r| {
                            r.node_id == to && r.role != crate::proto::ReplicaRole::Voter as i32
                        }) =>
                    {
                        format!("learner on node {to} catching up")
                    }
                    _ => "waiting for caught-up voters".into(),
                };
                None
            }
            _ => None,
        }
    }

    /// Publishes this round for `ctxctl pd status`.
    fn publish(&self, ctx: &NodeCtx, state: &MetaState, report: &pd::Report) {
        let watched = ctx
            .meta
            .liveness
            .lock()
            .since
            .map(|s| s.elapsed())
            .unwrap_or_default();
        let status = PdStatusResponse {
            enabled: true,
            paused: state.pd_paused,
            meta_leader: ctx.node_id.0,
            operators: self
                .active
                .values()
                .map(|a| PdOperator {
                    shard_id: a.op.shard,
                    kind: kind(a.op.why).into(),
                    from_node: a.op.from.unwrap_or(0),
                    to_node: a.op.to.unwrap_or(0),
                    lead_node: a.op.lead.unwrap_or(0),
                    step: a.doing.clone(),
                    age_ms: a.started.elapsed().as_millis() as u64,
                })
                .collect(),
            under_replicated: report.under_replicated.clone(),
            unavailable: report.unavailable.clone(),
            finished: self.finished,
            cancelled: self.cancelled,
            nodes: Vec::new(),
            warming_up: watched < ctx.config().pd.node_down_after,
        };
        *ctx.meta.pd_status.lock() = Some(status);
    }
}

/// The address of the shard's leader on node `leader`, from its descriptor.
fn view_leader_addr(s: &ShardView, leader: u64) -> Option<String> {
    s.desc
        .replicas
        .iter()
        .find(|r| r.node_id == leader)
        .map(|r| r.addr.clone())
        .filter(|a| !a.is_empty())
}

/// Sends the steps to the shards' leaders, concurrently.
async fn run_steps(ctx: &NodeCtx, steps: Vec<(u64, Step, u64, String)>) {
    let calls = steps.into_iter().map(|(shard, step, conf_ver, addr)| async move {
        let what = describe(&step);
        let r = tokio::time::timeout(STEP_TIMEOUT, send_step(ctx, shard, step, conf_ver, &addr)).await;
        match r {
            Ok(Ok(())) => tracing::info!(shard, step = %what, conf_ver, "placement driver: step taken"),
            Ok(Err(e)) => tracing::info!(shard, step = %what, conf_ver, error = %e, "placement driver: step refused; retried with a fresh view"),
            Err(_) => tracing::info!(shard, step = %what, "placement driver: step timed out"),
        }
    });
    futures::future::join_all(calls).await;
}

async fn send_step(ctx: &NodeCtx, shard: u64, step: Step, conf_ver: u64, addr: &str) -> Result<()> {
    let ch = ctx.meta.channel(addr, STEP_TIMEOUT)?;
    let mut c = ClusterClient::new(ch);
    match step {
        Step::AddLearner(node) => {
            let node_addr = ctx
                .meta
                .state()
                .and_then(|s| {
                    s.nodes
                        .iter()
                        .find(|n| n.node_id == node)
                        .map(|n| n.addr.clone())
                })
                .ok_or_else(|| Error::invalid("node_id", format!("node {node} has no address")))?;
            c.add_member(AddMemberRequest {
                shard_id: Some(shard),
                node_id: node,
                addr: node_addr,
                expected_conf_ver: Some(conf_ver),
            })
            .await?;
        }
        Step::Remove(node) => {
            c.remove_member(RemoveMemberRequest {
                shard_id: Some(shard),
                node_id: node,
                expected_conf_ver: Some(conf_ver),
            })
            .await?;
        }
        Step::TransferLeader(node) => {
            c.transfer_leader(TransferLeaderRequest {
                shard_id: Some(shard),
                node_id: node,
            })
            .await?;
        }
    }
    Ok(())
}

/// `Cluster.PdStatus` on any node: answered by the meta leader (one hop at most).
pub(crate) async fn pd_status(ctx: &NodeCtx, forward: bool) -> Result<PdStatusResponse> {
    if !forward {
        return status(ctx).await;
    }
    ask_meta_leader(
        ctx,
        || status(ctx),
        |mut c| async move {
            Ok(c.pd_status(forwarded(crate::proto::PdStatusRequest {}))
                .await?
                .into_inner())
        },
    )
    .await
}

/// `Cluster.PdStatus` on the meta leader: the driver's last round, with every node's
/// liveness, admin state and load.
pub(crate) async fn status(ctx: &NodeCtx) -> Result<PdStatusResponse> {
    meta_leader(ctx).await?;
    let state = ctx.meta.state().unwrap_or_default();
    let mut out = ctx
        .meta
        .pd_status
        .lock()
        .clone()
        .unwrap_or(PdStatusResponse {
            enabled: ctx.config().pd.enabled,
            paused: state.pd_paused,
            meta_leader: ctx.node_id.0,
            ..Default::default()
        });
    out.paused = state.pd_paused;
    out.nodes = judged_nodes(ctx, &state);
    Ok(out)
}
