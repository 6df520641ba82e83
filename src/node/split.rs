//! Splitting shards: the `SplitShard` admin call and the automatic splitter.
//!
//! A split is driven by the parent's leader node: it picks the cut (the caller's, or
//! where the data divides in halves by size, or where the sampled writes do), asks the
//! meta shard for the new shard's id, and proposes a `Split` entry in the parent's log
//! (`raft::split`); applying it creates the new shard on every replica's node
//! (`fsm::split`). Storm guards, as in TiKV and CockroachDB: at most one automatic
//! split of a shard per `split.min-interval`, at most `split.max-concurrent-per-node`
//! splits in progress per node, none once the node hosts `split.max-shards-per-node`
//! shards.

use crate::error::{Error, Result};
use crate::load::{load_split_point, LoadSplit};
use crate::node::ctx::NodeCtx;
use crate::proto::{command_result, AllocShardRequest, NodeHeartbeat, ShardDescriptor, ShardRoute};
use crate::raft::handle::{await_reply, PeerHandle, PeerMsg};
use crate::raft::peer::{NO_LEADER, PROPOSAL_DROPPED};
use crate::ranges;
use crate::storage::split_check;
use crate::types::{ShardId, META_SHARD};
use crate::util::Backoff;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Splits `shard` at `at` (None: where its data divides in halves by size). Runs on
/// the node hosting the shard's leader; elsewhere the answer is `NotLeader` with the
/// leader this node knows. Returns the parent's and the new shard's descriptors.
pub(crate) async fn split_shard(
    ctx: &Arc<NodeCtx>,
    shard: ShardId,
    at: Option<u64>,
) -> Result<(ShardDescriptor, ShardDescriptor)> {
    if shard == META_SHARD {
        return Err(Error::invalid(
            "shard_id",
            "the meta shard owns no keys and is never split",
        ));
    }
    // A shard that has just been created (the new shard of a split listed a moment
    // ago) or is changing leaders has no leader for an election timeout or two; the
    // split waits that out instead of failing, since nothing has been proposed yet.
    let mut leaderless = Leaderless::new(ctx);
    let peer = leaderless.retry(|| leader_replica(ctx, shard)).await?;
    let hosted = ctx.peers().len() as u64;
    let cap = ctx.config().split.max_shards_per_node;
    if hosted >= cap {
        return Err(Error::FailedPrecondition(format!(
            "node {} hosts {hosted} shards, the most split.max-shards-per-node allows",
            ctx.node_id
        )));
    }
    let _slot = SplitSlot::take(ctx)?;
    let desc = peer.epoch.descriptor();
    let arcs = ranges::arcs_of(&desc);
    let at = match at {
        Some(h) => {
            if ranges::split_at(&arcs, h).is_none() {
                return Err(Error::invalid(
                    "at_hash",
                    format!(
                        "{h} is not strictly inside one of shard {shard}'s arcs {} (a cut must \
                         leave hashes on both sides and may not be an arc's first hash)",
                        show_arcs(&arcs)
                    ),
                ));
            }
            h
        }
        None => {
            let c = ctx.clone();
            let a = arcs.clone();
            let mid = ctx
                .tracker
                .spawn_blocking(move || split_check::size_midpoint(&c.engine, &a))
                .await
                .map_err(|e| Error::Internal(format!("split check: {e}")))??;
            mid.ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "shard {shard} has no point that divides its data: it is empty, or all \
                     of it is one partition key (a hash tag is never split)"
                ))
            })?
        }
    };
    let child = crate::meta::service::alloc_shard(
        ctx,
        AllocShardRequest {
            parent_shard: shard.0,
            parent_ring_ver: desc.ring_ver,
            parent_arcs: desc.arcs.clone(),
        },
    )
    .await?;
    // raft-rs may refuse the entry (a leader transfer in progress) or the replica lose
    // leadership without a successor yet: the split was then never appended, so
    // proposing it again under the same new-shard id is safe.
    let r = leaderless
        .retry(|| async {
            let (tx, rx) = oneshot::channel();
            peer.send(PeerMsg::Split {
                child: ShardId(child),
                at,
                expected_ring_ver: desc.ring_ver,
                reply: tx,
            })
            .await?;
            await_reply(shard, rx).await
        })
        .await?;
    match r.result {
        Some(command_result::Result::Split(done)) => match (done.parent, done.child) {
            (Some(p), Some(c)) => {
                tracing::info!(
                    parent = %shard,
                    child,
                    at,
                    parent_arcs = %show_arcs(&ranges::arcs_of(&p)),
                    child_arcs = %show_arcs(&ranges::arcs_of(&c)),
                    "split a shard"
                );
                Ok((p, c))
            }
            _ => Err(Error::Internal(
                "a split applied without descriptors".into(),
            )),
        },
        Some(command_result::Result::Refused(why)) => Err(Error::FailedPrecondition(format!(
            "the split of shard {shard} did not apply: {why}"
        ))),
        _ => Err(Error::Internal("unexpected result of a split".into())),
    }
}

