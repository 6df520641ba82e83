"""Real ``ctxd`` clusters for the tests.

The binary is ``$CTXD_BIN``, else ``$CARGO_TARGET_DIR/debug/ctxd``, else
``<repo>/target/debug/ctxd``. Every node listens on a loopback port the OS picked
(bound, released, then given to ``ctxd``, as ``tests/common/procs.rs`` does), keeps its
data in a temporary directory, and is killed, with the directory removed, when its
cluster is torn down, also when a test fails. Waiting is always polling a condition
with a deadline. ``Cluster(tls=DIR)`` serves over TLS with the certificates of
``make_certs(DIR)``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, TypeVar

import pytest

import ctxstore

T = TypeVar("T")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
#: Deadline of the cluster-level waits (start, elections) on a loaded 2-core machine.
WAIT = 60.0


def ctxd_bin() -> Path:
    """The ``ctxd`` binary to test against."""
    if os.environ.get("CTXD_BIN"):
        p = Path(os.environ["CTXD_BIN"])
    elif os.environ.get("CARGO_TARGET_DIR"):
        p = Path(os.environ["CARGO_TARGET_DIR"]) / "debug" / "ctxd"
    else:
        p = REPO / "target" / "debug" / "ctxd"
    if not p.is_file():
        pytest.exit(f"ctxd binary not found at {p}: build it (cargo build) or set CTXD_BIN", returncode=2)
    return p


class Abort(Exception):
    """Raised by a wait condition that can never become true (wait_until re-raises it
    at once)."""


def wait_until(what: str, cond: Callable[[], T | None], timeout: float = WAIT, interval: float = 0.05) -> T:
    """Polls ``cond`` until it returns something truthy (returned), failing the test
    with ``what`` after ``timeout`` seconds. Exceptions count as "not yet"; the last
    one is reported."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Abort:
            raise
        except Exception as e:  # not yet
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last error: {last!r})")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: Every node's settings: fast elections (as the Rust tests' `fast_config`), no
#: automatic splits or placement moves (tests count shards and leaders), small limits
#: so limit tests need no large payloads.
NODE_CONFIG = """
[raft]
tick-interval = "30ms"
election-ticks = 10
heartbeat-ticks = 2

[split]
enabled = false

[pd]
enabled = false

[limits]
max-value-size = 262144
"""


def make_certs(out: Path) -> Path:
    """A throwaway CA and certificates in ``out`` (``ctxd certs``): ``ca.crt``,
    ``node.crt``/``node.key`` (CN ctxstore-node) and ``client.crt``/``client.key``."""
    subprocess.run([str(ctxd_bin()), "certs", "--out", str(out)], check=True, capture_output=True)
    return out


