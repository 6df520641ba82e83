//! Watch streams shared by `Kv.Watch`, `AgentContext.WatchConversation` and
//! `WatchModels`: a replica's applied changes (`fsm::watch`) turned into a gRPC
//! response stream, one version per response (split only when very large), with
//! progress notices while the watched keys are quiet.

use crate::error::{Error, Result};
use crate::fsm::watch::Change;
use crate::node::ctx::NodeCtx;
use crate::proto::WatchMoved;
use crate::types::ShardId;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

/// Most events in one watch response; a version with more is sent in parts.
const MAX_EVENTS_PER_RESPONSE: usize = 4_096;
/// How often a watch whose keys are quiet is told how far the shard has gone.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A server stream of responses.
pub(crate) type RpcStream<T> =
    Pin<Box<dyn futures::Stream<Item = std::result::Result<T, Status>> + Send>>;

/// The next message a client sends on `inbound`: None once the client has closed its
/// side or broken the stream (logged with `what`, the stream's name), or the node is
/// stopping.
pub(crate) async fn next_inbound<T: prost::Message + Default>(
    ctx: &NodeCtx,
    inbound: &mut tonic::Streaming<T>,
    what: &str,
) -> Option<T> {
    let m = tokio::select! {
        _ = ctx.cancel.cancelled() => return None,
        m = inbound.message() => m,
    };
    m.unwrap_or_else(|e| {
        tracing::debug!(error = %e, "{what} stream ended");
        None
    })
}

/// Where a change stream stands: the last version it has passed on and the progress
/// it last told the client.
struct StreamCursor {
    /// The newest version handled (sent, or skipped because nothing in it matched).
    last: Option<u64>,
    /// The progress version last sent.
    sent: u64,
    /// When a response last went out.
    sent_at: tokio::time::Instant,
}

/// Whether a stream goes on after sending what it had.
enum Sent {
    /// Yes.
    More,
    /// The client has gone.
    Gone,
    /// A split moved the watched hash away; the stream ends.
    Moved,
}

impl StreamCursor {
    /// Sends the changes of every version in `pending` newer than `last`, one
    /// version at a time; a version with many changes goes in parts whose progress
    /// stays below it until the last. A split that moved `hash` away ends the stream
    /// with a `moved` notice at its version.
    async fn send_versions<T, R>(
        &mut self,
        tx: &mpsc::Sender<std::result::Result<R, Status>>,
        pending: &[Arc<Change>],
        hash: u64,
        keep: &impl Fn(&Change) -> Option<T>,
        wrap: &impl Fn(Vec<T>, u64, Option<WatchMoved>) -> R,
    ) -> Sent {
        for version in pending.chunk_by(|a, b| a.version == b.version) {
            let v = version[0].version;
            if self.last.is_some_and(|l| v <= l) {
                continue;
            }
            let moved = version.iter().find_map(|c| {
                c.moved
                    .as_ref()
                    .filter(|(_, arcs)| crate::ranges::contains(arcs, hash))
                    .map(|(to, _)| WatchMoved {
                        shard_id: to.0,
                        at_version: v,
                    })
            });
            if let Some(m) = moved {
                // Every change below the split was sent; the new shard's log starts
                // at it, so the watch resumes there from `v` without a gap.
                if tx.send(Ok(wrap(Vec::new(), v, Some(m)))).await.is_err() {
                    return Sent::Gone;
                }
                return Sent::Moved;
            }
            let before = self.last.unwrap_or(0);
            let kept: Vec<T> = version.iter().filter_map(|c| keep(c)).collect();
            let mut items = kept.into_iter().peekable();
            while items.peek().is_some() {
                let part: Vec<T> = items.by_ref().take(MAX_EVENTS_PER_RESPONSE).collect();
                let progress = if items.peek().is_none() { v } else { before };
                if !self.send(tx, wrap(part, progress, None), progress).await {
                    return Sent::Gone;
                }
            }
            self.last = Some(v);
        }
        Sent::More
    }

