//! `ctxstore.v1.Kv`: validates, proposes writes to the shard leader, and serves
//! linearizable (ReadIndex) or stale reads from the local replica.

use crate::context::read::View;
use crate::error::{Error, Result};
use crate::keys;
use crate::node::NodeCtx;
use crate::proto::kv_server::Kv;
use crate::proto::{
    batch_op, command_result, raft_command, write_op, BatchRequest, BatchResponse, CommandResult,
    CompareAndSwapRequest, CompareAndSwapResponse, DeleteRequest, DeleteResponse, GetRequest,
    GetResponse, KeyValue, PutRequest, PutResponse, RequestHeader, ScanRequest, ScanResponse,
    ValueRecord, WriteBatch, WriteCheck, WriteDelete, WriteOp, WriteOutcome, WritePut,
};
use crate::raft::{PeerHandle, PeerMsg};
use crate::server::{await_reply, now_ms};
use crate::types::{ShardId, DEFAULT_SHARD};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

/// Longest client request id.
const MAX_REQUEST_ID: usize = 64;
/// Scan page size when the request sets none.
const DEFAULT_SCAN_LIMIT: u64 = 1_000;

pub(crate) struct KvService {
    ctx: Arc<NodeCtx>,
}

impl KvService {
    pub(crate) fn new(ctx: Arc<NodeCtx>) -> Self {
        Self { ctx }
    }

    /// The local replica to serve a request for ring position `hash` (None: a request
    /// without a key, such as an untagged scan). Shard 0 in the header means "the shard
    /// the ring names"; a named shard must own the hash.
    pub(crate) fn route(
        &self,
        header: &Option<RequestHeader>,
        hash: Option<u64>,
    ) -> Result<PeerHandle> {
        let asked = header.as_ref().map_or(0, |h| h.shard_id);
        let owner = match (self.ctx.ring(), hash) {
            (Some(ring), Some(h)) => ring.shard_for_hash(h),
            _ => None,
        };
        let shard = match (asked, owner) {
            (0, Some(o)) => o,
            (0, None) => DEFAULT_SHARD,
            (s, Some(o)) if o != ShardId(s) => return Err(Error::WrongShard { shard: ShardId(s) }),
            (s, _) => ShardId(s),
        };
        if let Some(p) = self.ctx.peer(shard) {
            check_epoch(header, &p)?;
            return Ok(p);
        }
        if self.ctx.peers().is_empty() {
            return Err(Error::NodeNotReady(
                "this node hosts no replica yet (starting, or waiting to be added)".into(),
            ));
        }
        Err(Error::WrongShard { shard })
    }

    fn check_key(&self, field: &str, key: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(Error::invalid(field, "must not be empty"));
        }
        if key[0] == crate::context::RESERVED_PREFIX {
            return Err(Error::invalid(
                field,
                "keys starting with byte 0x00 are reserved for the agent context API",
            ));
        }
        let max = self.ctx.config.limits.max_key_size;
        if key.len() as u64 > max {
            return Err(Error::limit("max-key-size", max, key.len() as u64));
        }
        Ok(())
    }

    /// A value (or a whole context command) must fit `max-value-size`.
    pub(crate) fn check_value_size(&self, size: usize) -> Result<()> {
        let max = self.ctx.config.limits.max_value_size;
        if size as u64 > max {
            return Err(Error::limit("max-value-size", max, size as u64));
        }
        Ok(())
    }

    pub(crate) fn check_request_id(id: &[u8]) -> Result<()> {
        if id.len() > MAX_REQUEST_ID {
            return Err(Error::invalid(
                "request_id",
                format!("at most {MAX_REQUEST_ID} bytes, got {}", id.len()),
            ));
        }
        Ok(())
    }

    fn put_op(&self, key: Bytes, value: Bytes, ttl_ms: u64, now: u64) -> Result<WriteOp> {
        self.check_key("key", &key)?;
        self.check_value_size(value.len())?;
        let expires_at_ms = if ttl_ms == 0 {
            0
        } else {
            now.saturating_add(ttl_ms)
        };
        Ok(WriteOp {
            op: Some(write_op::Op::Put(WritePut {
                key,
                value,
                expires_at_ms,
            })),
        })
    }

    pub(crate) async fn propose(
        &self,
        header: &Option<RequestHeader>,
        request_id: Bytes,
        now: u64,
        ops: Vec<WriteOp>,
    ) -> Result<WriteOutcome> {
        Self::check_request_id(&request_id)?;
        // Every key of one command must live in one shard (an atomic batch spans one
        // hash tag, or keys that happen to share a shard).
        let ring = self.ctx.ring();
        let mut hash = None;
        for op in &ops {
            let key = match &op.op {
                Some(write_op::Op::Put(p)) => &p.key,
                Some(write_op::Op::Delete(d)) => &d.key,
                Some(write_op::Op::Check(c)) => &c.key,
                None => continue,
            };
            let h = keys::key_hash(key);
            match (&ring, hash) {
                (Some(r), Some(first)) if r.shard_for_hash(first) != r.shard_for_hash(h) => {
                    return Err(Error::invalid(
                        "ops",
                        "an atomic batch must stay within one shard: put related keys under one hash tag `{...}`",
                    ));
                }
                _ => hash = hash.or(Some(h)),
            }
        }
        let r = self
            .propose_cmd(
                header,
                hash,
                request_id,
                now,
                raft_command::Cmd::Write(WriteBatch { ops }),
            )
            .await?;
        outcome(r)
    }

    /// Proposes `cmd` to the replica of the shard owning `hash` and waits for its
    /// result.
    pub(crate) async fn propose_cmd(
        &self,
        header: &Option<RequestHeader>,
        hash: Option<u64>,
        request_id: Bytes,
        now: u64,
        cmd: raft_command::Cmd,
    ) -> Result<CommandResult> {
        Self::check_request_id(&request_id)?;
        self.route(header, hash)?
            .propose(request_id, now, cmd)
            .await
    }

    /// Waits until the local replica may serve a linearizable read (or none for stale).
    pub(crate) async fn read_barrier(
        &self,
        header: &Option<RequestHeader>,
        hash: Option<u64>,
        stale: bool,
    ) -> Result<PeerHandle> {
        let peer = self.route(header, hash)?;
        if stale {
            return Ok(peer);
        }
        let (tx, rx) = oneshot::channel();
        peer.send(PeerMsg::ReadIndex(tx)).await?;
        await_reply(peer.shard, rx).await?;
        Ok(peer)
    }

    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&NodeCtx) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let ctx = self.ctx.clone();
        tokio::task::spawn_blocking(move || f(&ctx))
            .await
            .map_err(|e| Error::Internal(format!("read task: {e}")))?
    }
}

