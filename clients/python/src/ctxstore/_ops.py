"""The calls of the API as :class:`~ctxstore._core.Op` s: which RPC, which request,
where it is routed, whether it is a write, and how its response becomes the result.
Shared by the sync and the asyncio client, which only run them."""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Sequence, TypeVar

from . import keys as K
from ._core import STALE, Call, Core, Op, ReadMode, Route
from ._proto import cluster_pb2, context_pb2, kv_pb2
from .types import (
    BatchOpLike,
    DeleteResult,
    KeyValue,
    Lease,
    MessageLike,
    ScanResult,
    WriteResult,
    to_batch_op,
    to_chat_message,
    to_model,
)

T = TypeVar("T")

# ---- leases ----


def grant_lease(core: Core, key: str | bytes, ttl_ms: int) -> Op[Lease]:
    k = K.as_bytes(key)
    req = kv_pb2.LeaseGrantRequest(key=k, ttl_ms=ttl_ms, request_id=core.new_request_id())
    return Op("lease", "Grant", req, Route.key(K.key_hash(k)), Call.WRITE, lambda r: Lease(k, r.id, r.ttl_ms),
              version=_version)


def revoke_lease(core: Core, lease: Lease) -> Op[tuple[bool, int]]:
    req = kv_pb2.LeaseRevokeRequest(key=lease.key, id=lease.id, request_id=core.new_request_id())
    return Op("lease", "Revoke", req, Route.key(K.key_hash(lease.key)), Call.WRITE,
              lambda r: (r.revoked, r.keys_deleted), version=_version)


def lease_info(lease: Lease) -> Op[Any]:
    req = kv_pb2.LeaseInfoRequest(key=lease.key, id=lease.id)
    return Op("lease", "Info", req, Route.key(K.key_hash(lease.key)), Call.READ, lambda r: r if r.found else None)


def keep_alive_once(lease: Lease) -> Op[int]:
    """One renewal over a ``KeepAlive`` stream (the stubs' ``lease_once``): the TTL
    granted again in ms, 0 when the lease no longer exists. Safe to retry."""
    req = kv_pb2.LeaseKeepAliveRequest(key=lease.key, id=lease.id)
    return Op("lease_once", "KeepAlive", req, Route.key(K.key_hash(lease.key)), Call.READ, lambda r: r.ttl_ms)


#: The most waiters one lock may have (they are read in one scan).
MAX_WAITERS = 1_000


def lock_prefix(name: str) -> bytes:
    """Where the waiters of lock (or election) ``name`` are: ``{lock/NAME}/w/``."""
    if not name or "}" in name:
        raise K.InvalidArgumentError("name", "must not be empty or hold `}`")
    return f"{{lock/{name}}}/w/".encode()


def service_prefix(service: str) -> bytes:
    """Where the instances of ``service`` are registered: ``{svc/SERVICE}/``."""
    if not service or "}" in service:
        raise K.InvalidArgumentError("service", "must not be empty or hold `}`")
    return f"{{svc/{service}}}/".encode()


# ---- task queues ----


def _queue_route(queue: str) -> Route:
    K.validate_queue(queue)
    return Route.key(K.key_hash(f"{{q/{queue}}}".encode()))


def enqueue(
    core: Core, queue: str, payload: str | bytes, priority: int, delay_ms: int, idempotency_key: str, max_attempts: int
) -> Op[tuple[int, bool]]:
    route = _queue_route(queue)
    req = kv_pb2.EnqueueRequest(
        queue=queue, payload=K.as_bytes(payload), priority=priority, delay_ms=delay_ms,
        idempotency_key=idempotency_key, max_attempts=max_attempts, request_id=core.new_request_id(),
    )
    return Op("queue", "Enqueue", req, route, Call.WRITE, lambda r: (r.task_id, r.duplicate), version=_version)


