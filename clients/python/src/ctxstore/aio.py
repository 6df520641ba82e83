"""The asyncio client: the same calls, routing and retry rules as
:class:`ctxstore.Client`, as coroutines (``await client.put(...)``), with watches as
async iterators (``async for ev in client.watch(...)``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence, TypeVar

import grpc
import grpc.aio

from . import _ops
from . import errors as E
from ._core import Call, ClientTls, Core, Op, Options, Route, Stats, WatchState, watch_resumable
from ._proto import cluster_pb2, cluster_pb2_grpc, context_pb2, context_pb2_grpc, kv_pb2, kv_pb2_grpc
from .types import BatchOpLike, Check, DeleteResult, KeyValue, Lease, MessageLike, ScanResult, WriteResult

T = TypeVar("T")

__all__ = ["AsyncClient", "AsyncWatch"]


class _KeepAliveOnce:
    """``Lease.KeepAlive`` as a unary call: one renewal, one answer."""

    def __init__(self, stub: kv_pb2_grpc.LeaseStub) -> None:
        self._stub = stub

    async def KeepAlive(self, req: kv_pb2.LeaseKeepAliveRequest, timeout: float) -> kv_pb2.LeaseKeepAliveResponse:  # noqa: N802
        call = self._stub.KeepAlive(iter([req]), timeout=timeout)
        answer = await call.read()
        if answer is grpc.aio.EOF:
            raise E.TransportError("the keepalive stream ended without an answer", code=grpc.StatusCode.UNAVAILABLE)
        return answer


class _Stubs:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.kv = kv_pb2_grpc.KvStub(channel)
        self.agent = context_pb2_grpc.AgentContextStub(channel)
        self.cluster = cluster_pb2_grpc.ClusterStub(channel)
        self.lease = kv_pb2_grpc.LeaseStub(channel)
        self.queue = kv_pb2_grpc.QueueStub(channel)
        self.lease_once = _KeepAliveOnce(self.lease)


class AsyncClient:
    """A connection to a ctxstore cluster for asyncio code. Create it inside the
    event loop that uses it; ``async with AsyncClient([...]) as c:`` or ``await
    c.close()``. Every method of :class:`ctxstore.Client` exists here as a coroutine
    with the same arguments and results (see there for their documentation), and
    the ``watch*`` methods return :class:`AsyncWatch` async iterators."""

    def __init__(
        self,
        endpoints: list[str] | str,
        *,
        timeout: float = 10.0,
        tls: ClientTls | None = None,
        token: str | None = None,
        options: Options | None = None,
    ) -> None:
        self._core = Core(endpoints, Options.resolve(timeout, tls, options, token))
        self._stubs: dict[str, _Stubs] = {}
        self._refreshing: asyncio.Lock | None = None

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes every connection."""
        stubs, self._stubs = self._stubs, {}
        for s in stubs.values():
            await s.channel.close()

    @property
    def stats(self) -> Stats:
        return self._core.stats

    @property
    def options(self) -> Options:
        return self._core.options

    def endpoints(self) -> list[str]:
        return self._core.endpoints()

    def _channel(self, addr: str) -> grpc.aio.Channel:
        creds, options = self._core.channel_settings()
        if creds is None:
            return grpc.aio.insecure_channel(addr, options=options)
        return grpc.aio.secure_channel(addr, creds, options=options)

    def _stub(self, addr: str) -> _Stubs:
        s = self._stubs.get(addr)
        if s is None:
            s = _Stubs(self._channel(addr))
            self._stubs[addr] = s
        return s

    async def refresh_routing(self) -> None:
        """Fetches the routing table (see :meth:`ctxstore.Client.refresh_routing`)."""
        tables = []
        for a in self._core.refresh_order():
            try:
                t = await self._stub(a).cluster.GetRoutingTable(
                    cluster_pb2.RoutingTableRequest(), timeout=self._core.options.routing_timeout
                )
            except grpc.RpcError:
                continue
            tables.append(t)
            if t.source == "meta-leader":
                break
        self._core.learn_tables(tables)

    async def _run(self, op: Op[T]) -> T:
        core = self._core
        if not core.routing.fetched():
            await self.refresh_routing()
        st = core.begin()
        while True:
            shard, addr = core.plan(op, st)
            remaining = core.remaining(st)
            if remaining <= 0:
                raise core.timed_out(st)
            method = getattr(getattr(self._stub(addr), op.service), op.method)
            try:
                resp = await method(op.request, timeout=remaining)
            except grpc.RpcError as rpc_err:
                err = E.from_rpc_error(rpc_err)
                if err.code == grpc.StatusCode.DEADLINE_EXCEEDED and err.detail is None:
                    # The attempt's timeout is what was left of the call's deadline.
                    st.last_error = E.TransportError(f"no answer from {addr}", code=err.code)
                    raise core.timed_out(st) from None
            else:
                core.succeeded(op, st, shard, addr, resp)
                return op.result(resp)
            step = core.decide(op, st, shard, addr, err)
            if step.refresh:
                await self.refresh_routing()
            if step.kind == "raise":
                raise err
            if step.kind == "raise-timeout":
                raise core.timed_out(st) from err
            if step.kind == "backoff":
                await asyncio.sleep(core.pause(st))

    async def _scatter(self, part: Callable[[int], Op[T]]) -> list[T]:
        return await self._scatter_each(lambda s: self._run(part(s)))

    async def _scatter_each(self, each: Callable[[int], Awaitable[T]]) -> list[T]:
        rounds = 0
        deadline = time.monotonic() + self._core.options.timeout
        while True:
            shards = await self.shards()
            if not shards:
                if time.monotonic() >= deadline:
                    raise E.ShardUnavailableError(
                        "no data shard known: the routing table could not be fetched", shard_id=0
                    )
                await asyncio.sleep(0.05)
                await self.refresh_routing()
                continue
            try:
                return list(await asyncio.gather(*(each(s) for s in shards)))
            except E.StaleEpochError:
                rounds += 1
                if rounds > 8:
                    raise

    # ---- cluster ----

    async def shards(self) -> list[int]:
        if not self._core.routing.fetched():
            await self.refresh_routing()
        return self._core.routing.shards()

    async def routing_table(self) -> cluster_pb2.RoutingTable:
        op: Op[Any] = Op("cluster", "GetRoutingTable", cluster_pb2.RoutingTableRequest(), Route.any(), Call.READ,
                         header=False)
        t = await self._run(op)
        self._core.learn_tables([t])
        return t

    async def route(self, key: str | bytes) -> tuple[int, str | None]:
        from .keys import key_hash

        if not self._core.routing.fetched():
            await self.refresh_routing()
        shard = self._core.routing.shard_for_hash(key_hash(key)) or 0
        return shard, self._core.routing.target(shard, 0) if shard else None

    async def node_status(self, addr: str, *, with_digests: bool = False, timeout: float | None = None) -> cluster_pb2.StatusResponse:
        try:
            return await self._stub(addr).cluster.Status(
                cluster_pb2.StatusRequest(with_digests=with_digests), timeout=timeout or self._core.options.timeout
            )
        except grpc.RpcError as e:
            raise E.from_rpc_error(e) from None

    # ---- Kv ----

    async def get(
        self, key: str | bytes, *, stale: bool = False, read_mode: str | None = None
    ) -> KeyValue | None:
        """As :meth:`ctxstore.Client.get`."""
        return await self._run(_ops.get(key, _ops.read_mode(self._core, stale, read_mode)))

    async def put(self, key: str | bytes, value: str | bytes, *, ttl_ms: int = 0, lease_id: int = 0) -> WriteResult:
        return await self._run(_ops.put(self._core, key, value, ttl_ms, lease_id))

    # ---- task queues ----

    async def enqueue(
        self,
        queue: str,
        payload: str | bytes,
        *,
        priority: int = 0,
        delay_ms: int = 0,
        idempotency_key: str = "",
        max_attempts: int = 0,
    ) -> tuple[int, bool]:
        """Enqueues a task on ``queue`` (one hash tag ``{q/QUEUE}``): its id, and
        whether ``idempotency_key`` named a task enqueued before (nothing enqueued)."""
        return await self._run(
            _ops.enqueue(self._core, queue, payload, priority, delay_ms, idempotency_key, max_attempts)
        )

    async def lease_tasks(self, queue: str, max_tasks: int = 1, *, visibility_ms: int = 30_000) -> list[kv_pb2.QueueTask]:
        """Leases up to ``max_tasks`` visible tasks for ``visibility_ms``: highest
        priority first, FIFO within one."""
        return await self._run(_ops.lease_tasks(self._core, queue, max_tasks, visibility_ms))

    async def ack(self, queue: str, task: kv_pb2.QueueTask) -> bool:
        """Removes a leased task; False if it is not held under that lease any more."""
        return await self._run(_ops.ack(self._core, queue, task))

    async def nack(self, queue: str, task: kv_pb2.QueueTask, *, retry_after_ms: int = 0) -> tuple[bool, bool]:
        """Gives a task back (visible after ``retry_after_ms``, 0 = backoff):
        (released, dead-lettered)."""
        return await self._run(_ops.nack(self._core, queue, task, retry_after_ms))

    async def extend(self, queue: str, task: kv_pb2.QueueTask, *, visibility_ms: int) -> bool:
        """Extends a task's lease to end ``visibility_ms`` from now."""
        return await self._run(_ops.extend(self._core, queue, task, visibility_ms))

    async def queue_stats(self, queue: str) -> kv_pb2.QueueStatsResponse:
        """Counts of ``queue``: ready, delayed, leased, dead, totals."""
        return await self._run(_ops.queue_stats(queue))

    async def grant_lease(self, key: str | bytes, ttl_ms: int) -> Lease:
        return await self._run(_ops.grant_lease(self._core, key, ttl_ms))

    async def revoke_lease(self, lease: Lease) -> tuple[bool, int]:
        return await self._run(_ops.revoke_lease(self._core, lease))

    async def lease_info(self, lease: Lease) -> kv_pb2.LeaseInfoResponse | None:
        return await self._run(_ops.lease_info(lease))

    async def keep_alive_once(self, lease: Lease) -> int:
        return await self._run(_ops.keep_alive_once(lease))

    async def discover(self, service: str) -> list[KeyValue]:
        return list((await self.scan(_ops.service_prefix(service), limit=10_000)).kvs)

    def keep_alive(self, lease: Lease) -> "AsyncLeaseKeeper":
        """Renews ``lease`` every third of its TTL in an asyncio task (see
        :meth:`ctxstore.Client.keep_alive`)."""
        return AsyncLeaseKeeper(self, lease)

    async def register(
        self, service: str, instance: str, value: str | bytes, *, ttl_ms: int = 10_000
    ) -> "AsyncLeaseKeeper":
        prefix = _ops.service_prefix(service)
        lease = await self.grant_lease(prefix, ttl_ms)
        keeper = self.keep_alive(lease)
        await self.put(prefix + instance.encode(), value, lease_id=lease.id)
        return keeper

    async def watch_service(
        self, service: str, *, from_version: int | None = None
    ) -> "AsyncWatch[kv_pb2.WatchEvent]":
        return await self.watch(prefix=_ops.service_prefix(service), from_version=from_version)

    async def lock(self, name: str, *, ttl_ms: int = 10_000, timeout: float | None = None) -> "AsyncLockGuard":
        return await self.campaign(name, b"", ttl_ms=ttl_ms, timeout=timeout)

    async def campaign(
        self, name: str, value: str | bytes, *, ttl_ms: int = 10_000, timeout: float | None = None
    ) -> "AsyncLockGuard":
        """See :meth:`ctxstore.Client.campaign`; ``timeout`` raises
        :class:`~ctxstore.errors.DeadlineExceededError`."""
        prefix = _ops.lock_prefix(name)
        lease = await self.grant_lease(prefix, ttl_ms)
        keeper = self.keep_alive(lease)
        key = prefix + f"{lease.id:016x}".encode()
        try:
            mine = (await self.compare_and_swap(key, 0, value, lease_id=lease.id)).create_version
            wait = self._wait_first_in_line(prefix, key, mine, keeper)
            if timeout is None:
                await wait
            else:
                try:
                    await asyncio.wait_for(wait, timeout)
                except asyncio.TimeoutError:
                    raise E.DeadlineExceededError(timeout, None) from None
        except BaseException:
            await keeper.revoke()
            raise
        return AsyncLockGuard(key, mine, keeper)

    async def _wait_first_in_line(self, prefix: bytes, key: bytes, mine: int, keeper: "AsyncLeaseKeeper") -> None:
        lost = "the lock's lease ended while waiting"
        while True:
            if not keeper.alive:
                raise E.FailedPreconditionError(lost)
            page = await self.scan(prefix, limit=_ops.MAX_WAITERS)
            if page.more:
                raise E.FailedPreconditionError(f"more than {_ops.MAX_WAITERS} waiters for one lock")
            if not any(kv.key == key for kv in page.kvs):
                raise E.FailedPreconditionError(lost)
            ahead = [kv for kv in page.kvs if kv.create_version < mine]
            if not ahead:
                return
            prev = max(ahead, key=lambda kv: kv.create_version)
            async with await self.watch(prev.key, from_version=prev.version) as w:

                async def deleted() -> None:
                    async for e in w:
                        if e.kind == kv_pb2.WatchEvent.DELETE:
                            return

                # The one ahead goes, or this waiter's own lease does.
                gone = asyncio.ensure_future(deleted())
                lease_lost = asyncio.ensure_future(keeper.wait_lost())
                try:
                    await asyncio.wait({gone, lease_lost}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    lease_lost.cancel()
                    if not gone.done():
                        gone.cancel()
                if not gone.done() or gone.cancelled():
                    raise E.FailedPreconditionError(lost)
                gone.result()

    async def leader(self, name: str) -> KeyValue | None:
        page = await self.scan(_ops.lock_prefix(name), limit=_ops.MAX_WAITERS)
        return min(page.kvs, key=lambda kv: kv.create_version, default=None)

    async def guarded_batch(self, guard: "AsyncLockGuard", ops: Iterable[BatchOpLike]) -> int:
        return await self.batch([Check(guard.key, guard.fence), *ops])

    async def delete(self, key: str | bytes) -> DeleteResult:
        return await self._run(_ops.delete(self._core, key))

    async def compare_and_swap(
        self, key: str | bytes, expected_version: int, value: str | bytes, *, ttl_ms: int = 0, lease_id: int = 0
    ) -> WriteResult:
        return await self._run(_ops.cas(self._core, key, expected_version, value, False, ttl_ms, lease_id))

    async def compare_and_delete(self, key: str | bytes, expected_version: int) -> WriteResult:
        return await self._run(_ops.cas(self._core, key, expected_version, None, True, 0))

    async def batch(self, ops: Iterable[BatchOpLike]) -> int:
        return await self._run(_ops.batch(self._core, ops))

    async def scan(
        self, prefix: str | bytes = b"", *, start_after: str | bytes = b"", limit: int = 0, stale: bool = False
    ) -> ScanResult:
        from .keys import as_bytes, prefix_partition, tag_hash

        p, sa = as_bytes(prefix), as_bytes(start_after)
        tag = prefix_partition(p)
        if tag is not None:
            return await self._run(_ops.scan_part(p, sa, limit, stale, Route.key(tag_hash(tag)), Call.READ))
        parts = await self._scatter(lambda s: _ops.scan_part(p, sa, limit, stale, Route.shard(s), Call.PART))
        return _ops.merge_scans(parts, limit)

    async def scan_all(self, prefix: str | bytes = b"", *, page: int = 1000) -> AsyncIterator[KeyValue]:
        after = b""
        while True:
            r = await self.scan(prefix, start_after=after, limit=page)
            for kv in r.kvs:
                yield kv
            if not r.more or not r.kvs:
                return
            after = r.kvs[-1].key

    async def watch(
        self, key: str | bytes | None = None, *, prefix: str | bytes | None = None, from_version: int | None = None
    ) -> "AsyncWatch[kv_pb2.WatchEvent]":
        make, events = _ops.kv_watch(key, prefix)
        w: AsyncWatch[Any] = AsyncWatch(self, make, events, from_version)
        await w._open()
        return w

    # ---- conversations ----

    async def append(
        self,
        namespace: str,
        conversation_id: str,
        messages: Iterable[MessageLike],
        *,
        expected_last_seq: int | None = None,
        idempotency_key: str = "",
        idle_ttl_ms: int | None = None,
    ) -> context_pb2.AppendResponse:
        return await self._run(
            _ops.append(self._core, namespace, conversation_id, messages, expected_last_seq, idempotency_key, idle_ttl_ms)
        )

    async def read(
        self,
        namespace: str,
        conversation_id: str,
        *,
        last_n: int | None = None,
        from_seq: int | None = None,
        to_seq: int | None = None,
        max_tokens: int | None = None,
        include_pinned: bool = False,
        limit: int = 0,
        after_seq: int = 0,
        stale: bool = False,
        refresh_ttl: bool = False,
    ) -> context_pb2.ReadResponse:
        return await self._run(
            _ops.read(
                namespace,
                conversation_id,
                last_n=last_n,
                from_seq=from_seq,
                to_seq=to_seq,
                max_tokens=max_tokens,
                include_pinned=include_pinned,
                limit=limit,
                after_seq=after_seq,
                stale=stale,
                refresh_ttl=refresh_ttl,
            )
        )

    async def read_all(
        self, namespace: str, conversation_id: str, *, page: int = 1000
    ) -> AsyncIterator[context_pb2.ChatMessage]:
        after = 0
        while True:
            r = await self.read(namespace, conversation_id, limit=page, after_seq=after)
            for m in r.messages:
                yield m
            if not r.next_seq or not r.messages:
                return
            after = r.next_seq - 1

    async def trim(self, namespace: str, conversation_id: str, before_seq: int) -> context_pb2.TrimResponse:
        return await self._run(_ops.trim(self._core, namespace, conversation_id, before_seq))

    async def compact(
        self,
        namespace: str,
        conversation_id: str,
        from_seq: int,
        to_seq: int,
        summary: MessageLike,
        *,
        expected_last_seq: int | None = None,
    ) -> context_pb2.CompactResponse:
        return await self._run(
            _ops.compact(self._core, namespace, conversation_id, from_seq, to_seq, summary, expected_last_seq)
        )

    async def delete_conversation(self, namespace: str, conversation_id: str) -> bool:
        return await self._run(_ops.delete_conversation(self._core, namespace, conversation_id))

    async def get_conversation(
        self, namespace: str, conversation_id: str, *, stale: bool = False
    ) -> context_pb2.ConversationInfo | None:
        return await self._run(_ops.get_conversation(namespace, conversation_id, stale))

    async def set_conversation_metadata(
        self,
        namespace: str,
        conversation_id: str,
        metadata: Mapping[str, str],
        *,
        expected_metadata_version: int | None = None,
        idle_ttl_ms: int | None = None,
    ) -> context_pb2.ConversationInfo:
        return await self._run(
            _ops.set_conversation_metadata(
                self._core, namespace, conversation_id, metadata, expected_metadata_version, idle_ttl_ms
            )
        )

    async def list_conversations(
        self, namespace: str, *, after_id: str = "", limit: int = 0
    ) -> context_pb2.ListConversationsResponse:
        from .keys import validate_namespace

        validate_namespace(namespace)
        parts = await self._scatter(lambda s: _ops.list_conversations_part(namespace, after_id, limit, s))
        return _ops.merge_conversations(parts, limit)

    async def list_threads(
        self, namespace: str = "", *, after_thread: str = "", limit: int = 0
    ) -> context_pb2.ListThreadsResponse:
        """One page of a tenant namespace's checkpoint threads (``""``: the default
        namespace), by id, after ``after_thread`` (``limit`` 0 = 100), gathered from
        every shard."""
        from .keys import validate_tenant_namespace

        validate_tenant_namespace(namespace)
        parts = await self._scatter(lambda s: _ops.list_threads_part(namespace, after_thread, limit, s))
        return _ops.merge_threads(parts, limit)

    async def watch_conversation(
        self, namespace: str, conversation_id: str, *, from_version: int | None = None
    ) -> "AsyncWatch[context_pb2.ConversationEvent]":
        make, events = _ops.conversation_watch(namespace, conversation_id)
        w: AsyncWatch[Any] = AsyncWatch(self, make, events, from_version)
        await w._open()
        return w

    # ---- checkpoints ----

    async def put_checkpoint(
        self,
        thread: str,
        ns: str,
        checkpoint: context_pb2.Checkpoint,
        blobs: Iterable[context_pb2.ChannelBlob] = (),
        *,
        idle_ttl_ms: int | None = None,
        namespace: str = "",
    ) -> int:
        return await self._run(_ops.put_checkpoint(self._core, thread, ns, checkpoint, blobs, idle_ttl_ms, namespace))

    async def put_writes(
        self,
        thread: str,
        ns: str,
        checkpoint_id: str,
        task_id: str,
        writes: Iterable[tuple[str, bytes]],
        *,
        task_path: str = "",
        namespace: str = "",
    ) -> context_pb2.PutWritesResponse:
        return await self._run(
            _ops.put_writes(self._core, thread, ns, checkpoint_id, task_id, writes, task_path, namespace)
        )

    async def get_checkpoint(
        self,
        thread: str,
        ns: str = "",
        checkpoint_id: str | None = None,
        *,
        stale: bool = False,
        refresh_ttl: bool = False,
        namespace: str = "",
    ) -> context_pb2.CheckpointTuple | None:
        return await self._run(_ops.get_checkpoint(thread, ns, checkpoint_id, stale, refresh_ttl, namespace))

    async def list_checkpoints(
        self,
        thread: str,
        ns: str = "",
        *,
        before: str | None = None,
        limit: int = 0,
        filter: Mapping[str, str] | None = None,
        stale: bool = False,
        namespace: str = "",
        json_filter: Mapping[str, Any] | None = None,
    ) -> list[context_pb2.CheckpointTuple]:
        return await self._run(
            _ops.list_checkpoints(thread, ns, before, limit, filter, stale, namespace, json_filter)
        )

    async def prune_checkpoints(
        self,
        thread: str,
        ns: str = "",
        *,
        keep_latest: int | None = None,
        older_than_ms: int | None = None,
        namespace: str = "",
        remove_id: str | None = None,
    ) -> context_pb2.PruneCheckpointsResponse:
        return await self._run(
            _ops.prune_checkpoints(self._core, thread, ns, keep_latest, older_than_ms, namespace, remove_id)
        )

    async def list_all_checkpoints(
        self,
        *,
        filter: Mapping[str, str] | None = None,
        limit: int = 0,
        json_filter: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[context_pb2.CheckpointTuple]:
        async def shard_pages(shard: int) -> list[context_pb2.CheckpointTuple]:
            out: list[context_pb2.CheckpointTuple] = []
            after = b""
            while True:
                page = await self._run(_ops.list_all_checkpoints_part(shard, after, filter, json_filter))
                out.extend(page.tuples)
                if not page.more or (limit and len(out) >= limit):
                    return out
                after = page.next

        for t in _ops.first(await self._scatter_each(shard_pages), limit):
            yield t

    async def delete_for_runs(self, run_ids: Sequence[str]) -> tuple[int, int]:
        parts: list[Any] = []
        for ids in _ops.run_id_chunks(run_ids):
            parts += await self._scatter(lambda s: _ops.delete_for_runs_part(s, ids))
        return _ops.removed_totals(parts)

    async def copy_thread(
        self, thread: str, target_thread: str, *, namespace: str = "", target_namespace: str = ""
    ) -> context_pb2.CopyThreadResponse:
        return await self._run(_ops.copy_thread(thread, target_thread, namespace, target_namespace))

    async def checkpoint_namespaces(self, thread: str, *, namespace: str = "", stale: bool = False) -> list[str]:
        return await self._run(_ops.checkpoint_namespaces(thread, namespace, stale))

    async def delete_thread(self, thread: str, *, namespace: str = "") -> bool:
        return await self._run(_ops.delete_thread(self._core, thread, namespace))

    # ---- models ----

    async def put_model(
        self, model: context_pb2.Model | Mapping[str, Any], *, expected_version: int | None = None, namespace: str = ""
    ) -> int:
        return await self._run(_ops.put_model(self._core, model, expected_version, namespace))

    async def get_model(
        self, name: str, *, consistent: bool = False, namespace: str = ""
    ) -> context_pb2.Model | None:
        return await self._run(_ops.get_model(name, consistent, namespace))

    async def list_models(self, *, consistent: bool = False, namespace: str = "") -> list[context_pb2.Model]:
        return await self._run(_ops.list_models(consistent, namespace))

    async def delete_model(self, name: str, *, namespace: str = "") -> bool:
        return await self._run(_ops.delete_model(self._core, name, namespace))

    async def watch_models(self, *, from_version: int | None = None, namespace: str = "") -> "AsyncWatch[context_pb2.ModelEvent]":
        make, events = _ops.models_watch(namespace)
        w: AsyncWatch[Any] = AsyncWatch(self, make, events, from_version)
        await w._open()
        return w


class AsyncWatch(AsyncIterator[T]):
    """An async iterator over a watch's events that reopens the stream from the last
    version delivered when it breaks. The first stream is opened by the ``watch*``
    call that returns it (so its errors are raised there). ``close()`` or leaving an
    ``async with`` block ends it."""

    def __init__(
        self, client: AsyncClient, make: Callable[[int | None], Op[Any]], events: Callable, from_version: int | None
    ) -> None:
        self._client = client
        self._make = make
        self._events = events
        self._state = WatchState(from_version)
        self._buffer: list[Any] = []
        self._closed = False
        self._call: Any = None

    async def _open(self) -> None:
        op = self._make(self._state.done)
        client = self._client
        core = client._core
        if not core.routing.fetched():
            await client.refresh_routing()
        st = core.begin()
        while True:
            shard, addr = core.plan(op, st)
            method = getattr(getattr(client._stub(addr), op.service), op.method)
            call = None
            try:
                call = method(op.request)
                head = await call.read()
            except grpc.RpcError as rpc_err:
                err = E.from_rpc_error(rpc_err)
            else:
                if head is grpc.aio.EOF:
                    err = E.TransportError("the watch stream closed before it started")
                else:
                    core.succeeded(op, st, shard, addr, None)
                    self._call = call
                    self._state.new_stream()
                    self._take(head)
                    return
            step = core.decide(op, st, shard, addr, err)
            if step.refresh:
                await client.refresh_routing()
            if step.kind == "raise":
                raise err
            if step.kind == "raise-timeout":
                raise core.timed_out(st) from err
            if step.kind == "backoff":
                await asyncio.sleep(core.pause(st))

    def _take(self, resp: Any) -> bool:
        events, progress, moved = self._events(resp)
        out, ended = self._state.take(events, progress, moved)
        self._buffer.extend(out)
        return ended

    def __aiter__(self) -> "AsyncWatch[T]":
        return self

    async def __anext__(self) -> T:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            ended = False
            try:
                resp = await self._call.read()
                if resp is grpc.aio.EOF:
                    ended = True
                else:
                    ended = self._take(resp)
            except asyncio.CancelledError:
                if self._closed:
                    raise StopAsyncIteration from None
                raise
            except grpc.RpcError as rpc_err:
                if self._closed:
                    raise StopAsyncIteration from None
                err = E.from_rpc_error(rpc_err)
                if not watch_resumable(err):
                    self.close()
                    raise err from None
                ended = True
            if ended and not self._closed:
                while not self._closed:
                    try:
                        await self._open()
                        break
                    except E.CtxstoreError as err:
                        if not watch_resumable(err):
                            self.close()
                            raise
                        await asyncio.sleep(self._state.backoff.next_pause())
        return self._buffer.pop(0)

    def close(self) -> None:
        """Ends the watch."""
        self._closed = True
        if self._call is not None:
            self._call.cancel()

    async def __aenter__(self) -> "AsyncWatch[T]":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()


class AsyncLeaseKeeper:
    """Renews a lease every third of its TTL in an asyncio task
    (:meth:`AsyncClient.keep_alive`); the same as :class:`ctxstore.LeaseKeeper`."""

    def __init__(self, client: AsyncClient, lease: Lease) -> None:
        self.lease = lease
        self._client = client
        self._lost = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        until = time.monotonic() + self.lease.ttl_ms / 1000
        while True:
            sent = time.monotonic()
            try:
                ttl_ms = await asyncio.wait_for(self._client.keep_alive_once(self.lease), max(until - sent, 0.001))
            except (E.CtxstoreError, asyncio.TimeoutError):
                if time.monotonic() >= until:
                    break
                await asyncio.sleep(max(self.lease.ttl_ms / 10_000, 0.01))
                continue
            if ttl_ms == 0:
                break
            until = sent + ttl_ms / 1000
            await asyncio.sleep(ttl_ms / 3000)
        self._lost.set()

    @property
    def alive(self) -> bool:
        return not self._lost.is_set()

    async def wait_lost(self) -> None:
        await self._lost.wait()

    def close(self) -> None:
        """Stops renewing: the lease lives out its TTL."""
        self._task.cancel()

    async def revoke(self) -> None:
        self.close()
        await self._client.revoke_lease(self.lease)


class AsyncLockGuard:
    """A held lock or won election of the asyncio client (see :class:`ctxstore.LockGuard`)."""

    def __init__(self, key: bytes, fence: int, keeper: AsyncLeaseKeeper) -> None:
        self.key = key
        self.fence = fence
        self.keeper = keeper

    async def unlock(self) -> None:
        await self.keeper.revoke()

    async def __aenter__(self) -> "AsyncLockGuard":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.unlock()