    /// A watcher whose keys stay quiet still learns how far the shard has gone (at
    /// most every `PROGRESS_EVERY`), so a reconnect resumes from a retained version.
    /// Returns false once the client has gone.
    async fn send_progress<T, R>(
        &mut self,
        tx: &mpsc::Sender<std::result::Result<R, Status>>,
        wrap: &impl Fn(Vec<T>, u64, Option<WatchMoved>) -> R,
    ) -> bool {
        match self.last.filter(|l| *l > self.sent) {
            Some(l) if self.sent_at.elapsed() >= PROGRESS_EVERY => {
                self.send(tx, wrap(Vec::new(), l, None), l).await
            }
            _ => true,
        }
    }

    async fn send<R>(
        &mut self,
        tx: &mpsc::Sender<std::result::Result<R, Status>>,
        response: R,
        progress: u64,
    ) -> bool {
        if tx.send(Ok(response)).await.is_err() {
            return false;
        }
        self.sent = self.sent.max(progress);
        self.sent_at = tokio::time::Instant::now();
        true
    }
}

/// `WatchHub::subscribe` off the async threads: a resume from before the memory log
/// reads the disk log.
async fn subscribe(
    ctx: &Arc<NodeCtx>,
    shard: ShardId,
    after: Option<u64>,
) -> Result<crate::fsm::watch::Subscription> {
    let c = ctx.clone();
    ctx.tracker
        .spawn_blocking(move || c.watch.subscribe(&c.engine, shard, after))
        .await
        .map_err(|e| Error::Internal(format!("watch subscribe task: {e}")))?
}

/// Streams the changes of `shard` after `after` (None: from now) that `keep`
/// accepts, mapped by `map`; every change of one version goes in one response.
/// The stream survives leader changes (every replica applies every change); it
/// ends with an error if the replica falls too far behind its retention or goes,
/// and with a `moved` notice when a split moves partition hash `hash` away.
pub(crate) async fn change_stream<T: Send + 'static, R: Send + 'static>(
    ctx: Arc<NodeCtx>,
    shard: ShardId,
    hash: u64,
    after: Option<u64>,
    keep: impl Fn(&Change) -> Option<T> + Send + Sync + 'static,
    wrap: impl Fn(Vec<T>, u64, Option<WatchMoved>) -> R + Send + Sync + 'static,
) -> Result<RpcStream<R>> {
    // Fail at once (before the stream starts) when the version is not retained.
    let first = subscribe(&ctx, shard, after).await?;
    let (tx, rx) = mpsc::channel::<std::result::Result<R, Status>>(16);
    let tracker = ctx.tracker.clone();
    tracker.spawn(async move {
        // Tell the client where the stream starts, so a reconnect before the first
        // change resumes from there rather than from "now".
        if tx.send(Ok(wrap(Vec::new(), first.start, None))).await.is_err() {
            return;
        }
        let mut cursor = StreamCursor {
            last: Some(first.start),
            sent: first.start,
            sent_at: tokio::time::Instant::now(),
        };
        let mut sub = Some(first);
        loop {
            let s = match sub.take() {
                Some(s) => s,
                None => match subscribe(&ctx, shard, cursor.last).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                },
            };
            let mut live = s.live;
            let mut pending: Vec<Arc<Change>> = s.replay;
            loop {
                match cursor.send_versions(&tx, &pending, hash, &keep, &wrap).await {
                    Sent::More => {}
                    Sent::Gone | Sent::Moved => return,
                }
                if !cursor.send_progress(&tx, &wrap).await {
                    return;
                }
                pending.clear();
                tokio::select! {
                    _ = tx.closed() => return,
                    r = live.recv() => match r {
                        Ok(round) => pending.extend(round.iter().cloned()),
                        // Fell behind the live channel: re-read the retained log.
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => {
                            let _ = tx
                                .send(Err(Error::ShardUnavailable {
                                    shard,
                                    reason: "the replica serving this watch went away; resume elsewhere".into(),
                                    outcome_unknown: false,
                                }
                                .into()))
                                .await;
                            return;
                        }
                    },
                    _ = ctx.cancel.cancelled() => {
                        let _ = tx.send(Err(Error::Shutdown.into())).await;
                        return;
                    }
                }
            }
        }
    });
    Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })))
}
