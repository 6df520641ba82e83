//! `ctxstore.v1.AgentContext`: conversations, checkpoints and the model registry
//! (DESIGN §7). Writes become `ContextCommand`s applied in the owning shard's state
//! machine; reads are served from the local replica after the same ReadIndex barrier
//! as `Kv` reads (or from any replica when stale).

use crate::context::{self as cx};
use crate::error::{Error, Result};
use crate::fsm::metadata::{validate_metadata_json, MetadataFilter};
use crate::fsm::read::View;
use crate::keys;
use crate::node::ctx::NodeCtx;
use crate::proto::agent_context_server::AgentContext;
use crate::proto::context_command::Op;
use crate::proto::context_rejected::Reason;
use crate::proto::{
    command_result, raft_command, write_op, AppendRequest, AppendResponse, ChatMessage,
    CheckpointTuple, CompactRequest, CompactResponse, ContextCommand, ContextOutcome,
    ConversationRef, CopyThreadRequest, CopyThreadResponse, DeleteConversationRequest,
    DeleteConversationResponse, DeleteForRunsRequest, DeleteForRunsResponse, DeleteModelRequest,
    DeleteModelResponse, DeleteThreadRequest, DeleteThreadResponse, GetCheckpointRequest,
    GetCheckpointResponse, GetConversationRequest, GetConversationResponse, GetModelRequest,
    GetModelResponse, ListAllCheckpointsRequest, ListAllCheckpointsResponse,
    ListCheckpointNamespacesRequest, ListCheckpointNamespacesResponse, ListCheckpointsRequest,
    ListCheckpointsResponse, ListConversationsRequest, ListConversationsResponse,
    ListModelsRequest, ListModelsResponse, ListThreadsRequest, ListThreadsResponse, Model,
    ModelEvent, PruneCheckpointsRequest, PruneCheckpointsResponse, PutCheckpointRequest,
    PutCheckpointResponse, PutModelRequest, PutModelResponse, PutWritesRequest, PutWritesResponse,
    ReadRequest, ReadResponse, RequestHeader, SetConversationMetadataRequest,
    SetConversationMetadataResponse, ThreadRef, TouchCommand, TrimRequest, TrimResponse,
    WatchModelsRequest, WatchModelsResponse, WriteCheck, WriteDelete, WriteOp, WritePut,
};
use crate::proto::{Access, ResourceKind};
use crate::server::auth::{authorize, guard, principal};
use crate::server::path::RequestPath;
use crate::server::watch::{change_stream, RpcStream};
use crate::util::now_ms;
use bytes::Bytes;
use prost::Message as _;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Longest idempotency key.
const MAX_IDEMPOTENCY_KEY: usize = 128;
/// Page size of listings when the request sets none.
const DEFAULT_LIST_LIMIT: u64 = 100;
/// Page size of message reads when the request sets none.
const DEFAULT_READ_LIMIT: u64 = 1_000;

pub(crate) struct ContextService {
    /// Routing, checks and proposals shared with `Kv`.
    pub(super) path: RequestPath,
}

impl ContextService {
    /// The service on a request path of the node's (a `Kv.BatchCommands` stream runs
    /// its agent calls so).
    pub(super) fn from_path(path: RequestPath) -> Self {
        Self { path }
    }

    pub(crate) fn new(ctx: Arc<NodeCtx>) -> Self {
        Self {
            path: RequestPath::new(ctx),
        }
    }

    pub(super) fn ctx(&self) -> &Arc<NodeCtx> {
        self.path.ctx()
    }

    fn limit(&self, asked: u32, default: u64) -> Result<usize> {
        let max = self.ctx().config().limits.max_scan_limit;
        let l = match u64::from(asked) {
            0 => default.min(max),
            l if l > max => return Err(Error::limit("max-scan-limit", max, l)),
            l => l,
        };
        Ok(usize::try_from(l).unwrap_or(usize::MAX))
    }

