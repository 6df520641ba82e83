//! Leader-driven TTL purge: expired records are invisible from the moment they
//! expire (every read and every command judges expiry by its own time); this task
//! reclaims their space. Each round reads the node's expiry index (`keys::EXPIRY_PREFIX`,
//! kept by the apply path in the batch that writes each record) from its oldest entry up
//! to now, so a round costs what has expired, not the size of the store. For each shard
//! led here it proposes a `PurgeCommand` naming each expired record with its version, so
//! a record rewritten in the meantime is kept, and every replica deletes the same keys
//! (an expired conversation or thread takes all its messages or checkpoints with it)
//! and their index entries. Entries of shards led elsewhere are left to their leaders.
//! A round reads at most `VISIT_MAX` entries; the next goes on after the last one read,
//! and starts again from the oldest once it reaches the present, so a large backlog in
//! one shard does not hold back the others.

use crate::error::{Error, Result};
use crate::fsm::read::View;
use crate::keys;
use crate::node::ctx::NodeCtx;
use crate::proto::{context_command::Op, raft_command, ContextCommand, PurgeCommand};
use crate::types::META_SHARD;
use crate::util::now_ms;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Most keys one purge command names; more wait for the next round.
pub(crate) const PURGE_BATCH: usize = 1_000;

/// Most index entries one round reads (those of shards led elsewhere count too).
const VISIT_MAX: usize = 100 * PURGE_BATCH;

/// Starts the node's purge loop (runs until the node stops).
pub(crate) fn spawn_purger(ctx: Arc<NodeCtx>) {
    let tracker = ctx.tracker.clone();
    tracker.spawn(async move {
        // Where the next round goes on in the index (None: from the oldest entry).
        let mut cursor: Option<Vec<u8>> = None;
        // Where the listing index sweep goes on (None: no pass under way).
        let mut sweep: Option<Vec<u8>> = None;
        loop {
            // Read each round: the cluster's settings may have changed it.
            let interval = ctx.config().context.purge_interval;
            tokio::select! {
                _ = ctx.cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            match purge_round(&ctx, cursor.take()).await {
                Ok(next) => cursor = next,
                Err(e) => tracing::debug!(error = %e, "purge round failed"),
            }
            // A pass under way goes on; a new one starts after a replica removal.
            let swept = sweep.is_some() || ctx.listing_sweep.swap(false, Ordering::AcqRel);
            if swept {
                match sweep_round(&ctx, sweep.take()).await {
                    Ok(next) => sweep = next,
                    Err(e) => {
                        tracing::debug!(error = %e, "listing index sweep failed");
                        ctx.listing_sweep.store(true, Ordering::Release);
                    }
                }
            }
        }
    });
}

/// Most listing index entries one sweep round reads.
const SWEEP_MAX: usize = 10 * PURGE_BATCH;

/// One round of the listing index sweep (`storage::index::sweep_listing_entries`)
/// from after `after`; where the next round goes on (None: the pass is complete).
async fn sweep_round(ctx: &Arc<NodeCtx>, after: Option<Vec<u8>>) -> Result<Option<Vec<u8>>> {
    let mut arcs: Vec<(u64, u64)> = ctx
        .peers()
        .iter()
        .flat_map(|p| p.epoch.arcs().to_vec())
        .collect();
    arcs.sort_unstable();
    // Merged, so the one arc that may hold a hash is the last starting at or below it
    // (a split's parent and child may both list an arc for a moment).
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(arcs.len());
    for (lo, hi) in arcs {
        match merged.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    let arcs = merged;
    let owns = move |h: u64| {
        let i = arcs.partition_point(|a| a.0 <= h);
        i.checked_sub(1)
            .and_then(|i| arcs.get(i))
            .is_some_and(|a| h <= a.1)
    };
    let c = ctx.clone();
    let (next, deleted) = ctx
        .tracker
        .spawn_blocking(move || {
            let _upkeep = c.engine.expiry_upkeep();
            crate::storage::index::sweep_listing_entries(
                &c.engine,
                after.as_deref(),
                SWEEP_MAX,
                owns,
            )
        })
        .await
        .map_err(|e| Error::Internal(format!("listing index sweep: {e}")))??;
    if deleted > 0 {
        tracing::debug!(deleted, "swept listing index entries of removed replicas");
    }
    Ok(next)
}

/// One purge round over every data shard led here, reading the index from after
/// `after`; where the next round goes on.
async fn purge_round(ctx: &Arc<NodeCtx>, after: Option<Vec<u8>>) -> Result<Option<Vec<u8>>> {
    let mut leaders = Vec::new();
    // (lo, hi, index in `leaders`) of every arc of a shard led here, by `lo`.
    let mut arcs: Vec<(u64, u64, usize)> = Vec::new();
    for peer in ctx.peers() {
        if !peer.epoch.leading() || peer.shard == META_SHARD {
            continue;
        }
        arcs.extend(
            peer.epoch
                .arcs()
                .iter()
                .map(|&(lo, hi)| (lo, hi, leaders.len())),
        );
        leaders.push(peer);
    }
    arcs.sort_unstable();
    let owner = move |h: u64| {
        let i = arcs.partition_point(|a| a.0 <= h);
        let (_, hi, shard) = *arcs.get(i.checked_sub(1)?)?;
        (h <= hi).then_some(shard)
    };
    let c = ctx.clone();
    let now = now_ms();
    let shards = leaders.len();
    let found = ctx
        .tracker
        .spawn_blocking(move || {
            let _upkeep = c.engine.expiry_upkeep();
            let found = View::new(&c.engine, now).expired_entries(
                after.as_deref(),
                VISIT_MAX,
                shards,
                PURGE_BATCH,
                owner,
            )?;
            // No record behind them in the view. A snapshot load, which may write
            // such an entry again, waits for this round; the apply path (a follower
            // catching up on old commands) does not, so each is checked against the
            // live data once more right before it goes.
            let mut batch = rocksdb::WriteBatch::default();
            let meta = c.engine.cf(keys::CF_META);
            for k in &found.stale {
                let Some((at, dk)) = keys::decode_expiry_key(k) else {
                    continue;
                };
                let live = c.engine.get(keys::CF_DATA, dk)?;
                let still =
                    live.is_some_and(|v| crate::storage::index::expires_at(&v).ok() == Some(at));
                if !still {
                    batch.delete_cf(meta, k);
                }
            }
            if !batch.is_empty() {
                c.engine.write(batch)?;
            }
            Ok::<_, Error>(found)
        })
        .await
        .map_err(|e| Error::Internal(format!("purge scan: {e}")))??;
    for (peer, expired) in leaders.iter().zip(found.keys) {
        if expired.is_empty() {
            continue;
        }
        let n = expired.len();
        let op = Op::Purge(PurgeCommand { keys: expired });
        let proposed = peer
            .propose(
                Default::default(),
                now_ms(),
                None,
                raft_command::Cmd::Context(ContextCommand { op: Some(op) }),
            )
            .await;
        match proposed {
            Ok(_) => tracing::debug!(shard = %peer.shard, keys = n, "purged expired records"),
            Err(e) => tracing::debug!(shard = %peer.shard, error = %e, "purge not applied"),
        }
    }
    Ok(found.next)
}