def lease_tasks(core: Core, queue: str, max_tasks: int, visibility_ms: int) -> Op[list[Any]]:
    route = _queue_route(queue)
    req = kv_pb2.QueueLeaseRequest(
        queue=queue, max_tasks=max_tasks, visibility_ms=visibility_ms, request_id=core.new_request_id()
    )
    return Op("queue", "Lease", req, route, Call.WRITE, lambda r: list(r.tasks), version=_version)


def ack(core: Core, queue: str, task: Any) -> Op[bool]:
    req = kv_pb2.QueueAckRequest(
        queue=queue, task_id=task.task_id, lease_token=task.lease_token, request_id=core.new_request_id()
    )
    return Op("queue", "Ack", req, _queue_route(queue), Call.WRITE, lambda r: r.acked, version=_version)


def nack(core: Core, queue: str, task: Any, retry_after_ms: int) -> Op[tuple[bool, bool]]:
    req = kv_pb2.QueueNackRequest(
        queue=queue, task_id=task.task_id, lease_token=task.lease_token, retry_after_ms=retry_after_ms,
        request_id=core.new_request_id(),
    )
    return Op("queue", "Nack", req, _queue_route(queue), Call.WRITE, lambda r: (r.released, r.dead_lettered),
              version=_version)


def extend(core: Core, queue: str, task: Any, visibility_ms: int) -> Op[bool]:
    req = kv_pb2.QueueExtendRequest(
        queue=queue, task_id=task.task_id, lease_token=task.lease_token, visibility_ms=visibility_ms,
        request_id=core.new_request_id(),
    )
    return Op("queue", "Extend", req, _queue_route(queue), Call.WRITE, lambda r: r.extended, version=_version)


def queue_stats(queue: str) -> Op[Any]:
    req = kv_pb2.QueueStatsRequest(queue=queue)
    return Op("queue", "Stats", req, _queue_route(queue), Call.READ)


# ---- Kv ----


def get(key: str | bytes, mode: ReadMode) -> Op[KeyValue | None]:
    """A ``Get`` in ``mode`` (a replica read unless at the leader)."""
    k = K.as_bytes(key)
    req = kv_pb2.GetRequest(key=k)
    return Op(
        "kv", "Get", req, Route.key(K.key_hash(k)), Call.READ,
        lambda r: KeyValue.from_pb(r.kv) if r.HasField("kv") else None,
        read=None if mode.at_leader else mode,
        version=lambda r: r.kv.version if r.HasField("kv") else 0,
    )


def read_mode(core: Core, stale: bool, mode: str | None) -> ReadMode:
    """The mode of one read: ``stale``, else ``mode`` when given, else the client's."""
    if stale:
        return STALE
    return ReadMode.parse(mode) if mode is not None else core.read_mode


def _version(r: Any) -> int:
    return r.version


def _write_result(r: Any) -> WriteResult:
    return WriteResult(r.version, r.create_version)


def put(core: Core, key: str | bytes, value: str | bytes, ttl_ms: int, lease_id: int = 0) -> Op[WriteResult]:
    k = K.as_bytes(key)
    req = kv_pb2.PutRequest(
        key=k, value=K.as_bytes(value), ttl_ms=ttl_ms, request_id=core.new_request_id(), lease_id=lease_id
    )
    return Op("kv", "Put", req, Route.key(K.key_hash(k)), Call.WRITE, _write_result, version=_version)


def delete(core: Core, key: str | bytes) -> Op[DeleteResult]:
    k = K.as_bytes(key)
    req = kv_pb2.DeleteRequest(key=k, request_id=core.new_request_id())
    return Op(
        "kv", "Delete", req, Route.key(K.key_hash(k)), Call.WRITE, lambda r: DeleteResult(r.deleted, r.version),
        version=_version,
    )


