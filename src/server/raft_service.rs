//! `ctxstore.v1.Raft`: receives raft message batches and chunked snapshots.
//!
//! A snapshot is spooled to a file under `<data-dir>/snap` as its chunks arrive
//! (hashed on the way, so memory stays at about one chunk whatever its size), kept
//! only if its size and checksum match `SnapshotMeta`, and handed to the replica by
//! the raft message it came with.

use crate::node::ctx::NodeCtx;
use crate::node::replicas::on_raft_message;
use crate::proto::raft_server::Raft;
use crate::proto::{RaftBatch, RaftDone, SnapshotChunk, SnapshotDone, SnapshotMeta};
use crate::raft::handle::{PeerMsg, Stamp};
use crate::storage::snapshot::{self, SpoolWriter};
use crate::types::{NodeId, ShardId};
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use std::sync::Arc;
use tonic::{Request, Response, Status, Streaming};

/// Largest snapshot file accepted.
pub(crate) const MAX_SNAPSHOT_BYTES: u64 = 4 << 30;

pub(crate) struct RaftService {
    ctx: Arc<NodeCtx>,
}

impl RaftService {
    pub(crate) fn new(ctx: Arc<NodeCtx>) -> Self {
        Self { ctx }
    }
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn send(&self, req: Request<Streaming<RaftBatch>>) -> Result<Response<RaftDone>, Status> {
        let mut stream = req.into_inner();
        // The stream lives as long as the sending node; end it on shutdown so the
        // server's graceful stop does not wait for it.
        let cancel = self.ctx.cancel.clone();
        loop {
            let batch = tokio::select! {
                _ = cancel.cancelled() => break,
                b = stream.message() => match b? {
                    Some(b) => b,
                    None => break,
                },
            };
            self.ctx
                .addresses
                .insert(NodeId(batch.from_node), batch.from_addr.clone());
            for env in batch.envelopes {
                if env.to_node != self.ctx.node_id.0 {
                    continue;
                }
                match Message::parse_from_bytes(&env.message) {
                    Ok(m) => {
                        let lineage = (env.split_from, env.split_index);
                        on_raft_message(
                            &self.ctx,
                            ShardId(env.shard_id),
                            lineage,
                            NodeId(env.from_node),
                            m,
                            Stamp {
                                leader_commit: env.leader_commit,
                                hibernate: env.hibernate,
                            },
                        )
                    }
                    Err(e) => tracing::warn!(error = %e, "undecodable raft message dropped"),
                }
            }
        }
        Ok(Response::new(RaftDone {}))
    }

    async fn send_snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SnapshotDone>, Status> {
        let mut stream = req.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let env = first
            .envelope
            .ok_or_else(|| Status::invalid_argument("first snapshot chunk carries no envelope"))?;
        let msg = Message::parse_from_bytes(&env.message)
            .map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))?;
        if msg.get_msg_type() != MessageType::MsgSnapshot {
            return Err(Status::invalid_argument("not a snapshot message"));
        }
        let meta = SnapshotMeta::decode(msg.get_snapshot().data.as_ref())
            .map_err(|e| Status::invalid_argument(format!("bad snapshot metadata: {e}")))?;
        if meta.format != snapshot::FORMAT_FRAMES {
            return Err(Status::failed_precondition(format!(
                "snapshot format {} is not supported (the sender runs another version)",
                meta.format
            )));
        }
        let shard = ShardId(env.shard_id);
        let snap_meta = msg.get_snapshot().get_metadata();
        if meta.shard_id != shard.0 || meta.index != snap_meta.index || meta.term != snap_meta.term
        {
            return Err(Status::invalid_argument(
                "snapshot metadata does not match its message",
            ));
        }
        if meta.size > MAX_SNAPSHOT_BYTES {
            return Err(Status::resource_exhausted("snapshot larger than 4 GiB"));
        }
        let from = NodeId(env.from_node);
        if !self.ctx.transport.allowed_from(from) {
            return Err(Status::unavailable("partitioned"));
        }
        let started = std::time::Instant::now();
        // Spool to a file as the chunks arrive (dropped on any error: the `.tmp` goes).
        let mut spool = self
            .ctx
            .snapshots
            .spool("recv", shard, meta.index, meta.term)
            .map_err(|e| Status::internal(e.to_string()))?;
        spool = write_chunk(&self.ctx, spool, first.data).await?;
        let mut checksum = None;
        while let Some(chunk) = stream.message().await? {
            if spool.size() + chunk.data.len() as u64 > meta.size.min(MAX_SNAPSHOT_BYTES) {
                return Err(Status::resource_exhausted(
                    "snapshot larger than its metadata says (or than 4 GiB)",
                ));
            }
            spool = write_chunk(&self.ctx, spool, chunk.data).await?;
            if chunk.last {
                checksum = Some(chunk.checksum);
                break;
            }
        }
        let checksum =
            checksum.ok_or_else(|| Status::invalid_argument("snapshot stream truncated"))?;
        if spool.size() != meta.size
            || checksum != meta.checksum
            || spool.checksum() != meta.checksum
        {
            return Err(Status::data_loss(
                "snapshot data does not match its checksum",
            ));
        }
        let file = self
            .ctx
            .tracker
            .spawn_blocking(move || spool.finish())
            .await
            .map_err(|e| Status::internal(format!("snapshot spool task: {e}")))?
            .map_err(|e| Status::internal(e.to_string()))?;
        let m = &self.ctx.metrics;
        m.snapshot_received_bytes.inc_by(file.size);
        m.snapshot_receive_seconds
            .observe(started.elapsed().as_secs_f64());
        self.ctx.addresses.insert(from, first.from_addr);
        if !self.ctx.transport.allowed_from(from) {
            return Err(Status::unavailable("partitioned"));
        }
        self.ctx.snapshots.put_incoming(file);
        match self.ctx.peer(shard) {
            Some(p) => p
                .send(PeerMsg::Raft {
                    msg: Box::new(msg),
                    from,
                    stamp: Stamp::default(),
                })
                .await
                .map_err(|_| Status::unavailable("replica stopped"))?,
            None => on_raft_message(
                &self.ctx,
                shard,
                (env.split_from, env.split_index),
                from,
                msg,
                Stamp::default(),
            ),
        }
        Ok(Response::new(SnapshotDone {}))
    }
}

/// Appends one chunk to a spool file on a blocking thread; the spool comes back.
async fn write_chunk(
    ctx: &NodeCtx,
    mut spool: SpoolWriter,
    data: bytes::Bytes,
) -> Result<SpoolWriter, Status> {
    if data.is_empty() {
        return Ok(spool);
    }
    ctx.tracker
        .spawn_blocking(move || spool.write(&data).map(|()| spool))
        .await
        .map_err(|e| Status::internal(format!("snapshot spool task: {e}")))?
        .map_err(|e| Status::internal(e.to_string()))
}
