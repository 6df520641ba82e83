//! The request path shared by `Kv` and `AgentContext`: routing to the local replica
//! of the key's shard (with the epoch check), input checks, proposing a command and
//! waiting for its result, the ReadIndex barrier, and local reads of RocksDB (from
//! memory on the calling task, else on a blocking thread).

use crate::error::{Error, Result};
use crate::fsm::read::{self, View};
use crate::keys;
use crate::node::ctx::NodeCtx;
use crate::proto::{
    command_result, raft_command, write_op, CommandResult, KeyValue, ReadMode, RequestHeader,
    ValueRecord, WriteBatch, WriteOp, WriteOutcome, WritePut,
};
use crate::raft::handle::{await_reply, PeerHandle, PeerMsg};
use crate::types::{ShardId, DEFAULT_SHARD};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Longest client request id.
pub(crate) const MAX_REQUEST_ID: usize = 64;

/// The request path shared by the data services: routing a request to the local
/// replica of its shard, checking keys, values and request ids, proposing commands
/// and the read barrier.
#[derive(Clone)]
pub(crate) struct RequestPath {
    /// The node's services.
    ctx: Arc<NodeCtx>,
}

impl RequestPath {
    pub(crate) fn new(ctx: Arc<NodeCtx>) -> Self {
        Self { ctx }
    }

    /// The local replica to serve a request for partition hash `hash` (None: a
    /// request without a key, such as an untagged scan), which must own the hash.
    /// Shard 0 in the header means "the shard that owns the hash, as this node
    /// knows"; a named shard that does not own it (any more) is `StaleEpoch`.
    pub(crate) fn route(
        &self,
        header: &Option<RequestHeader>,
        hash: Option<u64>,
    ) -> Result<PeerHandle> {
        let peer = self.replica(header, hash)?;
        if hash.is_some_and(|h| !peer.epoch.owns(h)) {
            return Err(self.ctx.stale_epoch(&peer));
        }
        Ok(peer)
    }

    /// The local replica to serve a watch of partition hash `hash` from `from`: the
    /// shard that owns the hash, or the one that owned it until a split moved it
    /// after `from` (it sends the changes up to the split, then says where the watch
    /// goes on: the new shard's log starts at the split).
    pub(crate) fn route_watch(
        &self,
        header: &Option<RequestHeader>,
        hash: u64,
        from: Option<u64>,
    ) -> Result<PeerHandle> {
        let peer = self.replica(header, Some(hash))?;
        let moved_later = from.is_some_and(|v| self.ctx.watch.moved_after(peer.shard, v, hash));
        if !peer.epoch.owns(hash) && !moved_later {
            return Err(self.ctx.stale_epoch(&peer));
        }
        Ok(peer)
    }

    /// The local replica of the shard a request names (or that owns `hash`), with its
    /// epoch checked but not its ownership of the hash.
    fn replica(&self, header: &Option<RequestHeader>, hash: Option<u64>) -> Result<PeerHandle> {
        let asked = header.as_ref().map_or(0, |h| h.shard_id);
        let shard = match (asked, hash) {
            (0, Some(h)) => self.ctx.owner_of(h).unwrap_or(DEFAULT_SHARD),
            (0, None) => DEFAULT_SHARD,
            (s, _) => ShardId(s),
        };
        // The call's span (`server::grpc_trace`) names the shard it went to.
        tracing::Span::current().record("shard", shard.0);
        if let Some(p) = self.ctx.peer(shard) {
            check_epoch(&self.ctx, header, &p)?;
            return Ok(p);
        }
        if self.ctx.peers().is_empty() {
            return Err(Error::NodeNotReady(
                "this node hosts no replica yet (starting, or waiting to be added)".into(),
            ));
        }
        Err(Error::WrongShard { shard })
    }