def cas(
    core: Core,
    key: str | bytes,
    expected_version: int,
    value: str | bytes | None,
    delete: bool,
    ttl_ms: int,
    lease_id: int = 0,
) -> Op[WriteResult]:
    k = K.as_bytes(key)
    req = kv_pb2.CompareAndSwapRequest(
        key=k,
        expected_version=expected_version,
        value=K.as_bytes(value) if value is not None else b"",
        ttl_ms=ttl_ms,
        delete=delete,
        request_id=core.new_request_id(),
        lease_id=lease_id,
    )
    return Op("kv", "CompareAndSwap", req, Route.key(K.key_hash(k)), Call.WRITE, _write_result, version=_version)


def batch(core: Core, ops: Iterable[BatchOpLike]) -> Op[int]:
    pb_ops = [to_batch_op(o) for o in ops]
    h = 0
    for o in pb_ops:
        which = o.WhichOneof("op")
        if which is not None:
            h = K.key_hash(getattr(o, which).key)
            break
    req = kv_pb2.BatchRequest(ops=pb_ops, request_id=core.new_request_id())
    return Op("kv", "Batch", req, Route.key(h), Call.WRITE, _version, version=_version)


def scan_part(prefix: bytes, start_after: bytes, limit: int, stale: bool, route: Route, call: Call) -> Op[ScanResult]:
    req = kv_pb2.ScanRequest(prefix=prefix, start_after=start_after, limit=limit, stale=stale)
    return Op(
        "kv", "Scan", req, route, call, lambda r: ScanResult([KeyValue.from_pb(kv) for kv in r.kvs], r.more)
    )


def merge_scans(parts: Sequence[ScanResult], limit: int) -> ScanResult:
    """The parts of an untagged scan, merged in key order and cut to ``limit``."""
    kvs = sorted((kv for p in parts for kv in p.kvs), key=lambda kv: kv.key)
    lim = limit or 1000
    more = any(p.more for p in parts) or len(kvs) > lim
    return ScanResult(kvs[:lim], more)


def watch_request(key: str | bytes | None, prefix: str | bytes | None) -> tuple[Route, Any]:
    if (key is None) == (prefix is None):
        raise K.InvalidArgumentError("key", "give exactly one of key and prefix")
    if prefix is not None:
        p = K.as_bytes(prefix)
        tag = K.prefix_partition(p)
        if tag is None:
            raise K.InvalidArgumentError("prefix", "a watched prefix must start with a complete hash tag `{...}`")
        return Route.key(K.tag_hash(tag)), kv_pb2.WatchRequest(prefix=p)
    k = K.as_bytes(key)  # type: ignore[arg-type]
    return Route.key(K.key_hash(k)), kv_pb2.WatchRequest(key=k)


# ---- conversations ----


def conv_ref(namespace: str, conversation_id: str) -> tuple[Route, context_pb2.ConversationRef]:
    K.validate_conversation(namespace, conversation_id)
    return (
        Route.key(K.conversation_hash(namespace, conversation_id)),
        context_pb2.ConversationRef(namespace=namespace, id=conversation_id),
    )


def append(
    core: Core,
    namespace: str,
    conversation_id: str,
    messages: Iterable[MessageLike],
    expected_last_seq: int | None,
    idempotency_key: str,
    idle_ttl_ms: int | None,
) -> Op[context_pb2.AppendResponse]:
    route, ref = conv_ref(namespace, conversation_id)
    req = context_pb2.AppendRequest(
        conversation=ref,
        messages=[to_chat_message(m) for m in messages],
        idempotency_key=idempotency_key,
        request_id=core.new_request_id(),
    )
    if expected_last_seq is not None:
        req.expected_last_seq = expected_last_seq
    if idle_ttl_ms is not None:
        req.idle_ttl_ms = idle_ttl_ms
    return Op("agent", "Append", req, route, Call.WRITE)