    fn check_messages<'m>(&self, msgs: impl IntoIterator<Item = &'m ChatMessage>) -> Result<()> {
        let max = self.ctx().config().limits.max_message_size;
        for m in msgs {
            let size = m.encoded_len() as u64;
            if size > max {
                return Err(Error::limit("max-message-size", max, size));
            }
        }
        Ok(())
    }

    /// Proposes a context command to the shard owning `hash` and maps a rejection to
    /// its typed error (`what` names the conversation or thread).
    pub(super) async fn propose(
        &self,
        header: &Option<RequestHeader>,
        hash: u64,
        request_id: Bytes,
        what: &str,
        op: Op,
    ) -> Result<ContextOutcome> {
        let cmd = raft_command::Cmd::Context(ContextCommand { op: Some(op) });
        let r = self
            .path
            .propose_cmd(header, Some(hash), request_id, now_ms(), cmd)
            .await?;
        match r.result {
            Some(command_result::Result::Context(o)) => Ok(o),
            Some(command_result::Result::LeaseNotFound(k)) => {
                Err(crate::server::path::lease_not_found(&k))
            }
            Some(command_result::Result::ContextRejected(r)) => {
                Err(match Reason::try_from(r.reason) {
                    Ok(Reason::LastSeqMismatch) => Error::SequenceMismatch {
                        conversation: what.to_string(),
                        expected: r.expected,
                        actual: r.actual,
                    },
                    Ok(Reason::MetadataVersionMismatch) => Error::VersionMismatch {
                        key: Bytes::from(what.to_string()),
                        expected: r.expected,
                        actual: r.actual,
                    },
                    Ok(Reason::NotFound) => Error::NotFound(format!("conversation {what}")),
                    _ => Error::invalid("range", r.detail),
                })
            }
            _ => Err(Error::Internal("unexpected command result".into())),
        }
    }

    /// Proposes a command on conversation `c` (already validated).
    async fn on_conversation(
        &self,
        header: Option<RequestHeader>,
        rid: Bytes,
        c: &ConversationRef,
        op: Op,
    ) -> Result<ContextOutcome> {
        self.propose(&header, Self::conv_hash(c), rid, &cx::conv_name(c), op)
            .await
    }

    /// Proposes a command on checkpoint thread `thread` (already validated).
    async fn on_thread(
        &self,
        header: Option<RequestHeader>,
        rid: Bytes,
        thread: &str,
        op: Op,
    ) -> Result<ContextOutcome> {
        self.propose(&header, Self::thread_hash(thread), rid, thread, op)
            .await
    }

    /// Waits for the read barrier of the shard owning `hash`, then runs `f` on a
    /// snapshot of the local replica ([`RequestPath::read_view`]).
    pub(super) async fn read<T: Send + 'static>(
        &self,
        header: &Option<RequestHeader>,
        hash: u64,
        stale: bool,
        f: impl Fn(&View<'_>) -> Result<T> + Send + Sync + 'static,
    ) -> Result<T> {
        let peer = self.path.read_barrier(header, Some(hash), stale).await?;
        self.path.read_view(&peer, f).await
    }

    /// Pushes a conversation's or thread's idle expiry forward after a read. Best
    /// effort: the read already succeeded (a follower serving a stale read cannot
    /// propose, and a failed refresh only means the expiry was not moved).
    async fn touch(
        &self,
        header: &Option<RequestHeader>,
        hash: u64,
        conversation: Option<ConversationRef>,
        thread: String,
    ) {
        let op = Op::Touch(TouchCommand {
            conversation,
            thread,
        });
        if let Err(e) = self.propose(header, hash, Bytes::new(), "touch", op).await {
            tracing::debug!(error = %e, "refreshing an idle TTL after a read failed");
        }
    }

    fn conv_hash(c: &ConversationRef) -> u64 {
        keys::key_hash(&cx::conv_key(c))
    }

    pub(super) fn thread_hash(thread: &str) -> u64 {
        keys::key_hash(&cx::thread_key(thread))
    }

    /// The shard a listing reads (one per call: the header's, or the only one; the
    /// bundled clients go through them all), after its read barrier, and its key
    /// ranges.
    pub(super) async fn one_shard(
        &self,
        header: &Option<RequestHeader>,
    ) -> Result<(crate::raft::handle::PeerHandle, Vec<(Vec<u8>, Vec<u8>)>)> {
        let multi = self.ctx().ranges().shards().len() > 1;
        if multi && header.as_ref().is_none_or(|h| h.shard_id == 0) {
            return Err(Error::invalid(
                "header.shard_id",
                "this cluster has several shards: list one shard per call (the bundled clients go through them all)",
            ));
        }
        let peer = self.path.read_barrier(header, None, false).await?;
        let ranges = self.path.shard_ranges(peer.shard);
        Ok((peer, ranges))
    }

    /// Validates `c` and checks the caller's `access` to it.
    fn conversation_in(
        who: &Option<crate::auth::Principal>,
        c: Option<&ConversationRef>,
        access: Access,
    ) -> Result<ConversationRef> {
        let c = cx::validate_conversation(c)?;
        authorize(
            who,
            ResourceKind::Conversation,
            cx::conv_name(c).as_bytes(),
            access,
        )?;
        Ok(c.clone())
    }

    /// Validates `t`, checks the caller's `access` to it, and returns it as stored:
    /// its tenant namespace folded into the thread name (`cx::stored_thread`), which
    /// is what the state machine, the keys and the routing see.
    fn thread_in(
        &self,
        who: &Option<crate::auth::Principal>,
        t: Option<&ThreadRef>,
        access: Access,
    ) -> Result<ThreadRef> {
        let t = cx::validate_thread(t)?;
        let max = self.ctx().config().limits.max_checkpoint_ns_size;
        if t.ns.len() as u64 > max {
            return Err(Error::limit(
                "max-checkpoint-ns-size",
                max,
                t.ns.len() as u64,
            ));
        }
        Ok(ThreadRef {
            thread: self.thread_id_in(who, ThreadFields::REF, &t.namespace, &t.thread, access)?,
            ns: t.ns.clone(),
            namespace: String::new(),
        })
    }

    /// [`Self::thread_in`] for a call that names a whole thread (no checkpoint
    /// namespace): validates the thread id (syntax and `limits.max-thread-id-size`)
    /// and its tenant namespace, checks the caller's `access`, and returns the stored
    /// thread name. Errors name the request's own `fields`.
    fn thread_id_in(
        &self,
        who: &Option<crate::auth::Principal>,
        fields: ThreadFields,
        namespace: &str,
        thread: &str,
        access: Access,
    ) -> Result<String> {
        cx::validate_thread_name(fields.thread, thread)?;
        cx::validate_tenant_namespace(fields.namespace, namespace)?;
        let max = self.ctx().config().limits.max_thread_id_size;
        if thread.len() as u64 > max {
            return Err(Error::limit("max-thread-id-size", max, thread.len() as u64));
        }
        authorize(
            who,
            ResourceKind::Thread,
            cx::thread_auth_name(namespace, thread).as_bytes(),
            access,
        )?;
        Ok(cx::stored_thread(namespace, thread))
    }

    fn model_hash(namespace: &str) -> u64 {
        keys::key_hash(&cx::model_prefix(namespace))
    }
}

