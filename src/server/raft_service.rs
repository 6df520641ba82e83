//! `ctxstore.v1.Raft`: receives raft message batches and chunked snapshots.

use crate::node::ctx::NodeCtx;
use crate::node::replicas::on_raft_message;
use crate::proto::raft_server::Raft;
use crate::proto::{RaftBatch, RaftDone, SnapshotChunk, SnapshotDone, SnapshotMeta};
use crate::raft::handle::PeerMsg;
use crate::types::{NodeId, ShardId};
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use std::sync::Arc;
use tonic::{Request, Response, Status, Streaming};

/// Largest snapshot payload accepted.
pub(crate) const MAX_SNAPSHOT_BYTES: usize = 4 << 30;

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
        // The size is the sender's word: reserve a bounded amount and let it grow.
        let mut payload = Vec::with_capacity((meta.size as usize).min(64 << 20));
        payload.extend_from_slice(&first.data);
        let mut checksum = None;
        while let Some(chunk) = stream.message().await? {
            if payload.len() + chunk.data.len() > MAX_SNAPSHOT_BYTES {
                return Err(Status::resource_exhausted("snapshot larger than 4 GiB"));
            }
            payload.extend_from_slice(&chunk.data);
            if chunk.last {
                checksum = Some(chunk.checksum);
                break;
            }
        }
        let checksum =
            checksum.ok_or_else(|| Status::invalid_argument("snapshot stream truncated"))?;
        if payload.len() as u64 != meta.size
            || checksum != meta.checksum
            || xxhash_rust::xxh3::xxh3_64(&payload) != meta.checksum
        {
            return Err(Status::data_loss(
                "snapshot payload does not match its checksum",
            ));
        }
        let shard = ShardId(env.shard_id);
        let from = NodeId(env.from_node);
        self.ctx.addresses.insert(from, first.from_addr);
        if !self.ctx.transport.allowed_from(from) {
            return Err(Status::unavailable("partitioned"));
        }
        self.ctx
            .snapshots
            .put_incoming(shard, meta.index, meta.term, payload);
        match self.ctx.peer(shard) {
            Some(p) => p
                .send(PeerMsg::Raft(Box::new(msg), from))
                .await
                .map_err(|_| Status::unavailable("replica stopped"))?,
            None => on_raft_message(
                &self.ctx,
                shard,
                (env.split_from, env.split_index),
                from,
                msg,
            ),
        }
        Ok(Response::new(SnapshotDone {}))
    }
}
