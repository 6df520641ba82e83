//! `ctxstore.v1.Kv`: validates, proposes writes to the shard leader, and serves
//! linearizable (ReadIndex) or stale reads from the local replica.

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::fsm::read::View;
use crate::keys;
use crate::node::ctx::NodeCtx;
use crate::proto::agent_context_server::AgentContext;
use crate::proto::kv_server::Kv;
use crate::proto::{
    batch_command, batch_command_result, batch_op, write_op, BatchCommandsRequest,
    BatchCommandsResponse, BatchRequest, BatchResponse, CompareAndSwapRequest,
    CompareAndSwapResponse, DeleteRequest, DeleteResponse, GetRequest, GetResponse, KeyValue,
    PutRequest, PutResponse, ScanRequest, ScanResponse, WriteCheck, WriteDelete, WriteOp,
};
use crate::proto::{Access, ResourceKind};
use crate::server::auth::{authorize, guard, principal};
use crate::server::context::ContextService;
use crate::server::path::{to_kv, RequestPath};
use crate::server::watch::{change_stream, RpcStream};
use crate::util::now_ms;
use bytes::Bytes;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Scan page size when the request sets none.
const DEFAULT_SCAN_LIMIT: u64 = 1_000;

pub(crate) struct KvService {
    /// Routing, checks and proposals shared with `AgentContext`.
    path: RequestPath,
}

impl KvService {
    pub(crate) fn new(ctx: Arc<NodeCtx>) -> Self {
        Self {
            path: RequestPath::new(ctx),
        }
    }
}

/// Scans the local replica: one contiguous range when the prefix pins a hash tag,
/// otherwise the whole shard, sorted by key.
fn scan_local(
    view: &View<'_>,
    ranges: &[(Vec<u8>, Vec<u8>)],
    prefix: &[u8],
    start_after: &[u8],
    limit: usize,
) -> Result<(Vec<KeyValue>, bool)> {
    let mut out = Vec::new();
    // One point in time (the view's) for every range, so a batch applied mid-scan is
    // seen whole or not at all.
    let accept = |user_key: &[u8]| {
        user_key.starts_with(prefix)
            && user_key > start_after
            && user_key.first() != Some(&crate::context::RESERVED_PREFIX)
    };
    if let Some(tag) = keys::prefix_partition(prefix) {
        let hash = xxhash_rust::xxh3::xxh3_64(tag).to_be_bytes();
        let mut start = hash.to_vec();
        start.extend_from_slice(start_after.max(prefix));
        let mut upper = hash.to_vec();
        upper.extend_from_slice(prefix);
        let end = keys::prefix_end(&upper).unwrap_or_else(|| vec![0xff; upper.len() + 1]);
        let mut more = false;
        view.visit(
            start,
            end,
            false,
            false,
            |k| accept(k) && keys::partition_key(k) == tag,
            |k, rec| {
                if out.len() == limit {
                    more = true;
                    return Ok(false);
                }
                out.push(to_kv(Bytes::copy_from_slice(k), rec));
                Ok(true)
            },
        )?;
        return Ok((out, more));
    }
    view.visit_ranges(ranges, b"", false, accept, |k, rec| {
        out.push(to_kv(Bytes::copy_from_slice(k), rec));
        Ok(true)
    })?;
    out.sort_by(|a, b| a.key.cmp(&b.key));
    let more = out.len() > limit;
    out.truncate(limit);
    Ok((out, more))
}

/// `Kv.Get` (also a call of a `BatchCommands` stream).
pub(crate) async fn get(
    path: &RequestPath,
    who: &Option<Principal>,
    req: GetRequest,
) -> Result<GetResponse> {
    path.check_key("key", &req.key)?;
    authorize(who, ResourceKind::Kv, &req.key, Access::Read)?;
    let peer = path
        .read_barrier(&req.header, Some(keys::key_hash(&req.key)), req.stale)
        .await?;
    let key = req.key;
    let cached_key = key.clone();
    let kv = path
        .read_local_cached(
            &peer,
            move |ctx| {
                let rec = crate::fsm::read::get_live_cached(&ctx.engine, &cached_key, now_ms())?;
                Ok(rec.map(|r| r.map(|r| to_kv(cached_key, r))))
            },
            move |ctx| {
                let rec = crate::fsm::read::get_live(&ctx.engine, &key, now_ms())?;
                Ok(rec.map(|r| to_kv(key, r)))
            },
        )
        .await?;
    Ok(GetResponse { kv })
}

/// `Kv.Put` (also a call of a `BatchCommands` stream).
pub(crate) async fn put(
    path: &RequestPath,
    who: &Option<Principal>,
    req: PutRequest,
) -> Result<PutResponse> {
    authorize(who, ResourceKind::Kv, &req.key, Access::Write)?;
    let now = now_ms();
    let op = path.put_op(req.key, req.value, req.ttl_ms, req.lease_id, now)?;
    let o = path
        .propose(&req.header, req.request_id, now, vec![op])
        .await?;
    Ok(PutResponse {
        version: o.version,
        create_version: o.per_op.first().copied().unwrap_or(o.version),
    })
}