/// The request fields that name a thread and its tenant namespace, for errors.
#[derive(Clone, Copy)]
struct ThreadFields {
    thread: &'static str,
    namespace: &'static str,
}

impl ThreadFields {
    /// In a `ThreadRef`.
    const REF: Self = Self {
        thread: "thread.thread",
        namespace: "thread.namespace",
    };
    /// At the top of a request (`DeleteThread`, `CopyThread`'s source,
    /// `ListCheckpointNamespaces`).
    const TOP: Self = Self {
        thread: "thread",
        namespace: "namespace",
    };
    /// `CopyThread`'s target.
    const TARGET: Self = Self {
        thread: "target_thread",
        namespace: "target_namespace",
    };
}

/// The name prefix a grant must cover to list or watch a whole registry: `<ns>/`, or
/// every model name for the default registry.
fn registry_auth_prefix(namespace: &str) -> String {
    cx::model_auth_name(namespace, "")
}

/// A checkpoint as the caller named its thread: the namespace split back out of the
/// stored thread name.
fn shown(mut tuple: CheckpointTuple) -> CheckpointTuple {
    if let Some(t) = tuple.thread.as_mut() {
        let (namespace, thread) = cx::split_stored_thread(&t.thread);
        (t.namespace, t.thread) = (namespace.to_string(), thread.to_string());
    }
    tuple
}