impl KvService {
    /// The `data` CF ranges of a shard's ring arcs.
    pub(crate) fn shard_ranges(&self, shard: ShardId) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.ctx.data_ranges(shard)
    }

    /// The node's shared context.
    pub(crate) fn ctx(&self) -> &Arc<NodeCtx> {
        &self.ctx
    }
}

/// Rejects a request routed with another ring version or an older membership version
/// than the replica's (DESIGN §5). A zero field skips its check; a client whose
/// `conf_ver` is ahead of a lagging replica passes.
fn check_epoch(header: &Option<RequestHeader>, peer: &PeerHandle) -> Result<()> {
    let Some(h) = header else { return Ok(()) };
    let (conf_ver, ring_ver) = peer.epoch.get();
    let stale_ring = h.ring_ver != 0 && h.ring_ver != ring_ver;
    let stale_conf = h.conf_ver != 0 && h.conf_ver < conf_ver;
    if stale_ring || stale_conf {
        return Err(Error::StaleEpoch {
            shard: peer.shard,
            conf_ver,
            ring_ver,
        });
    }
    Ok(())
}

pub(crate) fn outcome(r: CommandResult) -> Result<WriteOutcome> {
    match r.result {
        Some(command_result::Result::Ok(o)) => Ok(o),
        Some(command_result::Result::CheckFailed(c)) => Err(Error::VersionMismatch {
            key: c.key,
            expected: c.expected_version,
            actual: c.actual_version,
        }),
        Some(command_result::Result::Context(_) | command_result::Result::ContextRejected(_))
        | None => Err(Error::Internal("unexpected command result".into())),
    }
}

fn to_kv(key: Bytes, r: ValueRecord) -> KeyValue {
    KeyValue {
        key,
        value: r.value,
        version: r.version,
        create_version: r.create_version,
        expires_at_ms: r.expires_at_ms,
    }
}

