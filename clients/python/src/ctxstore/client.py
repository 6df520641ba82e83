"""The synchronous client."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import grpc

from . import _ops
from . import errors as E
from ._core import Call, ClientTls, Core, Op, Options, Route, Stats, WatchState, watch_resumable
from ._proto import cluster_pb2, cluster_pb2_grpc, context_pb2, context_pb2_grpc, kv_pb2, kv_pb2_grpc
from .types import BatchOpLike, Check, DeleteResult, KeyValue, Lease, MessageLike, ScanResult, WriteResult

T = TypeVar("T")

__all__ = ["Client", "Watch"]


class _KeepAliveOnce:
    """``Lease.KeepAlive`` as a unary call: one renewal, one answer."""

    def __init__(self, stub: kv_pb2_grpc.LeaseStub) -> None:
        self._stub = stub

    def KeepAlive(self, req: kv_pb2.LeaseKeepAliveRequest, timeout: float) -> kv_pb2.LeaseKeepAliveResponse:  # noqa: N802
        for answer in self._stub.KeepAlive(iter([req]), timeout=timeout):
            return answer
        raise E.TransportError("the keepalive stream ended without an answer", code=grpc.StatusCode.UNAVAILABLE)


class _Stubs:
    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.kv = kv_pb2_grpc.KvStub(channel)
        self.agent = context_pb2_grpc.AgentContextStub(channel)
        self.cluster = cluster_pb2_grpc.ClusterStub(channel)
        self.lease = kv_pb2_grpc.LeaseStub(channel)
        self.queue = kv_pb2_grpc.QueueStub(channel)
        self.lease_once = _KeepAliveOnce(self.lease)


class Client:
    """A connection to a ctxstore cluster (synchronous; safe to share between
    threads).

    It fetches the routing table from the nodes it knows, sends each request to the
    leader of the shard that owns its key, follows ``NotLeader``/``StaleEpoch``/
    ``WrongShard`` answers, retries what is safe to retry with the same request id,
    and raises a :class:`~ctxstore.errors.CtxstoreError` subclass for everything
    else. Connections are made lazily.

    Args:
        endpoints: ``host:port`` of one or more nodes (a list, or a comma-separated
            string).
        timeout: deadline of one call including all its retries, in seconds.
        tls: TLS to the nodes (:class:`~ctxstore.ClientTls`); default: plaintext.
            With ``options``, it replaces ``options.tls``.
        token: a bearer token for clusters with auth on (needs ``tls``). With
            ``options``, it replaces ``options.token``.
        options: every setting (:class:`~ctxstore.Options`); ``timeout`` is then
            ignored.

    Use it as a context manager, or call :meth:`close` when done.
    """

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
        self._lock = threading.Lock()

    # ---- plumbing ----

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Closes every connection."""
        with self._lock:
            stubs, self._stubs = self._stubs, {}
        for s in stubs.values():
            s.channel.close()

    @property
    def stats(self) -> Stats:
        """Counters of redirects, backoffs and routing refreshes so far."""
        return self._core.stats

    @property
    def options(self) -> Options:
        return self._core.options

    def endpoints(self) -> list[str]:
        """Every node address the client knows."""
        return self._core.endpoints()

    def _channel(self, addr: str) -> grpc.Channel:
        creds, options = self._core.channel_settings()
        if creds is None:
            return grpc.insecure_channel(addr, options=options)
        return grpc.secure_channel(addr, creds, options=options)

    def _stub(self, addr: str) -> _Stubs:
        with self._lock:
            s = self._stubs.get(addr)
            if s is None:
                s = _Stubs(self._channel(addr))
                self._stubs[addr] = s
            return s

    def refresh_routing(self) -> None:
        """Fetches the routing table: asks the known nodes one at a time (the current
        one first) until one answers from the meta leader; answers served from a
        node's cache on the way are merged too."""
        tables = []
        for a in self._core.refresh_order():
            try:
                t = self._stub(a).cluster.GetRoutingTable(
                    cluster_pb2.RoutingTableRequest(), timeout=self._core.options.routing_timeout
                )
            except grpc.RpcError:
                continue
            tables.append(t)
            if t.source == "meta-leader":
                break
        self._core.learn_tables(tables)

    def _run(self, op: Op[T]) -> T:
        """Runs one call with the routing and retry rules of ``_core``."""
        core = self._core
        if not core.routing.fetched():
            self.refresh_routing()
        st = core.begin()
        while True:
            shard, addr = core.plan(op, st)
            remaining = core.remaining(st)
            if remaining <= 0:
                raise core.timed_out(st)
            method = getattr(getattr(self._stub(addr), op.service), op.method)
            try:
                resp = method(op.request, timeout=remaining)
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
                self.refresh_routing()
            if step.kind == "raise":
                raise err
            if step.kind == "raise-timeout":
                raise core.timed_out(st) from err
            if step.kind == "backoff":
                time.sleep(core.pause(st))

    def _scatter(self, part: Callable[[int], Op[T]]) -> list[T]:
        """Runs ``part(shard)`` on every data shard; again over the new set of shards
        when one answers ``StaleEpoch`` (a split), up to 8 times."""
        return self._scatter_each(lambda s: self._run(part(s)))

    def _scatter_each(self, each: Callable[[int], T]) -> list[T]:
        """:meth:`_scatter` for a shard's work of more than one call (pages)."""
        rounds = 0
        deadline = time.monotonic() + self._core.options.timeout
        while True:
            shards = self.shards()
            if not shards:
                if time.monotonic() >= deadline:
                    raise E.ShardUnavailableError(
                        "no data shard known: the routing table could not be fetched", shard_id=0
                    )
                time.sleep(0.05)
                self.refresh_routing()
                continue
            try:
                return [each(s) for s in shards]
            except E.StaleEpochError:
                rounds += 1
                if rounds > 8:
                    raise

    # ---- cluster ----

    def shards(self) -> list[int]:
        """Every data shard the client knows (fetching the table first if needed)."""
        if not self._core.routing.fetched():
            self.refresh_routing()
        return self._core.routing.shards()

    def routing_table(self) -> cluster_pb2.RoutingTable:
        """The ``RoutingTable`` as a node serves it (also learned by the client)."""
        op: Op[Any] = Op("cluster", "GetRoutingTable", cluster_pb2.RoutingTableRequest(), Route.any(), Call.READ,
                         header=False)
        t = self._run(op)
        self._core.learn_tables([t])
        return t

    def route(self, key: str | bytes) -> tuple[int, str | None]:
        """The shard owning ``key`` as the client knows it (0: unknown) and the
        address a request for it would go to."""
        from .keys import key_hash

        if not self._core.routing.fetched():
            self.refresh_routing()
        shard = self._core.routing.shard_for_hash(key_hash(key)) or 0
        return shard, self._core.routing.target(shard, 0) if shard else None

    def node_status(self, addr: str, *, with_digests: bool = False, timeout: float | None = None) -> cluster_pb2.StatusResponse:
        """One node's ``Status`` (its replicas, roles and indexes)."""
        try:
            return self._stub(addr).cluster.Status(
                cluster_pb2.StatusRequest(with_digests=with_digests), timeout=timeout or self._core.options.timeout
            )
        except grpc.RpcError as e:
            raise E.from_rpc_error(e) from None

    # ---- Kv ----

    def get(self, key: str | bytes, *, stale: bool = False, read_mode: str | None = None) -> KeyValue | None:
        """The value of ``key`` with its versions, or ``None`` if it does not exist
        (or has expired). Read in ``read_mode`` (``leader``, ``follower``,
        ``bounded:<duration>`` or ``stale``; see :class:`~ctxstore.ReadMode`), by
        default the client's (``Options.read_mode``: ``leader``, linearizable at the
        shard's leader); ``stale=True`` means ``read_mode="stale"``."""
        return self._run(_ops.get(key, _ops.read_mode(self._core, stale, read_mode)))

    def put(self, key: str | bytes, value: str | bytes, *, ttl_ms: int = 0, lease_id: int = 0) -> WriteResult:
        """Writes ``value`` at ``key`` (``ttl_ms`` 0 = never expires), attached to lease
        ``lease_id`` of the key's partition (0: none; see :meth:`grant_lease`)."""
        return self._run(_ops.put(self._core, key, value, ttl_ms, lease_id))

    def delete(self, key: str | bytes) -> DeleteResult:
        """Deletes ``key``; ``deleted`` says whether a live key was removed."""
        return self._run(_ops.delete(self._core, key))

    def compare_and_swap(
        self, key: str | bytes, expected_version: int, value: str | bytes, *, ttl_ms: int = 0, lease_id: int = 0
    ) -> WriteResult:
        """Writes ``value`` only if ``key`` is at ``expected_version`` (0: the key must
        not exist); else raises :class:`~ctxstore.errors.VersionMismatchError`."""
        return self._run(_ops.cas(self._core, key, expected_version, value, False, ttl_ms, lease_id))

    def compare_and_delete(self, key: str | bytes, expected_version: int) -> WriteResult:
        """Deletes ``key`` only if it is at ``expected_version``."""
        return self._run(_ops.cas(self._core, key, expected_version, None, True, 0))

    def batch(self, ops: Iterable[BatchOpLike]) -> int:
        """Applies :class:`~ctxstore.types.Put`, :class:`~ctxstore.types.Delete` and
        :class:`~ctxstore.types.Check` operations atomically (all keys in one shard:
        use a common hash tag); returns the Raft index they took effect at."""
        return self._run(_ops.batch(self._core, ops))

    def scan(
        self, prefix: str | bytes = b"", *, start_after: str | bytes = b"", limit: int = 0, stale: bool = False
    ) -> ScanResult:
        """One page of the keys starting with ``prefix``, after ``start_after``, in
        byte order (``limit`` 0 = 1,000). A prefix that starts with a complete hash
        tag reads one shard; any other prefix reads every shard and merges."""
        from .keys import as_bytes, prefix_partition, tag_hash

        p, sa = as_bytes(prefix), as_bytes(start_after)
        tag = prefix_partition(p)
        if tag is not None:
            return self._run(_ops.scan_part(p, sa, limit, stale, Route.key(tag_hash(tag)), Call.READ))
        parts = self._scatter(lambda s: _ops.scan_part(p, sa, limit, stale, Route.shard(s), Call.PART))
        return _ops.merge_scans(parts, limit)

    def scan_all(self, prefix: str | bytes = b"", *, page: int = 1000) -> Iterator[KeyValue]:
        """Every key starting with ``prefix``, in byte order, fetched page by page."""
        after = b""
        while True:
            r = self.scan(prefix, start_after=after, limit=page)
            yield from r.kvs
            if not r.more or not r.kvs:
                return
            after = r.kvs[-1].key

    def watch(
        self, key: str | bytes | None = None, *, prefix: str | bytes | None = None, from_version: int | None = None
    ) -> "Watch[kv_pb2.WatchEvent]":
        """Streams every change to ``key``, or to the keys under ``prefix`` (which must
        start with a complete hash tag), as ``WatchEvent`` s in version order; from
        changes above ``from_version``, or from now. The stream resumes by itself
        after connection failures and leader changes."""
        make, events = _ops.kv_watch(key, prefix)
        return Watch(self, make, events, from_version)

    # ---- leases ----

    def grant_lease(self, key: str | bytes, ttl_ms: int) -> Lease:
        """Grants a lease of ``ttl_ms`` in the partition of ``key`` (e.g.
        ``"{svc/agents}"``); keys of that partition written with its ``lease_id`` are
        deleted with it when it is revoked or expires."""
        return self._run(_ops.grant_lease(self._core, key, ttl_ms))

    def revoke_lease(self, lease: Lease) -> tuple[bool, int]:
        """Revokes a lease and deletes its keys at once: (whether it existed, keys
        deleted)."""
        return self._run(_ops.revoke_lease(self._core, lease))

    def lease_info(self, lease: Lease) -> kv_pb2.LeaseInfoResponse | None:
        """TTL, remaining time and keys of a lease (None: it does not exist)."""
        return self._run(_ops.lease_info(lease))

    def keep_alive_once(self, lease: Lease) -> int:
        """Renews a lease once: the TTL granted again in ms, 0 if it no longer exists."""
        return self._run(_ops.keep_alive_once(lease))

    def keep_alive(self, lease: Lease) -> "LeaseKeeper":
        """Renews ``lease`` every third of its TTL on a background thread until the
        keeper is closed (the lease then lives out its TTL) or the lease is lost."""
        return LeaseKeeper(self, lease)

    def register(self, service: str, instance: str, value: str | bytes, *, ttl_ms: int = 10_000) -> "LeaseKeeper":
        """Registers ``instance`` of ``service`` at ``{svc/SERVICE}/INSTANCE`` with
        ``value`` under a lease kept alive until the returned keeper is closed."""
        prefix = _ops.service_prefix(service)
        lease = self.grant_lease(prefix, ttl_ms)
        keeper = self.keep_alive(lease)
        self.put(prefix + instance.encode(), value, lease_id=lease.id)
        return keeper

    def discover(self, service: str) -> list[KeyValue]:
        """The registered instances of ``service`` (keys ``{svc/SERVICE}/INSTANCE``)."""
        return list(self.scan(_ops.service_prefix(service), limit=10_000).kvs)

    def watch_service(self, service: str, *, from_version: int | None = None) -> "Watch[kv_pb2.WatchEvent]":
        """Streams registrations (puts) and departures (deletes) of ``service``."""
        return self.watch(prefix=_ops.service_prefix(service), from_version=from_version)

    # ---- locks and elections ----

    def lock(self, name: str, *, ttl_ms: int = 10_000, timeout: float | None = None) -> "LockGuard":
        """Takes the mutex ``name`` (docs/api.md, "Locks and elections"): waiters queue
        by arrival under ``{lock/NAME}``, each on its own lease kept alive here, and
        the oldest holds the lock. Raises :class:`~ctxstore.errors.TimeoutError` after
        ``timeout`` seconds (None: wait for ever)."""
        return self.campaign(name, b"", ttl_ms=ttl_ms, timeout=timeout)

    def campaign(
        self, name: str, value: str | bytes, *, ttl_ms: int = 10_000, timeout: float | None = None
    ) -> "LockGuard":
        """Leader election on the same queue as :meth:`lock`, with ``value`` (say, the
        candidate's address): returns once this candidate leads."""
        prefix = _ops.lock_prefix(name)
        deadline = None if timeout is None else time.monotonic() + timeout
        lease = self.grant_lease(prefix, ttl_ms)
        keeper = self.keep_alive(lease)
        key = prefix + f"{lease.id:016x}".encode()
        try:
            mine = self.compare_and_swap(key, 0, value, lease_id=lease.id).create_version
            self._wait_first_in_line(prefix, key, mine, keeper, deadline, timeout or 0.0)
        except BaseException:
            keeper.revoke()
            raise
        return LockGuard(self, key, mine, keeper)

    def _wait_first_in_line(
        self,
        prefix: bytes,
        key: bytes,
        mine: int,
        keeper: "LeaseKeeper",
        deadline: float | None,
        timeout_s: float,
    ) -> None:
        while True:
            if not keeper.alive:
                raise E.FailedPreconditionError("the lock's lease ended while waiting")
            page = self.scan(prefix, limit=_ops.MAX_WAITERS)
            if page.more:
                raise E.FailedPreconditionError(f"more than {_ops.MAX_WAITERS} waiters for one lock")
            if not any(kv.key == key for kv in page.kvs):
                raise E.FailedPreconditionError("the lock's lease ended while waiting")
            ahead = [kv for kv in page.kvs if kv.create_version < mine]
            if not ahead:
                return
            prev = max(ahead, key=lambda kv: kv.create_version)
            with self.watch(prev.key, from_version=prev.version) as w:
                while True:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise E.DeadlineExceededError(timeout_s, None)
                    if not keeper.alive:
                        raise E.FailedPreconditionError("the lock's lease ended while waiting")
                    e = w.next(timeout=0.2)
                    if e is not None and e.kind == kv_pb2.WatchEvent.DELETE:
                        break

    def leader(self, name: str) -> KeyValue | None:
        """The holder of lock (or leader of election) ``name`` now: key and value."""
        page = self.scan(_ops.lock_prefix(name), limit=_ops.MAX_WAITERS)
        return min(page.kvs, key=lambda kv: kv.create_version, default=None)

    def guarded_batch(self, guard: "LockGuard", ops: Iterable[BatchOpLike]) -> int:
        """Applies ``ops`` (keys under the lock's hash tag ``{lock/NAME}``) only while
        ``guard`` still holds the lock: a holder whose lease ended gets
        :class:`~ctxstore.errors.VersionMismatchError` and nothing is written."""
        return self.batch([Check(guard.key, guard.fence), *ops])

    # ---- task queues ----

    def enqueue(
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
        return self._run(
            _ops.enqueue(self._core, queue, payload, priority, delay_ms, idempotency_key, max_attempts)
        )

    def lease_tasks(self, queue: str, max_tasks: int = 1, *, visibility_ms: int = 30_000) -> list[kv_pb2.QueueTask]:
        """Leases up to ``max_tasks`` visible tasks for ``visibility_ms``: highest
        priority first, FIFO within one."""
        return self._run(_ops.lease_tasks(self._core, queue, max_tasks, visibility_ms))

    def ack(self, queue: str, task: kv_pb2.QueueTask) -> bool:
        """Removes a leased task; False if it is not held under that lease any more."""
        return self._run(_ops.ack(self._core, queue, task))

    def nack(self, queue: str, task: kv_pb2.QueueTask, *, retry_after_ms: int = 0) -> tuple[bool, bool]:
        """Gives a task back (visible after ``retry_after_ms``, 0 = backoff):
        (released, dead-lettered)."""
        return self._run(_ops.nack(self._core, queue, task, retry_after_ms))

    def extend(self, queue: str, task: kv_pb2.QueueTask, *, visibility_ms: int) -> bool:
        """Extends a task's lease to end ``visibility_ms`` from now."""
        return self._run(_ops.extend(self._core, queue, task, visibility_ms))

    def queue_stats(self, queue: str) -> kv_pb2.QueueStatsResponse:
        """Counts of ``queue``: ready, delayed, leased, dead, totals."""
        return self._run(_ops.queue_stats(queue))

    # ---- conversations ----

    def append(
        self,
        namespace: str,
        conversation_id: str,
        messages: Iterable[MessageLike],
        *,
        expected_last_seq: int | None = None,
        idempotency_key: str = "",
        idle_ttl_ms: int | None = None,
    ) -> context_pb2.AppendResponse:
        """Appends messages to a conversation (created if needed).

        Args:
            messages: :class:`~ctxstore.types.Message` s, mappings with ``role``,
                ``content``, ``token_count`` and ``metadata``, or ``ChatMessage`` s.
            expected_last_seq: append only if the conversation's last seq is this (0:
                it must be empty or new); else
                :class:`~ctxstore.errors.SequenceMismatchError`.
            idempotency_key: a retry with the same key (within 24 h) returns the first
                result (``replayed`` set) and appends nothing.
            idle_ttl_ms: set the conversation's idle TTL (0 = never expire).

        Returns the ``AppendResponse`` (``first_seq``, ``last_seq``, ``version``,
        ``replayed``).
        """
        return self._run(
            _ops.append(self._core, namespace, conversation_id, messages, expected_last_seq, idempotency_key, idle_ttl_ms)
        )

    def read(
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
        """Reads a conversation's messages, in ascending seq order: the newest
        ``last_n``, the range ``[from_seq, to_seq)`` (the default: everything, paged by
        ``limit``; resume with ``after_seq``), or the newest messages that fit
        ``max_tokens`` (with ``include_pinned``, system and pinned messages first).
        Returns the ``ReadResponse`` (``messages``, ``info``, ``next_seq``,
        ``total_tokens``)."""
        return self._run(
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

    def read_all(self, namespace: str, conversation_id: str, *, page: int = 1000) -> Iterator[context_pb2.ChatMessage]:
        """Every message of a conversation, in seq order, fetched page by page."""
        after = 0
        while True:
            r = self.read(namespace, conversation_id, limit=page, after_seq=after)
            yield from r.messages
            if not r.next_seq or not r.messages:
                return
            after = r.next_seq - 1

    def trim(self, namespace: str, conversation_id: str, before_seq: int) -> context_pb2.TrimResponse:
        """Removes every message with a seq below ``before_seq``."""
        return self._run(_ops.trim(self._core, namespace, conversation_id, before_seq))

    def compact(
        self,
        namespace: str,
        conversation_id: str,
        from_seq: int,
        to_seq: int,
        summary: MessageLike,
        *,
        expected_last_seq: int | None = None,
    ) -> context_pb2.CompactResponse:
        """Replaces the messages in ``[from_seq, to_seq)`` with ``summary``, stored at
        ``from_seq``."""
        return self._run(
            _ops.compact(self._core, namespace, conversation_id, from_seq, to_seq, summary, expected_last_seq)
        )

    def delete_conversation(self, namespace: str, conversation_id: str) -> bool:
        """Deletes a conversation and its messages; whether it existed."""
        return self._run(_ops.delete_conversation(self._core, namespace, conversation_id))

    def get_conversation(
        self, namespace: str, conversation_id: str, *, stale: bool = False
    ) -> context_pb2.ConversationInfo | None:
        """A conversation's ``ConversationInfo`` (counts, seqs, metadata, TTL), or
        ``None`` if it does not exist."""
        return self._run(_ops.get_conversation(namespace, conversation_id, stale))

    def set_conversation_metadata(
        self,
        namespace: str,
        conversation_id: str,
        metadata: Mapping[str, str],
        *,
        expected_metadata_version: int | None = None,
        idle_ttl_ms: int | None = None,
    ) -> context_pb2.ConversationInfo:
        """Replaces a conversation's user metadata (conditionally on
        ``expected_metadata_version``)."""
        return self._run(
            _ops.set_conversation_metadata(
                self._core, namespace, conversation_id, metadata, expected_metadata_version, idle_ttl_ms
            )
        )

    def list_conversations(
        self, namespace: str, *, after_id: str = "", limit: int = 0
    ) -> context_pb2.ListConversationsResponse:
        """One page of a namespace's conversations, by id (``limit`` 0 = 100), gathered
        from every shard."""
        from .keys import validate_namespace

        validate_namespace(namespace)
        parts = self._scatter(lambda s: _ops.list_conversations_part(namespace, after_id, limit, s))
        return _ops.merge_conversations(parts, limit)

    def list_threads(
        self, namespace: str = "", *, after_thread: str = "", limit: int = 0
    ) -> context_pb2.ListThreadsResponse:
        """One page of a tenant namespace's checkpoint threads (``""``: the default
        namespace), by id, after ``after_thread`` (``limit`` 0 = 100), gathered from
        every shard."""
        from .keys import validate_tenant_namespace

        validate_tenant_namespace(namespace)
        parts = self._scatter(lambda s: _ops.list_threads_part(namespace, after_thread, limit, s))
        return _ops.merge_threads(parts, limit)

    def watch_conversation(
        self, namespace: str, conversation_id: str, *, from_version: int | None = None
    ) -> "Watch[context_pb2.ConversationEvent]":
        """Streams a conversation's message changes (appends, and removals with no
        ``message``) as ``ConversationEvent`` s, from ``from_version`` or from now."""
        make, events = _ops.conversation_watch(namespace, conversation_id)
        return Watch(self, make, events, from_version)

    # ---- checkpoints ----

    def put_checkpoint(
        self,
        thread: str,
        ns: str,
        checkpoint: context_pb2.Checkpoint,
        blobs: Iterable[context_pb2.ChannelBlob] = (),
        *,
        idle_ttl_ms: int | None = None,
        namespace: str = "",
    ) -> int:
        """Stores a checkpoint of ``(thread, ns)`` with the blobs of the channels that
        changed; returns its Raft index."""
        return self._run(_ops.put_checkpoint(self._core, thread, ns, checkpoint, blobs, idle_ttl_ms, namespace))

    def put_writes(
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
        """Stores a task's pending writes ``(channel, value)`` for a checkpoint."""
        return self._run(
            _ops.put_writes(self._core, thread, ns, checkpoint_id, task_id, writes, task_path, namespace)
        )

    def get_checkpoint(
        self,
        thread: str,
        ns: str = "",
        checkpoint_id: str | None = None,
        *,
        stale: bool = False,
        refresh_ttl: bool = False,
        namespace: str = "",
    ) -> context_pb2.CheckpointTuple | None:
        """The checkpoint ``checkpoint_id`` (or the latest) of ``(thread, ns)`` with its
        blobs and pending writes, or ``None``."""
        return self._run(_ops.get_checkpoint(thread, ns, checkpoint_id, stale, refresh_ttl, namespace))

    def list_checkpoints(
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
        """Checkpoints of ``(thread, ns)``, newest first, with ids below ``before``,
        whose ``metadata`` has every pair of ``filter`` and whose ``metadata_json`` has,
        for every key of ``json_filter``, an equal JSON value (``limit`` 0 = 100)."""
        return self._run(_ops.list_checkpoints(thread, ns, before, limit, filter, stale, namespace, json_filter))

    def prune_checkpoints(
        self,
        thread: str,
        ns: str = "",
        *,
        keep_latest: int | None = None,
        older_than_ms: int | None = None,
        namespace: str = "",
        remove_id: str | None = None,
    ) -> context_pb2.PruneCheckpointsResponse:
        """Removes checkpoints of ``(thread, ns)``: all but the newest ``keep_latest``,
        those created more than ``older_than_ms`` ago, or the one with id
        ``remove_id``."""
        return self._run(
            _ops.prune_checkpoints(self._core, thread, ns, keep_latest, older_than_ms, namespace, remove_id)
        )

    def list_all_checkpoints(
        self,
        *,
        filter: Mapping[str, str] | None = None,
        limit: int = 0,
        json_filter: Mapping[str, Any] | None = None,
    ) -> Iterator[context_pb2.CheckpointTuple]:
        """Checkpoints of every thread (LangGraph's ``list(None)``), shard by shard and
        in storage order within each, matching ``filter`` and ``json_filter`` as in
        :meth:`list_checkpoints`; at most ``limit`` (0: all). Every shard is read
        (again over the new shards if one splits meanwhile) before the first is
        yielded."""

        def shard_pages(shard: int) -> list[context_pb2.CheckpointTuple]:
            out: list[context_pb2.CheckpointTuple] = []
            after = b""
            while True:
                page = self._run(_ops.list_all_checkpoints_part(shard, after, filter, json_filter))
                out.extend(page.tuples)
                if not page.more or (limit and len(out) >= limit):
                    return out
                after = page.next

        parts = self._scatter_each(shard_pages)
        yield from _ops.first(parts, limit)

    def delete_for_runs(self, run_ids: Sequence[str]) -> tuple[int, int]:
        """Deletes, in every shard, the checkpoints whose metadata ``run_id`` is one of
        ``run_ids`` (LangGraph's ``delete_for_runs``), with their pending writes and the
        channel values no other checkpoint names; returns (checkpoints, blobs)
        removed. Asking again removes what a cut-short call left."""
        parts: list[Any] = []
        for ids in _ops.run_id_chunks(run_ids):
            parts += self._scatter(lambda s: _ops.delete_for_runs_part(s, ids))
        return _ops.removed_totals(parts)

    def copy_thread(
        self, thread: str, target_thread: str, *, namespace: str = "", target_namespace: str = ""
    ) -> context_pb2.CopyThreadResponse:
        """Copies every checkpoint of every checkpoint namespace of ``thread``, with
        its channel values and pending writes, to ``target_thread``, on the server
        (LangGraph's ``copy_thread``). Idempotent: asking again finishes a copy that
        was cut short."""
        return self._run(_ops.copy_thread(thread, target_thread, namespace, target_namespace))

    def checkpoint_namespaces(self, thread: str, *, namespace: str = "", stale: bool = False) -> list[str]:
        """The checkpoint namespaces of a thread that hold a checkpoint, sorted (``""``
        is the root graph's)."""
        return self._run(_ops.checkpoint_namespaces(thread, namespace, stale))

    def delete_thread(self, thread: str, *, namespace: str = "") -> bool:
        """Deletes a thread and everything in all its namespaces; whether anything was
        there."""
        return self._run(_ops.delete_thread(self._core, thread, namespace))

    # ---- models ----

    def put_model(self, model: context_pb2.Model | Mapping[str, Any], *, expected_version: int | None = None, namespace: str = "") -> int:
        """Writes a model record (a ``Model`` or a mapping of its fields), only if its
        version is ``expected_version`` when given (0: must not exist); returns the
        new version."""
        return self._run(_ops.put_model(self._core, model, expected_version, namespace))

    def get_model(
        self, name: str, *, consistent: bool = False, namespace: str = ""
    ) -> context_pb2.Model | None:
        """A model record, or ``None``. Stale (any replica) unless ``consistent``."""
        return self._run(_ops.get_model(name, consistent, namespace))

    def list_models(self, *, consistent: bool = False, namespace: str = "") -> list[context_pb2.Model]:
        """Every model record, by name."""
        return self._run(_ops.list_models(consistent, namespace))

    def delete_model(self, name: str, *, namespace: str = "") -> bool:
        """Deletes a model record; whether it existed."""
        return self._run(_ops.delete_model(self._core, name, namespace))

    def watch_models(self, *, from_version: int | None = None, namespace: str = "") -> "Watch[context_pb2.ModelEvent]":
        """Streams the registry's changes as ``ModelEvent`` s (``model`` absent for a
        delete)."""
        make, events = _ops.models_watch(namespace)
        return Watch(self, make, events, from_version)


class Watch(Iterator[T]):
    """An iterator over a watch's events. A background thread reads the stream and
    reopens it from the last version delivered when it breaks (a leader change, a
    node restart, a split), so no event is repeated or skipped. ``close()`` (or
    leaving a ``with`` block) ends it; iteration then stops.

    The first stream is opened when the watch is created, so an error such as
    :class:`~ctxstore.errors.WatchCompactedError` is raised right there; a later
    error that cannot be resumed from is raised by the next ``next()``.
    """

    _END = object()

    def __init__(self, client: Client, make: Callable[[int | None], Op[Any]], events: Callable, from_version: int | None):
        self._client = client
        self._make = make
        self._events = events
        self._state = WatchState(from_version)
        self._queue: "queue.Queue[Any]" = queue.Queue()
        self._closed = False
        self._call: Any = None
        self._open()
        self._thread = threading.Thread(target=self._read, name="ctxstore-watch", daemon=True)
        self._thread.start()

    def _open(self) -> None:
        """Opens a stream from the last version delivered, with the routing and retry
        rules of any call; its first response (which names the version the stream
        starts after) is read here, so routing errors are retried too."""
        op = self._make(self._state.done)
        client = self._client
        core = client._core
        if not core.routing.fetched():
            client.refresh_routing()
        st = core.begin()
        while True:
            shard, addr = core.plan(op, st)
            method = getattr(getattr(client._stub(addr), op.service), op.method)
            try:
                call = method(op.request)
                head = next(call)
            except grpc.RpcError as rpc_err:
                err = E.from_rpc_error(rpc_err)
            except StopIteration:
                err = E.TransportError("the watch stream closed before it started")
            else:
                core.succeeded(op, st, shard, addr, None)
                self._call = call
                if self._closed:
                    call.cancel()
                self._state.new_stream()
                self._take(head)
                return
            step = core.decide(op, st, shard, addr, err)
            if step.refresh:
                client.refresh_routing()
            if step.kind == "raise":
                raise err
            if step.kind == "raise-timeout":
                raise core.timed_out(st) from err
            if step.kind == "backoff":
                time.sleep(core.pause(st))

    def _take(self, resp: Any) -> bool:
        events, progress, moved = self._events(resp)
        out, ended = self._state.take(events, progress, moved)
        for ev in out:
            self._queue.put(ev)
        return ended

    def _read(self) -> None:
        try:
            while not self._closed:
                try:
                    for resp in self._call:
                        if self._take(resp):
                            break  # the watched keys moved: reopen on their new shard
                except grpc.RpcError as rpc_err:
                    if self._closed:
                        return
                    err = E.from_rpc_error(rpc_err)
                    if not watch_resumable(err):
                        self._queue.put(err)
                        return
                # The stream ended or broke: reopen from the last version delivered.
                while not self._closed:
                    try:
                        self._open()
                        break
                    except E.CtxstoreError as err:
                        if not watch_resumable(err):
                            self._queue.put(err)
                            return
                        time.sleep(self._state.backoff.next_pause())
        finally:
            self._queue.put(self._END)

    def __iter__(self) -> "Watch[T]":
        return self

    def __next__(self) -> T:
        item = self._queue.get()
        return self._item(item)

    def _item(self, item: Any) -> Any:
        if item is self._END:
            self._queue.put(self._END)  # stay ended
            raise StopIteration
        if isinstance(item, BaseException):
            self._queue.put(self._END)
            raise item
        return item

    def next(self, timeout: float | None = None) -> T | None:
        """The next event, or ``None`` if none came within ``timeout`` seconds (the
        watch stays open). Raises ``StopIteration`` once the watch has ended."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        return self._item(item)

    def close(self) -> None:
        """Ends the watch."""
        self._closed = True
        if self._call is not None:
            self._call.cancel()

    def __enter__(self) -> "Watch[T]":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class LeaseKeeper:
    """Renews a lease every third of its TTL on a daemon thread (:meth:`Client.keep_alive`).
    ``alive`` is False once the lease is lost (revoked, expired, or not renewed
    before its deadline); ``close()`` stops renewing (the lease then lives out its
    TTL); ``revoke()`` ends it at once."""

    def __init__(self, client: Client, lease: Lease) -> None:
        self.lease = lease
        self._client = client
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ctxstore-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        until = time.monotonic() + self.lease.ttl_ms / 1000
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                ttl_ms = self._client.keep_alive_once(self.lease)
            except E.CtxstoreError:
                if time.monotonic() >= until:
                    break
                self._stop.wait(max(self.lease.ttl_ms / 10_000, 0.01))
                continue
            if ttl_ms == 0:
                break
            until = sent + ttl_ms / 1000
            self._stop.wait(ttl_ms / 3000)
        if not self._stop.is_set():
            self._lost.set()

    @property
    def alive(self) -> bool:
        return not self._lost.is_set()

    def wait_lost(self, timeout: float | None = None) -> bool:
        """Waits until the lease is lost; whether it was within ``timeout``."""
        return self._lost.wait(timeout)

    def close(self) -> None:
        self._stop.set()

    def revoke(self) -> None:
        self.close()
        self._client.revoke_lease(self.lease)

    def __enter__(self) -> "LeaseKeeper":
        return self

    def __exit__(self, *exc: object) -> None:
        self.revoke()


class LockGuard:
    """A held lock or won election (:meth:`Client.lock`, :meth:`Client.campaign`).
    ``fence`` is the fencing token (the version that created the holder's key,
    increasing from one holder to the next); ``unlock()`` releases it at once, and
    leaving a ``with`` block does too."""

    def __init__(self, client: Client, key: bytes, fence: int, keeper: LeaseKeeper) -> None:
        self._client = client
        self.key = key
        self.fence = fence
        self.keeper = keeper

    def unlock(self) -> None:
        self.keeper.revoke()

    def __enter__(self) -> "LockGuard":
        return self

    def __exit__(self, *exc: object) -> None:
        self.unlock()
