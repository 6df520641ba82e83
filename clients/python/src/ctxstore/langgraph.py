"""LangGraph checkpointer on ctxstore's checkpoint API (needs the ``langgraph`` extra).

    from ctxstore.langgraph import CtxstoreSaver
    saver = CtxstoreSaver.from_endpoints(["127.0.0.1:7000"])
    graph = builder.compile(checkpointer=saver)

How LangGraph's data maps onto the store (``proto/ctxstore/v1/context.proto``):

- ``thread_id`` / ``checkpoint_ns`` are the ``ThreadRef``; each thread lives on one
  shard, so every call of a thread is atomic there.
- A checkpoint (without its channel values) and its metadata are serialized with the
  saver's ``serde`` into the opaque ``Checkpoint.checkpoint`` bytes, so they come back
  exactly as LangGraph wrote them. The top-level metadata keys whose values are
  JSON-serializable are also stored as one JSON object in ``Checkpoint.metadata_json``,
  which is what ``list(filter=...)`` matches on the server (JSON equality: numbers by
  value, nested objects and lists as wholes).
- Channel values are ``ChannelBlob`` s per ``(channel, version)``, written only for
  the versions that changed, as LangGraph's own savers do.
- Pending writes are ``PendingWrite`` s; the server keeps LangGraph's slot rules
  (special channels replace, others are kept), and the saver sorts them into
  LangGraph's ``(task_path, task_id, idx)`` order.

A thread's checkpoint namespaces are listed by the server, so ``list`` without
``checkpoint_ns`` covers every namespace (sorted by name, newest first within each),
``prune`` without ``namespaces=`` prunes them all, and ``copy_thread`` copies them all
(one ``CopyThread`` call: the server copies, and running it again finishes an
interrupted copy). ``list(None)`` lists the checkpoints of every thread (shard by
shard), and ``delete_for_runs`` is one ``DeleteForRuns`` call per shard. Server limits
apply: ``thread_id`` and ``checkpoint_ns`` at most 1024 bytes by default (about 23
levels of subgraphs; the server's ``limits.max-thread-id-size`` and
``limits.max-checkpoint-ns-size`` raise them up to 16 KiB), over which the calls
raise :class:`ctxstore.errors.LimitExceededError`; any UTF-8 text is allowed in them;
channel names, versions and task ids at most 128 bytes, else
:class:`ctxstore.errors.InvalidArgumentError`.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any, AsyncIterator, Iterable, Iterator, Sequence

try:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import (
        BaseCheckpointSaver,
        ChannelVersions,
        Checkpoint,
        CheckpointMetadata,
        CheckpointTuple,
        get_checkpoint_id,
        get_checkpoint_metadata,
        writes_sort_key,
    )
    from langgraph.checkpoint.serde.base import SerializerProtocol
    from langgraph.store.base import (
        BaseStore,
        GetOp,
        Item,
        ListNamespacesOp,
        MatchCondition,
        Op,
        PutOp,
        Result,
        SearchItem,
        SearchOp,
    )
except ImportError as e:  # pragma: no cover
    raise ImportError("ctxstore.langgraph needs LangGraph: pip install 'ctxstore[langgraph]'") from e

from . import errors as ctx_errors
from ._proto import context_pb2
from .aio import AsyncClient
from .client import Client
from .types import KeyValue

__all__ = ["CtxstoreSaver", "CtxstoreStore"]

#: Largest page the saver asks for when listing (the server's default max-scan-limit
#: is 10,000).
LIST_PAGE = 100


def _pack(typed: tuple[str, bytes]) -> bytes:
    """A serde ``(type, bytes)`` pair as one byte string: type, NUL, data."""
    t, data = typed
    return t.encode() + b"\x00" + bytes(data)


def _unpack(raw: bytes) -> tuple[str, bytes]:
    t, _, data = bytes(raw).partition(b"\x00")
    return t.decode(), data


def _pack_pair(a: tuple[str, bytes], b: tuple[str, bytes]) -> bytes:
    """Two typed values in one byte string: the first's length (4 bytes BE), both."""
    pa = _pack(a)
    return len(pa).to_bytes(4, "big") + pa + _pack(b)


