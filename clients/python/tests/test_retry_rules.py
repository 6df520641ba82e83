"""The client's retry rules and error decoding against scripted in-process gRPC
servers (no ctxd): every redirect kind, request ids kept across retries, writes
pinned to their shard, and the deadline."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent import futures

import grpc
import pytest

import ctxstore
from ctxstore import pb
from ctxstore._proto import cluster_pb2_grpc, kv_pb2_grpc
from ctxstore.errors import DETAIL_TYPE_URL, DETAILS_KEY, from_status

MAX = 2**64 - 1


def _abort(context, code, message, **detail):
    """Fails the call as ctxd does: a google.rpc.Status whose one Any holds the
    ErrorDetail."""
    from google.protobuf import any_pb2
    from google.rpc import status_pb2

    d = pb.ErrorDetail(**detail)
    rich = status_pb2.Status(code=code.value[0], message=message)
    rich.details.append(any_pb2.Any(type_url=DETAIL_TYPE_URL, value=d.SerializeToString()))
    context.set_trailing_metadata(((DETAILS_KEY, rich.SerializeToString()),))
    context.abort(code, message)


def test_a_bare_error_detail_from_an_older_server_is_read_too():
    bare = pb.ErrorDetail(not_found=pb.NotFound(what="conversation a/b")).SerializeToString()
    e = from_status(grpc.StatusCode.NOT_FOUND, "not found", bare)
    assert isinstance(e, ctxstore.NotFoundError) and e.what == "conversation a/b"


class FakeNode(kv_pb2_grpc.KvServicer, cluster_pb2_grpc.ClusterServicer):
    """A node that answers from a script: `script` is a list of callables
    (request, context) -> response, used in turn for Put/Get; every request is
    recorded."""

    def __init__(self) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        kv_pb2_grpc.add_KvServicer_to_server(self, self.server)
        cluster_pb2_grpc.add_ClusterServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.addr = f"127.0.0.1:{self.port}"
        self.script: list = []
        self.watch_script: list = []
        self.seen: list = []
        self.table: pb.RoutingTable | None = None
        self.lock = threading.Lock()
        self.server.start()

    def stop(self) -> None:
        self.server.stop(0)

    def _next(self, request, context):
        with self.lock:
            self.seen.append(request)
            step = self.script.pop(0) if self.script else None
        if step is None:
            context.abort(grpc.StatusCode.INTERNAL, "unscripted call")
        return step(request, context)

    def Put(self, request, context):
        return self._next(request, context)

    def Get(self, request, context):
        return self._next(request, context)

    def Watch(self, request, context):
        with self.lock:
            self.seen.append(request)
            step = self.watch_script.pop(0) if self.watch_script else None
        if step is None:
            context.abort(grpc.StatusCode.INTERNAL, "unscripted watch")
        yield from step(request, context)

    def GetRoutingTable(self, request, context):
        if self.table is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, "no table")
        return self.table


def _table(nodes, shards) -> pb.RoutingTable:
    """`shards`: (shard_id, ring_ver, [(lo, hi)], leader node index or None)."""
    t = pb.RoutingTable(source="meta-leader")
    for i, n in enumerate(nodes):
        t.nodes.add(node_id=i + 1, addr=n.addr)
    for sid, ring_ver, arcs, leader in shards:
        r = t.shards.add()
        r.descriptor.shard_id = sid
        r.descriptor.conf_ver = 1
        r.descriptor.ring_ver = ring_ver
        for i, n in enumerate(nodes):
            r.descriptor.replicas.add(replica_id=i + 1, node_id=i + 1, addr=n.addr)
        for lo, hi in arcs:
            r.descriptor.arcs.add(lo=lo, hi=hi)
        if leader is not None:
            r.leader.node_id = leader + 1
            r.leader.addr = nodes[leader].addr
            r.leader.replica_id = leader + 1
    return t


@pytest.fixture
def nodes():
    ns = [FakeNode(), FakeNode()]
    yield ns
    for n in ns:
        n.stop()


def ok_put(version=5):
    return lambda req, ctx: pb.PutResponse(version=version, create_version=version)


def test_not_leader_hint_is_followed_with_the_same_request_id(nodes):
    a, b = nodes
    a.table = b.table = _table(nodes, [(1, 1, [(0, MAX)], 0)])
    hint = pb.ReplicaInfo(replica_id=2, node_id=2, addr=b.addr)
    a.script = [lambda req, ctx: _abort(ctx, grpc.StatusCode.UNAVAILABLE, "not the leader",
                                        not_leader=pb.NotLeader(shard_id=1, leader_hint=hint))]
    b.script = [ok_put(7)]
    with ctxstore.Client([a.addr]) as c:
        w = c.put("k", "v")
        assert w.version == 7 and c.stats.not_leader == 1
        assert a.seen[0].request_id == b.seen[0].request_id and len(a.seen[0].request_id) == 16
        assert a.seen[0].header.shard_id == 1 and a.seen[0].header.ring_ver == 1
        # The leader is remembered: the next request goes straight to b.
        b.script = [ok_put(8)]
        c.put("k2", "v")
        assert len(a.seen) == 1 and len(b.seen) == 2


def test_unavailable_is_retried_with_backoff_and_the_same_request_id(nodes):
    a, b = nodes
    a.table = _table(nodes, [(1, 1, [(0, MAX)], 0)])
    unavailable = lambda req, ctx: _abort(ctx, grpc.StatusCode.UNAVAILABLE, "election",  # noqa: E731
                                          shard_unavailable=pb.ShardUnavailable(shard_id=1, reason="no leader"))
    # Without a leader the attempts rotate over the replicas: a, b, a.
    a.script = [unavailable, ok_put(9)]
    b.script = [unavailable]
    with ctxstore.Client([a.addr]) as c:
        assert c.put("k", "v").version == 9
        ids = {r.request_id for r in a.seen + b.seen}
        assert len(ids) == 1 and len(a.seen) + len(b.seen) == 3
        assert c.stats.backoffs == 2


def test_stale_epoch_moves_the_request_to_the_new_owner(nodes):
    a, b = nodes
    # The client believes shard 1 owns everything; a split gave the upper half to 2.
    a.table = _table(nodes, [(1, 1, [(0, MAX)], 0)])
    new = _table(nodes, [(1, 2, [(0, 2**63 - 1)], 0), (2, 2, [(2**63, MAX)], 1)])
    key = next(f"k{i}" for i in range(1000) if ctxstore.keys.key_hash(f"k{i}") >= 2**63)
    a.script = [lambda req, ctx: _abort(ctx, grpc.StatusCode.ABORTED, "stale epoch",
                                        stale_epoch=pb.StaleEpoch(shard_id=1, conf_ver=1, ring_ver=2,
                                                                  current=list(new.shards)))]
    b.script = [ok_put(11)]
    with ctxstore.Client([a.addr]) as c:
        assert c.put(key, "v").version == 11
        assert c.stats.stale_epoch == 1
        assert b.seen[0].header.shard_id == 2 and b.seen[0].header.ring_ver == 2
        assert a.seen[0].request_id == b.seen[0].request_id
        assert c.route(key)[0] == 2


def test_a_write_with_unknown_outcome_stays_on_its_shard(nodes):
    """After a connection failure a write is retried at the same shard with ring_ver
    0, never at another shard, until that shard answers."""
    a, b = nodes
    a.table = _table(nodes, [(1, 3, [(0, MAX)], 0)])
    a.script = [lambda req, ctx: ctx.abort(grpc.StatusCode.UNAVAILABLE, "connection reset")]
    b.script = [ok_put(12)]
    with ctxstore.Client([a.addr]) as c:
        c.put("k", "v")
        assert a.seen[0].header.ring_ver == 3
        assert b.seen[0].header.shard_id == 1 and b.seen[0].header.ring_ver == 0


@pytest.mark.parametrize(
    "detail,code,cls,attrs",
    [
        ({"invalid_argument": pb.InvalidArgument(field="key", reason="empty")}, grpc.StatusCode.INVALID_ARGUMENT,
         ctxstore.InvalidArgumentError, {"field": "key", "reason": "empty"}),
        ({"version_mismatch": pb.VersionMismatch(key=b"k", expected_version=3, actual_version=4)},
         grpc.StatusCode.FAILED_PRECONDITION, ctxstore.VersionMismatchError, {"expected": 3, "actual": 4, "key": b"k"}),
        ({"limit_exceeded": pb.LimitExceeded(limit="max-value-size", max=10, actual=11)},
         grpc.StatusCode.RESOURCE_EXHAUSTED, ctxstore.LimitExceededError, {"limit": "max-value-size", "max": 10}),
        ({"sequence_mismatch": pb.SequenceMismatch(conversation="ns/c", expected_last_seq=1, actual_last_seq=2)},
         grpc.StatusCode.FAILED_PRECONDITION, ctxstore.SequenceMismatchError, {"conversation": "ns/c", "actual": 2}),
        ({"watch_compacted": pb.WatchCompacted(requested=2, retained_after=9)}, grpc.StatusCode.OUT_OF_RANGE,
         ctxstore.WatchCompactedError, {"retained_after": 9}),
        ({"not_found": pb.NotFound(what="conversation ns/c")}, grpc.StatusCode.NOT_FOUND, ctxstore.NotFoundError,
         {"what": "conversation ns/c"}),
        ({"failed_precondition": pb.FailedPrecondition(reason="split in progress")},
         grpc.StatusCode.FAILED_PRECONDITION, ctxstore.FailedPreconditionError, {"reason": "split in progress"}),
        ({}, grpc.StatusCode.INTERNAL, ctxstore.RpcError, {}),
    ],
)
def test_errors_that_are_not_retried_come_back_typed(nodes, detail, code, cls, attrs):
    a, _ = nodes
    a.table = _table(nodes[:1], [(1, 1, [(0, MAX)], 0)])
    if detail:
        a.script = [lambda req, ctx: _abort(ctx, code, "refused", **detail)]
    else:
        a.script = [lambda req, ctx: ctx.abort(code, "a bug")]
    with ctxstore.Client([a.addr]) as c:
        with pytest.raises(cls) as e:
            c.put("k", "v")
        assert e.value.code == code and len(a.seen) == 1, "returned at once"
        for k, v in attrs.items():
            assert getattr(e.value, k) == v
        assert isinstance(e.value, ctxstore.CtxstoreError)


def test_wrong_shard_refreshes_the_table_and_the_deadline_ends_it(nodes):
    a, _ = nodes
    a.table = _table(nodes[:1], [(1, 1, [(0, MAX)], 0)])
    wrong = lambda req, ctx: _abort(ctx, grpc.StatusCode.ABORTED, "wrong shard",  # noqa: E731
                                    wrong_shard=pb.WrongShard(shard_id=1))
    a.script = [wrong] * 1000
    with ctxstore.Client([a.addr], timeout=0.5) as c:
        with pytest.raises(ctxstore.DeadlineExceededError) as e:
            c.get("k")
        assert isinstance(e.value.last_error, ctxstore.WrongShardError)
        assert c.stats.wrong_shard >= 2 and c.stats.routing_refreshes >= 3


async def test_async_client_follows_the_same_rules(nodes):
    a, b = nodes
    a.table = b.table = _table(nodes, [(1, 1, [(0, MAX)], 0)])
    hint = pb.ReplicaInfo(replica_id=2, node_id=2, addr=b.addr)
    a.script = [lambda req, ctx: _abort(ctx, grpc.StatusCode.UNAVAILABLE, "not the leader",
                                        not_leader=pb.NotLeader(shard_id=1, leader_hint=hint))]
    b.script = [lambda req, ctx: _abort(ctx, grpc.StatusCode.UNAVAILABLE, "busy",
                                        shard_unavailable=pb.ShardUnavailable(shard_id=1)), ok_put(13)]
    async with ctxstore.AsyncClient([a.addr]) as c:
        assert (await c.put("k", "v")).version == 13
        assert len({r.request_id for r in a.seen + b.seen}) == 1
        b.script = [lambda req, ctx: _abort(ctx, grpc.StatusCode.FAILED_PRECONDITION, "cas",
                                            version_mismatch=pb.VersionMismatch(key=b"k", expected_version=1))]
        with pytest.raises(ctxstore.VersionMismatchError):
            await c.put("k", "v")


def _ev(version: int, value: bytes) -> pb.WatchEvent:
    return pb.WatchEvent(kind=pb.WatchEvent.PUT, version=version, kv=pb.KeyValue(key=b"k", value=value, version=version))


def test_a_broken_watch_resumes_without_repeating_or_skipping(nodes):
    """The server splits version 12 over two responses and the stream breaks between
    them; the watch reopens from version 11 and delivers 12a once, then 12b and 13."""
    a, _ = nodes
    a.table = _table(nodes[:1], [(1, 1, [(0, MAX)], 0)])

    def first(req, ctx):
        yield pb.WatchResponse(progress_version=10)
        yield pb.WatchResponse(events=[_ev(11, b"11")], progress_version=11)
        yield pb.WatchResponse(events=[_ev(12, b"12a")], progress_version=11)
        ctx.abort(grpc.StatusCode.UNAVAILABLE, "leader stepped down")

    def second(req, ctx):
        yield pb.WatchResponse(progress_version=11)
        yield pb.WatchResponse(events=[_ev(12, b"12a"), _ev(12, b"12b")], progress_version=12)
        yield pb.WatchResponse(events=[_ev(13, b"13")], progress_version=13)
        while ctx.is_active():
            time.sleep(0.01)

    a.watch_script = [first, second]
    with ctxstore.Client([a.addr]) as c:
        with c.watch("k") as w:
            got = [w.next(timeout=10) for _ in range(4)]
            assert [e.kv.value for e in got] == [b"11", b"12a", b"12b", b"13"]
            assert w.next(timeout=0.2) is None
        watches = [r for r in a.seen if isinstance(r, pb.WatchRequest)]
        assert not watches[0].HasField("from_version") and watches[1].from_version == 11


async def test_async_watch_resumes_too(nodes):
    a, _ = nodes
    a.table = _table(nodes[:1], [(1, 1, [(0, MAX)], 0)])

    def first(req, ctx):
        yield pb.WatchResponse(progress_version=5)
        yield pb.WatchResponse(events=[_ev(6, b"6")], progress_version=6)
        ctx.abort(grpc.StatusCode.UNAVAILABLE, "gone")

    def second(req, ctx):
        yield pb.WatchResponse(progress_version=6)
        yield pb.WatchResponse(events=[_ev(6, b"6"), _ev(7, b"7")], progress_version=7)
        while ctx.is_active():
            time.sleep(0.01)

    a.watch_script = [first, second]
    async with ctxstore.AsyncClient([a.addr]) as c:
        w = await c.watch("k", from_version=5)
        async with w:
            got = [await asyncio.wait_for(w.__anext__(), 10) for _ in range(2)]
        assert [e.kv.value for e in got] == [b"6", b"7"]
        assert [r.from_version for r in a.seen if isinstance(r, pb.WatchRequest)] == [5, 6]


def test_shard_unavailable_says_whether_the_outcome_is_unknown():
    from google.protobuf import any_pb2
    from google.rpc import status_pb2

    for unknown in (False, True):
        d = pb.ErrorDetail(shard_unavailable=pb.ShardUnavailable(shard_id=3, reason="r", outcome_unknown=unknown))
        rich = status_pb2.Status(code=14, message="m")
        rich.details.append(any_pb2.Any(type_url=DETAIL_TYPE_URL, value=d.SerializeToString()))
        e = from_status(grpc.StatusCode.UNAVAILABLE, "m", rich.SerializeToString())
        assert isinstance(e, ctxstore.ShardUnavailableError)
        assert (e.shard_id, e.outcome_unknown) == (3, unknown)


def test_a_too_stale_replica_is_skipped_and_bounded_reads_send_the_clients_floor(nodes):
    a, b = nodes
    a.table = b.table = _table(nodes, [(1, 1, [(0, MAX)], 0)])
    a.script = [ok_put(9)]
    gets = []

    def get(req, ctx):
        # Whichever replica the client picks first is too stale; the other answers.
        gets.append(req)
        if len(gets) == 1:
            return _abort(ctx, grpc.StatusCode.UNAVAILABLE, "too stale",
                          replica_too_stale=pb.ReplicaTooStale(shard_id=1, applied=3))
        return pb.GetResponse(kv=pb.KeyValue(key=b"k", value=b"v", version=9, create_version=9))

    a.script.append(get)
    b.script = [get]
    with ctxstore.Client([a.addr], options=ctxstore.Options(read_mode="bounded:1500ms")) as c:
        assert c.put("k", "v").version == 9
        kv = c.get("k")
        assert kv.value == b"v" and c.stats.too_stale == 1 and c.stats.backoffs == 0
        # One attempt at each replica, each with the mode, its bound and the floor
        # the put raised.
        assert len(a.seen) == 2 and len(b.seen) == 1
        for r in gets:
            h = r.header
            assert (h.read_mode, h.max_staleness_ms, h.min_version, h.shard_id) == (
                pb.READ_MODE_BOUNDED, 1500, 9, 1)
        # A replica's answer does not make it the believed leader: writes still go to a.
        a.script.append(ok_put(10))
        c.put("k", "w")
        assert len(a.seen) == 3 and len(b.seen) == 1