def read(
    namespace: str,
    conversation_id: str,
    *,
    last_n: int | None,
    from_seq: int | None,
    to_seq: int | None,
    max_tokens: int | None,
    include_pinned: bool,
    limit: int,
    after_seq: int,
    stale: bool,
    refresh_ttl: bool,
) -> Op[context_pb2.ReadResponse]:
    route, ref = conv_ref(namespace, conversation_id)
    req = context_pb2.ReadRequest(
        conversation=ref, limit=limit, after_seq=after_seq, stale=stale, refresh_ttl=refresh_ttl
    )
    chosen = sum(x is not None for x in (last_n, max_tokens)) + (from_seq is not None or to_seq is not None)
    if chosen > 1:
        raise K.InvalidArgumentError("select", "give at most one of last_n, a seq range, and max_tokens")
    if last_n is not None:
        req.last_n = last_n
    elif max_tokens is not None:
        req.token_budget.CopyFrom(context_pb2.TokenBudget(max_tokens=max_tokens, include_pinned=include_pinned))
    else:
        req.range.CopyFrom(context_pb2.SeqRange(from_seq=from_seq or 0, to_seq=to_seq or 0))
    return Op("agent", "Read", req, route, Call.READ)


def trim(core: Core, namespace: str, conversation_id: str, before_seq: int) -> Op[context_pb2.TrimResponse]:
    route, ref = conv_ref(namespace, conversation_id)
    req = context_pb2.TrimRequest(conversation=ref, before_seq=before_seq, request_id=core.new_request_id())
    return Op("agent", "Trim", req, route, Call.WRITE)


def compact(
    core: Core,
    namespace: str,
    conversation_id: str,
    from_seq: int,
    to_seq: int,
    summary: MessageLike,
    expected_last_seq: int | None,
) -> Op[context_pb2.CompactResponse]:
    route, ref = conv_ref(namespace, conversation_id)
    req = context_pb2.CompactRequest(
        conversation=ref,
        from_seq=from_seq,
        to_seq=to_seq,
        summary=to_chat_message(summary),
        request_id=core.new_request_id(),
    )
    if expected_last_seq is not None:
        req.expected_last_seq = expected_last_seq
    return Op("agent", "Compact", req, route, Call.WRITE)


def delete_conversation(core: Core, namespace: str, conversation_id: str) -> Op[bool]:
    route, ref = conv_ref(namespace, conversation_id)
    req = context_pb2.DeleteConversationRequest(conversation=ref, request_id=core.new_request_id())
    return Op("agent", "DeleteConversation", req, route, Call.WRITE, lambda r: r.deleted)


def get_conversation(namespace: str, conversation_id: str, stale: bool) -> Op[context_pb2.ConversationInfo | None]:
    route, ref = conv_ref(namespace, conversation_id)
    req = context_pb2.GetConversationRequest(conversation=ref, stale=stale)
    return Op("agent", "GetConversation", req, route, Call.READ, lambda r: r.info if r.HasField("info") else None)


def set_conversation_metadata(
    core: Core,
    namespace: str,
    conversation_id: str,
    metadata: Mapping[str, str],
    expected_metadata_version: int | None,
    idle_ttl_ms: int | None,
) -> Op[context_pb2.ConversationInfo]:
    route, ref = conv_ref(namespace, conversation_id)
    req = context_pb2.SetConversationMetadataRequest(
        conversation=ref, metadata=dict(metadata), request_id=core.new_request_id()
    )
    if expected_metadata_version is not None:
        req.expected_metadata_version = expected_metadata_version
    if idle_ttl_ms is not None:
        req.idle_ttl_ms = idle_ttl_ms
    return Op("agent", "SetConversationMetadata", req, route, Call.WRITE, lambda r: r.info)


def list_conversations_part(namespace: str, after_id: str, limit: int, shard: int) -> Op[Any]:
    req = context_pb2.ListConversationsRequest(namespace=namespace, after_id=after_id, limit=limit)
    return Op("agent", "ListConversations", req, Route.shard(shard), Call.PART)


