//! The agent context API in the client: conversations, checkpoints, the model
//! registry and watches. Requests are the generated protobuf types (build them with
//! `..Default::default()`); the client fills in routing headers and request ids, and
//! routes each call to the shard of its conversation, thread or the registry.

use super::{Call, Client, Route};
use crate::context as cx;
use crate::error::{Error, Result};
use crate::keys::key_hash;
use crate::proto::agent_context_client::AgentContextClient;
use crate::proto::{
    AppendRequest, AppendResponse, CompactRequest, CompactResponse, ConversationRef,
    DeleteConversationRequest, DeleteConversationResponse, DeleteModelRequest, DeleteThreadRequest,
    DeleteThreadResponse, GetCheckpointRequest, GetConversationRequest, GetModelRequest,
    ListAllCheckpointsRequest, ListAllCheckpointsResponse, ListCheckpointNamespacesRequest,
    ListCheckpointNamespacesResponse, ListCheckpointsRequest, ListConversationsRequest,
    ListConversationsResponse, ListModelsRequest, ListThreadsRequest, ListThreadsResponse, Model,
    ModelEvent, PruneCheckpointsRequest, PruneCheckpointsResponse, PutCheckpointRequest,
    PutModelRequest, PutWritesRequest, PutWritesResponse, ReadRequest, ReadResponse,
    SetConversationMetadataRequest, ThreadRef, TrimRequest, TrimResponse, WatchEvent,
    WatchModelsRequest, WatchRequest,
};
use crate::proto::{
    CheckpointTuple, ConversationInfo, CopyThreadRequest, CopyThreadResponse, DeleteForRunsRequest,
    DeleteForRunsResponse, WatchMoved,
};
use crate::trace::Channel;
use crate::util::Backoff;
use bytes::Bytes;
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;

/// Runs one context RPC routed by `$hash`, setting the header on every attempt.
macro_rules! routed {
    ($self:ident, $route:expr, $call:expr, $req:ident, $method:ident) => {
        $self
            .call_routed($route, $call, |ch, header| {
                let mut r = $req.clone();
                r.header = Some(header);
                async move { Ok(Client::agent(ch).$method(r).await?.into_inner()) }
            })
            .await
    };
    // A call the node's batch stream carries (`crate::batch`).
    ($self:ident, $route:expr, $call:expr, $req:ident, batched $method:ident) => {
        $self
            .call_routed($route, $call, |ch, header| {
                let mut r = $req.clone();
                r.header = Some(header);
                crate::batch::$method(ch, r)
            })
            .await
    };
}

/// Runs one context read routed by `$route` in the client's read mode
/// ([`crate::ClientOptions::read_mode`]; a request's own `stale` flag still wins).
macro_rules! read_in_mode {
    ($self:ident, $route:expr, $req:ident, $method:ident) => {
        $self
            .read_in_mode($route, |ch, header| {
                let mut r = $req.clone();
                r.header = Some(header);
                async move { Ok(Client::agent(ch).$method(r).await?.into_inner()) }
            })
            .await
    };
    // A call the node's batch stream carries (`crate::batch`).
    ($self:ident, $route:expr, $req:ident, batched $method:ident) => {
        $self
            .read_in_mode($route, |ch, header| {
                let mut r = $req.clone();
                r.header = Some(header);
                crate::batch::$method(ch, r)
            })
            .await
    };
}

fn conv_route(c: &Option<ConversationRef>) -> Result<Route> {
    let c = cx::validate_conversation(c.as_ref())?;
    Ok(Route::Key(key_hash(&cx::conv_key(c))))
}

/// Where thread `thread` of tenant namespace `namespace` (both valid) lives.
fn thread_route(namespace: &str, thread: &str) -> Route {
    Route::Key(key_hash(&cx::thread_key(&cx::stored_thread(
        namespace, thread,
    ))))
}

fn thread_ref_route(t: &Option<ThreadRef>) -> Result<Route> {
    let t = cx::validate_thread(t.as_ref())?;
    Ok(thread_route(&t.namespace, &t.thread))
}

fn model_route(namespace: &str) -> Route {
    Route::Key(key_hash(&cx::model_prefix(namespace)))
}