/// Scans the local replica: one contiguous range when the prefix pins a hash tag,
/// otherwise the whole shard, sorted by key.
fn scan_local(
    ctx: &NodeCtx,
    ranges: &[(Vec<u8>, Vec<u8>)],
    prefix: &[u8],
    start_after: &[u8],
    limit: usize,
    now: u64,
) -> Result<(Vec<KeyValue>, bool)> {
    let mut out = Vec::new();
    // One point in time for every range, so a batch applied mid-scan is seen whole or
    // not at all.
    let view = View::new(&ctx.engine, now);
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
    for (start, end) in ranges {
        view.visit(
            start.clone(),
            end.clone(),
            false,
            false,
            accept,
            |k, rec| {
                out.push(to_kv(Bytes::copy_from_slice(k), rec));
                Ok(true)
            },
        )?;
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    let more = out.len() > limit;
    out.truncate(limit);
    Ok((out, more))
}

#[tonic::async_trait]
impl Kv for KvService {
    type WatchStream = crate::server::context::RpcStream<crate::proto::WatchResponse>;

    async fn watch(
        &self,
        req: Request<crate::proto::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        use crate::proto::{watch_event::Kind, WatchEvent, WatchResponse};
        let req = req.into_inner();
        let (pattern, exact) = match (req.key.is_empty(), req.prefix.is_empty()) {
            (false, true) => (req.key, true),
            (true, false) => (req.prefix, false),
            _ => return Err(Error::invalid("key", "set exactly one of key and prefix").into()),
        };
        self.check_key(if exact { "key" } else { "prefix" }, &pattern)?;
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
        let peer = self.route(&req.header, Some(hash))?;
        let stream = crate::server::context::change_stream(
            self.ctx.clone(),
            peer.shard,
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
            |events, progress_version| WatchResponse {
                events,
                progress_version,
            },
        )?;
        Ok(Response::new(stream))
    }

    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let req = req.into_inner();
        self.check_key("key", &req.key)?;
        self.read_barrier(&req.header, Some(keys::key_hash(&req.key)), req.stale)
            .await?;
        let key = req.key;
        let kv = self
            .blocking(move |ctx| {
                let rec = crate::context::read::get_live(&ctx.engine, &key, now_ms())?;
                Ok(rec.map(|r| to_kv(key, r)))
            })
            .await?;
        Ok(Response::new(GetResponse { kv }))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let req = req.into_inner();
        let now = now_ms();
        let op = self.put_op(req.key, req.value, req.ttl_ms, now)?;
        let o = self
            .propose(&req.header, req.request_id, now, vec![op])
            .await?;
        Ok(Response::new(PutResponse {
            version: o.version,
            create_version: o.per_op.first().copied().unwrap_or(o.version),
        }))
    }

    async fn delete(
        &self,
        req: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let req = req.into_inner();
        self.check_key("key", &req.key)?;
        let op = WriteOp {
            op: Some(write_op::Op::Delete(WriteDelete { key: req.key })),
        };
        let o = self
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
        let req = req.into_inner();
        let now = now_ms();
        self.check_key("key", &req.key)?;
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
            self.put_op(req.key, req.value, req.ttl_ms, now)?
        };
        let deleting = req.delete;
        let o = self
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
        let req = req.into_inner();
        let max = self.ctx.config.limits.max_batch_ops;
        if req.ops.len() as u64 > max {
            return Err(Error::limit("max-batch-ops", max, req.ops.len() as u64).into());
        }
        if req.ops.is_empty() {
            return Err(Error::invalid("ops", "a batch needs at least one operation").into());
        }
        let now = now_ms();
        let mut ops = Vec::with_capacity(req.ops.len());
        for (i, op) in req.ops.into_iter().enumerate() {
            let w = match op.op {
                Some(batch_op::Op::Put(p)) => self.put_op(p.key, p.value, p.ttl_ms, now)?,
                Some(batch_op::Op::Delete(d)) => {
                    self.check_key("ops.delete.key", &d.key)?;
                    WriteOp {
                        op: Some(write_op::Op::Delete(WriteDelete { key: d.key })),
                    }
                }
                Some(batch_op::Op::Check(c)) => {
                    self.check_key("ops.check.key", &c.key)?;
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
        let o = self.propose(&req.header, req.request_id, now, ops).await?;
        Ok(Response::new(BatchResponse { version: o.version }))
    }

    async fn scan(&self, req: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        let req = req.into_inner();
        let max = self.ctx.config.limits.max_scan_limit;
        let limit = match u64::from(req.limit) {
            0 => DEFAULT_SCAN_LIMIT.min(max),
            l if l > max => return Err(Error::limit("max-scan-limit", max, l).into()),
            l => l,
        } as usize;
        if req.prefix.len() as u64 > self.ctx.config.limits.max_key_size {
            return Err(Error::limit(
                "max-key-size",
                self.ctx.config.limits.max_key_size,
                req.prefix.len() as u64,
            )
            .into());
        }
        let hash = keys::prefix_partition(&req.prefix).map(xxhash_rust::xxh3::xxh3_64);
        let peer = self.read_barrier(&req.header, hash, req.stale).await?;
        let ranges = self.shard_ranges(peer.shard);
        let (prefix, after) = (req.prefix, req.start_after);
        let (kvs, more) = self
            .blocking(move |ctx| scan_local(ctx, &ranges, &prefix, &after, limit, now_ms()))
            .await?;
        Ok(Response::new(ScanResponse { kvs, more }))
    }
}