    pub(crate) fn check_key(&self, field: &str, key: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(Error::invalid(field, "must not be empty"));
        }
        if key[0] == crate::context::RESERVED_PREFIX {
            return Err(Error::invalid(
                field,
                "keys starting with byte 0x00 are reserved for the agent context API",
            ));
        }
        let max = self.ctx.config().limits.max_key_size;
        if key.len() as u64 > max {
            return Err(Error::limit("max-key-size", max, key.len() as u64));
        }
        Ok(())
    }

    /// A value (or a whole context command) must fit `max-value-size`.
    pub(crate) fn check_value_size(&self, size: usize) -> Result<()> {
        let max = self.ctx.config().limits.max_value_size;
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

    /// A put of `key`, attached to lease `lease_id` of its partition (0: none).
    pub(crate) fn put_op(
        &self,
        key: Bytes,
        value: Bytes,
        ttl_ms: u64,
        lease_id: u64,
        now: u64,
    ) -> Result<WriteOp> {
        self.check_key("key", &key)?;
        self.check_value_size(value.len())?;
        if lease_id != 0 {
            crate::context::lease_key("lease_id", &key, lease_id)?;
        }
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
                lease_id,
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
        let ranges = self.ctx.ranges();
        let mut hash = None;
        for op in &ops {
            let key = match &op.op {
                Some(write_op::Op::Put(p)) => &p.key,
                Some(write_op::Op::Delete(d)) => &d.key,
                Some(write_op::Op::Check(c)) => &c.key,
                None => continue,
            };
            let h = keys::key_hash(key);
            match hash {
                Some(first) if ranges.shard_for_hash(first) != ranges.shard_for_hash(h) => {
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
    /// result. If the shard no longer owns the hash (a split moved it), a retry of a
    /// write that applied here before the split gets that write's result; otherwise
    /// the answer is `StaleEpoch`, which then means "not applied here, and never will
    /// be" (entries after the split that touch the hash are rejected when applied).
    pub(crate) async fn propose_cmd(
        &self,
        header: &Option<RequestHeader>,
        hash: Option<u64>,
        request_id: Bytes,
        now: u64,
        cmd: raft_command::Cmd,
    ) -> Result<CommandResult> {
        Self::check_request_id(&request_id)?;
        let peer = self.replica(header, hash)?;
        let r = if hash.is_some_and(|h| !peer.epoch.owns(h)) {
            let stored = if request_id.is_empty() {
                None
            } else {
                // A snapshot install clears the dedup records before it loads the
                // snapshot's: a read in between would miss a result and send the retry
                // on to the new shard, to be applied twice.
                let token = peer.epoch.install_token();
                if peer.epoch.installing() {
                    return Err(installing(&peer));
                }
                let (shard, rid) = (peer.shard, request_id.clone());
                let stored = self
                    .blocking(move |ctx| read::dedup_result(&ctx.engine, shard, &rid, now))
                    .await?;
                if peer.epoch.installing() || peer.epoch.install_token() != token {
                    return Err(installing(&peer));
                }
                stored
            };
            stored.ok_or_else(|| self.ctx.stale_epoch(&peer))?
        } else {
            peer.propose(request_id, now, hash, cmd).await?
        };
        if let Some(command_result::Result::NotOwned(_)) = r.result {
            return Err(self.ctx.stale_epoch(&peer));
        }
        Ok(r)
    }

    /// Waits until the local replica may serve a read in the request's read mode
    /// (docs/api.md, "Read modes"; a request's own `stale` flag means
    /// `READ_MODE_STALE`), and checks again after the barrier that the shard still
    /// owns the hash (a split may have applied meanwhile).
    pub(crate) async fn read_barrier(
        &self,
        header: &Option<RequestHeader>,
        hash: Option<u64>,
        stale: bool,
    ) -> Result<PeerHandle> {
        let mode = read_at(header, stale)?;
        let peer = self.route(header, hash)?;
        let barrier = match mode {
            ReadAt::Stale => None,
            ReadAt::Bounded { max, min_version } => {
                let applied = peer.epoch.applied();
                let age = peer.epoch.contact_age();
                if applied >= min_version && age.is_some_and(|a| a <= max) {
                    None
                } else if peer.epoch.leading() {
                    // The leader answers linearizably whatever the bound.
                    Some(PeerMsg::ReadIndex as fn(_) -> _)
                } else {
                    return Err(Error::ReplicaTooStale {
                        shard: peer.shard,
                        applied,
                        contact_age_ms: age
                            .map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX)),
                    });
                }
            }
            ReadAt::Leader => Some(PeerMsg::ReadIndex as fn(_) -> _),
            ReadAt::Follower => Some(PeerMsg::ReplicaReadIndex as fn(_) -> _),
        };
        match barrier {
            None if peer.epoch.installing() => {
                // Its data is partly the old state, partly the snapshot's.
                return Err(installing(&peer));
            }
            None => {}
            Some(msg) => {
                let (tx, rx) = oneshot::channel();
                peer.send(msg(tx)).await?;
                await_reply(peer.shard, rx).await?;
            }
        }
        if hash.is_some_and(|h| !peer.epoch.owns(h)) {
            return Err(self.ctx.stale_epoch(&peer));
        }
        if let Some(delay) = self.ctx.reads.served() {
            tokio::time::sleep(delay).await;
        }
        Ok(peer)
    }

    /// Runs a read on the node's local state for a read `peer` has admitted (after
    /// [`RequestPath::read_barrier`]): first `cached` on the calling task, and `f` on
    /// a blocking thread only if `cached` says None. A read that memory (the
    /// memtables, the block cache) can answer then needs no hand-off to a blocking
    /// thread and back, which costs a small read more than the read itself; `cached`
    /// says None when it would need the disk, so the async threads never wait for it.
    ///
    /// A replica's data can change under a read that passed its barrier: a snapshot
    /// install replaces it, a removal deletes it (a follower serving replica reads
    /// while the placement driver moves it away). The read is then refused as
    /// `ShardUnavailable`, and the client retries elsewhere, instead of answering from
    /// half-replaced or deleted data.
    pub(crate) async fn read_local_cached<T: Send + 'static>(
        &self,
        peer: &PeerHandle,
        cached: impl FnOnce(&NodeCtx) -> Result<Option<T>>,
        f: impl FnOnce(&NodeCtx) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let token = peer.epoch.install_token();
        if data_changed(peer, token) {
            return Err(replaced(peer));
        }
        let r = match cached(&self.ctx)? {
            Some(r) => r,
            None => self.blocking(f).await?,
        };
        if data_changed(peer, token) {
            tracing::info!(shard = %peer.shard, "a read's replica was replaced or removed while it read: refused");
            return Err(replaced(peer));
        }
        Ok(r)
    }

    /// [`RequestPath::read_local_cached`] of a view of the replica: `f` runs first on the
    /// calling task on a memory-only view ([`View::in_memory`]: the memtables and the
    /// block cache, a bounded number of records), and again on a blocking thread on a
    /// full view only when that needed the disk or a long scan. Both views judge
    /// expiry by the same `now`.
    pub(crate) async fn read_view<T: Send + 'static>(
        &self,
        peer: &PeerHandle,
        f: impl Fn(&View<'_>) -> Result<T> + Send + Sync + 'static,
    ) -> Result<T> {
        let now = crate::util::now_ms();
        let f = Arc::new(f);
        let on_disk = f.clone();
        self.read_local_cached(
            peer,
            |ctx| View::in_memory(&ctx.engine, now, |v| f(v)),
            move |ctx| on_disk(&View::new(&ctx.engine, now)),
        )
        .await
    }

    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&NodeCtx) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let ctx = self.ctx.clone();
        self.ctx
            .tracker
            .spawn_blocking(move || f(&ctx))
            .await
            .map_err(|e| Error::Internal(format!("read task: {e}")))?
    }

    /// The `data` CF ranges of a shard's ring arcs.
    pub(crate) fn shard_ranges(&self, shard: ShardId) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.ctx.data_ranges(shard)
    }

    /// The node's shared context.
    pub(crate) fn ctx(&self) -> &Arc<NodeCtx> {
        &self.ctx
    }
}

