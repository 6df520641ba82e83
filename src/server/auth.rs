//! Auth enforcement and the `Auth` service.
//!
//! - [`AuthLayer`] (tower, on the whole server) authenticates every call once auth is
//!   on: a bearer token, else the TLS client certificate (a common name in
//!   `peer-cert-allowed-cn` is a node, any other names a user). It refuses method by
//!   method what needs a peer or root, and hands the [`Principal`] to the handlers in
//!   the request's extensions. Health checks and reflection stay open. A node that
//!   does not know the cluster's auth state yet (`AuthHub::learned`) refuses every
//!   other call but the nodes' own with `NodeNotReady`.
//! - Handlers check the resource itself (a key, a conversation, a thread, a model)
//!   with [`authorize`] before anything is read or proposed; no principal means auth
//!   was off when the call came in.
//! - Streams ([`guard`]) end with `PERMISSION_DENIED` when a newer auth state no longer
//!   lets their caller read what they watch.

use crate::auth::{Credentials, Principal};
use crate::error::Error;
use crate::node::ctx::NodeCtx;
use crate::proto::auth_server::Auth;
use crate::proto::{
    Access, AuthChangeRequest, AuthChangeResponse, AuthStore, GetAuthRequest, ResourceKind,
    WhoAmIRequest, WhoAmIResponse,
};
use crate::server::tls::ServerTls;
use crate::server::watch::RpcStream;
use futures::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codegen::{http, BoxFuture, Service};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Request, Response, Status};

/// Paths anyone may call, credentials or not.
const OPEN: &[&str] = &["/grpc.health.v1.Health/", "/grpc.reflection."];

/// Paths only nodes may call.
const PEER_ONLY: &[&str] = &[
    "/ctxstore.internal.v1.Raft/",
    "/ctxstore.v1.Cluster/Heartbeat",
    "/ctxstore.v1.Cluster/AllocShard",
];

/// Paths that need the role root (or a node, forwarding a root's call).
const ROOT_ONLY: &[&str] = &[
    "/ctxstore.v1.Cluster/AddMember",
    "/ctxstore.v1.Cluster/RemoveMember",
    "/ctxstore.v1.Cluster/TransferLeader",
    "/ctxstore.v1.Cluster/SplitShard",
    "/ctxstore.v1.Cluster/SetNodeAdmin",
    "/ctxstore.v1.Cluster/PdStatus",
    "/ctxstore.v1.Cluster/SetPdPaused",
    "/ctxstore.v1.Cluster/SetConfig",
    "/ctxstore.v1.Cluster/GetConfig",
    "/ctxstore.v1.Cluster/BackupShard",
    "/ctxstore.v1.Auth/Change",
    "/ctxstore.v1.Auth/Get",
];

/// Authenticates calls and applies the method-level rules (see the module docs).
#[derive(Clone)]
pub(crate) struct AuthLayer {
    ctx: Arc<NodeCtx>,
    tls: Option<Arc<ServerTls>>,
}

impl AuthLayer {
    pub(crate) fn new(ctx: Arc<NodeCtx>, tls: Option<Arc<ServerTls>>) -> Self {
        Self { ctx, tls }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`AuthLayer`] makes.
#[derive(Clone)]
pub(crate) struct AuthService<S> {
    inner: S,
    layer: AuthLayer,
}

impl AuthLayer {
    /// The caller of `req`, or the status refusing it; `Ok(None)` when auth is off or
    /// the path is open.
    fn admit<B>(&self, req: &http::Request<B>) -> Result<Option<Principal>, Status> {
        let state = self.ctx.auth.current();
        let path = req.uri().path();
        if OPEN.iter().any(|p| path.starts_with(p)) {
            return Ok(None);
        }
        // Until the node knows whether auth is on (a data dir that lost its copy, a
        // node joining), it serves no client; nodes' calls go on, so that it can
        // learn (its Raft messages, a heartbeat if it leads the meta shard).
        if !self.ctx.auth.learned() && !PEER_ONLY.iter().any(|p| path.starts_with(p)) {
            return Err(Status::from(Error::NodeNotReady(
                "this node has not yet learned the cluster's auth settings from the meta \
                 shard; retry, or ask another node"
                    .into(),
            )));
        }
        if !state.enabled() {
            return Ok(None);
        }
        let bearer = req.headers().get(http::header::AUTHORIZATION).map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.strip_prefix("Bearer "))
                .map(str::trim)
                .unwrap_or("")
        });
        let certs = req
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|i| i.peer_certs());
        let leaf = certs.as_deref().and_then(|c| c.first());
        let cert_name = leaf.and_then(crate::server::tls::common_name);
        let peer_cert = match (&self.tls, &cert_name) {
            (Some(tls), Some(cn)) => tls.is_named_peer(cn),
            _ => false,
        };
        let principal = state
            .authenticate(&Credentials {
                bearer,
                peer_cert,
                cert_name,
            })
            .map_err(Status::from)?
            .ok_or_else(|| Status::internal("auth is on but no principal"))?;
        let peer = matches!(principal, Principal::Peer);
        if PEER_ONLY.iter().any(|p| path.starts_with(p)) && !peer {
            return Err(Status::from(Error::PermissionDenied(format!(
                "{path} is for cluster nodes"
            ))));
        }
        if ROOT_ONLY.iter().any(|p| path.starts_with(p)) && !principal.is_root() {
            return Err(Status::from(Error::PermissionDenied(format!(
                "{path} needs the role root; user {:?} does not have it",
                principal.name()
            ))));
        }
        Ok(Some(principal))
    }
}