def filter_json(json_filter: Mapping[str, Any] | None) -> str:
    """A JSON metadata filter as the request's ``filter_json`` text ("" for none)."""
    if json_filter is None:
        return ""
    try:
        return json.dumps(dict(json_filter), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise K.InvalidArgumentError("filter_json", f"not JSON: {e}") from e


def list_all_checkpoints_part(
    shard: int, after: bytes, filter: Mapping[str, str] | None, json_filter: Mapping[str, Any] | None = None
) -> Op[Any]:
    req = context_pb2.ListAllCheckpointsRequest(
        after=after, filter=dict(filter or {}), filter_json=filter_json(json_filter)
    )
    return Op("agent", "ListAllCheckpoints", req, Route.shard(shard), Call.PART)


def run_id_chunks(run_ids: Sequence[str]) -> list[list[str]]:
    """``run_ids`` as strings in groups of at most 1,000 (the server's cap per call),
    every one checked first, so that a bad id fails the call before any shard deletes
    anything."""
    ids = [str(r) for r in run_ids]
    if not ids:
        raise K.InvalidArgumentError("run_ids", "name at least one run")
    for r in ids:
        K.validate_part("run_ids", r)
    return [ids[i : i + 1000] for i in range(0, len(ids), 1000)]


def delete_for_runs_part(shard: int, run_ids: Sequence[str]) -> Op[Any]:
    req = context_pb2.DeleteForRunsRequest(run_ids=list(run_ids))
    return Op("agent", "DeleteForRuns", req, Route.shard(shard), Call.PART)


def first(parts: Iterable[list[T]], limit: int) -> list[T]:
    """The shards' answers one after the other, at most ``limit`` of them (0: all)."""
    out = [x for part in parts for x in part]
    return out[:limit] if limit else out


def removed_totals(parts: Iterable[Any]) -> tuple[int, int]:
    """Sums the ``DeleteForRuns`` answers: (checkpoints, blobs) removed."""
    removed = blobs = 0
    for r in parts:
        removed += r.removed_checkpoints
        blobs += r.removed_blobs
    return removed, blobs


def copy_thread(
    thread: str, target_thread: str, namespace: str = "", target_namespace: str = ""
) -> Op[context_pb2.CopyThreadResponse]:
    K.validate_thread(thread, field="thread")
    K.validate_tenant_namespace(namespace)
    K.validate_thread(target_thread, field="target_thread")
    K.validate_tenant_namespace(target_namespace, field="target_namespace")
    req = context_pb2.CopyThreadRequest(
        thread=thread, namespace=namespace, target_thread=target_thread, target_namespace=target_namespace
    )
    # The whole copy is idempotent: a retry anywhere finishes it.
    return Op("agent", "CopyThread", req, Route.key(K.thread_hash(thread, namespace)), Call.READ)


def merge_conversations(parts: Sequence[Any], limit: int) -> context_pb2.ListConversationsResponse:
    infos = sorted((c for p in parts for c in p.conversations), key=lambda i: i.conversation.id)
    lim = limit or 100
    more = any(p.more for p in parts) or len(infos) > lim
    return context_pb2.ListConversationsResponse(conversations=infos[:lim], more=more)


def list_threads_part(namespace: str, after_thread: str, limit: int, shard: int) -> Op[Any]:
    req = context_pb2.ListThreadsRequest(namespace=namespace, after_thread=after_thread, limit=limit)
    return Op("agent", "ListThreads", req, Route.shard(shard), Call.PART)


def merge_threads(parts: Sequence[Any], limit: int) -> context_pb2.ListThreadsResponse:
    # By id as the server orders them: bytewise (UTF-8 byte order is code point order).
    threads = sorted((t for p in parts for t in p.threads), key=lambda t: t.thread)
    lim = limit or 100
    more = any(p.more for p in parts) or len(threads) > lim
    return context_pb2.ListThreadsResponse(threads=threads[:lim], more=more)


# ---- checkpoints ----


def thread_ref(thread: str, ns: str, namespace: str = "") -> tuple[Route, context_pb2.ThreadRef]:
    K.validate_thread(thread, ns)
    K.validate_tenant_namespace(namespace, field="thread.namespace")
    return Route.key(K.thread_hash(thread, namespace)), context_pb2.ThreadRef(thread=thread, ns=ns, namespace=namespace)


def put_checkpoint(
    core: Core,
    thread: str,
    ns: str,
    checkpoint: context_pb2.Checkpoint,
    blobs: Iterable[context_pb2.ChannelBlob],
    idle_ttl_ms: int | None,
    namespace: str = "",
) -> Op[int]:
    route, ref = thread_ref(thread, ns, namespace)
    req = context_pb2.PutCheckpointRequest(
        thread=ref, checkpoint=checkpoint, blobs=list(blobs), request_id=core.new_request_id()
    )
    if idle_ttl_ms is not None:
        req.idle_ttl_ms = idle_ttl_ms
    return Op("agent", "PutCheckpoint", req, route, Call.WRITE, lambda r: r.version)


def put_writes(
    core: Core,
    thread: str,
    ns: str,
    checkpoint_id: str,
    task_id: str,
    writes: Iterable[tuple[str, bytes]],
    task_path: str,
    namespace: str = "",
) -> Op[context_pb2.PutWritesResponse]:
    route, ref = thread_ref(thread, ns, namespace)
    req = context_pb2.PutWritesRequest(
        thread=ref,
        checkpoint_id=checkpoint_id,
        task_id=task_id,
        task_path=task_path,
        writes=[context_pb2.PendingWrite(channel=c, value=v) for c, v in writes],
        request_id=core.new_request_id(),
    )
    return Op("agent", "PutWrites", req, route, Call.WRITE)


def get_checkpoint(
    thread: str, ns: str, checkpoint_id: str | None, stale: bool, refresh_ttl: bool, namespace: str = ""
) -> Op[context_pb2.CheckpointTuple | None]:
    route, ref = thread_ref(thread, ns, namespace)
    req = context_pb2.GetCheckpointRequest(thread=ref, stale=stale, refresh_ttl=refresh_ttl)
    if checkpoint_id is not None:
        req.checkpoint_id = checkpoint_id
    return Op("agent", "GetCheckpoint", req, route, Call.READ, lambda r: r.tuple if r.HasField("tuple") else None)


def list_checkpoints(
    thread: str,
    ns: str,
    before: str | None,
    limit: int,
    filter: Mapping[str, str] | None,
    stale: bool,
    namespace: str = "",
    json_filter: Mapping[str, Any] | None = None,
) -> Op[list[context_pb2.CheckpointTuple]]:
    route, ref = thread_ref(thread, ns, namespace)
    req = context_pb2.ListCheckpointsRequest(
        thread=ref, limit=limit, filter=dict(filter or {}), stale=stale, filter_json=filter_json(json_filter)
    )
    if before is not None:
        req.before = before
    return Op("agent", "ListCheckpoints", req, route, Call.READ, lambda r: list(r.tuples))


def prune_checkpoints(
    core: Core,
    thread: str,
    ns: str,
    keep_latest: int | None,
    older_than_ms: int | None,
    namespace: str = "",
    remove_id: str | None = None,
) -> Op[context_pb2.PruneCheckpointsResponse]:
    route, ref = thread_ref(thread, ns, namespace)
    req = context_pb2.PruneCheckpointsRequest(thread=ref, request_id=core.new_request_id())
    if sum(x is not None for x in (keep_latest, older_than_ms, remove_id)) > 1:
        raise K.InvalidArgumentError("keep", "give one of keep_latest, older_than_ms and remove_id")
    if keep_latest is not None:
        req.keep_latest = keep_latest
    elif older_than_ms is not None:
        req.older_than_ms = older_than_ms
    elif remove_id is not None:
        K.validate_part("remove_id", remove_id)
        req.remove_id = remove_id
    return Op("agent", "PruneCheckpoints", req, route, Call.WRITE)


def checkpoint_namespaces(thread: str, namespace: str = "", stale: bool = False) -> Op[list[str]]:
    K.validate_thread(thread, field="thread")
    K.validate_tenant_namespace(namespace)
    req = context_pb2.ListCheckpointNamespacesRequest(thread=thread, namespace=namespace, stale=stale)
    route = Route.key(K.thread_hash(thread, namespace))
    return Op("agent", "ListCheckpointNamespaces", req, route, Call.READ, lambda r: list(r.namespaces))


def delete_thread(core: Core, thread: str, namespace: str = "") -> Op[bool]:
    K.validate_thread(thread, field="thread")
    K.validate_tenant_namespace(namespace)
    req = context_pb2.DeleteThreadRequest(thread=thread, namespace=namespace, request_id=core.new_request_id())
    route = Route.key(K.thread_hash(thread, namespace))
    return Op("agent", "DeleteThread", req, route, Call.WRITE, lambda r: r.deleted)


# ---- model registry ----


def _registry(namespace: str = "") -> Route:
    K.validate_tenant_namespace(namespace)
    return Route.key(K.registry_hash(namespace))


def put_model(core: Core, model: Any, expected_version: int | None, namespace: str = "") -> Op[int]:
    route = _registry(namespace)
    req = context_pb2.PutModelRequest(model=to_model(model), namespace=namespace, request_id=core.new_request_id())
    if expected_version is not None:
        req.expected_version = expected_version
    return Op("agent", "PutModel", req, route, Call.WRITE, lambda r: r.version)


def get_model(name: str, consistent: bool, namespace: str = "") -> Op[context_pb2.Model | None]:
    route = _registry(namespace)
    req = context_pb2.GetModelRequest(name=name, consistent=consistent, namespace=namespace)
    return Op("agent", "GetModel", req, route, Call.READ, lambda r: r.model if r.HasField("model") else None)


def list_models(consistent: bool, namespace: str = "") -> Op[list[context_pb2.Model]]:
    route = _registry(namespace)
    req = context_pb2.ListModelsRequest(consistent=consistent, namespace=namespace)
    return Op("agent", "ListModels", req, route, Call.READ, lambda r: list(r.models))


def delete_model(core: Core, name: str, namespace: str = "") -> Op[bool]:
    route = _registry(namespace)
    req = context_pb2.DeleteModelRequest(name=name, namespace=namespace, request_id=core.new_request_id())
    return Op("agent", "DeleteModel", req, route, Call.WRITE, lambda r: r.deleted)


# ---- cluster ----


def status() -> Op[cluster_pb2.StatusResponse]:
    return Op("cluster", "Status", cluster_pb2.StatusRequest(), Route.any(), Call.READ, header=False)


# ---- watches: (route, request factory from a version, response -> (events, progress, moved)) ----


def _moved(r: Any) -> Any:
    return r.moved if r.HasField("moved") else None


def kv_watch(key: str | bytes | None, prefix: str | bytes | None):
    route, base = watch_request(key, prefix)

    def make(from_version: int | None) -> Op[Any]:
        req = kv_pb2.WatchRequest()
        req.CopyFrom(base)
        if from_version is not None:
            req.from_version = from_version
        return Op("kv", "Watch", req, route, Call.READ)

    return make, lambda r: (list(r.events), r.progress_version, _moved(r))


def conversation_watch(namespace: str, conversation_id: str):
    route, ref = conv_ref(namespace, conversation_id)

    def make(from_version: int | None) -> Op[Any]:
        req = context_pb2.WatchConversationRequest(conversation=ref)
        if from_version is not None:
            req.from_version = from_version
        return Op("agent", "WatchConversation", req, route, Call.READ)

    return make, lambda r: (list(r.events), r.progress_version, _moved(r))


def models_watch(namespace: str = ""):
    route = _registry(namespace)

    def make(from_version: int | None) -> Op[Any]:
        req = context_pb2.WatchModelsRequest(namespace=namespace)
        if from_version is not None:
            req.from_version = from_version
        return Op("agent", "WatchModels", req, route, Call.READ)

    return make, lambda r: (list(r.events), r.progress_version, _moved(r))