/// Where a read may be served, from its header's read mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadAt {
    /// Linearizable at the leader.
    Leader,
    /// Linearizable at any replica (follower ReadIndex).
    Follower,
    /// A follower in recent contact with its leader that has applied `min_version`,
    /// or the leader (linearizably).
    Bounded {
        max: std::time::Duration,
        min_version: u64,
    },
    /// Any replica's local state.
    Stale,
}

/// The read mode a request asks for; an unknown mode, or a bounded one without a
/// bound, is an `InvalidArgument`.
fn read_at(header: &Option<RequestHeader>, stale: bool) -> Result<ReadAt> {
    if stale {
        return Ok(ReadAt::Stale);
    }
    let Some(h) = header else {
        return Ok(ReadAt::Leader);
    };
    match ReadMode::try_from(h.read_mode) {
        Ok(ReadMode::Leader) => Ok(ReadAt::Leader),
        Ok(ReadMode::Follower) => Ok(ReadAt::Follower),
        Ok(ReadMode::Stale) => Ok(ReadAt::Stale),
        Ok(ReadMode::Bounded) if h.max_staleness_ms == 0 => Err(Error::invalid(
            "header.max_staleness_ms",
            "must be above 0 with READ_MODE_BOUNDED",
        )),
        Ok(ReadMode::Bounded) => Ok(ReadAt::Bounded {
            max: std::time::Duration::from_millis(h.max_staleness_ms),
            min_version: h.min_version,
        }),
        Err(_) => Err(Error::invalid(
            "header.read_mode",
            format!("unknown read mode {}", h.read_mode),
        )),
    }
}

