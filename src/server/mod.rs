//! The gRPC services of a node: `Kv` (client API), `Lease` (leases of a partition), `Queue`
//! (task queues),
//! `AgentContext` (conversations,
//! checkpoints, model registry), `Cluster` (status, membership, admin), `Raft`
//! (node-to-node), `Auth` (users, roles, tokens), plus standard health and reflection.
//!
//! Handlers validate input before anything is proposed, so a bad request changes
//! nothing; errors leave through `status` (the one mapping to `tonic::Status`).
//!
//! Files: `auth` (who the caller is and what it may do), `path` (routing, checks,
//! proposals and the read barrier shared by the data
//! services) and `watch` (change streams) below the services `kv`, `context`,
//! `cluster` and `raft_service`; `grpc_metrics` (per-call counts and times),
//! `grpc_trace` (a span per call, with the caller's W3C trace context) and `status`
//! (the HTTP status listener: metrics, liveness, readiness, and the gRPC health it
//! drives); this module assembles them into one server.

pub(crate) mod auth;
mod backup;
mod batch;
pub(crate) mod cluster;
mod context;
mod copy;
mod grpc_metrics;
mod grpc_trace;
mod kv;
mod lease;
pub(crate) mod path;
mod queue;
pub(crate) mod raft_service;
pub(crate) mod status;
pub(crate) mod tls;
mod watch;

use crate::error::{Error, Result};
use crate::node::ctx::NodeCtx;
use crate::proto::{
    agent_context_server::AgentContextServer, cluster_server::ClusterServer, kv_server::KvServer,
    raft_server::RaftServer,
};
use crate::proto::{FILE_DESCRIPTOR_SET, MAX_MESSAGE_SIZE};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Starts the gRPC server on `listener`, over TLS when `tls` is set; it stops when
/// the node is cancelled.
pub(crate) fn spawn(
    ctx: Arc<NodeCtx>,
    listener: TcpListener,
    tls: Option<Arc<tls::ServerTls>>,
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
    let lease = crate::proto::lease_server::LeaseServer::new(lease::LeaseService::new(ctx.clone()));
    let queue = crate::proto::queue_server::QueueServer::new(queue::QueueService::new(ctx.clone()))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let raft = RaftServer::new(raft_service::RaftService::new(ctx.clone()))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let cancel = ctx.cancel.clone();
    let metrics = grpc_metrics::GrpcMetricsLayer::new(ctx.metrics.clone());
    let peer_auth = tls::PeerAuthLayer::new(tls.clone());
    let auth_layer = auth::AuthLayer::new(ctx.clone(), tls.clone());
    let auth_api = crate::proto::auth_server::AuthServer::new(auth::AuthApi::new(ctx.clone()));
    let tls_metrics = ctx.metrics.clone();
    let max_age = tls
        .is_some()
        .then(|| ctx.config().security.connection_age());
    status::spawn_health(ctx.clone(), health_reporter);
    Ok(tokio::spawn(async move {
        let mut builder = tonic::transport::Server::builder().tcp_nodelay(true);
        if let Some(age) = max_age {
            // A rotated or revoked certificate stops being used within `age` plus the
            // grace: after it, long streams (Raft, watches) are cut too, and their
            // owners reconnect with the files on disk then.
            builder = builder
                .max_connection_age(age)
                .max_connection_age_grace(tls::CONNECTION_AGE_GRACE);
        }
        let router = builder
            // The span is outermost, so everything below runs inside it.
            .layer(grpc_trace::GrpcTraceLayer)
            .layer(metrics)
            .layer(peer_auth)
            .layer(auth_layer)
            .add_service(health)
            .add_service(reflection)
            .add_service(kv)
            .add_service(lease)
            .add_service(queue)
            .add_service(agent)
            .add_service(cluster)
            .add_service(raft)
            .add_service(auth_api);
        let shutdown = cancel.clone().cancelled_owned();
        let r = match tls {
            Some(tls) => {
                router
                    .serve_with_incoming_shutdown(
                        tls::incoming(listener, tls, tls_metrics, cancel),
                        shutdown,
                    )
                    .await
            }
            None => {
                // tonic's own `tcp_nodelay` applies only to listeners it binds
                // itself; without it, small responses wait for delayed ACKs (tens of
                // milliseconds).
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
                router
                    .serve_with_incoming_shutdown(incoming, shutdown)
                    .await
            }
        };
        if let Err(e) = r {
            tracing::error!(error = %e, "gRPC server failed");
        }
    }))
}