/// Runs an agent call of a `BatchCommands` stream through `AgentContext`'s unary
/// handler `$method`, as a request made with the stream's principal `$who`.
macro_rules! agent {
    ($method:ident, $path:expr, $who:expr, $req:expr) => {{
        let mut req = Request::new($req);
        if let Some(p) = $who {
            req.extensions_mut().insert::<Principal>(p);
        }
        AgentContext::$method(&ContextService::from_path($path), req)
            .await?
            .into_inner()
    }};
}

#[tonic::async_trait]
impl Kv for KvService {
    type WatchStream = RpcStream<crate::proto::WatchResponse>;

    async fn watch(
        &self,
        req: Request<crate::proto::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        use crate::proto::{watch_event::Kind, WatchEvent, WatchResponse};
        let who = principal(&req);
        let req = req.into_inner();
        let (pattern, exact) = match (req.key.is_empty(), req.prefix.is_empty()) {
            (false, true) => (req.key, true),
            (true, false) => (req.prefix, false),
            _ => return Err(Error::invalid("key", "set exactly one of key and prefix").into()),
        };
        self.path
            .check_key(if exact { "key" } else { "prefix" }, &pattern)?;
        authorize(&who, ResourceKind::Kv, &pattern, Access::Read)?;
        let watched = pattern.to_vec();
        let hash = if exact {
            keys::key_hash(&pattern)
        } else {
            let tag = keys::prefix_partition(&pattern).ok_or_else(|| {
                Error::invalid(
                    "prefix",
                    "a watched prefix must start with a complete hash tag `{...}` (one shard)",
                )
            })?;
            xxhash_rust::xxh3::xxh3_64(tag)
        };
        let peer = self.path.route_watch(&req.header, hash, req.from_version)?;
        let stream = change_stream(
            self.path.ctx().clone(),
            peer.shard,
            hash,
            req.from_version,
            move |c| {
                let hit = if exact {
                    c.key == pattern
                } else {
                    c.key.starts_with(&pattern)
                };
                hit.then(|| WatchEvent {
                    kind: if c.record.is_some() {
                        Kind::Put
                    } else {
                        Kind::Delete
                    } as i32,
                    version: c.version,
                    kv: Some(match &c.record {
                        Some(r) => to_kv(c.key.clone(), r.clone()),
                        None => KeyValue {
                            key: c.key.clone(),
                            version: c.version,
                            ..Default::default()
                        },
                    }),
                })
            },
            |events, progress_version, moved| WatchResponse {
                events,
                progress_version,
                moved,
            },
        )
        .await?;
        Ok(Response::new(guard(
            self.path.ctx(),
            who,
            ResourceKind::Kv,
            watched,
            stream,
        )))
    }

    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let who = principal(&req);
        Ok(Response::new(
            get(&self.path, &who, req.into_inner()).await?,
        ))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let who = principal(&req);
        Ok(Response::new(
            put(&self.path, &who, req.into_inner()).await?,
        ))
    }

    type BatchCommandsStream = RpcStream<BatchCommandsResponse>;

    async fn batch_commands(
        &self,
        req: Request<tonic::Streaming<BatchCommandsRequest>>,
    ) -> Result<Response<Self::BatchCommandsStream>, Status> {
        let who = principal(&req);
        Ok(Response::new(crate::server::batch::serve(
            self.path.clone(),
            who,
            req.into_inner(),
            |path, who, cmd| async move {
                use batch_command::Cmd;
                use batch_command_result::Result as Answer;
                match cmd {
                    Cmd::Get(r) => Ok(Answer::Get(get(&path, &who, r).await?)),
                    Cmd::Put(r) => Ok(Answer::Put(put(&path, &who, r).await?)),
                    // The agent calls run as `AgentContext`'s own handlers, with the
                    // stream's principal as the request's.
                    Cmd::Append(r) => Ok(Answer::Append(agent!(append, path, who, r))),
                    Cmd::Read(r) => Ok(Answer::Read(agent!(read, path, who, r))),
                    Cmd::PutCheckpoint(r) => {
                        Ok(Answer::PutCheckpoint(agent!(put_checkpoint, path, who, r)))
                    }
                    Cmd::PutWrites(r) => Ok(Answer::PutWrites(agent!(put_writes, path, who, r))),
                    Cmd::GetCheckpoint(r) => {
                        Ok(Answer::GetCheckpoint(agent!(get_checkpoint, path, who, r)))
                    }
                }
            },
        )))
    }

    async fn delete(
        &self,
        req: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        self.path.check_key("key", &req.key)?;
        authorize(&who, ResourceKind::Kv, &req.key, Access::Write)?;
        let op = WriteOp {
            op: Some(write_op::Op::Delete(WriteDelete { key: req.key })),
        };
        let o = self
            .path
            .propose(&req.header, req.request_id, now_ms(), vec![op])
            .await?;
        Ok(Response::new(DeleteResponse {
            deleted: o.per_op.first().copied().unwrap_or(0) == 1,
            version: o.version,
        }))
    }

    async fn compare_and_swap(
        &self,
        req: Request<CompareAndSwapRequest>,
    ) -> Result<Response<CompareAndSwapResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        let now = now_ms();
        self.path.check_key("key", &req.key)?;
        // A CAS learns the key's version when it fails: a read as well as a write.
        authorize(&who, ResourceKind::Kv, &req.key, Access::Readwrite)?;
        let check = WriteOp {
            op: Some(write_op::Op::Check(WriteCheck {
                key: req.key.clone(),
                expected_version: req.expected_version,
            })),
        };
        let write = if req.delete {
            WriteOp {
                op: Some(write_op::Op::Delete(WriteDelete { key: req.key })),
            }
        } else {
            self.path
                .put_op(req.key, req.value, req.ttl_ms, req.lease_id, now)?
        };
        let deleting = req.delete;
        let o = self
            .path
            .propose(&req.header, req.request_id, now, vec![check, write])
            .await?;
        Ok(Response::new(CompareAndSwapResponse {
            version: o.version,
            // A delete leaves no key, so there is no create version to report.
            create_version: if deleting {
                0
            } else {
                o.per_op.get(1).copied().unwrap_or(0)
            },
        }))
    }

    async fn batch(&self, req: Request<BatchRequest>) -> Result<Response<BatchResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        let max = self.path.ctx().config().limits.max_batch_ops;
        if req.ops.len() as u64 > max {
            return Err(Error::limit("max-batch-ops", max, req.ops.len() as u64).into());
        }
        if req.ops.is_empty() {
            return Err(Error::invalid("ops", "a batch needs at least one operation").into());
        }
        let now = now_ms();
        let mut ops = Vec::with_capacity(req.ops.len());
        for (i, op) in req.ops.into_iter().enumerate() {
            // Every operation is checked before anything is proposed: all or nothing.
            let w = match op.op {
                Some(batch_op::Op::Put(p)) => {
                    authorize(&who, ResourceKind::Kv, &p.key, Access::Write)?;
                    self.path
                        .put_op(p.key, p.value, p.ttl_ms, p.lease_id, now)?
                }
                Some(batch_op::Op::Delete(d)) => {
                    self.path.check_key("ops.delete.key", &d.key)?;
                    authorize(&who, ResourceKind::Kv, &d.key, Access::Write)?;
                    WriteOp {
                        op: Some(write_op::Op::Delete(WriteDelete { key: d.key })),
                    }
                }
                Some(batch_op::Op::Check(c)) => {
                    self.path.check_key("ops.check.key", &c.key)?;
                    authorize(&who, ResourceKind::Kv, &c.key, Access::Read)?;
                    WriteOp {
                        op: Some(write_op::Op::Check(WriteCheck {
                            key: c.key,
                            expected_version: c.expected_version,
                        })),
                    }
                }
                None => return Err(Error::invalid("ops", format!("operation {i} is empty")).into()),
            };
            ops.push(w);
        }
        let o = self
            .path
            .propose(&req.header, req.request_id, now, ops)
            .await?;
        Ok(Response::new(BatchResponse { version: o.version }))
    }

    async fn scan(&self, req: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        // The grant must cover the whole prefix: a scan is refused, never filtered.
        authorize(&who, ResourceKind::Kv, &req.prefix, Access::Read)?;
        let max = self.path.ctx().config().limits.max_scan_limit;
        let limit = match u64::from(req.limit) {
            0 => DEFAULT_SCAN_LIMIT.min(max),
            l if l > max => return Err(Error::limit("max-scan-limit", max, l).into()),
            l => l,
        } as usize;
        if req.prefix.len() as u64 > self.path.ctx().config().limits.max_key_size {
            return Err(Error::limit(
                "max-key-size",
                self.path.ctx().config().limits.max_key_size,
                req.prefix.len() as u64,
            )
            .into());
        }
        let hash = keys::prefix_partition(&req.prefix).map(xxhash_rust::xxh3::xxh3_64);
        let peer = self.path.read_barrier(&req.header, hash, req.stale).await?;
        let ranges = self.path.shard_ranges(peer.shard);
        let (prefix, after) = (req.prefix, req.start_after);
        let (kvs, more) = self
            .path
            .read_view(&peer, move |v| {
                scan_local(v, &ranges, &prefix, &after, limit)
            })
            .await?;
        Ok(Response::new(ScanResponse { kvs, more }))
    }
}