/// Whether `peer`'s data may have changed since its install token was `token`: a
/// snapshot install under way or done since, or the replica removed.
fn data_changed(peer: &PeerHandle, token: u64) -> bool {
    peer.epoch.installing() || peer.epoch.removed() || peer.epoch.install_token() != token
}

/// The answer to a read whose replica's data changed while it read.
fn replaced(peer: &PeerHandle) -> Error {
    Error::ShardUnavailable {
        shard: peer.shard,
        reason: "this replica's data was replaced or removed during the read".into(),
        outcome_unknown: false,
    }
}

/// The answer of a replica whose local state a snapshot install is replacing.
fn installing(peer: &PeerHandle) -> Error {
    Error::ShardUnavailable {
        shard: peer.shard,
        reason: "this replica is installing a snapshot".into(),
        outcome_unknown: false,
    }
}

/// Rejects a request routed with an older ring version than the replica's (DESIGN
/// §5). Only the range epoch counts: membership changes (`conf_ver`) do not change
/// which keys a shard owns, so they send no client through a refresh. A zero field
/// skips the check; a client ahead of a lagging replica passes (the apply-time
/// ownership check stops a write that raced a split).
fn check_epoch(ctx: &NodeCtx, header: &Option<RequestHeader>, peer: &PeerHandle) -> Result<()> {
    let Some(h) = header else { return Ok(()) };
    let (_, ring_ver) = peer.epoch.get();
    if h.ring_ver != 0 && h.ring_ver < ring_ver {
        return Err(ctx.stale_epoch(peer));
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
        Some(command_result::Result::LeaseNotFound(k)) => Err(lease_not_found(&k)),
        Some(command_result::Result::Refused(why)) => Err(Error::FailedPrecondition(why)),
        _ => Err(Error::Internal("unexpected command result".into())),
    }
}

pub(crate) fn to_kv(key: Bytes, r: ValueRecord) -> KeyValue {
    KeyValue {
        key,
        value: r.value,
        version: r.version,
        create_version: r.create_version,
        expires_at_ms: r.expires_at_ms,
        lease_id: r.lease_id,
    }
}

/// The answer to a call naming a lease that does not exist (`lease_key`: its record's
/// user key).
pub(crate) fn lease_not_found(lease_key: &[u8]) -> Error {
    let id = lease_key
        .last_chunk::<8>()
        .map_or(0, |b| u64::from_be_bytes(*b));
    Error::NotFound(format!(
        "lease {id} in partition {}",
        String::from_utf8_lossy(
            lease_key
                .get(3..lease_key.len().saturating_sub(9))
                .unwrap_or_default()
        )
    ))
}