class Node:
    def __init__(self, index: int, args: list[str], log: Path) -> None:
        self.index = index
        self.node_id = index + 1
        self.args = args
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen(
                [str(ctxd_bin()), *self.args],
                stdout=subprocess.DEVNULL,
                stderr=f,
                env={**os.environ, "RUST_LOG": os.environ.get("CTXD_LOG", "warn")},
            )

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    """``n`` ``ctxd`` processes forming a new cluster with ``shards`` data shards (or,
    with ``data_from``, started on the unpacked data dirs of an older cluster). With
    ``tls``, a directory of ``make_certs``, the nodes serve mutual TLS (client
    certificates optional, node-only calls for CN ctxstore-node) and the cluster's
    own clients present the client certificate."""

    def __init__(
        self,
        n: int = 3,
        shards: int = 4,
        data_from: Path | None = None,
        dir_prefix: str = "node",
        tls: Path | None = None,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ctxstore-py-"))
        self.shards = shards
        self.tls = (
            None
            if tls is None
            else ctxstore.ClientTls(tls / "ca.crt", cert_path=tls / "client.crt", key_path=tls / "client.key")
        )
        self.addrs = [f"127.0.0.1:{free_port()}" for _ in range(n)]
        initial = ",".join(f"{i + 1}={a}" for i, a in enumerate(self.addrs))
        cfg = self.dir / "ctxd.toml"
        cfg.write_text(NODE_CONFIG)
        if data_from is not None:
            subprocess.run(["tar", "-xzf", str(data_from), "-C", str(self.dir)], check=True)
        self.nodes = []
        for i, a in enumerate(self.addrs):
            args = [
                "--config", str(cfg),
                "--node-id", str(i + 1),
                "--listen", a,
                "--data-dir", str(self.dir / f"{dir_prefix}{i + 1}"),
                "--initial-cluster", initial,
                "--initial-shards", str(shards),
            ]
            if tls is not None:
                args += [
                    "--ca-path", str(tls / "ca.crt"),
                    "--cert-path", str(tls / "node.crt"),
                    "--key-path", str(tls / "node.key"),
                    "--peer-cert-allowed-cn", "ctxstore-node",
                ]
            self.nodes.append(Node(i, args, self.dir / f"n{i + 1}.log"))
        try:
            for node in self.nodes:
                node.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def client(self, **kw) -> ctxstore.Client:
        kw.setdefault("tls", self.tls)
        return ctxstore.Client(self.addrs, **kw)

    def status(self, i: int) -> "ctxstore.pb.StatusResponse":
        with ctxstore.Client([self.addrs[i]], tls=self.tls) as c:
            return c.node_status(self.addrs[i], timeout=3)

    def leader_of(self, shard: int) -> int | None:
        """Index of the node whose replica of ``shard`` is leader, if one is."""
        for i, node in enumerate(self.nodes):
            if not node.running:
                continue
            try:
                st = self.status(i)
            except ctxstore.CtxstoreError:
                continue
            for s in st.shards:
                if s.descriptor.shard_id == shard and s.role == "leader":
                    return i
        return None

    def wait_leader(self, shard: int, timeout: float = WAIT) -> int:
        """Index of the node leading ``shard``, waiting for an election if needed."""

        def found():
            i = self.leader_of(shard)
            return None if i is None else (i,)

        return wait_until(f"a leader of shard {shard}", found, timeout)[0]

    def wait_ready(self) -> None:
        """Until the routing table lists every data shard and each has a leader that
        serves a linearizable read."""

        def ready() -> bool:
            for n in self.nodes:
                if n.proc is not None and n.proc.poll() is not None:
                    raise Abort(f"ctxd node {n.node_id} exited with status {n.proc.returncode}:\n{self.logs()}")
            with self.client(timeout=5) as c:
                t = c.routing_table()
                data = [r for r in t.shards if r.descriptor.shard_id != 0]
                if len(data) < self.shards or not all(r.descriptor.arcs for r in data):
                    return False
                for s in sorted(r.descriptor.shard_id for r in data):
                    if self.leader_of(s) is None:
                        return False
                return True

        try:
            wait_until(f"a {len(self.nodes)}-node cluster with {self.shards} led shards", ready)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.logs()}") from None

    def logs(self) -> str:
        out = []
        for n in self.nodes:
            try:
                text = n.log.read_text(errors="replace")
            except OSError:
                continue
            out.append(f"--- node {n.node_id} ---\n" + text[-4000:])
        return "\n".join(out)

    def stop(self) -> None:
        for n in self.nodes:
            try:
                n.kill()
            except Exception:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster():
    """A 3-node, 4-shard cluster shared by the tests that do not kill nodes."""
    c = Cluster(3, 4)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def client(cluster):
    with cluster.client() as c:
        yield c


@pytest.fixture
async def aclient(cluster):
    c = ctxstore.AsyncClient(cluster.addrs)
    try:
        yield c
    finally:
        await c.close()


_counter = iter(range(1, 1 << 30))


@pytest.fixture
def uniq(request) -> str:
    """A name unique to this test (keys of the shared cluster never collide)."""
    return f"{request.node.name.replace('[', '-').replace(']', '')[:60]}-{os.getpid()}-{next(_counter)}"