/// The local replica of `shard` if it leads; otherwise the error that sends the
/// caller to the leader.
async fn leader_replica(ctx: &NodeCtx, shard: ShardId) -> Result<PeerHandle> {
    let Some(peer) = ctx.peer(shard) else {
        let route = match ctx.meta.route_of(shard) {
            Some(route) => Some(route),
            // This node's copy of the table may predate the shard (the new shard of a
            // split this node has not applied yet, listed a moment ago): only the meta
            // leader's table says it does not exist.
            None => fresh_route(ctx, shard).await?,
        };
        return Err(match route {
            Some(route) => match route.leader {
                Some(l) if l.node_id != ctx.node_id.0 => Error::NotLeader {
                    shard,
                    leader: Some(l),
                },
                _ => Error::ShardUnavailable {
                    shard,
                    reason: NO_LEADER_KNOWN.into(),
                    outcome_unknown: false,
                },
            },
            None => Error::NotFound(format!("shard {shard}")),
        });
    };
    let status = ctx.replica_status(&peer).await.ok_or(Error::Shutdown)?;
    if status.role != "leader" {
        let leader = peer.epoch.route().leader;
        return Err(match leader {
            Some(l) if l.node_id != ctx.node_id.0 => Error::NotLeader {
                shard,
                leader: Some(l),
            },
            _ => Error::ShardUnavailable {
                shard,
                reason: NO_LEADER.into(),
                outcome_unknown: false,
            },
        });
    }
    Ok(peer)
}

/// The routing entry of `shard` in the meta leader's table (None: no such shard).
async fn fresh_route(ctx: &NodeCtx, shard: ShardId) -> Result<Option<ShardRoute>> {
    let table = crate::meta::service::call_meta(ctx, NodeHeartbeat::default()).await?;
    Ok(table
        .shards
        .into_iter()
        .find(|r| r.descriptor.as_ref().map(|d| d.shard_id) == Some(shard.0)))
}

/// Whether `e` says a split was not proposed because the shard has no leader right
/// now (an election, a leader transfer), so trying again shortly is safe.
fn not_proposed(e: &Error) -> bool {
    matches!(e, Error::ShardUnavailable { reason, .. }
        if reason == NO_LEADER || reason == NO_LEADER_KNOWN || reason.starts_with(PROPOSAL_DROPPED))
}

/// Retries the steps of one split while the shard has no leader, for up to four
/// election timeouts in all.
struct Leaderless {
    until: tokio::time::Instant,
    backoff: Backoff,
}

impl Leaderless {
    fn new(ctx: &NodeCtx) -> Self {
        let tick = ctx.config().raft.tick_interval;
        let election = tick * ctx.config().raft.election_ticks as u32;
        Self {
            until: tokio::time::Instant::now() + election * 4,
            backoff: Backoff::new(tick, election),
        }
    }

    /// Runs `attempt` until it succeeds, fails for another reason than
    /// [`not_proposed`], or the time is up.
    async fn retry<T, F, Fut>(&mut self, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        loop {
            match attempt().await {
                Err(e) if not_proposed(&e) && tokio::time::Instant::now() < self.until => {
                    self.backoff.sleep_until_at_most(self.until).await
                }
                r => return r,
            }
        }
    }
}

/// The `ShardUnavailable` reason of a node that hosts no replica of a shard and knows
/// no leader for it.
const NO_LEADER_KNOWN: &str = "no leader known for this shard";

/// One of the node's `split.max-concurrent-per-node` split slots, given back on drop.
struct SplitSlot<'a>(&'a NodeCtx);

impl<'a> SplitSlot<'a> {
    fn take(ctx: &'a NodeCtx) -> Result<Self> {
        let max = ctx.config().split.max_concurrent_per_node;
        let taken = ctx
            .splits_in_progress
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(Self(ctx)),
            Err(n) => Err(Error::FailedPrecondition(format!(
                "{n} splits are in progress on node {}, the most \
                 split.max-concurrent-per-node allows; retry when one has finished",
                ctx.node_id
            ))),
        }
    }
}

