//! The lease keeper's loop (`node::lease` holds the deadlines and says why they are
//! kept as they are): every `TICK`, it revokes through Raft each lease whose deadline
//! passed; every `DISCOVER`, it also loads the leases of the shards that this node
//! has started leading (a node may lead hundreds of shards, most without leases: the
//! expiry check visits only the shards it tracks, and finding new reigns, which
//! visits every replica, is rarer. A reign's first load coming up to `DISCOVER` later
//! only makes its leases last that much longer; a keepalive meanwhile is granted).

use crate::error::{Error, Result};
use crate::keys;
use crate::node::ctx::NodeCtx;
use crate::proto::{command_result, lease_command, raft_command, CommandResult, LeaseCommand};
use crate::raft::handle::PeerHandle;
use crate::types::META_SHARD;
use std::sync::Arc;
use std::time::Duration;

/// How often the keeper looks for expired leases.
const TICK: Duration = Duration::from_millis(50);

/// How often, in ticks, it looks for new reigns and leases to load again.
const DISCOVER: u32 = 10;

/// Starts the node's lease keeper loop (runs until the node stops).
pub(crate) fn spawn_lease_keeper(ctx: Arc<NodeCtx>) {
    let tracker = ctx.tracker.clone();
    tracker.spawn(async move {
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                _ = ctx.cancel.cancelled() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
            ticks = ticks.wrapping_add(1);
            if let Err(e) = keeper_round(&ctx, ticks.is_multiple_of(DISCOVER)).await {
                tracing::debug!(error = %e, "lease keeper round failed");
            }
        }
    });
}

/// One round: with `discover`, (re)load the shards whose reign is new or whose load
/// is old; then revoke what has expired.
async fn keeper_round(ctx: &Arc<NodeCtx>, discover: bool) -> Result<()> {
    if discover {
        // A failed load is tried again at the next discovery; expiry goes on.
        if let Err(e) = load_new(ctx).await {
            tracing::debug!(error = %e, "lease load failed");
        }
    }
    for (peer, reign, key) in ctx.leases.take_expired() {
        let ctx = ctx.clone();
        ctx.tracker.clone().spawn(async move {
            if peer.epoch.reign() != reign || !peer.epoch.leading() {
                // Another reign counts it now.
                ctx.leases.revoke_ended(peer.shard, &key, false);
                return;
            }
            let hash = keys::key_hash(&key);
            let cmd = raft_command::Cmd::Lease(LeaseCommand {
                op: Some(lease_command::Op::Revoke(key.clone().into())),
            });
            let r = peer
                .propose(Default::default(), crate::util::now_ms(), Some(hash), cmd)
                .await;
            // A split may have moved the lease to another shard, whose leader counts
            // it from now on (`NotOwned`), or it was revoked meanwhile (`[0, 0]`):
            // nothing expired here, and nothing to try again.
            let revoked = matches!(
                &r,
                Ok(CommandResult { result: Some(command_result::Result::Ok(o)) })
                    if o.per_op.first() == Some(&1)
            );
            match &r {
                Err(e) => {
                    tracing::debug!(shard = %peer.shard, error = %e, "lease revoke not applied")
                }
                Ok(_) if revoked => drop(ctx.metrics.leases_expired.inc()),
                Ok(_) => {}
            }
            ctx.leases.revoke_ended(peer.shard, &key, r.is_ok());
        });
    }
    Ok(())
}

/// Loads the leases of the shards led here whose reign is new or whose load is old
/// (only the led replicas' handles are copied: a node may host thousands).
async fn load_new(ctx: &Arc<NodeCtx>) -> Result<()> {
    let mut led: Vec<PeerHandle> = Vec::new();
    ctx.for_each_peer(|p| {
        if p.shard != META_SHARD && p.epoch.leading() {
            led.push(p.clone());
        }
    });
    let grace = {
        let raft = &ctx.config().raft;
        raft.tick_interval * u32::try_from(raft.election_ticks).unwrap_or(u32::MAX)
    };
    // Reign and applied index before the read, so what is read covers them.
    let due: Vec<_> = ctx
        .leases
        .to_load(&led)
        .into_iter()
        .map(|p| {
            let (reign, applied) = (p.epoch.reign(), p.epoch.applied());
            let ranges = ctx.data_ranges(p.shard);
            (p, reign, applied, ranges)
        })
        .collect();
    if due.is_empty() {
        return Ok(());
    }
    // One blocking hop for every shard due. A shard whose load fails is tried again
    // at the next discovery; it does not hold back the others.
    let c = ctx.clone();
    let loaded = ctx
        .tracker
        .spawn_blocking(move || {
            due.into_iter()
                .filter_map(|(p, reign, applied, ranges)| {
                    match crate::node::lease::load(&c.engine, &ranges) {
                        Ok(leases) => Some((p, reign, applied, leases)),
                        Err(e) => {
                            tracing::warn!(shard = %p.shard, error = %e, "loading the shard's leases failed");
                            None
                        }
                    }
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| Error::Internal(format!("lease load: {e}")))?;
    for (p, reign, applied, leases) in loaded {
        ctx.leases.loaded(&p, reign, applied, leases, grace);
    }
    Ok(())
}