#[tonic::async_trait]
impl AgentContext for ContextService {
    async fn append(
        &self,
        req: Request<AppendRequest>,
    ) -> Result<Response<AppendResponse>, Status> {
        let who = principal(&req);
        let mut req = req.into_inner();
        let c = Self::conversation_in(&who, req.conversation.as_ref(), Access::Write)?;
        if req.messages.is_empty() {
            return Err(Error::invalid("messages", "an append needs at least one message").into());
        }
        let max = self.ctx().config().limits.max_messages_per_append;
        if req.messages.len() as u64 > max {
            return Err(
                Error::limit("max-messages-per-append", max, req.messages.len() as u64).into(),
            );
        }
        self.check_messages(&req.messages)?;
        if let Some(lease) = req.lease_id.filter(|l| *l != 0) {
            cx::lease_key("lease_id", &cx::conv_key(&c), lease)?;
        }
        if req.idempotency_key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(Error::invalid(
                "idempotency_key",
                format!("at most {MAX_IDEMPOTENCY_KEY} bytes"),
            )
            .into());
        }
        self.path.check_value_size(req.encoded_len())?;
        let (header, rid) = (req.header.take(), std::mem::take(&mut req.request_id));
        let o = self
            .on_conversation(header, rid, &c, Op::Append(req))
            .await?;
        Ok(Response::new(AppendResponse {
            first_seq: o.first_seq,
            last_seq: o.last_seq,
            version: o.version,
            replayed: o.replayed,
        }))
    }

    async fn read(&self, req: Request<ReadRequest>) -> Result<Response<ReadResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        let c = Self::conversation_in(&who, req.conversation.as_ref(), Access::Read)?;
        let limit = self.limit(req.limit, DEFAULT_READ_LIMIT)?;
        let hash = Self::conv_hash(&c);
        let (select, after, c2) = (req.select, req.after_seq, c.clone());
        let resp = self
            .read(&req.header, hash, req.stale, move |v| {
                v.read(&c2, select.as_ref(), after, limit)
            })
            .await?;
        if req.refresh_ttl && resp.info.as_ref().is_some_and(|i| i.idle_ttl_ms > 0) {
            self.touch(&req.header, hash, Some(c), String::new()).await;
        }
        Ok(Response::new(resp))
    }

    async fn trim(&self, req: Request<TrimRequest>) -> Result<Response<TrimResponse>, Status> {
        let who = principal(&req);
        let mut req = req.into_inner();
        let c = Self::conversation_in(&who, req.conversation.as_ref(), Access::Write)?;
        let (header, rid) = (req.header.take(), std::mem::take(&mut req.request_id));
        let o = self.on_conversation(header, rid, &c, Op::Trim(req)).await?;
        Ok(Response::new(TrimResponse {
            removed: o.count,
            version: o.version,
        }))
    }

    async fn compact(
        &self,
        req: Request<CompactRequest>,
    ) -> Result<Response<CompactResponse>, Status> {
        let who = principal(&req);
        let mut req = req.into_inner();
        let c = Self::conversation_in(&who, req.conversation.as_ref(), Access::Write)?;
        let summary = req
            .summary
            .as_ref()
            .ok_or_else(|| Error::invalid("summary", "must be set"))?;
        self.check_messages([summary])?;
        if req.from_seq == 0 || req.from_seq >= req.to_seq {
            return Err(Error::invalid(
                "from_seq",
                "the range [from_seq, to_seq) must be non-empty and start at 1 or later",
            )
            .into());
        }
        let (header, rid) = (req.header.take(), std::mem::take(&mut req.request_id));
        let o = self
            .on_conversation(header, rid, &c, Op::Compact(req))
            .await?;
        Ok(Response::new(CompactResponse {
            removed: o.count,
            summary_seq: o.first_seq,
            version: o.version,
        }))
    }

    async fn delete_conversation(
        &self,
        req: Request<DeleteConversationRequest>,
    ) -> Result<Response<DeleteConversationResponse>, Status> {
        let who = principal(&req);
        let mut req = req.into_inner();
        let c = Self::conversation_in(&who, req.conversation.as_ref(), Access::Write)?;
        let (header, rid) = (req.header.take(), std::mem::take(&mut req.request_id));
        let o = self
            .on_conversation(header, rid, &c, Op::DeleteConversation(req))
            .await?;
        Ok(Response::new(DeleteConversationResponse {
            deleted: o.existed,
            version: o.version,
        }))
    }

    async fn get_conversation(
        &self,
        req: Request<GetConversationRequest>,
    ) -> Result<Response<GetConversationResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        let c = Self::conversation_in(&who, req.conversation.as_ref(), Access::Read)?;
        let info = self
            .read(&req.header, Self::conv_hash(&c), req.stale, move |v| {
                Ok(v.conversation(&c)?.and_then(|r| r.info))
            })
            .await?;
        Ok(Response::new(GetConversationResponse { info }))
    }

    async fn set_conversation_metadata(
        &self,
        req: Request<SetConversationMetadataRequest>,
    ) -> Result<Response<SetConversationMetadataResponse>, Status> {
        let who = principal(&req);
        let mut req = req.into_inner();
        let c = Self::conversation_in(&who, req.conversation.as_ref(), Access::Write)?;
        self.path.check_value_size(req.encoded_len())?;
        let (header, rid) = (req.header.take(), std::mem::take(&mut req.request_id));
        let o = self
            .on_conversation(header, rid, &c, Op::SetMetadata(req))
            .await?;
        Ok(Response::new(SetConversationMetadataResponse {
            info: o.info,
        }))
    }

    async fn list_conversations(
        &self,
        req: Request<ListConversationsRequest>,
    ) -> Result<Response<ListConversationsResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        cx::validate_namespace(&req.namespace)?;
        let listed = format!("{}/", req.namespace);
        authorize(
            &who,
            ResourceKind::Conversation,
            listed.as_bytes(),
            Access::Read,
        )?;
        let limit = self.limit(req.limit, DEFAULT_LIST_LIMIT)?;
        let (peer, ranges) = self.one_shard(&req.header).await?;
        let (ns, after) = (req.namespace, req.after_id);
        let (conversations, more) = self
            .path
            .read_view(&peer, move |v| {
                v.list_conversations(&ranges, &ns, &after, limit)
            })
            .await?;
        Ok(Response::new(ListConversationsResponse {
            conversations,
            more,
        }))
    }

    async fn put_checkpoint(
        &self,
        req: Request<PutCheckpointRequest>,
    ) -> Result<Response<PutCheckpointResponse>, Status> {
        let who = principal(&req);
        let mut req = req.into_inner();
        let t = self.thread_in(&who, req.thread.as_ref(), Access::Write)?;
        let cp = req
            .checkpoint
            .as_ref()
            .ok_or_else(|| Error::invalid("checkpoint", "must be set"))?;
        cx::validate_part("checkpoint.checkpoint_id", &cp.checkpoint_id)?;
        if !cp.parent_id.is_empty() {
            cx::validate_part("checkpoint.parent_id", &cp.parent_id)?;
        }
        validate_metadata_json(&cp.metadata_json)?;
        let max = self.ctx().config().limits.max_blobs_per_checkpoint;
        if req.blobs.len() as u64 > max {
            return Err(
                Error::limit("max-blobs-per-checkpoint", max, req.blobs.len() as u64).into(),
            );
        }
        for (ch, v) in &cp.channel_versions {
            cx::validate_part("checkpoint.channel_versions", ch)?;
            cx::validate_part("checkpoint.channel_versions", v)?;
        }
        for b in &req.blobs {
            cx::validate_part("blobs.channel", &b.channel)?;
            cx::validate_part("blobs.version", &b.version)?;
            self.path.check_value_size(b.value.len())?;
        }
        self.path.check_value_size(req.encoded_len())?;
        req.thread = Some(t.clone());
        let (header, rid) = (req.header.take(), std::mem::take(&mut req.request_id));
        let o = self
            .on_thread(header, rid, &t.thread, Op::PutCheckpoint(req))
            .await?;
        Ok(Response::new(PutCheckpointResponse { version: o.version }))
    }

    async fn put_writes(
        &self,
        req: Request<PutWritesRequest>,
    ) -> Result<Response<PutWritesResponse>, Status> {
        let who = principal(&req);
        let mut req = req.into_inner();
        let t = self.thread_in(&who, req.thread.as_ref(), Access::Write)?;
        cx::validate_part("checkpoint_id", &req.checkpoint_id)?;
        cx::validate_part("task_id", &req.task_id)?;
        let max = self.ctx().config().limits.max_blobs_per_checkpoint;
        if req.writes.len() as u64 > max {
            return Err(
                Error::limit("max-blobs-per-checkpoint", max, req.writes.len() as u64).into(),
            );
        }
        for w in &req.writes {
            cx::validate_part("writes.channel", &w.channel)?;
        }
        self.path.check_value_size(req.encoded_len())?;
        req.thread = Some(t.clone());
        let (header, rid) = (req.header.take(), std::mem::take(&mut req.request_id));
        let o = self
            .on_thread(header, rid, &t.thread, Op::PutWrites(req))
            .await?;
        Ok(Response::new(PutWritesResponse {
            stored: o.count,
            version: o.version,
        }))
    }

    async fn get_checkpoint(
        &self,
        req: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        let t = self.thread_in(&who, req.thread.as_ref(), Access::Read)?;
        if let Some(id) = &req.checkpoint_id {
            cx::validate_part("checkpoint_id", id)?;
        }
        let hash = Self::thread_hash(&t.thread);
        let (t2, id) = (t.clone(), req.checkpoint_id);
        let (tuple, idle_ttl) = self
            .read(&req.header, hash, req.stale, move |v| {
                Ok((
                    v.checkpoint(&t2, id.as_deref())?,
                    v.thread_idle_ttl(&t2.thread)?,
                ))
            })
            .await?;
        if req.refresh_ttl && idle_ttl > 0 {
            self.touch(&req.header, hash, None, t.thread).await;
        }
        Ok(Response::new(GetCheckpointResponse {
            tuple: tuple.map(shown),
        }))
    }

    async fn list_checkpoints(
        &self,
        req: Request<ListCheckpointsRequest>,
    ) -> Result<Response<ListCheckpointsResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        let t = self.thread_in(&who, req.thread.as_ref(), Access::Read)?;
        let limit = self.limit(req.limit, DEFAULT_LIST_LIMIT)?;
        let filter = MetadataFilter::new(req.filter, &req.filter_json)?;
        let before = req.before;
        let tuples = self
            .read(
                &req.header,
                Self::thread_hash(&t.thread),
                req.stale,
                move |v| v.list_checkpoints(&t, before.as_deref(), limit, &filter),
            )
            .await?;
        Ok(Response::new(ListCheckpointsResponse {
            tuples: tuples.into_iter().map(shown).collect(),
        }))
    }

    async fn prune_checkpoints(
        &self,
        req: Request<PruneCheckpointsRequest>,
    ) -> Result<Response<PruneCheckpointsResponse>, Status> {
        let who = principal(&req);
        let mut req = req.into_inner();
        let t = self.thread_in(&who, req.thread.as_ref(), Access::Write)?;
        match &req.keep {
            None => {
                return Err(
                    Error::invalid("keep", "set keep_latest, older_than_ms or remove_id").into(),
                )
            }
            Some(crate::proto::prune_checkpoints_request::Keep::RemoveId(id)) => {
                cx::validate_part("remove_id", id)?;
            }
            Some(_) => {}
        }
        req.thread = Some(t.clone());
        let (header, rid) = (req.header.take(), std::mem::take(&mut req.request_id));
        let o = self
            .on_thread(header, rid, &t.thread, Op::Prune(req))
            .await?;
        Ok(Response::new(PruneCheckpointsResponse {
            removed_checkpoints: o.count,
            removed_blobs: o.count2,
            version: o.version,
        }))
    }

    async fn delete_thread(
        &self,
        req: Request<DeleteThreadRequest>,
    ) -> Result<Response<DeleteThreadResponse>, Status> {
        let who = principal(&req);
        let mut req = req.into_inner();
        req.thread = self.thread_id_in(
            &who,
            ThreadFields::TOP,
            &req.namespace,
            &req.thread,
            Access::Write,
        )?;
        req.namespace.clear();
        let hash = Self::thread_hash(&req.thread);
        let thread = req.thread.clone();
        let (header, rid) = (req.header.take(), std::mem::take(&mut req.request_id));
        let o = self
            .propose(&header, hash, rid, &thread, Op::DeleteThread(req))
            .await?;
        Ok(Response::new(DeleteThreadResponse {
            deleted: o.existed,
            version: o.version,
        }))
    }

    async fn list_all_checkpoints(
        &self,
        req: Request<ListAllCheckpointsRequest>,
    ) -> Result<Response<ListAllCheckpointsResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        // Every thread: only a grant on all of them covers it.
        authorize(&who, ResourceKind::Thread, b"", Access::Read)?;
        let limit = self.limit(req.limit, DEFAULT_LIST_LIMIT)?;
        let filter = MetadataFilter::new(req.filter, &req.filter_json)?;
        let (peer, ranges) = self.one_shard(&req.header).await?;
        let after = req.after;
        let (tuples, more, next) = self
            .path
            .read_view(&peer, move |v| {
                v.list_all_checkpoints(&ranges, &after, limit, &filter)
            })
            .await?;
        Ok(Response::new(ListAllCheckpointsResponse {
            tuples: tuples.into_iter().map(shown).collect(),
            more,
            next: next.into(),
        }))
    }

    async fn list_threads(
        &self,
        req: Request<ListThreadsRequest>,
    ) -> Result<Response<ListThreadsResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        cx::validate_tenant_namespace("namespace", &req.namespace)?;
        // Every thread of the namespace: `<namespace>/`, or all for the default one.
        let listed = cx::thread_auth_name(&req.namespace, "");
        authorize(&who, ResourceKind::Thread, listed.as_bytes(), Access::Read)?;
        let limit = self.limit(req.limit, DEFAULT_LIST_LIMIT)?;
        let (peer, ranges) = self.one_shard(&req.header).await?;
        let (ns, after) = (req.namespace, req.after_thread);
        let (threads, more) = self
            .path
            .read_view(&peer, move |v| v.list_threads(&ranges, &ns, &after, limit))
            .await?;
        Ok(Response::new(ListThreadsResponse { threads, more }))
    }

    async fn delete_for_runs(
        &self,
        req: Request<DeleteForRunsRequest>,
    ) -> Result<Response<DeleteForRunsResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        // Any thread may carry the runs: only a grant on all of them covers it.
        authorize(&who, ResourceKind::Thread, b"", Access::Write)?;
        let (removed, blobs) = self.delete_runs(req.header, req.run_ids).await?;
        Ok(Response::new(DeleteForRunsResponse {
            removed_checkpoints: removed,
            removed_blobs: blobs,
        }))
    }

    async fn copy_thread(
        &self,
        req: Request<CopyThreadRequest>,
    ) -> Result<Response<CopyThreadResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        let source = self.thread_id_in(
            &who,
            ThreadFields::TOP,
            &req.namespace,
            &req.thread,
            Access::Read,
        )?;
        let stored_target = self.thread_id_in(
            &who,
            ThreadFields::TARGET,
            &req.target_namespace,
            &req.target_thread,
            Access::Write,
        )?;
        let target = ThreadRef {
            thread: req.target_thread.clone(),
            ns: String::new(),
            namespace: req.target_namespace.clone(),
        };
        if stored_target == source {
            return Err(Error::invalid("target_thread", "is the source thread").into());
        }
        let (checkpoints, writes) = self
            .copy_thread_to(
                &req.header,
                source,
                target,
                Self::thread_hash(&stored_target),
            )
            .await?;
        Ok(Response::new(CopyThreadResponse {
            copied_checkpoints: checkpoints,
            copied_writes: writes,
        }))
    }

    async fn list_checkpoint_namespaces(
        &self,
        req: Request<ListCheckpointNamespacesRequest>,
    ) -> Result<Response<ListCheckpointNamespacesResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        let thread = self.thread_id_in(
            &who,
            ThreadFields::TOP,
            &req.namespace,
            &req.thread,
            Access::Read,
        )?;
        let hash = Self::thread_hash(&thread);
        let namespaces = self
            .read(&req.header, hash, req.stale, move |v| {
                v.checkpoint_namespaces(&thread)
            })
            .await?;
        Ok(Response::new(ListCheckpointNamespacesResponse {
            namespaces,
        }))
    }

    async fn put_model(
        &self,
        req: Request<PutModelRequest>,
    ) -> Result<Response<PutModelResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        let mut m = req
            .model
            .ok_or_else(|| Error::invalid("model", "must be set"))?;
        cx::validate_part("model.name", &m.name)?;
        cx::validate_tenant_namespace("namespace", &req.namespace)?;
        authorize(
            &who,
            ResourceKind::Model,
            cx::model_auth_name(&req.namespace, &m.name).as_bytes(),
            if req.expected_version.is_some() {
                Access::Readwrite
            } else {
                Access::Write
            },
        )?;
        m.version = 0;
        let value = m.encode_to_vec();
        self.path.check_value_size(value.len())?;
        let key: Bytes = cx::model_key(&req.namespace, &m.name).into();
        let mut ops = Vec::new();
        if let Some(expected) = req.expected_version {
            ops.push(WriteOp {
                op: Some(write_op::Op::Check(WriteCheck {
                    key: key.clone(),
                    expected_version: expected,
                })),
            });
        }
        ops.push(WriteOp {
            op: Some(write_op::Op::Put(WritePut {
                key,
                value: value.into(),
                expires_at_ms: 0,
                lease_id: 0,
            })),
        });
        let o = self
            .path
            .propose(&req.header, req.request_id, now_ms(), ops)
            .await
            .map_err(|e| match e {
                Error::VersionMismatch {
                    expected, actual, ..
                } => Error::VersionMismatch {
                    key: Bytes::from(format!("model {}", m.name)),
                    expected,
                    actual,
                },
                e => e,
            })?;
        Ok(Response::new(PutModelResponse { version: o.version }))
    }

    async fn get_model(
        &self,
        req: Request<GetModelRequest>,
    ) -> Result<Response<GetModelResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        cx::validate_part("name", &req.name)?;
        cx::validate_tenant_namespace("namespace", &req.namespace)?;
        authorize(
            &who,
            ResourceKind::Model,
            cx::model_auth_name(&req.namespace, &req.name).as_bytes(),
            Access::Read,
        )?;
        let (namespace, name) = (req.namespace, req.name);
        let hash = Self::model_hash(&namespace);
        let model = self
            .read(&req.header, hash, !req.consistent, move |v| {
                v.model(&namespace, &name)
            })
            .await?;
        Ok(Response::new(GetModelResponse { model }))
    }

    async fn list_models(
        &self,
        req: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        cx::validate_tenant_namespace("namespace", &req.namespace)?;
        // Lists every model of the registry: needs a grant on all of them.
        authorize(
            &who,
            ResourceKind::Model,
            registry_auth_prefix(&req.namespace).as_bytes(),
            Access::Read,
        )?;
        let namespace = req.namespace;
        let hash = Self::model_hash(&namespace);
        let models = self
            .read(&req.header, hash, !req.consistent, move |v| {
                v.models(&namespace)
            })
            .await?;
        Ok(Response::new(ListModelsResponse { models }))
    }

    async fn delete_model(
        &self,
        req: Request<DeleteModelRequest>,
    ) -> Result<Response<DeleteModelResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        cx::validate_part("name", &req.name)?;
        cx::validate_tenant_namespace("namespace", &req.namespace)?;
        authorize(
            &who,
            ResourceKind::Model,
            cx::model_auth_name(&req.namespace, &req.name).as_bytes(),
            Access::Write,
        )?;
        let op = WriteOp {
            op: Some(write_op::Op::Delete(WriteDelete {
                key: cx::model_key(&req.namespace, &req.name).into(),
            })),
        };
        let o = self
            .path
            .propose(&req.header, req.request_id, now_ms(), vec![op])
            .await?;
        Ok(Response::new(DeleteModelResponse {
            deleted: o.per_op.first().copied().unwrap_or(0) == 1,
            version: o.version,
        }))
    }

    type WatchConversationStream = RpcStream<crate::proto::WatchConversationResponse>;

    async fn watch_conversation(
        &self,
        req: Request<crate::proto::WatchConversationRequest>,
    ) -> Result<Response<Self::WatchConversationStream>, Status> {
        use crate::proto::{ConversationEvent, WatchConversationResponse};
        let who = principal(&req);
        let req = req.into_inner();
        let c = Self::conversation_in(&who, req.conversation.as_ref(), Access::Read)?;
        let hash = Self::conv_hash(&c);
        let peer = self.path.route_watch(&req.header, hash, req.from_version)?;
        let prefix = cx::msg_prefix(&c);
        let stream = change_stream(
            self.ctx().clone(),
            peer.shard,
            hash,
            req.from_version,
            move |ch| {
                let rest = ch.key.strip_prefix(prefix.as_slice())?;
                let seq = u64::from_be_bytes(rest.try_into().ok()?);
                let message = match &ch.record {
                    Some(r) => Some(ChatMessage::decode(r.value.as_ref()).ok()?),
                    None => None,
                };
                Some(ConversationEvent {
                    version: ch.version,
                    seq,
                    message,
                })
            },
            |events, progress_version, moved| WatchConversationResponse {
                events,
                progress_version,
                moved,
            },
        )
        .await?;
        Ok(Response::new(guard(
            self.ctx(),
            who,
            ResourceKind::Conversation,
            cx::conv_name(&c).into_bytes(),
            stream,
        )))
    }

    type WatchModelsStream = RpcStream<WatchModelsResponse>;

    async fn watch_models(
        &self,
        req: Request<WatchModelsRequest>,
    ) -> Result<Response<Self::WatchModelsStream>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        cx::validate_tenant_namespace("namespace", &req.namespace)?;
        let watched = registry_auth_prefix(&req.namespace);
        authorize(&who, ResourceKind::Model, watched.as_bytes(), Access::Read)?;
        let hash = Self::model_hash(&req.namespace);
        let peer = self.path.route_watch(&req.header, hash, req.from_version)?;
        let prefix = cx::model_prefix(&req.namespace);
        let stream = change_stream(
            self.ctx().clone(),
            peer.shard,
            hash,
            req.from_version,
            move |c| {
                let name = c.key.strip_prefix(prefix.as_slice())?;
                let model = match &c.record {
                    Some(r) => Some(Model::decode(r.value.as_ref()).ok().map(|mut m| {
                        m.version = c.version;
                        m
                    })?),
                    None => None,
                };
                Some(ModelEvent {
                    version: c.version,
                    name: String::from_utf8_lossy(name).into_owned(),
                    model,
                })
            },
            |events, progress_version, moved| WatchModelsResponse {
                events,
                progress_version,
                moved,
            },
        )
        .await?;
        Ok(Response::new(guard(
            self.ctx(),
            who,
            ResourceKind::Model,
            watched.into_bytes(),
            stream,
        )))
    }
}