/// A stream of changes that resumes by itself after a broken connection or a leader
/// change, from the last version it delivered. It ends with an error that retrying
/// cannot fix (e.g. [`Error::WatchCompacted`]: re-read, then watch again).
pub struct Watcher<T> {
    rx: mpsc::Receiver<Result<T>>,
    task: tokio::task::JoinHandle<()>,
}

impl<T> Watcher<T> {
    /// The next change; `None` once the watch ended (after its error was returned).
    pub async fn next(&mut self) -> Option<Result<T>> {
        self.rx.recv().await
    }
}

impl<T> Drop for Watcher<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    pub(crate) fn agent(ch: Channel) -> AgentContextClient<Channel> {
        AgentContextClient::new(ch)
            .max_decoding_message_size(crate::proto::MAX_MESSAGE_SIZE)
            .max_encoding_message_size(crate::proto::MAX_MESSAGE_SIZE)
    }

    fn with_request_id(&self, id: &mut Bytes) {
        if id.is_empty() {
            *id = self.new_request_id();
        }
    }

    /// A read of the key at `route` in the client's read mode: at a replica the
    /// balancer picks for a key route in any mode but `Leader`, else at the leader.
    async fn read_in_mode<T, F, Fut>(&self, route: Route, f: F) -> Result<T>
    where
        F: Fn(Channel, crate::proto::RequestHeader) -> Fut,
        Fut: Future<Output = std::result::Result<T, tonic::Status>>,
    {
        match route {
            Route::Key(h) => self.read_routed(h, self.inner.opts.read_mode, f).await,
            _ => self.call_routed(route, Call::Read, f).await,
        }
    }

    /// Notes the version a write at `route` took effect at (the session floor of
    /// bounded-staleness reads).
    fn saw_at(&self, route: Route, version: u64) {
        if let Route::Key(h) = route {
            self.saw(h, version);
        }
    }

    /// Appends messages to a conversation (created on first append). Sequence numbers
    /// are assigned by the shard: gap-free and unique under concurrent appenders.
    /// A set `expected_last_seq` that does not match fails with
    /// [`Error::SequenceMismatch`] carrying the actual last seq.
    pub async fn append(&self, mut req: AppendRequest) -> Result<AppendResponse> {
        let route = conv_route(&req.conversation)?;
        self.with_request_id(&mut req.request_id);
        let r: AppendResponse = routed!(self, route, Call::Write, req, batched append)?;
        self.saw_at(route, r.version);
        Ok(r)
    }

    /// Reads messages: the newest `last_n`, a seq range (paged), or the newest that
    /// fit a token budget. A conversation that does not exist reads as empty (no info).
    pub async fn read(&self, req: ReadRequest) -> Result<ReadResponse> {
        let route = conv_route(&req.conversation)?;
        read_in_mode!(self, route, req, batched read)
    }

    /// Removes messages before a seq.
    pub async fn trim(&self, mut req: TrimRequest) -> Result<TrimResponse> {
        let route = conv_route(&req.conversation)?;
        self.with_request_id(&mut req.request_id);
        let r: TrimResponse = routed!(self, route, Call::Write, req, trim)?;
        self.saw_at(route, r.version);
        Ok(r)
    }

    /// Atomically replaces a seq range with a summary message.
    pub async fn compact(&self, mut req: CompactRequest) -> Result<CompactResponse> {
        let route = conv_route(&req.conversation)?;
        self.with_request_id(&mut req.request_id);
        let r: CompactResponse = routed!(self, route, Call::Write, req, compact)?;
        self.saw_at(route, r.version);
        Ok(r)
    }

    /// Deletes a conversation with all its messages.
    pub async fn delete_conversation(
        &self,
        conversation: ConversationRef,
    ) -> Result<DeleteConversationResponse> {
        let mut req = DeleteConversationRequest {
            conversation: Some(conversation),
            ..Default::default()
        };
        let route = conv_route(&req.conversation)?;
        self.with_request_id(&mut req.request_id);
        routed!(self, route, Call::Write, req, delete_conversation)
    }

    /// A conversation's metadata (None: it does not exist or expired).
    pub async fn conversation(
        &self,
        conversation: ConversationRef,
    ) -> Result<Option<ConversationInfo>> {
        let req = GetConversationRequest {
            conversation: Some(conversation),
            ..Default::default()
        };
        let route = conv_route(&req.conversation)?;
        let r: crate::proto::GetConversationResponse =
            read_in_mode!(self, route, req, get_conversation)?;
        Ok(r.info)
    }

    /// Replaces a conversation's user metadata, optionally only at an expected
    /// `metadata_version` ([`Error::VersionMismatch`] otherwise).
    pub async fn set_conversation_metadata(
        &self,
        mut req: SetConversationMetadataRequest,
    ) -> Result<ConversationInfo> {
        let route = conv_route(&req.conversation)?;
        self.with_request_id(&mut req.request_id);
        let r: crate::proto::SetConversationMetadataResponse =
            routed!(self, route, Call::Write, req, set_conversation_metadata)?;
        r.info
            .ok_or_else(|| Error::Internal("no conversation info in the answer".into()))
    }

    /// Lists a namespace's conversations by id after `after_id`, gathering every
    /// shard's page and merging them.
    pub async fn list_conversations(
        &self,
        namespace: &str,
        after_id: &str,
        limit: u32,
    ) -> Result<ListConversationsResponse> {
        cx::validate_namespace(namespace)?;
        let req = ListConversationsRequest {
            header: None,
            namespace: namespace.to_string(),
            after_id: after_id.to_string(),
            limit,
        };
        let parts = self
            .scatter(|shard| {
                let req = req.clone();
                async move {
                    routed!(
                        self,
                        Route::Shard(shard),
                        Call::Part,
                        req,
                        list_conversations
                    )
                }
            })
            .await?;
        let parts = parts
            .into_iter()
            .map(|p: ListConversationsResponse| (p.conversations, p.more));
        let (conversations, more) = merge_pages(parts, limit, |i| {
            i.conversation
                .as_ref()
                .map(|c| c.id.clone())
                .unwrap_or_default()
        });
        Ok(ListConversationsResponse {
            conversations,
            more,
        })
    }

    /// One page of a tenant namespace's checkpoint threads (`""`: the default
    /// namespace), by id, after `after_thread` (`limit` 0 = 100), gathered from every
    /// shard.
    pub async fn list_threads(
        &self,
        namespace: &str,
        after_thread: &str,
        limit: u32,
    ) -> Result<ListThreadsResponse> {
        cx::validate_tenant_namespace("namespace", namespace)?;
        let req = ListThreadsRequest {
            header: None,
            namespace: namespace.to_string(),
            after_thread: after_thread.to_string(),
            limit,
        };
        let parts = self
            .scatter(|shard| {
                let req = req.clone();
                async move { routed!(self, Route::Shard(shard), Call::Part, req, list_threads) }
            })
            .await?;
        let parts = parts
            .into_iter()
            .map(|p: ListThreadsResponse| (p.threads, p.more));
        let (threads, more) = merge_pages(parts, limit, |t| t.thread.clone());
        Ok(ListThreadsResponse { threads, more })
    }

    /// Stores a checkpoint with the blobs of the channels that changed.
    pub async fn put_checkpoint(&self, mut req: PutCheckpointRequest) -> Result<u64> {
        let route = thread_ref_route(&req.thread)?;
        self.with_request_id(&mut req.request_id);
        let r: crate::proto::PutCheckpointResponse =
            routed!(self, route, Call::Write, req, batched put_checkpoint)?;
        self.saw_at(route, r.version);
        Ok(r.version)
    }

    /// Stores a task's pending writes for a checkpoint; a repeat stores nothing.
    pub async fn put_writes(&self, mut req: PutWritesRequest) -> Result<PutWritesResponse> {
        let route = thread_ref_route(&req.thread)?;
        self.with_request_id(&mut req.request_id);
        let r: PutWritesResponse = routed!(self, route, Call::Write, req, batched put_writes)?;
        self.saw_at(route, r.version);
        Ok(r)
    }

    /// A checkpoint (the latest when `checkpoint_id` is None) with its channel blobs
    /// and pending writes.
    pub async fn get_checkpoint(
        &self,
        req: GetCheckpointRequest,
    ) -> Result<Option<CheckpointTuple>> {
        let route = thread_ref_route(&req.thread)?;
        let r: crate::proto::GetCheckpointResponse =
            read_in_mode!(self, route, req, batched get_checkpoint)?;
        Ok(r.tuple)
    }

    /// Checkpoints newest first.
    pub async fn list_checkpoints(
        &self,
        req: ListCheckpointsRequest,
    ) -> Result<Vec<CheckpointTuple>> {
        let route = thread_ref_route(&req.thread)?;
        let r: crate::proto::ListCheckpointsResponse =
            read_in_mode!(self, route, req, list_checkpoints)?;
        Ok(r.tuples)
    }

    /// Removes old checkpoints (and the blobs no kept checkpoint uses).
    pub async fn prune_checkpoints(
        &self,
        mut req: PruneCheckpointsRequest,
    ) -> Result<PruneCheckpointsResponse> {
        let route = thread_ref_route(&req.thread)?;
        self.with_request_id(&mut req.request_id);
        routed!(self, route, Call::Write, req, prune_checkpoints)
    }

    /// Checkpoints of every thread (LangGraph's `list(None)`), shard by shard and in
    /// storage order within each, whose metadata has every pair of `filter`; at most
    /// `limit` (0: all).
    /// `filter_json` ("" for none) is a JSON object whose every key the metadata must
    /// have with an equal JSON value.
    pub async fn list_all_checkpoints(
        &self,
        filter: std::collections::BTreeMap<String, String>,
        filter_json: &str,
        limit: usize,
    ) -> Result<Vec<CheckpointTuple>> {
        let parts = self
            .scatter(|shard| {
                let filter = filter.clone();
                let filter_json = filter_json.to_string();
                async move {
                    let mut out = Vec::new();
                    let mut after = Bytes::new();
                    loop {
                        let req = ListAllCheckpointsRequest {
                            header: None,
                            after: after.clone(),
                            limit: 0,
                            filter: filter.clone(),
                            filter_json: filter_json.clone(),
                        };
                        let r: ListAllCheckpointsResponse = routed!(
                            self,
                            Route::Shard(shard),
                            Call::Part,
                            req,
                            list_all_checkpoints
                        )?;
                        out.extend(r.tuples);
                        if !r.more || (limit > 0 && out.len() >= limit) {
                            return Ok(out);
                        }
                        after = r.next;
                    }
                }
            })
            .await?;
        let mut all: Vec<CheckpointTuple> = parts.into_iter().flatten().collect();
        if limit > 0 {
            all.truncate(limit);
        }
        Ok(all)
    }

    /// Deletes every checkpoint whose metadata `run_id` is one of `run_ids` (LangGraph's
    /// `delete_for_runs`), in every shard, with its writes and the channel values no
    /// other checkpoint names; (checkpoints, blobs) removed. Running it again removes
    /// what a cut-short call left.
    pub async fn delete_for_runs(&self, run_ids: &[String]) -> Result<(u64, u64)> {
        let mut total = (0, 0);
        for ids in cx::run_id_calls(run_ids)? {
            let parts = self
                .scatter(|shard| {
                    let req = DeleteForRunsRequest {
                        header: None,
                        run_ids: ids.to_vec(),
                    };
                    async move {
                        let r: DeleteForRunsResponse =
                            routed!(self, Route::Shard(shard), Call::Part, req, delete_for_runs)?;
                        Ok((r.removed_checkpoints, r.removed_blobs))
                    }
                })
                .await?;
            for (c, b) in parts {
                total = (total.0 + c, total.1 + b);
            }
        }
        Ok(total)
    }

    /// Copies every checkpoint of every checkpoint namespace of thread `thread` (of
    /// tenant namespace `namespace`), with its channel values and pending writes, to
    /// `target_thread` of `target_namespace`, on the server. Idempotent: asking again
    /// finishes a copy cut short (a call that timed out is simply sent again).
    pub async fn copy_thread_in(
        &self,
        namespace: &str,
        thread: &str,
        target_namespace: &str,
        target_thread: &str,
    ) -> Result<CopyThreadResponse> {
        cx::validate_tenant_namespace("namespace", namespace)?;
        cx::validate_thread_name("thread", thread)?;
        cx::validate_tenant_namespace("target_namespace", target_namespace)?;
        cx::validate_thread_name("target_thread", target_thread)?;
        let route = thread_route(namespace, thread);
        let req = CopyThreadRequest {
            header: None,
            thread: thread.to_string(),
            namespace: namespace.to_string(),
            target_thread: target_thread.to_string(),
            target_namespace: target_namespace.to_string(),
        };
        routed!(self, route, Call::Read, req, copy_thread)
    }

    /// The checkpoint namespaces of a thread (of tenant namespace `namespace`) that
    /// hold a checkpoint, sorted (`""` is the root graph's). Read in the client's read
    /// mode.
    pub async fn checkpoint_namespaces(
        &self,
        namespace: &str,
        thread: &str,
    ) -> Result<Vec<String>> {
        cx::validate_tenant_namespace("namespace", namespace)?;
        cx::validate_thread_name("thread", thread)?;
        let route = thread_route(namespace, thread);
        let req = ListCheckpointNamespacesRequest {
            header: None,
            thread: thread.to_string(),
            namespace: namespace.to_string(),
            stale: false,
        };
        let r: ListCheckpointNamespacesResponse =
            read_in_mode!(self, route, req, list_checkpoint_namespaces)?;
        Ok(r.namespaces)
    }

    /// Deletes a thread of the default namespace: every checkpoint namespace,
    /// checkpoint, blob and write.
    pub async fn delete_thread(&self, thread: &str) -> Result<DeleteThreadResponse> {
        self.delete_thread_in("", thread).await
    }

    /// [`Client::delete_thread`] for a thread of tenant namespace `namespace`.
    pub async fn delete_thread_in(
        &self,
        namespace: &str,
        thread: &str,
    ) -> Result<DeleteThreadResponse> {
        cx::validate_tenant_namespace("namespace", namespace)?;
        cx::validate_thread_name("thread", thread)?;
        let route = thread_route(namespace, thread);
        let mut req = DeleteThreadRequest {
            thread: thread.to_string(),
            namespace: namespace.to_string(),
            ..Default::default()
        };
        self.with_request_id(&mut req.request_id);
        routed!(self, route, Call::Write, req, delete_thread)
    }

    /// Writes a model record in the default registry, optionally only at an expected
    /// version (0 = create).
    pub async fn put_model(&self, model: Model, expected_version: Option<u64>) -> Result<u64> {
        self.put_model_in("", model, expected_version).await
    }

    /// [`Client::put_model`] in the registry of tenant namespace `namespace`.
    pub async fn put_model_in(
        &self,
        namespace: &str,
        model: Model,
        expected_version: Option<u64>,
    ) -> Result<u64> {
        cx::validate_tenant_namespace("namespace", namespace)?;
        let mut req = PutModelRequest {
            header: None,
            model: Some(model),
            expected_version,
            request_id: Bytes::new(),
            namespace: namespace.to_string(),
        };
        self.with_request_id(&mut req.request_id);
        let r: crate::proto::PutModelResponse =
            routed!(self, model_route(namespace), Call::Write, req, put_model)?;
        Ok(r.version)
    }

    /// A model record of the default registry, from any replica (possibly stale)
    /// unless `consistent`.
    pub async fn get_model(&self, name: &str, consistent: bool) -> Result<Option<Model>> {
        self.get_model_in("", name, consistent).await
    }

    /// [`Client::get_model`] in the registry of tenant namespace `namespace`.
    pub async fn get_model_in(
        &self,
        namespace: &str,
        name: &str,
        consistent: bool,
    ) -> Result<Option<Model>> {
        cx::validate_tenant_namespace("namespace", namespace)?;
        let req = GetModelRequest {
            header: None,
            name: name.to_string(),
            consistent,
            namespace: namespace.to_string(),
        };
        let r: crate::proto::GetModelResponse =
            routed!(self, model_route(namespace), Call::Read, req, get_model)?;
        Ok(r.model)
    }

    /// Every model record of the default registry, by name.
    pub async fn list_models(&self, consistent: bool) -> Result<Vec<Model>> {
        self.list_models_in("", consistent).await
    }

    /// [`Client::list_models`] for the registry of tenant namespace `namespace`.
    pub async fn list_models_in(&self, namespace: &str, consistent: bool) -> Result<Vec<Model>> {
        cx::validate_tenant_namespace("namespace", namespace)?;
        let req = ListModelsRequest {
            header: None,
            consistent,
            namespace: namespace.to_string(),
        };
        let r: crate::proto::ListModelsResponse =
            routed!(self, model_route(namespace), Call::Read, req, list_models)?;
        Ok(r.models)
    }

    /// Deletes a model record of the default registry; whether it existed.
    pub async fn delete_model(&self, name: &str) -> Result<bool> {
        self.delete_model_in("", name).await
    }

    /// [`Client::delete_model`] in the registry of tenant namespace `namespace`.
    pub async fn delete_model_in(&self, namespace: &str, name: &str) -> Result<bool> {
        cx::validate_tenant_namespace("namespace", namespace)?;
        let mut req = DeleteModelRequest {
            header: None,
            name: name.to_string(),
            request_id: Bytes::new(),
            namespace: namespace.to_string(),
        };
        self.with_request_id(&mut req.request_id);
        let r: crate::proto::DeleteModelResponse =
            routed!(self, model_route(namespace), Call::Write, req, delete_model)?;
        Ok(r.deleted)
    }

    /// Watches a conversation's messages (appends, and removals by trim, compact,
    /// delete or expiry) after `from_version` (None: from now).
    pub async fn watch_conversation(
        &self,
        conversation: ConversationRef,
        from_version: Option<u64>,
    ) -> Result<Watcher<crate::proto::ConversationEvent>> {
        let route = conv_route(&Some(conversation.clone()))?;
        let client = self.clone();
        self.watcher(
            from_version,
            move |from| {
                let client = client.clone();
                let conversation = conversation.clone();
                async move {
                    let req = crate::proto::WatchConversationRequest {
                        header: None,
                        conversation: Some(conversation),
                        from_version: from,
                    };
                    routed!(client, route, Call::Read, req, watch_conversation)
                }
            },
            |r: crate::proto::WatchConversationResponse| (r.events, r.progress_version, r.moved),
            |e: &crate::proto::ConversationEvent| e.version,
        )
        .await
    }

    /// Watches the default model registry for changes after `from_version` (None:
    /// from now).
    pub async fn watch_models(&self, from_version: Option<u64>) -> Result<Watcher<ModelEvent>> {
        self.watch_models_in("", from_version).await
    }

    /// [`Client::watch_models`] for the registry of tenant namespace `namespace`.
    pub async fn watch_models_in(
        &self,
        namespace: &str,
        from_version: Option<u64>,
    ) -> Result<Watcher<ModelEvent>> {
        cx::validate_tenant_namespace("namespace", namespace)?;
        let client = self.clone();
        let namespace = namespace.to_string();
        self.watcher(
            from_version,
            move |from| {
                let client = client.clone();
                let namespace = namespace.clone();
                async move {
                    let route = model_route(&namespace);
                    let req = WatchModelsRequest {
                        header: None,
                        from_version: from,
                        namespace,
                    };
                    routed!(client, route, Call::Read, req, watch_models)
                }
            },
            |r: crate::proto::WatchModelsResponse| (r.events, r.progress_version, r.moved),
            |e: &ModelEvent| e.version,
        )
        .await
    }

    /// Watches one key, or the keys under a prefix that starts with a hash tag, for
    /// changes after `from_version` (None: from now).
    pub async fn watch(
        &self,
        key_or_prefix: impl Into<Bytes>,
        is_prefix: bool,
        from_version: Option<u64>,
    ) -> Result<Watcher<WatchEvent>> {
        let pattern: Bytes = key_or_prefix.into();
        let hash = if is_prefix {
            let tag = crate::keys::prefix_partition(&pattern).ok_or_else(|| {
                Error::invalid(
                    "prefix",
                    "a watched prefix must start with a complete hash tag `{...}`",
                )
            })?;
            xxhash_rust::xxh3::xxh3_64(tag)
        } else {
            key_hash(&pattern)
        };
        let client = self.clone();
        self.watcher(
            from_version,
            move |from| {
                let client = client.clone();
                let pattern = pattern.clone();
                async move {
                    let req = WatchRequest {
                        header: None,
                        key: if is_prefix {
                            Bytes::new()
                        } else {
                            pattern.clone()
                        },
                        prefix: if is_prefix { pattern } else { Bytes::new() },
                        from_version: from,
                    };
                    client
                        .call_routed(Route::Key(hash), Call::Read, |ch, header| {
                            let mut r = req.clone();
                            r.header = Some(header);
                            async move { Ok(Client::kv(ch).watch(r).await?.into_inner()) }
                        })
                        .await
                }
            },
            |r: crate::proto::WatchResponse| (r.events, r.progress_version, r.moved),
            |e: &WatchEvent| e.version,
        )
        .await
    }

    /// Opens a watch stream and keeps it going: on a broken stream it reopens from
    /// the last delivered version until an error retrying cannot fix.
    async fn watcher<T, R, Open, Fut>(
        &self,
        from_version: Option<u64>,
        open: Open,
        events: impl Fn(R) -> (Vec<T>, u64, Option<WatchMoved>) + Send + 'static,
        version: impl Fn(&T) -> u64 + Send + 'static,
    ) -> Result<Watcher<T>>
    where
        T: Send + 'static,
        R: Send + 'static,
        Open: Fn(Option<u64>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<tonic::Streaming<R>>> + Send,
    {
        // The first open, and its first response (which names the version the stream
        // starts after), report their errors to the caller directly; from then on
        // the watch can always resume from a known version.
        let mut first = open(from_version).await?;
        let head = match first.message().await {
            Ok(Some(resp)) => events(resp),
            Ok(None) => {
                return Err(Error::Transport(
                    "the watch stream closed before it started".into(),
                ))
            }
            Err(status) => return Err(status.into()),
        };
        let (tx, rx) = mpsc::channel(256);
        let task = tokio::spawn(async move {
            // Every change up to `done` was delivered; `partial` counts the events of
            // a version delivered so far when the server split it over responses
            // (its progress then stays below that version until the last part).
            let mut done = from_version;
            let mut partial: (u64, usize) = (0, 0);
            let mut pending = Some(head);
            let mut stream = Some(first);
            let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(500));
            loop {
                let mut s = match stream.take() {
                    Some(s) => s,
                    None => match open(done).await {
                        Ok(s) => s,
                        Err(e) if e.is_retryable() || matches!(e, Error::Timeout(..)) => {
                            tokio::time::sleep(backoff.next_pause()).await;
                            continue;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    },
                };
                // Events of the current version seen on this stream.
                let mut seen: (u64, usize) = (0, 0);
                loop {
                    let (evs, progress, moved) = match pending.take() {
                        Some(p) => p,
                        None => match s.message().await {
                            Ok(Some(resp)) => events(resp),
                            Ok(None) => break,
                            Err(status) => {
                                let e = Error::from(status);
                                if !(e.is_retryable() || matches!(e, Error::Rpc { .. })) {
                                    let _ = tx.send(Err(e)).await;
                                    return;
                                }
                                break;
                            }
                        },
                    };
                    backoff.reset();
                    for ev in evs {
                        let v = version(&ev);
                        if done.is_some_and(|d| v <= d) {
                            continue;
                        }
                        if seen.0 != v {
                            seen = (v, 0);
                        }
                        seen.1 += 1;
                        // Delivered before a reconnect (a split version replayed).
                        if partial.0 == v && seen.1 <= partial.1 {
                            continue;
                        }
                        if tx.send(Ok(ev)).await.is_err() {
                            return;
                        }
                        partial = if partial.0 == v {
                            (v, partial.1 + 1)
                        } else {
                            (v, 1)
                        };
                    }
                    done = Some(done.map_or(progress, |d| d.max(progress)));
                    if done.is_some_and(|d| partial.0 <= d) {
                        partial = (0, 0);
                    }
                    if let Some(m) = moved {
                        // A split moved the watched keys: every change up to the split
                        // was delivered; go on from there on the new shard (the next
                        // open follows the routing to it).
                        done = Some(done.map_or(m.at_version, |d| d.max(m.at_version)));
                        break;
                    }
                }
            }
        });
        Ok(Watcher { rx, task })
    }
}

/// One page from every shard's page of a listing (each sorted by `id`, with whether
/// that shard has more): the first `limit` (0 = 100) by `id`, and whether more exist.
fn merge_pages<T>(
    parts: impl Iterator<Item = (Vec<T>, bool)>,
    limit: u32,
    id: impl Fn(&T) -> String,
) -> (Vec<T>, bool) {
    let mut all = Vec::new();
    let mut more = false;
    for (items, part_more) in parts {
        more |= part_more;
        all.extend(items);
    }
    all.sort_by_key(id);
    let limit = if limit == 0 { 100 } else { limit as usize };
    more |= all.len() > limit;
    all.truncate(limit);
    (all, more)
}
