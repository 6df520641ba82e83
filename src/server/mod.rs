//! The gRPC services of a node: `Kv` (client API), `AgentContext` (conversations,
//! checkpoints, model registry), `Cluster` (status, membership, admin), `Raft`
//! (node-to-node), plus standard health and reflection.
//!
//! Handlers validate input before anything is proposed, so a bad request changes
//! nothing; errors leave through `status` (the one mapping to `tonic::Status`).

mod cluster;
mod context;
mod kv;
mod raft_service;

use crate::error::{Error, Result};
use crate::node::NodeCtx;
use crate::proto::{
    agent_context_server::AgentContextServer, cluster_server::ClusterServer, kv_server::KvServer,
    raft_server::RaftServer,
};
use crate::proto::{StatusResponse, FILE_DESCRIPTOR_SET};
use crate::raft::PeerMsg;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Largest gRPC message accepted (a max-size value plus headroom).
pub(crate) const MAX_MESSAGE_SIZE: usize = 80 << 20;
/// How long a handler waits for a proposal to apply or a read index to confirm.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Starts the gRPC server on `listener`; it stops when the node is cancelled.
pub(crate) fn spawn(
    ctx: Arc<NodeCtx>,
    listener: TcpListener,
) -> Result<tokio::task::JoinHandle<()>> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
    let (health_reporter, health) = tonic_health::server::health_reporter();
    let kv = KvServer::new(kv::KvService::new(ctx.clone()))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let agent = AgentContextServer::new(context::ContextService::new(ctx.clone()))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let cluster = ClusterServer::new(cluster::ClusterService::new(ctx.clone()));
    let raft = RaftServer::new(raft_service::RaftService::new(ctx.clone()))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let cancel = ctx.cancel.clone();
    // tonic's own `tcp_nodelay` applies only to listeners it binds itself; without
    // it, small responses wait for delayed ACKs (tens of milliseconds).
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |conn| {
            conn.inspect(|s| {
                if let Err(e) = s.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
            })
        },
    );
    Ok(tokio::spawn(async move {
        health_reporter
            .set_serving::<KvServer<kv::KvService>>()
            .await;
        let r = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(health)
            .add_service(reflection)
            .add_service(kv)
            .add_service(agent)
            .add_service(cluster)
            .add_service(raft)
            .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "gRPC server failed");
        }
    }))
}

/// Collects the status of every replica on the node.
pub(crate) async fn node_status(ctx: &NodeCtx) -> StatusResponse {
    let mut shards = Vec::new();
    for p in ctx.peers() {
        let (tx, rx) = oneshot::channel();
        if p.send(PeerMsg::Status(tx)).await.is_err() {
            continue;
        }
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(2), rx).await {
            shards.push(s);
        }
    }
    shards.sort_by_key(|s| s.descriptor.as_ref().map_or(0, |d| d.shard_id));
    StatusResponse {
        node_id: ctx.node_id.0,
        addr: ctx.addr.clone(),
        bootstrapped: !shards.is_empty(),
        shards,
        wal_syncs: ctx.writer.syncs(),
    }
}

/// Awaits a replica's answer with the request timeout.
pub(crate) async fn await_reply<T>(
    shard: crate::types::ShardId,
    rx: oneshot::Receiver<Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(Error::Shutdown),
        Err(_) => Err(Error::ShardUnavailable {
            shard,
            reason: format!("no answer within {REQUEST_TIMEOUT:?}"),
        }),
    }
}
