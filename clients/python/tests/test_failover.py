"""Retries across a leader kill: SIGKILL the leader while writers run; every
acknowledged write reads back, and a conversation appended to with idempotency keys
has no duplicate and no lost message."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import ctxstore
from ctxstore import Message

from conftest import Cluster, wait_until

#: Writes per writer after the kill, and the bound of the whole test.
AFTER_KILL = 40
TEST_DEADLINE = 120.0


@pytest.fixture
def own_cluster():
    c = Cluster(3, 1)
    try:
        yield c
    finally:
        c.stop()


class Writer:
    """Writes keys and appends messages (idempotency key per message) until told to
    stop or ``after_kill`` writes were acknowledged after the kill. An append whose
    outcome is unknown (an exception) is sent again with the same idempotency key, as
    an application would."""

    def __init__(self, name: str, client: ctxstore.Client, conv: str, killed: threading.Event) -> None:
        self.name = name
        self.client = client
        self.conv = conv
        self.killed = killed
        self.acked: dict[str, str] = {}
        self.appended: list[str] = []
        self.after = 0
        self.errors: list[BaseException] = []
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + TEST_DEADLINE
        i = 0
        while not self.stop.is_set() and time.monotonic() < deadline and self.after < AFTER_KILL:
            k, v = f"{self.name}-{i:04}", f"v{i}"
            try:
                self.client.put(k, v)
                self.acked[k] = v
            except ctxstore.CtxstoreError as e:
                self.errors.append(e)
            content = f"{self.name}:{i}"
            while time.monotonic() < deadline:
                try:
                    self.client.append("failover", self.conv, [Message("user", content, 1)], idempotency_key=content)
                    self.appended.append(content)
                    break
                except ctxstore.CtxstoreError as e:
                    self.errors.append(e)
            if self.killed.is_set():
                self.after += 1
            i += 1


def test_leader_kill_loses_no_acknowledged_write_and_duplicates_nothing(own_cluster):
    cl = own_cluster
    client = cl.client(timeout=30)
    killed = threading.Event()
    writers = [Writer(f"w{t}", client, "conv", killed) for t in range(3)]
    threads = [threading.Thread(target=w.run, daemon=True) for w in writers]

    # An asyncio writer on its own client and loop, the same way.
    async_acked: dict[str, str] = {}
    async_after = [0]

    async def async_writer() -> None:
        async with ctxstore.AsyncClient(cl.addrs, timeout=30) as ac:
            deadline = time.monotonic() + TEST_DEADLINE
            i = 0
            while time.monotonic() < deadline and async_after[0] < AFTER_KILL:
                k = f"aw-{i:04}"
                await ac.put(k, f"a{i}")
                async_acked[k] = f"a{i}"
                await ac.append("failover", "conv", [Message("user", f"aw:{i}", 1)], idempotency_key=f"aw:{i}")
                if killed.is_set():
                    async_after[0] += 1
                i += 1

    async_errors: list[BaseException] = []

    def run_async() -> None:
        try:
            asyncio.run(async_writer())
        except BaseException as e:  # reported below
            async_errors.append(e)

    threads.append(threading.Thread(target=run_async, daemon=True))
    try:
        for t in threads:
            t.start()
        wait_until("writes before the kill", lambda: all(len(w.acked) >= 10 for w in writers) and len(async_acked) >= 10)
        leader = cl.wait_leader(1)
        stats_before = (client.stats.backoffs, client.stats.not_leader)
        cl.nodes[leader].kill()
        killed.set()
        for t in threads:
            t.join(TEST_DEADLINE + 30)
            assert not t.is_alive(), "a writer did not finish"
    finally:
        for w in writers:
            w.stop.set()
    assert not async_errors, async_errors
    for w in writers:
        assert w.after >= AFTER_KILL, f"{w.name} wrote {w.after} after the kill (errors: {w.errors[:3]})"
    assert async_after[0] >= AFTER_KILL
    # The kill was felt: the client retried (backoffs or redirects) after it.
    assert (client.stats.backoffs, client.stats.not_leader) != stats_before, client.stats

    check = cl.client(timeout=30)
    for w in writers:
        for k, v in w.acked.items():
            kv = check.get(k)
            assert kv is not None and kv.value == v.encode(), f"acknowledged {k} lost"
    for k, v in async_acked.items():
        assert check.get(k).value == v.encode()
    contents = [m.content for m in check.read_all("failover", "conv")]
    assert len(contents) == len(set(contents)), "a message was appended twice"
    expected = {c for w in writers for c in w.appended} | {f"aw:{i}" for i in range(len(async_acked))}
    assert expected <= set(contents), f"lost appends: {sorted(expected - set(contents))[:5]}"
    seqs = [m.seq for m in check.read_all("failover", "conv")]
    assert seqs == list(range(1, len(seqs) + 1)), "seqs are gap-free"
    client.close()
    check.close()