def _unpack_pair(raw: bytes) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
    raw = bytes(raw)
    n = int.from_bytes(raw[:4], "big")
    return _unpack(raw[4 : 4 + n]), _unpack(raw[4 + n :])


def canonical_json(value: Any) -> str | None:
    """The canonical JSON text of a metadata value (sorted keys, no spaces; a float
    with an integral value written as an int), or ``None`` if it is not JSON."""

    def norm(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, dict):
            return {str(k): norm(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [norm(x) for x in v]
        return v

    try:
        return json.dumps(norm(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return None


def _metadata_values(cp: context_pb2.Checkpoint) -> dict[str, Any]:
    """A stored checkpoint's metadata as the server's filters see it: its
    ``metadata_json``, else its map (values as JSON text, or plain strings)."""
    if cp.metadata_json:
        try:
            meta = json.loads(cp.metadata_json)
            return meta if isinstance(meta, dict) else {}
        except ValueError:
            return {}
    out: dict[str, Any] = {}
    for k, v in cp.metadata.items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def _ref(config: RunnableConfig) -> tuple[str, str | None, str | None]:
    c = config["configurable"]
    ns = c.get("checkpoint_ns")
    return str(c["thread_id"]), ns, c.get("checkpoint_id")


def _signed(idx: int) -> int:
    """A stored write slot as LangGraph's index (the special slots are -1..-4)."""
    return idx - (1 << 32) if idx >= (1 << 31) else idx


class CtxstoreSaver(BaseCheckpointSaver[str]):
    """A LangGraph ``BaseCheckpointSaver`` storing checkpoints in ctxstore.

    Args:
        client: the sync :class:`ctxstore.Client` the sync methods use.
        async_client: the :class:`ctxstore.AsyncClient` the ``a*`` methods use; without
            one they run the sync methods in a worker thread.
        serde: LangGraph serializer (default: ``JsonPlusSerializer``).
        idle_ttl_ms: when set, every ``put`` sets the thread's idle TTL (the thread,
            all its namespaces, expires after this long without writes; 0 = never).
    """

    def __init__(
        self,
        client: Client | None = None,
        *,
        async_client: AsyncClient | None = None,
        serde: SerializerProtocol | None = None,
        idle_ttl_ms: int | None = None,
    ) -> None:
        super().__init__(serde=serde)
        if client is None and async_client is None:
            raise ValueError("CtxstoreSaver needs a Client or an AsyncClient")
        self.client = client
        self.async_client = async_client
        self.idle_ttl_ms = idle_ttl_ms

    @classmethod
    def from_endpoints(cls, endpoints: list[str] | str, **kwargs: Any) -> "CtxstoreSaver":
        """A saver with a new sync :class:`ctxstore.Client` on ``endpoints``."""
        return cls(Client(endpoints), **kwargs)

    # ---- conversions ----

    def _checkpoint_pb(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata, new_versions: ChannelVersions
    ) -> tuple[str, str, context_pb2.Checkpoint, list[context_pb2.ChannelBlob], RunnableConfig]:
        thread_id, ns, parent_id = _ref(config)
        ns = ns or ""
        c = checkpoint.copy()
        values: dict[str, Any] = c.pop("channel_values")  # type: ignore[misc]
        blobs = [
            context_pb2.ChannelBlob(
                channel=k,
                version=str(v),
                value=_pack(self.serde.dumps_typed(values[k]) if k in values else ("empty", b"")),
            )
            for k, v in new_versions.items()
        ]
        full_meta = get_checkpoint_metadata(config, metadata)
        meta_index = {}
        for k, v in full_meta.items():
            j = canonical_json(v)
            if j is not None:
                meta_index[str(k)] = json.loads(j)
        pb = context_pb2.Checkpoint(
            checkpoint_id=checkpoint["id"],
            parent_id=parent_id or "",
            checkpoint=_pack_pair(self.serde.dumps_typed(c), self.serde.dumps_typed(full_meta)),
            metadata_json=canonical_json(meta_index) or "",
            channel_versions={k: str(v) for k, v in c["channel_versions"].items()},
        )
        next_config: RunnableConfig = {
            "configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}
        }
        return thread_id, ns, pb, blobs, next_config

    def _tuple(self, t: context_pb2.CheckpointTuple, config: RunnableConfig | None = None) -> CheckpointTuple:
        thread_id, ns = t.thread.thread, t.thread.ns
        cp = t.checkpoint
        typed_cp, typed_meta = _unpack_pair(cp.checkpoint)
        checkpoint: Checkpoint = self.serde.loads_typed(typed_cp)
        values = {}
        for b in t.blobs:
            typed = _unpack(b.value)
            if typed[0] == "empty":
                continue
            values[b.channel] = self.serde.loads_typed(typed)
        writes = sorted(t.pending_writes, key=lambda w: writes_sort_key(w.task_path, w.task_id, _signed(w.idx)))
        own = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cp.checkpoint_id}}
        return CheckpointTuple(
            config=config if config is not None else own,
            checkpoint={**checkpoint, "channel_values": values},
            metadata=self.serde.loads_typed(typed_meta),
            parent_config=(
                {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cp.parent_id}}
                if cp.parent_id
                else None
            ),
            pending_writes=[(w.task_id, w.channel, self.serde.loads_typed(_unpack(w.value))) for w in writes],
        )

    @staticmethod
    def _list_args(
        config: RunnableConfig | None, filter: dict[str, Any] | None, before: RunnableConfig | None
    ) -> tuple[str, str | None, str | None, str | None, dict[str, Any]]:
        if config is None:
            thread_id, ns, checkpoint_id = "", None, None
        else:
            thread_id, ns, checkpoint_id = _ref(config)
        before_id = get_checkpoint_id(before) if before else None
        server_filter: dict[str, Any] = {}
        for k, v in (filter or {}).items():
            j = canonical_json(v)
            if j is None:
                raise NotImplementedError(
                    f"CtxstoreSaver.list: filter value for {k!r} is not JSON; the server matches metadata "
                    "as JSON values only"
                )
            server_filter[str(k)] = json.loads(j)
        return thread_id, ns, checkpoint_id, before_id, server_filter

    @staticmethod
    def _one_matches(t: context_pb2.CheckpointTuple, before_id: str | None, server_filter: dict[str, Any]) -> bool:
        cp = t.checkpoint
        if before_id and cp.checkpoint_id >= before_id:
            return False
        meta = _metadata_values(cp)
        return all(k in meta and meta[k] == v for k, v in server_filter.items())

    @staticmethod
    def _prune_args(strategy: str, namespaces: Sequence[str] | None) -> None:
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r} (keep_latest or delete)")

    # ---- sync ----

    def _sync(self) -> Client:
        if self.client is None:
            raise RuntimeError("this CtxstoreSaver has only an AsyncClient: use the a* methods")
        return self.client

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint of ``config`` (its ``checkpoint_id``, else the latest of
        ``(thread_id, checkpoint_ns)``) with its channel values and pending writes."""
        thread_id, ns, checkpoint_id = _ref(config)
        t = self._sync().get_checkpoint(thread_id, ns or "", checkpoint_id)
        if t is None:
            return None
        return self._tuple(t, config if checkpoint_id else None)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints below ``before`` whose metadata equals ``filter`` on every key
        (JSON equality): of one ``(thread_id, checkpoint_ns)`` newest first; of every
        checkpoint namespace of the thread when the config has no ``checkpoint_ns``
        (by namespace, newest first within each); of every thread for
        ``config=None`` (shard by shard)."""
        thread_id, ns, checkpoint_id, before_id, server_filter = self._list_args(config, filter, before)
        client = self._sync()
        if limit is not None and limit <= 0:
            return
        if config is None:
            yielded = 0
            for t in client.list_all_checkpoints(json_filter=server_filter):
                if before_id and t.checkpoint.checkpoint_id >= before_id:
                    continue
                yield self._tuple(t)
                yielded += 1
                if limit is not None and yielded >= limit:
                    return
            return
        left = limit
        for one_ns in [ns] if ns is not None else client.checkpoint_namespaces(thread_id):
            if checkpoint_id:
                t = client.get_checkpoint(thread_id, one_ns, checkpoint_id)
                if t is not None and self._one_matches(t, before_id, server_filter):
                    yield self._tuple(t)
                    if left is not None:
                        left -= 1
                        if left <= 0:
                            return
                continue
            cursor = before_id
            while True:
                page = LIST_PAGE if left is None else min(left, LIST_PAGE)
                tuples = client.list_checkpoints(thread_id, one_ns, before=cursor, limit=page, json_filter=server_filter)
                for t in tuples:
                    yield self._tuple(t)
                if left is not None:
                    left -= len(tuples)
                    if left <= 0:
                        return
                if len(tuples) < page:
                    break
                cursor = tuples[-1].checkpoint.checkpoint_id

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Stores a checkpoint with the blobs of the channels in ``new_versions``;
        returns the config naming it."""
        thread_id, ns, pb, blobs, next_config = self._checkpoint_pb(config, checkpoint, metadata, new_versions)
        self._sync().put_checkpoint(thread_id, ns, pb, blobs, idle_ttl_ms=self.idle_ttl_ms)
        return next_config

    def _writes_args(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]]) -> tuple[str, str, str, list]:
        thread_id, ns, checkpoint_id = _ref(config)
        if not checkpoint_id:
            raise ValueError("put_writes needs configurable.checkpoint_id")
        packed = [(c, _pack(self.serde.dumps_typed(v))) for c, v in writes]
        return thread_id, ns or "", checkpoint_id, packed

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Stores a task's pending writes for the checkpoint of ``config``."""
        thread_id, ns, checkpoint_id, packed = self._writes_args(config, writes)
        if packed:
            self._sync().put_writes(thread_id, ns, checkpoint_id, task_id, packed, task_path=task_path)

    def delete_thread(self, thread_id: str) -> None:
        """Deletes every checkpoint, blob and write of a thread, in all namespaces."""
        self._sync().delete_thread(str(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Deletes every checkpoint whose metadata ``run_id`` is one of ``run_ids``,
        with its pending writes and the channel values no other checkpoint names
        (``DeleteForRuns`` on every shard; running it again finishes an interrupted
        deletion)."""
        if run_ids:
            self._sync().delete_for_runs(run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copies every checkpoint of every namespace of a thread, with its channel
        values and pending writes, to another thread, on the server (``CopyThread``).
        Copying again writes the same records, so an interrupted copy is finished by
        running it again."""
        self._sync().copy_thread(str(source_thread_id), str(target_thread_id))

    def prune(
        self, thread_ids: Sequence[str], *, strategy: str = "keep_latest", namespaces: Sequence[str] | None = None
    ) -> None:
        """``strategy="delete"`` removes every checkpoint of the threads (the whole
        thread). ``"keep_latest"`` keeps the newest checkpoint of each namespace (those
        in ``namespaces``, else every one the thread has), with its writes, and removes
        the blobs no kept checkpoint names."""
        self._prune_args(strategy, namespaces)
        client = self._sync()
        for t in thread_ids:
            if strategy == "delete":
                client.delete_thread(str(t))
            else:
                for ns in namespaces if namespaces is not None else client.checkpoint_namespaces(str(t)):
                    client.prune_checkpoints(str(t), ns, keep_latest=1)

    def get_next_version(self, current: str | None, channel: None) -> str:
        """Channel versions as LangGraph's in-memory and Postgres savers make them:
        a zero-padded counter and a random fraction, which sort as strings."""
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(current.split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"

    # ---- async ----

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Async :meth:`get_tuple`."""
        if self.async_client is None:
            return await asyncio.to_thread(self.get_tuple, config)
        thread_id, ns, checkpoint_id = _ref(config)
        t = await self.async_client.get_checkpoint(thread_id, ns or "", checkpoint_id)
        if t is None:
            return None
        return self._tuple(t, config if checkpoint_id else None)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Async :meth:`list`."""
        if self.async_client is None:
            items = await asyncio.to_thread(lambda: list(self.list(config, filter=filter, before=before, limit=limit)))
            for item in items:
                yield item
            return
        client = self.async_client
        thread_id, ns, checkpoint_id, before_id, server_filter = self._list_args(config, filter, before)
        if limit is not None and limit <= 0:
            return
        if config is None:
            yielded = 0
            async for t in client.list_all_checkpoints(json_filter=server_filter):
                if before_id and t.checkpoint.checkpoint_id >= before_id:
                    continue
                yield self._tuple(t)
                yielded += 1
                if limit is not None and yielded >= limit:
                    return
            return
        left = limit
        for one_ns in [ns] if ns is not None else await client.checkpoint_namespaces(thread_id):
            if checkpoint_id:
                t = await client.get_checkpoint(thread_id, one_ns, checkpoint_id)
                if t is not None and self._one_matches(t, before_id, server_filter):
                    yield self._tuple(t)
                    if left is not None:
                        left -= 1
                        if left <= 0:
                            return
                continue
            cursor = before_id
            while True:
                page = LIST_PAGE if left is None else min(left, LIST_PAGE)
                tuples = await client.list_checkpoints(
                    thread_id, one_ns, before=cursor, limit=page, json_filter=server_filter
                )
                for t in tuples:
                    yield self._tuple(t)
                if left is not None:
                    left -= len(tuples)
                    if left <= 0:
                        return
                if len(tuples) < page:
                    break
                cursor = tuples[-1].checkpoint.checkpoint_id

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Async :meth:`put`."""
        if self.async_client is None:
            return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)
        thread_id, ns, pb, blobs, next_config = self._checkpoint_pb(config, checkpoint, metadata, new_versions)
        await self.async_client.put_checkpoint(thread_id, ns, pb, blobs, idle_ttl_ms=self.idle_ttl_ms)
        return next_config

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Async :meth:`put_writes`."""
        if self.async_client is None:
            return await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)
        thread_id, ns, checkpoint_id, packed = self._writes_args(config, writes)
        if packed:
            await self.async_client.put_writes(thread_id, ns, checkpoint_id, task_id, packed, task_path=task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        """Async :meth:`delete_thread`."""
        if self.async_client is None:
            return await asyncio.to_thread(self.delete_thread, thread_id)
        await self.async_client.delete_thread(str(thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Async :meth:`delete_for_runs`."""
        if self.async_client is None:
            return await asyncio.to_thread(self.delete_for_runs, run_ids)
        if run_ids:
            await self.async_client.delete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Async :meth:`copy_thread`."""
        if self.async_client is None:
            return await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)
        await self.async_client.copy_thread(str(source_thread_id), str(target_thread_id))

    async def aprune(
        self, thread_ids: Sequence[str], *, strategy: str = "keep_latest", namespaces: Sequence[str] | None = None
    ) -> None:
        """Async :meth:`prune`."""
        self._prune_args(strategy, namespaces)
        if self.async_client is None:
            return await asyncio.to_thread(
                lambda: self.prune(thread_ids, strategy=strategy, namespaces=namespaces)
            )
        for t in thread_ids:
            if strategy == "delete":
                await self.async_client.delete_thread(str(t))
            else:
                listed = namespaces
                if listed is None:
                    listed = await self.async_client.checkpoint_namespaces(str(t))
                for ns in listed:
                    await self.async_client.prune_checkpoints(str(t), ns, keep_latest=1)


# ---- long-term memory: LangGraph's BaseStore ----

#: Prefix of every store key in the Kv space.
STORE_PREFIX = "lgstore:"
_LABEL_SEP = "\x1f"
_KEY_SEP = "\x1e"


def _store_prefix(namespace: Sequence[str]) -> str:
    """The Kv key prefix of a namespace: its first label is the hash tag (so one
    user's or one tenant's memories are one shard), the others follow, each behind
    0x1F."""
    for label in namespace:
        if not isinstance(label, str) or not label or any(ord(c) < 0x20 for c in label):
            raise ctx_errors.InvalidArgumentError(
                "namespace", f"labels must be non-empty strings without control characters, got {label!r}"
            )
    if not namespace:
        return STORE_PREFIX
    head = namespace[0].replace("}", "\x02")
    return STORE_PREFIX + "{" + head + "}" + "".join(_LABEL_SEP + label for label in namespace[1:])


def _store_key(namespace: Sequence[str], key: str) -> str:
    if any(ord(c) < 0x20 for c in key):
        raise ctx_errors.InvalidArgumentError("key", f"no control characters, got {key!r}")
    return _store_prefix(namespace) + _KEY_SEP + key


def _parse_store_key(raw: bytes) -> tuple[tuple[str, ...], str] | None:
    text = raw.decode("utf-8", errors="replace")
    if not text.startswith(STORE_PREFIX + "{"):
        return None
    rest = text[len(STORE_PREFIX) + 1 :]
    head, sep, rest = rest.partition("}")
    if not sep:
        return None
    path, sep, key = rest.partition(_KEY_SEP)
    if not sep:
        return None
    labels = [head.replace("\x02", "}")] + (path.split(_LABEL_SEP)[1:] if path else [])
    return tuple(labels), key


def _list_prefix(conditions: Sequence[MatchCondition] | None) -> str:
    """What ``list_namespaces`` scans: one shard's records when a prefix condition
    fixes the first label (the hash tag), else every store record."""
    for cond in conditions or ():
        if cond.match_type == "prefix" and cond.path and cond.path[0] != "*":
            return _store_prefix(tuple(cond.path[:1]))
    return STORE_PREFIX


def _compare(value: Any, cond: Any) -> bool:
    """LangGraph's filter semantics: equality, or ``{"$op": x}`` with $eq, $ne, $gt,
    $gte, $lt, $lte."""
    if isinstance(cond, dict) and cond and all(k.startswith("$") for k in cond):
        ops = {
            "$eq": lambda a, b: a == b,
            "$ne": lambda a, b: a != b,
            "$gt": lambda a, b: a is not None and a > b,
            "$gte": lambda a, b: a is not None and a >= b,
            "$lt": lambda a, b: a is not None and a < b,
            "$lte": lambda a, b: a is not None and a <= b,
        }
        try:
            return all(ops[k](value, v) for k, v in cond.items())
        except (KeyError, TypeError):
            return False
    if isinstance(cond, dict) and isinstance(value, dict):
        return all(_compare(value.get(k), v) for k, v in cond.items())
    return value == cond


def _matches(cond: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = tuple(cond.path)
    if len(path) > len(namespace):
        return False
    part = namespace[: len(path)] if cond.match_type == "prefix" else namespace[len(namespace) - len(path) :]
    return all(p == "*" or p == n for p, n in zip(path, part))


class CtxstoreStore(BaseStore):
    """LangGraph's long-term memory store (``BaseStore``) on ctxstore's Kv API.

    Each item is one Kv record ``lgstore:{<first label>}<0x1F label>...<0x1E key>``
    holding JSON (value, created_at, updated_at, ttl): a namespace's first label is
    its hash tag, so everything under one user or tenant lives in one shard and
    searching it reads one shard; listing every namespace reads them all. Items
    expire with a TTL in minutes (``put(..., ttl=)`` or ``ttl={"default_ttl": ...}``),
    refreshed by reads unless ``refresh_ttl=False``, as LangGraph's stores do.

    Like LangGraph's in-memory store without an index, ``search`` ignores ``query``
    (there is no embedding index) and returns items in key order; a batch applies
    its reads before its writes.
    """

    supports_ttl = True

    def __init__(self, client: Client, *, ttl: dict[str, Any] | None = None) -> None:
        self.client = client
        self.ttl_config = ttl

    @classmethod
    def from_endpoints(cls, endpoints: list[str] | str, **kw: Any) -> "CtxstoreStore":
        return cls(Client(endpoints), **kw)

    # -- records

    def _write(self, namespace: tuple[str, ...], key: str, value: dict[str, Any], ttl: float | None, created: str) -> None:
        now = _now_iso()
        record = {"value": value, "created_at": created or now, "updated_at": now, "ttl": ttl}
        ttl_ms = int(ttl * 60_000) if ttl else 0
        self.client.put(_store_key(namespace, key), json.dumps(record), ttl_ms=ttl_ms)

    @staticmethod
    def _item(raw_key: bytes, raw: bytes) -> tuple[Item, float | None] | None:
        """The item a Kv record holds, and its TTL in minutes."""
        parsed = _parse_store_key(raw_key)
        if parsed is None:
            return None
        namespace, key = parsed
        record = json.loads(raw)
        item = Item(
            value=record["value"],
            key=key,
            namespace=namespace,
            created_at=_parse_iso(record["created_at"]),
            updated_at=_parse_iso(record["updated_at"]),
        )
        return item, record.get("ttl")

    def _touch(self, kv: KeyValue, ttl: float | None) -> None:
        """Restarts an item's TTL (a read refreshes it), only if the record is still
        the one read: a write since then is newer and has its own TTL."""
        if ttl:
            try:
                self.client.compare_and_swap(kv.key, kv.version, kv.value, ttl_ms=int(ttl * 60_000))
            except ctx_errors.VersionMismatchError:
                pass

    def _refresh(self, op_refresh: bool | None) -> bool:
        if op_refresh is not None:
            return op_refresh
        return bool((self.ttl_config or {}).get("refresh_on_read", True))

    def _ttl(self, op_ttl: float | None) -> float | None:
        if op_ttl is not None:
            return op_ttl
        return (self.ttl_config or {}).get("default_ttl")

    # -- operations

    def _get(self, op: GetOp) -> Item | None:
        kv = self.client.get(_store_key(op.namespace, op.key))
        if kv is None:
            return None
        found = self._item(kv.key, kv.value)
        if found is None:
            return None
        item, ttl = found
        if self._refresh(op.refresh_ttl):
            self._touch(kv, ttl)
        return item

    def _search(self, op: SearchOp) -> list[SearchItem]:
        prefix = _store_prefix(op.namespace_prefix)
        out: list[SearchItem] = []
        skipped = 0
        for kv in self.client.scan_all(prefix):
            rest = kv.key[len(prefix.encode()) :]
            if op.namespace_prefix and rest[:1] not in (_LABEL_SEP.encode(), _KEY_SEP.encode()):
                continue  # ("a", "bc") under the prefix ("a", "b")
            found = self._item(kv.key, kv.value)
            if found is None:
                continue
            item, ttl = found
            if not all(_compare(item.value.get(k), v) for k, v in (op.filter or {}).items()):
                continue
            if skipped < op.offset:
                skipped += 1
                continue
            if self._refresh(op.refresh_ttl):
                self._touch(kv, ttl)
            out.append(
                SearchItem(
                    namespace=item.namespace,
                    key=item.key,
                    value=item.value,
                    created_at=item.created_at,
                    updated_at=item.updated_at,
                    score=None,
                )
            )
            if len(out) >= op.limit:
                break
        return out

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        seen: set[tuple[str, ...]] = set()
        for kv in self.client.scan_all(_list_prefix(op.match_conditions)):
            parsed = _parse_store_key(kv.key)
            if parsed is not None:
                seen.add(parsed[0])
        namespaces = [ns for ns in seen if all(_matches(c, ns) for c in op.match_conditions or ())]
        if op.max_depth is not None:
            namespaces = sorted({ns[: op.max_depth] for ns in namespaces})
        else:
            namespaces = sorted(namespaces)
        return namespaces[op.offset : op.offset + op.limit]

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Runs the reads in order, then the writes (the last write of a key wins)."""
        results: list[Result] = []
        puts: dict[tuple[tuple[str, ...], str], PutOp] = {}
        for op in ops:
            if isinstance(op, GetOp):
                results.append(self._get(op))
            elif isinstance(op, SearchOp):
                results.append(self._search(op))
            elif isinstance(op, ListNamespacesOp):
                results.append(self._list_namespaces(op))
            elif isinstance(op, PutOp):
                puts[(tuple(op.namespace), op.key)] = op
                results.append(None)
            else:
                raise ValueError(f"unknown operation {type(op).__name__}")
        for (namespace, key), op in puts.items():
            if op.value is None:
                self.client.delete(_store_key(namespace, key))
                continue
            old = self.client.get(_store_key(namespace, key))
            created = json.loads(old.value)["created_at"] if old is not None else ""
            self._write(namespace, key, dict(op.value), self._ttl(op.ttl), created)
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Async :meth:`batch` (run in a worker thread: the store uses the sync
        client)."""
        ops = list(ops)
        return await asyncio.to_thread(self.batch, ops)


def _now_iso() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat()


def _parse_iso(s: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(s)
