//! The checkpoint calls that reach past one thread: `CopyThread` (read one thread,
//! write another, wherever its shard is led) and `DeleteForRuns` (every checkpoint of
//! a shard that carries given run ids).
//!
//! A copy writes the target through the target shard's leader with ordinary
//! `PutWrites`/`PutCheckpoint` calls from this node (as a peer), so the target shard
//! validates, dedups and replicates them as any client's: the node acts like
//! CockroachDB's gateway node sending to another range's leaseholder. Every write of a
//! copy is idempotent (the same records again), so a write whose outcome is unknown is
//! simply sent again, and a copy cut short is finished by asking for it again.

use super::context::ContextService;
use crate::error::{Error, Result};
use crate::fsm::metadata::MetadataFilter;
use crate::meta::service::CALL_TIMEOUT;
use crate::proto::agent_context_client::AgentContextClient;
use crate::proto::context_command::Op;
use crate::proto::{
    ChannelBlob, CheckpointTuple, DeleteCheckpointsCommand, PendingWrite, PutCheckpointRequest,
    PutWritesRequest, ThreadRef,
};
use bytes::Bytes;
use prost::Message as _;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

/// Checkpoints a copy reads per page (each with its blobs and writes).
const COPY_PAGE: usize = 32;
/// Checkpoints one `DeleteForRuns` command names at most.
const DELETE_CHUNK: usize = 256;
/// How long one write of a copy keeps looking for the target shard's leader.
const FORWARD_WITHIN: Duration = Duration::from_secs(10);

impl ContextService {
    /// `CopyThread` after its checks: copies stored thread `source` (read here, after
    /// the read barrier of its shard) to `target` (as the caller named it: a
    /// `ThreadRef` whose `ns` is set per checkpoint). Returns (checkpoints, writes).
    pub(super) async fn copy_thread_to(
        &self,
        header: &Option<crate::proto::RequestHeader>,
        source: String,
        target: ThreadRef,
        target_hash: u64,
    ) -> Result<(u64, u64)> {
        let hash = Self::thread_hash(&source);
        let limits = self.ctx().config().limits.clone();
        let max_items = usize::try_from(limits.max_blobs_per_checkpoint).unwrap_or(usize::MAX);
        let max_bytes = usize::try_from(limits.max_value_size).unwrap_or(usize::MAX);
        // Blobs already written by this copy: a checkpoint carries only its new ones,
        // as the original puts did (oldest first), which keeps each put small.
        let mut sent: HashSet<(String, String, String)> = HashSet::new();
        let (mut checkpoints, mut writes) = (0, 0);
        let mut after: Vec<u8> = Vec::new();
        loop {
            let (src, from) = (source.clone(), after.clone());
            let (page, next) = self
                .read(header, hash, false, move |v| {
                    v.thread_checkpoints(&src, &from, COPY_PAGE)
                })
                .await?;
            for t in page {
                let Some((w, put)) = copy_requests(&t, &target, &mut sent, max_items, max_bytes)
                else {
                    continue;
                };
                for req in w {
                    writes += req.writes.len() as u64;
                    self.forward(target_hash, req, |mut c, r| async move {
                        c.put_writes(r).await.map(drop)
                    })
                    .await?;
                }
                self.forward(target_hash, put, |mut c, r| async move {
                    c.put_checkpoint(r).await.map(drop)
                })
                .await?;
                checkpoints += 1;
            }
            match next {
                Some(k) => after = k,
                None => return Ok((checkpoints, writes)),
            }
        }
    }