impl<S, B, RB> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        match self.layer.admit(&req) {
            Ok(Some(p)) => {
                req.extensions_mut().insert(p);
            }
            Ok(None) => {}
            Err(status) => {
                self.layer.ctx.metrics.auth_refused(status.code());
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
        }
        Box::pin(self.inner.call(req))
    }
}

/// The caller of a request, as [`AuthLayer`] found it (`None`: auth was off).
pub(crate) fn principal<T>(req: &Request<T>) -> Option<Principal> {
    req.extensions().get::<Principal>().cloned()
}

/// Whether the caller may do `access` on the `kind` name (or prefix) `name`.
pub(crate) fn authorize(
    who: &Option<Principal>,
    kind: ResourceKind,
    name: &[u8],
    access: Access,
) -> crate::error::Result<()> {
    match who {
        None => Ok(()),
        Some(p) => p.check(kind, name, access),
    }
}

/// `stream`, ended with `PERMISSION_DENIED` as soon as the node's auth state no
/// longer lets `who` read `name`: checked once more when the stream starts (a state
/// installed between the call's admission and this subscription counts), then at
/// every change.
pub(crate) fn guard<T: Send + 'static>(
    ctx: &Arc<NodeCtx>,
    who: Option<Principal>,
    kind: ResourceKind,
    name: Vec<u8>,
    stream: RpcStream<T>,
) -> RpcStream<T> {
    let mut changes = ctx.auth.subscribe();
    let revoked = Arc::new(AtomicBool::new(false));
    let ended = {
        let ctx = ctx.clone();
        let revoked = revoked.clone();
        async move {
            loop {
                let state = ctx.auth.current();
                let allowed = !state.enabled()
                    || who
                        .as_ref()
                        .and_then(|p| state.refresh(p))
                        .is_some_and(|p| p.allows(kind, &name, Access::Read));
                if !allowed {
                    revoked.store(true, Ordering::SeqCst);
                    return;
                }
                if changes.changed().await.is_err() {
                    break;
                }
            }
            // The hub is gone (the node is stopping): let the stream end by itself.
            std::future::pending::<()>().await;
        }
    };
    let tail = futures::stream::once(async move { revoked.load(Ordering::SeqCst) }).filter_map(
        |revoked| {
            std::future::ready(revoked.then(|| {
                Err(Status::from(Error::PermissionDenied(
                    "the caller's permissions changed: it may no longer watch this".into(),
                )))
            }))
        },
    );
    Box::pin(stream.take_until(ended).chain(tail))
}

/// `ctxstore.v1.Auth`.
pub(crate) struct AuthApi {
    ctx: Arc<NodeCtx>,
}

impl AuthApi {
    pub(crate) fn new(ctx: Arc<NodeCtx>) -> Self {
        Self { ctx }
    }
}

#[tonic::async_trait]
impl Auth for AuthApi {
    async fn change(
        &self,
        req: Request<AuthChangeRequest>,
    ) -> Result<Response<AuthChangeResponse>, Status> {
        let forward = !req.metadata().contains_key(crate::meta::service::FORWARDED);
        let r = crate::meta::service::auth_change(&self.ctx, req.into_inner(), forward).await?;
        Ok(Response::new(r))
    }

    async fn get(&self, _req: Request<GetAuthRequest>) -> Result<Response<AuthStore>, Status> {
        Ok(Response::new(crate::auth::redacted(
            self.ctx.auth.current().store(),
        )))
    }

    async fn who_am_i(
        &self,
        req: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let enabled = self.ctx.auth.current().enabled();
        let r = match principal(&req) {
            None => WhoAmIResponse {
                auth_enabled: enabled,
                name: "anonymous".into(),
                roles: Vec::new(),
                method: "none".into(),
            },
            Some(Principal::Peer) => WhoAmIResponse {
                auth_enabled: enabled,
                name: "peer".into(),
                roles: Vec::new(),
                method: "certificate".into(),
            },
            Some(Principal::User { grants, token }) => WhoAmIResponse {
                auth_enabled: enabled,
                name: grants.name.clone(),
                roles: grants.roles.clone(),
                method: if token.is_some() {
                    "token"
                } else {
                    "certificate"
                }
                .into(),
            },
        };
        Ok(Response::new(r))
    }
}