impl Drop for SplitSlot<'_> {
    fn drop(&mut self) {
        self.0.splits_in_progress.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `[lo, hi]` ranges in hex, for logs and errors.
pub(crate) fn show_arcs(arcs: &[ranges::Arc]) -> String {
    let parts: Vec<String> = arcs
        .iter()
        .map(|(lo, hi)| format!("[{lo:#018x}, {hi:#018x}]"))
        .collect();
    parts.join(" ")
}

/// Starts the node's automatic splitter: every `split.check-interval`, for each shard
/// this node leads, it measures size and keys (recorded for `Cluster.Status`) and
/// splits the shard if it is over `split.max-size` or `split.max-keys` (at the size
/// midpoint), or over the write-load limits (where the sampled writes divide).
pub(crate) fn spawn_splitter(ctx: Arc<NodeCtx>) {
    let tracker = ctx.tracker.clone();
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(ctx.config().split.check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When each shard last split (or was judged too hot to split).
        let mut last: HashMap<ShardId, Instant> = HashMap::new();
        loop {
            tokio::select! {
                _ = ctx.cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            // Read each round: the cluster's settings may have changed them.
            let cfg = ctx.config().split.clone();
            for peer in ctx.peers() {
                if !peer.epoch.leading() || peer.shard == META_SHARD {
                    continue;
                }
                // A shard that needed no split, with nothing written since, still
                // does not (idle and hibernating shards are not measured again).
                let applied = peer.epoch.applied();
                if ctx.settled_at(peer.shard, applied) {
                    continue;
                }
                let Some(status) = ctx.replica_status(&peer).await else {
                    continue;
                };
                let arcs = peer.epoch.arcs().to_vec();
                let c = ctx.clone();
                let measured = ctx
                    .tracker
                    .spawn_blocking(move || {
                        let bytes = split_check::approximate_size(&c.engine, &arcs);
                        split_check::approximate_keys(&c.engine, &arcs).map(|k| (bytes, k))
                    })
                    .await;
                let (bytes, keys) = match measured {
                    Ok(Ok(m)) => m,
                    Ok(Err(e)) => {
                        tracing::debug!(shard = %peer.shard, error = %e, "split check failed");
                        continue;
                    }
                    Err(_) => continue,
                };
                ctx.record_size(peer.shard, bytes, keys);
                let by_size = bytes > cfg.max_size || keys > cfg.max_keys;
                let by_load = status.writes_per_sec > cfg.max_writes_per_sec as f64
                    || status.write_bytes_per_sec > cfg.max_write_bytes_per_sec as f64;
                if !by_size && !by_load {
                    ctx.record_settled(peer.shard, applied);
                }
                // A shard to split but held back (splits off, the storm guard) is
                // measured again next round.
                if !cfg.enabled
                    || last
                        .get(&peer.shard)
                        .is_some_and(|t| t.elapsed() < cfg.min_interval)
                {
                    continue;
                }
                let at = if by_size {
                    None
                } else if by_load {
                    match status.hot_hash {
                        Some(h) => {
                            tracing::warn!(
                                shard = %peer.shard,
                                hash = format!("{h:#018x}"),
                                writes_per_sec = status.writes_per_sec,
                                "hot partition key: one hash tag takes most of the shard's writes \
                                 and cannot be split"
                            );
                            last.insert(peer.shard, Instant::now());
                            continue;
                        }
                        None => match peer_load_point(&peer).await {
                            Some(h) => Some(h),
                            None => continue,
                        },
                    }
                } else {
                    continue;
                };
                last.insert(peer.shard, Instant::now());
                let why = if by_size { "size" } else { "load" };
                match split_shard(&ctx, peer.shard, at).await {
                    Ok((_, child)) => tracing::info!(
                        shard = %peer.shard,
                        child = child.shard_id,
                        bytes,
                        keys,
                        writes_per_sec = status.writes_per_sec,
                        "split by {why}"
                    ),
                    Err(e) => tracing::info!(shard = %peer.shard, error = %e, "no split by {why}"),
                }
            }
        }
    });
}

/// Where the sampled writes of the shard's last load window divide in halves.
async fn peer_load_point(peer: &PeerHandle) -> Option<u64> {
    let (tx, rx) = oneshot::channel();
    peer.send(PeerMsg::LoadSamples(tx)).await.ok()?;
    let samples = rx.await.ok()?;
    match load_split_point(&samples) {
        LoadSplit::At(h) if ranges::split_at(&peer.epoch.arcs(), h).is_some() => Some(h),
        _ => None,
    }
}
