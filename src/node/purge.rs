//! Leader-driven TTL purge: expired records are invisible from the moment they
//! expire (every read and every command judges expiry by its own time); this task
//! reclaims their space. Each shard leader periodically scans its ranges for expired
//! records and proposes a `PurgeCommand` naming each with its version, so a record
//! rewritten in the meantime is kept, and every replica deletes the same keys (an
//! expired conversation or thread takes all its messages or checkpoints with it).

use crate::fsm::read::View;
use crate::node::ctx::NodeCtx;
use crate::proto::{context_command::Op, raft_command, ContextCommand, PurgeCommand};
use crate::raft::handle::PeerHandle;
use crate::types::{ShardId, META_SHARD};
use crate::util::now_ms;
use std::collections::HashSet;
use std::sync::Arc;

/// Most keys one purge command names; more wait for the next round.
pub(crate) const PURGE_BATCH: usize = 1_000;

/// Starts the node's purge loop (runs until the node stops).
pub(crate) fn spawn_purger(ctx: Arc<NodeCtx>) {
    let tracker = ctx.tracker.clone();
    tracker.spawn(async move {
        // Shards whose last scan saw no record with an expiry.
        let mut quiet: HashSet<ShardId> = HashSet::new();
        loop {
            // Read each round: the cluster's settings may have changed it.
            let interval = ctx.config().context.purge_interval;
            tokio::select! {
                _ = ctx.cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            for peer in ctx.peers() {
                if !peer.epoch.leading() || peer.shard == META_SHARD {
                    continue;
                }
                if !ctx.purge.take(peer.shard) && quiet.contains(&peer.shard) {
                    continue;
                }
                match purge_shard(&ctx, &peer).await {
                    Ok(true) => {
                        quiet.remove(&peer.shard);
                    }
                    Ok(false) => {
                        quiet.insert(peer.shard);
                    }
                    Err(e) => {
                        tracing::debug!(shard = %peer.shard, error = %e, "purge round failed")
                    }
                }
            }
        }
    });
}

/// One purge round of a shard; whether the shard holds any record with an expiry.
async fn purge_shard(ctx: &Arc<NodeCtx>, peer: &PeerHandle) -> crate::error::Result<bool> {
    let ranges = ctx.data_ranges(peer.shard);
    let c = ctx.clone();
    let now = now_ms();
    let (keys, any_ttl) = ctx
        .tracker
        .spawn_blocking(move || View::new(&c.engine, now).expired(&ranges, PURGE_BATCH))
        .await
        .map_err(|e| crate::error::Error::Internal(format!("purge scan: {e}")))??;
    if keys.is_empty() {
        return Ok(any_ttl);
    }
    let n = keys.len();
    let op = Op::Purge(PurgeCommand { keys });
    peer.propose(
        Default::default(),
        now_ms(),
        None,
        raft_command::Cmd::Context(ContextCommand { op: Some(op) }),
    )
    .await?;
    tracing::debug!(shard = %peer.shard, keys = n, "purged expired records");
    Ok(true)
}
