//! `ctxstore.v1.Lease`: leases of one partition each (docs/api.md, "Leases"). Grants
//! and revokes go through Raft (`fsm::command`: a revoke deletes the lease's keys in
//! the same command); keepalives and the deadlines are the leader's alone
//! (`node::lease`), answered after a ReadIndex round so that only a leader still in
//! its reign renews.

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::keys;
use crate::node::ctx::NodeCtx;
use crate::node::lease::Renewal;
use crate::proto::lease_server::Lease;
use crate::proto::{
    command_result, lease_command, raft_command, Access, LeaseCommand, LeaseGrant,
    LeaseGrantRequest, LeaseGrantResponse, LeaseInfoRequest, LeaseInfoResponse,
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRecord, LeaseRevokeRequest,
    LeaseRevokeResponse, ReadMode, RequestHeader, ResourceKind,
};
use crate::raft::handle::PeerHandle;
use crate::server::auth::{authorize, principal};
use crate::server::path::{outcome, RequestPath};
use crate::server::watch::{next_inbound, RpcStream};
use crate::util::now_ms;
use prost::Message as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

/// The shortest TTL a lease may have.
pub(crate) const MIN_LEASE_TTL_MS: u64 = 100;
/// The longest TTL a lease may have (one day).
pub(crate) const MAX_LEASE_TTL_MS: u64 = 86_400_000;

pub(crate) struct LeaseService {
    path: Arc<RequestPath>,
}

impl LeaseService {
    pub(crate) fn new(ctx: Arc<NodeCtx>) -> Self {
        Self {
            path: Arc::new(RequestPath::new(ctx)),
        }
    }
}

/// The record user key and partition hash of lease `id` of `key`'s partition, after
/// checking both and the caller's `access` to `key`.
fn lease_ref(
    path: &RequestPath,
    who: &Option<Principal>,
    key: &[u8],
    id: u64,
    access: Access,
) -> Result<(Vec<u8>, u64)> {
    path.check_key("key", key)?;
    if id == 0 {
        return Err(Error::invalid("id", "must not be 0"));
    }
    let lk = crate::context::lease_key("key", key, id)?;
    authorize(who, ResourceKind::Kv, key, access)?;
    let hash = keys::key_hash(&lk);
    Ok((lk, hash))
}

/// The request's header with its read mode set to the leader's: lease calls are
/// answered by the leader of the lease's shard, whatever the client asked.
fn at_leader(header: &Option<RequestHeader>) -> Option<RequestHeader> {
    let mut h = (*header).unwrap_or_default();
    h.read_mode = ReadMode::Leader as i32;
    h.max_staleness_ms = 0;
    h.min_version = 0;
    Some(h)
}

/// After a ReadIndex round at the leader of lease `lk`'s shard: the leader's replica
/// and the lease's record there (None: no such lease).
async fn read_lease(
    path: &RequestPath,
    header: &Option<RequestHeader>,
    lk: &[u8],
    hash: u64,
) -> Result<(PeerHandle, Option<LeaseRecord>)> {
    let peer = path
        .read_barrier(&at_leader(header), Some(hash), false)
        .await?;
    let lk = lk.to_vec();
    let rec = path.read_view(&peer, move |v| v.get(&lk)).await?;
    let lease = rec
        .map(|r| LeaseRecord::decode(r.value.as_ref()))
        .transpose()?;
    Ok((peer, lease))
}