    /// Sends an idempotent write to the leader of the shard owning `hash`: the leader
    /// this node knows of, then the shard's other replicas, following `NotLeader`
    /// hints, until it succeeds, fails for a reason another node would not change,
    /// or `FORWARD_WITHIN` runs out.
    async fn forward<Req, F, Fut>(&self, hash: u64, req: Req, call: F) -> Result<()>
    where
        Req: Clone,
        F: Fn(AgentContextClient<tonic::transport::Channel>, Req) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<(), tonic::Status>>,
    {
        let ctx = self.ctx();
        let deadline = Instant::now() + FORWARD_WITHIN;
        let mut backoff =
            crate::util::Backoff::new(Duration::from_millis(20), Duration::from_millis(500));
        let mut hint: Option<String> = None;
        loop {
            let mut candidates: Vec<String> = hint.take().into_iter().collect();
            if let Some(shard) = ctx.owner_of(hash) {
                if ctx.peer(shard).is_some_and(|p| p.epoch.leading()) {
                    candidates.push(ctx.addr.clone());
                }
                if let Some(route) = ctx.meta.route_of(shard) {
                    candidates.extend(route.leader.map(|l| l.addr));
                    if let Some(d) = route.descriptor {
                        candidates.extend(d.replicas.into_iter().map(|r| r.addr));
                    }
                }
            }
            candidates.push(ctx.addr.clone());
            let mut tried: Vec<String> = Vec::new();
            let mut last = None;
            for addr in candidates {
                if addr.is_empty() || tried.contains(&addr) {
                    continue;
                }
                tried.push(addr.clone());
                let ch = match ctx.meta.channel(&addr, CALL_TIMEOUT) {
                    Ok(ch) => ch,
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                };
                match call(AgentContextClient::new(ch), req.clone()).await {
                    Ok(()) => return Ok(()),
                    Err(status) => {
                        let e = Error::from(status);
                        match &e {
                            Error::NotLeader {
                                leader: Some(l), ..
                            } if !tried.contains(&l.addr) => {
                                hint = Some(l.addr.clone());
                                last = Some(e);
                                break;
                            }
                            _ if e.is_retryable() => last = Some(e),
                            _ => return Err(e),
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(last.unwrap_or_else(|| Error::ShardUnavailable {
                    shard: ctx.owner_of(hash).unwrap_or(crate::types::ShardId(0)),
                    reason: "no replica of the target thread's shard answered".into(),
                    outcome_unknown: false,
                }));
            }
            if hint.is_none() {
                backoff.sleep_until_at_most(deadline).await;
            }
        }
    }

    /// `DeleteForRuns` once the caller may write every thread: checks `run_ids`,
    /// finds the shard's checkpoints carrying one of them and proposes their removal
    /// in chunks; (checkpoints, blobs) removed.
    pub(super) async fn delete_runs(
        &self,
        header: Option<crate::proto::RequestHeader>,
        run_ids: Vec<String>,
    ) -> Result<(u64, u64)> {
        crate::context::validate_run_ids(&run_ids)?;
        let (peer, ranges) = self.one_shard(&header).await?;
        let ids = run_ids.clone();
        let found = self
            .path
            .read_view(&peer, move |v| {
                v.checkpoints_where(&ranges, |cp| MetadataFilter::run_id_in(cp, &ids))
            })
            .await?;
        let header = Some(crate::proto::RequestHeader {
            shard_id: peer.shard.0,
            ..header.unwrap_or_default()
        });
        let (mut removed, mut blobs) = (0, 0);
        for chunk in found.chunks(DELETE_CHUNK) {
            let Some(first) = chunk.first() else { continue };
            let op = Op::DeleteCheckpoints(DeleteCheckpointsCommand {
                checkpoints: chunk.to_vec(),
                run_ids: run_ids.clone(),
            });
            let o = self
                .propose(
                    &header,
                    Self::thread_hash(&first.thread),
                    Bytes::new(),
                    "delete_for_runs",
                    op,
                )
                .await?;
            removed += o.count;
            blobs += o.count2;
        }
        Ok((removed, blobs))
    }
}

/// The writes of one source checkpoint for the target: its pending writes per task
/// (in slot order, chunked to the limits, slots kept), then the checkpoint with the
/// blobs this copy has not written yet. None for a tuple without a checkpoint.
fn copy_requests(
    t: &CheckpointTuple,
    target: &ThreadRef,
    sent: &mut HashSet<(String, String, String)>,
    max_items: usize,
    max_bytes: usize,
) -> Option<(Vec<PutWritesRequest>, PutCheckpointRequest)> {
    let ns = t.thread.as_ref().map(|r| r.ns.clone()).unwrap_or_default();
    let thread = ThreadRef {
        ns: ns.clone(),
        ..target.clone()
    };
    let cp = t.checkpoint.clone()?;
    let mut by_task: BTreeMap<(String, String), Vec<PendingWrite>> = BTreeMap::new();
    for w in &t.pending_writes {
        by_task
            .entry((w.task_id.clone(), w.task_path.clone()))
            .or_default()
            .push(w.clone());
    }
    let mut writes = Vec::new();
    for ((task_id, task_path), ws) in by_task {
        let new = || PutWritesRequest {
            thread: Some(thread.clone()),
            checkpoint_id: cp.checkpoint_id.clone(),
            task_id: task_id.clone(),
            task_path: task_path.clone(),
            keep_idx: true,
            ..Default::default()
        };
        let mut req = new();
        for w in ws {
            let full = req.writes.len() >= max_items
                || req.encoded_len() + w.encoded_len() + 16 > max_bytes;
            if full && !req.writes.is_empty() {
                writes.push(std::mem::replace(&mut req, new()));
            }
            req.writes.push(w);
        }
        if !req.writes.is_empty() {
            writes.push(req);
        }
    }
    let blobs: Vec<ChannelBlob> = t
        .blobs
        .iter()
        .filter(|b| sent.insert((ns.clone(), b.channel.clone(), b.version.clone())))
        .cloned()
        .collect();
    let put = PutCheckpointRequest {
        thread: Some(thread),
        checkpoint: Some(cp),
        blobs,
        ..Default::default()
    };
    Some((writes, put))
}
