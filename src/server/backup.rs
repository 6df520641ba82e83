//! `Cluster.BackupShard`: one shard's state as a snapshot file, streamed to the caller
//! (`ctxctl snapshot save`; docs/operations.md, "Backup and restore").
//!
//! The shard's leader first takes a ReadIndex and waits until it has applied it, so
//! every write acknowledged before the call started is in the state; then it builds a
//! snapshot file from one RocksDB snapshot (the same file a lagging replica receives:
//! descriptor, apply state, the meta shard's state, data and dedup records, with its
//! xxh3 checksum) and streams it in chunks, holding no more than a few of them in
//! memory. The last message describes the file, with the digest of its data as a
//! replica loaded from it reports it.

use crate::error::{Error, Result};
use crate::node::ctx::NodeCtx;
use crate::proto::{BackupChunk, BackupShardInfo};
use crate::raft::handle::{await_reply, PeerHandle, PeerMsg};
use crate::storage::snapshot;
use std::io::Read;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

/// Bytes of the file per message.
const CHUNK: usize = 1 << 20;

/// Chunks read ahead of the network.
const AHEAD: usize = 4;

/// Streams the backup of `peer`'s shard (this node's replica must lead it).
pub(crate) async fn backup_shard(
    ctx: Arc<NodeCtx>,
    peer: PeerHandle,
) -> Result<super::watch::RpcStream<BackupChunk>> {
    let shard = peer.shard;
    let (tx, rx) = oneshot::channel();
    peer.send(PeerMsg::ReadIndex(tx)).await?;
    await_reply(shard, rx).await?;
    if peer.epoch.installing() {
        return Err(Error::ShardUnavailable {
            shard,
            reason: "installing a snapshot".into(),
            outcome_unknown: false,
        });
    }
    let built = {
        let ctx = ctx.clone();
        tokio::task::spawn_blocking(move || snapshot::build(&ctx.engine, &ctx.snapshots, shard))
            .await
            .map_err(|e| Error::Internal(format!("backup task: {e}")))??
    };
    let info = BackupShardInfo {
        shard_id: shard.0,
        applied_index: built.apply_state.applied_index,
        applied_term: built.apply_state.applied_term,
        size: built.file.size,
        xxh3: built.file.checksum,
        keys: built.keys,
        data_digest: built.data_digest,
        descriptor: Some(built.descriptor.clone()),
    };
    tracing::info!(%shard, index = info.applied_index, bytes = info.size, keys = info.keys, "backing up shard");
    let (out, stream) = mpsc::channel::<std::result::Result<BackupChunk, Status>>(AHEAD);
    // The file lives while `built.file` does: the task holds it until the last chunk.
    ctx.tracker.spawn_blocking(move || {
        let file = built.file;
        let send = |m: std::result::Result<BackupChunk, Status>| out.blocking_send(m).is_ok();
        let mut f = match std::fs::File::open(file.path()) {
            Ok(f) => f,
            Err(e) => {
                send(Err(
                    Error::Storage(format!("backup of shard {shard}: {e}")).into()
                ));
                return;
            }
        };
        let mut buf = vec![0u8; CHUNK];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let chunk = BackupChunk {
                        data: bytes::Bytes::copy_from_slice(&buf[..n]),
                        done: None,
                    };
                    if !send(Ok(chunk)) {
                        return; // the caller went away
                    }
                }
                Err(e) => {
                    send(Err(
                        Error::Storage(format!("backup of shard {shard}: {e}")).into()
                    ));
                    return;
                }
            }
        }
        send(Ok(BackupChunk {
            data: bytes::Bytes::new(),
            done: Some(info),
        }));
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
        stream,
    )))
}