/// Renews one lease for a keepalive stream.
async fn renew(
    path: &RequestPath,
    who: &Option<Principal>,
    req: LeaseKeepAliveRequest,
) -> Result<LeaseKeepAliveResponse> {
    let (lk, hash) = lease_ref(path, who, &req.key, req.id, Access::Write)?;
    let (peer, lease) = read_lease(path, &req.header, &lk, hash).await?;
    let ttl = lease.map(|l| Duration::from_millis(l.ttl_ms));
    let ttl_ms = match path.ctx().leases.renew(&peer, &lk, ttl) {
        Renewal::Renewed(ttl) => u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        Renewal::Gone => 0,
    };
    Ok(LeaseKeepAliveResponse { id: req.id, ttl_ms })
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        if !(MIN_LEASE_TTL_MS..=MAX_LEASE_TTL_MS).contains(&req.ttl_ms) {
            return Err(Error::invalid(
                "ttl_ms",
                format!(
                    "must be {MIN_LEASE_TTL_MS} ..= {MAX_LEASE_TTL_MS}, got {}",
                    req.ttl_ms
                ),
            )
            .into());
        }
        // A retry of the same request must name the same lease: the id comes from the
        // request id when there is one.
        let from_request = !req.request_id.is_empty();
        let mut id = if from_request {
            xxhash_rust::xxh3::xxh3_64(&req.request_id)
        } else {
            rand::random()
        };
        for _ in 0..3 {
            id = id.max(1);
            let (lk, hash) = lease_ref(&self.path, &who, &req.key, id, Access::Write)?;
            let cmd = raft_command::Cmd::Lease(LeaseCommand {
                op: Some(lease_command::Op::Grant(LeaseGrant {
                    key: lk.clone().into(),
                    ttl_ms: req.ttl_ms,
                })),
            });
            let r = self
                .path
                .propose_cmd(
                    &req.header,
                    Some(hash),
                    req.request_id.clone(),
                    now_ms(),
                    cmd,
                )
                .await?;
            if let Some(command_result::Result::Refused(_)) = r.result {
                if from_request {
                    return Err(Error::FailedPrecondition(
                        "a lease with the id this request id names exists: send another request id"
                            .into(),
                    )
                    .into());
                }
                id = rand::random();
                continue;
            }
            let o = outcome(r)?;
            if let Ok(peer) = self.path.route(&req.header, Some(hash)) {
                self.path
                    .ctx()
                    .leases
                    .granted(&peer, lk, Duration::from_millis(req.ttl_ms));
            }
            return Ok(Response::new(LeaseGrantResponse {
                id,
                ttl_ms: req.ttl_ms,
                version: o.version,
            }));
        }
        Err(Error::Internal("no free lease id after 3 tries".into()).into())
    }

    async fn revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        let (lk, hash) = lease_ref(&self.path, &who, &req.key, req.id, Access::Write)?;
        let cmd = raft_command::Cmd::Lease(LeaseCommand {
            op: Some(lease_command::Op::Revoke(lk.clone().into())),
        });
        let r = self
            .path
            .propose_cmd(&req.header, Some(hash), req.request_id, now_ms(), cmd)
            .await?;
        let o = outcome(r)?;
        if let Ok(peer) = self.path.route(&req.header, Some(hash)) {
            self.path.ctx().leases.revoked(peer.shard, &lk);
        }
        Ok(Response::new(LeaseRevokeResponse {
            revoked: o.per_op.first().is_some_and(|n| *n != 0),
            keys_deleted: o.per_op.get(1).copied().unwrap_or(0),
            version: o.version,
        }))
    }

    type KeepAliveStream = RpcStream<LeaseKeepAliveResponse>;

    async fn keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::KeepAliveStream>, Status> {
        let who = principal(&req);
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let path = self.path.clone();
        let ctx = path.ctx().clone();
        let tracker = ctx.tracker.clone();
        tracker.spawn(async move {
            while let Some(req) = next_inbound(&ctx, &mut inbound, "keepalive").await {
                let answer = renew(&path, &who, req).await.map_err(Status::from);
                let last = answer.is_err();
                if tx.send(answer).await.is_err() || last {
                    return;
                }
            }
        });
        let out = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(out) as Self::KeepAliveStream))
    }

    async fn info(
        &self,
        req: Request<LeaseInfoRequest>,
    ) -> Result<Response<LeaseInfoResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        let (lk, hash) = lease_ref(&self.path, &who, &req.key, req.id, Access::Read)?;
        let (peer, lease) = read_lease(&self.path, &req.header, &lk, hash).await?;
        let Some(lease) = lease else {
            return Ok(Response::new(LeaseInfoResponse::default()));
        };
        let remaining = self
            .path
            .ctx()
            .leases
            .remaining(peer.shard, &lk)
            .map_or(lease.ttl_ms, |d| {
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
            });
        Ok(Response::new(LeaseInfoResponse {
            found: true,
            ttl_ms: lease.ttl_ms,
            remaining_ms: remaining,
            keys: lease.keys,
        }))
    }
}
