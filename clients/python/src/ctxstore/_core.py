"""What the sync and the asyncio client share: settings, request ids, the routing
cache, the description of each call (:class:`Op`), the retry rules, and the watch
resume logic. The two clients differ only in how they wait and do I/O.

The retry rules follow ``crates/client/src/lib.rs`` (``call_routed``) and
``docs/api.md`` ("What the bundled client does"):

- each request goes to the believed leader of the shard whose arcs hold its hash,
  with the shard's ``shard_id``, ``conf_ver`` and ``ring_ver`` in the header;
- ``NotLeader`` with a hint at another address: retry there at once (8 in a row);
- ``StaleEpoch``: learn the routes it carries (or refresh the table when it carries
  none) and retry at once at the new owner (8 in a row, then with backoff);
- ``WrongShard``: refresh the table, back off, retry;
- other retryable errors (``ShardUnavailable``, ``NodeNotReady``, ``NotLeader``
  without a usable hint, connection failures): forget the leader, move to the next
  replica, back off (2 ms doubling to 500 ms, jittered); every fourth backoff also
  refreshes the table;
- a write, once sent to a shard, is retried only at that shard (``ring_ver`` 0)
  until it answers definitively (its result, or ``StaleEpoch``), and always with the
  same request id, so the server applies it at most once;
- everything else goes back to the caller at once; the whole call, retries included,
  is bounded by the deadline.

A read in a replica read mode (``follower``, ``bounded:<d>``, ``stale``; see
:class:`ReadMode`) goes to one of its shard's replicas picked at random instead of
the leader; a replica that answers ``ReplicaTooStale`` or ``NotLeader`` (or fails) is
skipped for the rest of the call, and once every replica has been tried the call backs
off and starts over. The client keeps, per shard, the highest version it has seen
(written or read) and sends it as a bounded read's ``min_version``.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

import grpc

from . import errors as E
from ._proto import kv_pb2
from ._routing import Routing

T = TypeVar("T")

#: How long one node may take to answer a routing-table request (seconds).
ROUTING_FETCH_TIMEOUT = 3.0
#: Largest gRPC message the client sends or accepts (the server's limit: 80 MiB).
MAX_MESSAGE_SIZE = (64 << 20) + (16 << 20)
#: Channel options of every connection.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
    ("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
    # Reconnect quickly after a node restarts (the default backoff reaches minutes).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),
]


class Call(enum.Enum):
    """What a call does, for the retry rules."""

    #: Reads: any attempt may go wherever the routing says.
    READ = 1
    #: Writes: once sent to a shard, retries stay there until it answers
    #: definitively, so a request id is never sent to a new owner while the old one
    #: might still apply it.
    WRITE = 2
    #: One part of a scatter over shards: ``StaleEpoch`` goes back to the caller,
    #: which scatters again over the new set of shards.
    PART = 3
    #: Must not be repeated: only ``NotLeader`` redirects are followed.
    ONCE = 4


@dataclass(frozen=True)
class Route:
    """Where a request goes: ``kind`` is ``"any"`` (any node), ``"key"`` (the shard
    owning hash ``value``) or ``"shard"`` (shard ``value``)."""

    kind: str
    value: int = 0

    @staticmethod
    def any() -> "Route":
        return Route("any")

    @staticmethod
    def key(h: int) -> "Route":
        return Route("key", h)

    @staticmethod
    def shard(s: int) -> "Route":
        return Route("shard", s)


@dataclass(frozen=True)
class ReadMode:
    """Which replica may serve a read (``docs/api.md``, "Read modes"), as the Rust
    client's ``ReadMode``. Parse one from text with :meth:`parse`:

    - ``leader`` (or ``linearizable``), the default: the shard's leader, after a
      ReadIndex round;
    - ``follower``: linearizable, served by any replica (a follower asks the leader for
      its commit index and answers once it has applied it);
    - ``bounded:<duration>`` (``bounded:500ms``, ``bounded:2s``, ``bounded:1m``): any
      replica that heard from its leader within the bound and has applied every
      version this client has seen in the shard (read-your-writes and monotonic reads
      within the client);
    - ``stale``: any replica's local state, without a bound.
    """

    wire: int
    max_staleness_ms: int = 0

    @staticmethod
    def parse(text: str) -> "ReadMode":
        """The mode named by ``text``; :class:`~ctxstore.errors.InvalidArgumentError`
        (field ``read_mode``) for anything else."""
        fixed = {
            "leader": kv_pb2.READ_MODE_LEADER,
            "linearizable": kv_pb2.READ_MODE_LEADER,
            "follower": kv_pb2.READ_MODE_FOLLOWER,
            "stale": kv_pb2.READ_MODE_STALE,
        }
        if text in fixed:
            return ReadMode(fixed[text])
        bound = text[len("bounded:") :] if text.startswith("bounded:") else None
        if bound is None:
            raise E.InvalidArgumentError(
                "read_mode",
                f"unknown read mode `{text}`: expected leader, follower, bounded:<duration> (e.g. bounded:500ms) or stale",
            )
        m = re.fullmatch(r"([0-9]+)(ms|s|m)", bound)
        if m is None:
            raise E.InvalidArgumentError("read_mode", f"bad bound `{bound}` in `{text}`: expected e.g. 500ms or 2s")
        ms = int(m.group(1)) * {"ms": 1, "s": 1000, "m": 60_000}[m.group(2)]
        if ms == 0:
            raise E.InvalidArgumentError("read_mode", f"the bound in `{text}` must be above 0")
        return ReadMode(kv_pb2.READ_MODE_BOUNDED, ms)

    @property
    def at_leader(self) -> bool:
        return self.wire == kv_pb2.READ_MODE_LEADER

    def __str__(self) -> str:
        if self.wire == kv_pb2.READ_MODE_BOUNDED:
            return f"bounded:{self.max_staleness_ms}ms"
        return {kv_pb2.READ_MODE_FOLLOWER: "follower", kv_pb2.READ_MODE_STALE: "stale"}.get(self.wire, "leader")


#: The default read mode.
LEADER = ReadMode(kv_pb2.READ_MODE_LEADER)
#: ``stale``.
STALE = ReadMode(kv_pb2.READ_MODE_STALE)


@dataclass
class Op(Generic[T]):
    """One unary call: ``service`` (``kv``, ``agent`` or ``cluster``), the stub
    ``method``, the ``request`` (its ``header`` is filled in on every attempt), where
    it goes, its kind, and how to turn the response into the result."""

    service: str
    method: str
    request: Any
    route: Route
    call: Call
    result: Callable[[Any], T] = field(default=lambda r: r)  # type: ignore[assignment]
    #: Set the routing header (every data request has one; cluster requests do not).
    header: bool = True
    #: A read in a replica read mode (``None``: at the leader).
    read: ReadMode | None = None
    #: The version the answer shows in its shard (a write's, or the value read): the
    #: floor of later bounded reads of that shard.
    version: Callable[[Any], int] | None = None


@dataclass
class Stats:
    """Counters of what the client met, for tests and monitoring."""

    calls: int = 0
    not_leader: int = 0
    stale_epoch: int = 0
    wrong_shard: int = 0
    #: Retries after a backoff (unavailability, connection errors...).
    backoffs: int = 0
    routing_refreshes: int = 0
    #: Replica reads answered, by node address (reads in a replica read mode).
    replica_reads: dict[str, int] = field(default_factory=dict)
    #: ``ReplicaTooStale`` answers (the client then tried another replica).
    too_stale: int = 0

    @property
    def redirects(self) -> int:
        """Answers that said the request went to the wrong place."""
        return self.not_leader + self.stale_epoch + self.wrong_shard


@dataclass(frozen=True)
class ClientTls:
    """TLS to the nodes (as the Rust client's ``ClientTls``): the client trusts the
    CAs in ``ca_path`` and, for mutual TLS, presents ``cert_path`` with its key
    ``key_path`` (give both or neither). All are PEM files, read when the client is
    made (to fail early) and again when it opens its channel to a node; a channel
    keeps what it read (rotated files need a new client).

    Attributes:
        ca_path: the certificate authorities that sign the nodes' certificates.
        cert_path: the certificate chain this client presents (needs ``key_path``).
        key_path: the private key of ``cert_path``.
        domain: the name every node's certificate must carry; default: the host of
            the address dialled (an IP address is matched against the
            certificate's IP names).

    A file that cannot be read or holds no PEM block, or a certificate without its
    key (or the reverse), raises :class:`~ctxstore.errors.InvalidArgumentError`
    whose ``field`` is ``ca_path``, ``cert_path`` or ``key_path``.
    """

    ca_path: str | os.PathLike[str]
    cert_path: str | os.PathLike[str] | None = None
    key_path: str | os.PathLike[str] | None = None
    domain: str | None = None

    def __post_init__(self) -> None:
        if self.cert_path is not None and self.key_path is None:
            raise E.InvalidArgumentError("key_path", "a client certificate needs its key")
        if self.key_path is not None and self.cert_path is None:
            raise E.InvalidArgumentError("cert_path", "a client key needs its certificate")

    def credentials(self) -> grpc.ChannelCredentials:
        """Reads the files now and makes the channel credentials."""
        ca = _read_pem(self.ca_path, "ca_path")
        cert = key = None
        if self.cert_path is not None and self.key_path is not None:
            cert = _read_pem(self.cert_path, "cert_path")
            key = _read_pem(self.key_path, "key_path")
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)

    def channel_options(self) -> list[tuple[str, Any]]:
        """:data:`CHANNEL_OPTIONS`, with ``domain`` as the name to check."""
        if self.domain:
            return [*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", self.domain)]
        return list(CHANNEL_OPTIONS)


def _read_pem(path: str | os.PathLike[str], field: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise E.InvalidArgumentError(field, f"cannot read {os.fspath(path)}: {e.strerror or e}") from None
    if b"-----BEGIN " not in data:
        raise E.InvalidArgumentError(field, f"{os.fspath(path)} holds no PEM block")
    return data


@dataclass
class Options:
    """Client settings.

    Attributes:
        timeout: deadline of one call including all its retries, in seconds
            (default 10).
        routing_timeout: how long one node may take to answer a routing-table
            request, in seconds (default 3).
        tls: TLS to the nodes (a :class:`ClientTls`); default ``None``: plaintext.
        token: a bearer token (``ctxctl auth token create``) for clusters with auth
            on, sent as ``authorization: Bearer ...`` on every call; needs ``tls``.
        read_mode: how :meth:`~ctxstore.Client.get` reads unless told otherwise:
            ``leader`` (default), ``follower``, ``bounded:<duration>`` or ``stale``
            (see :class:`ReadMode`).
    """

    timeout: float = 10.0
    routing_timeout: float = ROUTING_FETCH_TIMEOUT
    tls: ClientTls | None = None
    token: str | None = None
    read_mode: str = "leader"

    @staticmethod
    def resolve(
        timeout: float, tls: ClientTls | None, options: "Options | None", token: str | None = None
    ) -> "Options":
        """The settings of a client constructor's keyword arguments: ``options``
        when given (with ``tls`` and ``token`` replacing its own when set), else
        ``timeout``, ``tls`` and ``token``."""
        if options is None:
            return Options(timeout=timeout, tls=tls, token=token)
        if tls is not None:
            options = dataclasses.replace(options, tls=tls)
        if token is not None:
            options = dataclasses.replace(options, token=token)
        return options


class Backoff:
    """Jittered exponential backoff: ``initial`` doubling to ``maximum`` seconds,
    each pause scaled by a random factor in [0.5, 1.5)."""

    def __init__(self, initial: float = 0.002, maximum: float = 0.5) -> None:
        self.initial = initial
        self.maximum = maximum
        self.current = initial

    def next_pause(self) -> float:
        p = self.current * (0.5 + random.random())
        self.current = min(self.current * 2, self.maximum)
        return p

    def reset(self) -> None:
        self.current = self.initial


@dataclass
class Attempts:
    """The state of one call's retries."""

    deadline: float
    redirects: int = 0
    moves: int = 0
    attempt: int = 0
    pinned: int | None = None
    backoff: Backoff = field(default_factory=Backoff)
    last_error: E.CtxstoreError | None = None
    #: The last attempt went to the "current" node (the request named no shard).
    on_current: bool = False
    #: The last attempt was a replica read (see :class:`ReadMode`).
    replica_read: bool = False
    #: Replicas that refused or failed this replica read; cleared once all have.
    failed: list[str] = field(default_factory=list)
    #: How many replicas the shard had at the last replica read.
    replicas: int = 0


@dataclass
class Step:
    """What to do after a failed attempt: ``kind`` is ``"redirect"`` (retry now at
    ``addr``), ``"now"`` (retry now), ``"backoff"`` (sleep, then retry) or
    ``"raise"``; ``refresh`` asks for a routing-table fetch first."""

    kind: str
    addr: str = ""
    refresh: bool = False


class Core:
    """State shared by every call of one client."""

    def __init__(self, endpoints: list[str] | str, options: Options | None = None) -> None:
        if isinstance(endpoints, str):
            endpoints = [e for e in endpoints.split(",")]
        addrs = []
        for e in endpoints:
            e = e.strip()
            for scheme in ("http://", "grpc://"):
                if e.startswith(scheme):
                    e = e[len(scheme) :]
            if e and e not in addrs:
                addrs.append(e)
        if not addrs:
            raise E.InvalidArgumentError("endpoints", "at least one endpoint is needed")
        for a in addrs:
            host, sep, port = a.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise E.InvalidArgumentError("endpoints", f"`{a}` is not HOST:PORT")
        self.options = options or Options()
        if self.options.tls is not None:
            self.options.tls.credentials()  # unreadable files fail here, not at first use
        if self.options.token is not None and self.options.tls is None:
            # gRPC sends call credentials only over secure channels; a token is a
            # password, and the server refuses to turn auth on without TLS anyway.
            raise E.InvalidArgumentError("token", "a token needs TLS (pass tls=ClientTls(...))")
        self._lock = threading.Lock()
        #: Every address known: seeds first, then ones learned from tables and hints.
        self.addrs: list[str] = addrs
        #: Index in `addrs` of the node used for requests that name no shard.
        self.current_index = 0
        self.client_id = int.from_bytes(os.urandom(8), "big")
        self._next_request = itertools.count(1)
        self.routing = Routing()
        self.stats = Stats()
        self.read_mode = ReadMode.parse(self.options.read_mode)
        #: The highest version seen per shard (written or read).
        self._seen: dict[int, int] = {}

    def saw(self, shard: int, version: int) -> None:
        """Notes ``version`` seen in ``shard`` (the floor of its bounded reads)."""
        if shard == 0 or version == 0:
            return
        with self._lock:
            self._seen[shard] = max(self._seen.get(shard, 0), version)

    def floor(self, shard: int) -> int:
        """The ``min_version`` of a bounded read of ``shard``."""
        with self._lock:
            return self._seen.get(shard, 0)

    def channel_settings(self) -> tuple[grpc.ChannelCredentials | None, list[tuple[str, Any]]]:
        """The credentials (``None``: plaintext) and options of a new channel; reads
        the TLS files now."""
        tls = self.options.tls
        if tls is None:
            return None, CHANNEL_OPTIONS
        creds = tls.credentials()
        if self.options.token is not None:
            creds = grpc.composite_channel_credentials(
                creds, grpc.access_token_call_credentials(self.options.token.strip())
            )
        return creds, tls.channel_options()

    # ---- request ids and addresses ----

    def new_request_id(self) -> bytes:
        """A request id unique to this client: 8 random bytes and a counter."""
        with self._lock:
            n = next(self._next_request)
        return self.client_id.to_bytes(8, "big") + n.to_bytes(8, "big")

    def endpoints(self) -> list[str]:
        with self._lock:
            return list(self.addrs)

    def current(self) -> str:
        with self._lock:
            return self.addrs[self.current_index % len(self.addrs)]

    def set_current(self, addr: str) -> None:
        with self._lock:
            if addr not in self.addrs:
                self.addrs.append(addr)
            self.current_index = self.addrs.index(addr)

    def rotate(self) -> None:
        with self._lock:
            self.current_index += 1

    def add_endpoints(self, addrs: list[str]) -> None:
        with self._lock:
            for a in addrs:
                if a and a not in self.addrs:
                    self.addrs.append(a)

    def refresh_order(self) -> list[str]:
        """The nodes to ask for the routing table, the current one first."""
        with self._lock:
            addrs = list(self.addrs)
            i = self.current_index % len(addrs)
        return addrs[i:] + addrs[:i]

    def learn_tables(self, tables: list[Any]) -> None:
        new: list[str] = []
        for t in tables:
            new.extend(self.routing.learn_table(t))
        self.add_endpoints(new)
        self.stats.routing_refreshes += 1

    # ---- routing one attempt ----

    def begin(self) -> Attempts:
        self.stats.calls += 1
        return Attempts(deadline=time.monotonic() + self.options.timeout)

    def plan(self, op: Op, st: Attempts) -> tuple[int, str]:
        """The shard and address of the next attempt; fills in ``op.request.header``."""
        st.replica_read = False
        if op.read is not None and not op.read.at_leader and op.route.kind == "key":
            planned = self._plan_replica_read(op, op.read, st)
            if planned is not None:
                return planned
        if st.pinned is not None:
            shard = st.pinned
            routed = self.routing.target(shard, st.attempt)
        else:
            shard, routed = self._resolve(op.route, st.attempt)
        st.on_current = routed is None
        conf_ver, ring_ver = self.routing.epoch(shard) if shard != 0 else (0, 0)
        if st.pinned is not None:
            # A retried write must reach its shard even if the shard's arcs changed:
            # it answers with the stored result, or StaleEpoch.
            ring_ver = 0
        if op.call is Call.WRITE and shard != 0:
            st.pinned = shard
        addr = routed or self.current()
        if op.header:
            op.request.header.CopyFrom(kv_pb2.RequestHeader(shard_id=shard, conf_ver=conf_ver, ring_ver=ring_ver))
        return shard, addr

    def _plan_replica_read(self, op: Op, mode: ReadMode, st: Attempts) -> tuple[int, str] | None:
        """A replica of the key's shard for a read in ``mode`` (None: the shard or its
        replicas are unknown; the leader path finds them)."""
        shard = self.routing.shard_for_hash(op.route.value) or 0
        candidates = self.routing.replicas(shard) if shard else []
        if not candidates:
            return None
        eligible = [a for a in candidates if a not in st.failed]
        if not eligible:
            st.failed.clear()
            eligible = candidates
        addr = random.choice(eligible)
        st.replica_read = True
        st.on_current = False
        st.replicas = len(candidates)
        conf_ver, ring_ver = self.routing.epoch(shard)
        op.request.header.CopyFrom(
            kv_pb2.RequestHeader(
                shard_id=shard,
                conf_ver=conf_ver,
                ring_ver=ring_ver,
                read_mode=mode.wire,
                max_staleness_ms=mode.max_staleness_ms,
                min_version=self.floor(shard) if mode.wire == kv_pb2.READ_MODE_BOUNDED else 0,
            )
        )
        return shard, addr

    def _resolve(self, route: Route, attempt: int) -> tuple[int, str | None]:
        if route.kind == "shard":
            shard = route.value
        elif route.kind == "key":
            shard = self.routing.shard_for_hash(route.value) or 0
        else:
            shard = 0
        if shard == 0:
            return 0, None
        return shard, self.routing.target(shard, attempt)

    def succeeded(self, op: Op, st: Attempts, shard: int, addr: str, resp: Any) -> None:
        """Notes a successful attempt: the leader that answered (or the replica read
        served), and the version the answer shows."""
        if st.replica_read:
            with self._lock:
                reads = self.stats.replica_reads
                reads[addr] = reads.get(addr, 0) + 1
        elif shard != 0:
            self.routing.set_leader(shard, addr)
        if op.version is not None:
            self.saw(shard, op.version(resp))

    def remaining(self, st: Attempts) -> float:
        return st.deadline - time.monotonic()

    def timed_out(self, st: Attempts) -> E.DeadlineExceededError:
        return E.DeadlineExceededError(self.options.timeout, st.last_error)

    def decide(self, op: Op, st: Attempts, shard: int, addr: str, err: E.CtxstoreError) -> Step:
        """The retry rules (see the module docstring) for a failed attempt."""
        st.last_error = err
        s = self.stats
        if isinstance(err, E.NotLeaderError):
            s.not_leader += 1
        elif isinstance(err, E.StaleEpochError):
            s.stale_epoch += 1
        elif isinstance(err, E.WrongShardError):
            s.wrong_shard += 1
        elif isinstance(err, E.ReplicaTooStaleError):
            s.too_stale += 1
        if st.replica_read:
            return self._decide_replica_read(st, addr, err)
        step: Step
        if (
            isinstance(err, E.NotLeaderError)
            and err.leader_hint is not None
            and err.leader_hint.addr
            and err.leader_hint.addr != addr
            and st.redirects < 8
        ):
            st.redirects += 1
            step = Step("redirect", addr=self.routing.node_addr(err.leader_hint.node_id, err.leader_hint.addr))
        elif isinstance(err, E.StaleEpochError):
            refresh = not err.current
            if err.current:
                self.add_endpoints(self.routing.learn_routes(err.current))
            if op.call is Call.PART:
                return Step("raise", refresh=refresh)
            # Definitive: the shard did not and will not apply this request.
            st.pinned = None
            st.moves += 1
            if st.moves <= 8:
                return Step("now", refresh=refresh)
            step = Step("backoff", refresh=refresh)
        elif op.call is Call.ONCE:
            return Step("raise")
        elif isinstance(err, E.WrongShardError):
            step = Step("backoff", refresh=True)
        elif err.retryable:
            step = Step("backoff")
        else:
            return Step("raise")
        if time.monotonic() >= st.deadline:
            return Step("raise-timeout")
        if step.kind == "redirect":
            if shard != 0:
                self.routing.set_leader(shard, step.addr)
            else:
                self.set_current(step.addr)
            return step
        # Backoff.
        s.backoffs += 1
        st.redirects = 0
        st.attempt += 1
        if shard != 0:
            self.routing.forget_leader(shard)
        if st.on_current:
            self.rotate()
        if st.attempt % 4 == 0:
            # Still failing: the routing may name addresses nodes no longer use.
            step.refresh = True
        return step

    def _decide_replica_read(self, st: Attempts, addr: str, err: E.CtxstoreError) -> Step:
        """The retry rules of a replica read (``read_routed`` in the Rust client)."""
        step: Step
        if isinstance(err, E.StaleEpochError):
            refresh = not err.current
            if err.current:
                self.add_endpoints(self.routing.learn_routes(err.current))
            st.moves += 1
            step = Step("now" if st.moves <= 8 else "backoff", refresh=refresh)
        elif isinstance(err, E.WrongShardError):
            step = Step("backoff", refresh=True)
        elif isinstance(err, (E.ReplicaTooStaleError, E.NotLeaderError)):
            # Another replica may qualify (the leader always does).
            st.failed.append(addr)
            step = Step("now" if len(st.failed) < st.replicas else "backoff")
        elif err.retryable:
            st.failed.append(addr)
            step = Step("backoff")
        else:
            return Step("raise")
        if time.monotonic() >= st.deadline:
            return Step("raise-timeout")
        if step.kind == "backoff":
            self.stats.backoffs += 1
            st.attempt += 1
            if st.attempt % 4 == 0:
                step.refresh = True
        return step

    def pause(self, st: Attempts) -> float:
        """How long to back off, never past the deadline."""
        return max(0.0, min(st.backoff.next_pause(), st.deadline - time.monotonic()))


class WatchState:
    """The resume logic of a watch (``crates/client/src/agent.rs``, ``watcher``):
    which versions were delivered, so a reopened stream neither repeats nor skips an
    event. ``events_of(resp)`` gives a response's ``(events, progress_version,
    moved)``."""

    def __init__(self, from_version: int | None) -> None:
        #: Every change up to `done` was delivered.
        self.done = from_version
        #: Events of version `partial[0]` delivered so far, when the server split one
        #: version over several responses.
        self.partial = (0, 0)
        self.seen = (0, 0)
        self.backoff = Backoff(0.01, 0.5)

    def new_stream(self) -> None:
        self.seen = (0, 0)

    def take(self, events: list, progress: int, moved: Any) -> tuple[list, bool]:
        """The events of one response still to deliver, and whether the stream ends
        here (the watched keys moved to another shard)."""
        self.backoff.reset()
        out = []
        for ev in events:
            v = ev.version
            if self.done is not None and v <= self.done:
                continue
            if self.seen[0] != v:
                self.seen = (v, 0)
            self.seen = (v, self.seen[1] + 1)
            if self.partial[0] == v and self.seen[1] <= self.partial[1]:
                continue  # delivered before a reconnect
            out.append(ev)
            self.partial = (v, self.partial[1] + 1) if self.partial[0] == v else (v, 1)
        self.done = progress if self.done is None else max(self.done, progress)
        if self.partial[0] <= self.done:
            self.partial = (0, 0)
        if moved is not None:
            self.done = moved.at_version if self.done is None else max(self.done, moved.at_version)
            return out, True
        return out, False


def watch_resumable(err: E.CtxstoreError) -> bool:
    """Whether a watch stream that failed with ``err`` is reopened (from the last
    version delivered) rather than ending with the error."""
    return err.retryable or isinstance(err, (E.RpcError, E.DeadlineExceededError))
