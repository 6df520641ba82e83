"""Leases and the service registry against a real cluster (docs/api.md, "Leases")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import ctxstore


def _wait_gone(client: ctxstore.Client, key: bytes, within: float = 10.0) -> float:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if client.get(key) is None:
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"{key!r} still there after {within} s")


def test_a_leases_keys_go_with_it(client, uniq):
    part = f"{{lease-{uniq}}}".encode()
    granted = time.monotonic()
    lease = client.grant_lease(part, 2000)
    assert lease.id != 0 and lease.ttl_ms == 2000
    client.put(part + b"/a", "1", lease_id=lease.id)
    assert client.get(part + b"/a").lease_id == lease.id
    info = client.lease_info(lease)
    assert list(info.keys) == [part + b"/a"]
    with pytest.raises(ctxstore.NotFoundError):
        client.put(b"{elsewhere}/a", "1", lease_id=lease.id)
    gone = _wait_gone(client, part + b"/a")
    assert gone - granted >= 2.0
    assert client.lease_info(lease) is None
    assert client.keep_alive_once(lease) == 0

    kept = client.grant_lease(part, 1000)
    client.put(part + b"/b", "1", lease_id=kept.id)
    keeper = client.keep_alive(kept)
    time.sleep(1.2)
    assert keeper.alive and client.get(part + b"/b") is not None
    keeper.revoke()
    assert client.get(part + b"/b") is None


def test_the_service_registry(client, uniq):
    service = f"svc-{uniq}".replace("}", "")
    a = client.register(service, "a", "10.0.0.1:80", ttl_ms=1000)
    b = client.register(service, "b", "10.0.0.2:80", ttl_ms=1000)
    found = [(kv.key.rsplit(b"/", 1)[1], kv.value) for kv in client.discover(service)]
    assert found == [(b"a", b"10.0.0.1:80"), (b"b", b"10.0.0.2:80")]
    with client.watch_service(service) as w:
        a.close()
        e = next(w)
        assert e.kind == ctxstore.pb.WatchEvent.DELETE and e.kv.key.endswith(b"/a")
    assert [kv.key.rsplit(b"/", 1)[1] for kv in client.discover(service)] == [b"b"]
    b.revoke()
    assert client.discover(service) == []


async def test_async_leases(aclient, uniq):
    part = f"{{alease-{uniq}}}".encode()
    lease = await aclient.grant_lease(part, 10_000)
    await aclient.put(part + b"/x", "1", lease_id=lease.id)
    assert await aclient.keep_alive_once(lease) == 10_000
    assert (await aclient.revoke_lease(lease)) == (True, 1)
    assert await aclient.get(part + b"/x") is None


def test_a_task_queue(client, uniq):
    q = f"q-{uniq}".replace("}", "")[:100]
    low, _ = client.enqueue(q, "low", priority=1)
    high, _ = client.enqueue(q, "high", priority=9, idempotency_key="once")
    assert client.enqueue(q, "again", idempotency_key="once") == (high, True)
    got = client.lease_tasks(q, 5, visibility_ms=30_000)
    assert [t.payload for t in got] == [b"high", b"low"]
    assert client.ack(q, got[0]) and not client.ack(q, got[0])
    assert client.nack(q, got[1], retry_after_ms=1) == (True, False)
    s = client.queue_stats(q)
    assert (s.enqueued_total, s.acked_total) == (2, 1)
    with pytest.raises(ctxstore.InvalidArgumentError):
        client.lease_tasks("bad}name")


async def test_async_task_queue(aclient, uniq):
    q = f"aq-{uniq}".replace("}", "")[:100]
    await aclient.enqueue(q, "x")
    t = await aclient.lease_tasks(q, 1)
    assert len(t) == 1 and await aclient.ack(q, t[0])


def test_a_lock_fences_and_an_election_follows(client, cluster, uniq):
    name = f"lk-{uniq}".replace("}", "")[:100]
    first = client.lock(name, ttl_ms=2000)
    client.guarded_batch(first, [ctxstore.Put(f"{{lock/{name}}}/state", "first")])
    with cluster.client() as other:
        with pytest.raises(ctxstore.DeadlineExceededError):
            other.lock(name, ttl_ms=2000, timeout=0.5)
        first.keeper.close()  # a paused holder: its lease runs out
        second = other.lock(name, ttl_ms=2000, timeout=20)
        assert second.fence > first.fence
        with pytest.raises(ctxstore.VersionMismatchError):
            client.guarded_batch(first, [ctxstore.Put(f"{{lock/{name}}}/state", "stale")])
        other.guarded_batch(second, [ctxstore.Put(f"{{lock/{name}}}/state", "second")])
        assert client.get(f"{{lock/{name}}}/state").value == b"second"
        second.unlock()
    leader = client.campaign(f"el-{name}", "node-a", ttl_ms=2000)
    assert client.leader(f"el-{name}").value == b"node-a"
    leader.unlock()
    assert client.leader(f"el-{name}") is None


def test_a_sigstopped_consumer_loses_its_task(client, cluster, uniq):
    """A consumer process that holds a task and is SIGSTOPped past the visibility
    timeout: the task goes to another consumer, and the stopped one's late ack is
    refused."""
    q = f"stop-{uniq}".replace("}", "")[:100]
    client.enqueue(q, "job")
    consumer = textwrap.dedent(f"""
        import sys, ctxstore
        c = ctxstore.Client({cluster.addrs!r})
        t = c.lease_tasks({q!r}, 1, visibility_ms=1000)[0]
        print("leased", flush=True)
        sys.stdin.readline()
        print("acked" if c.ack({q!r}, t) else "refused", flush=True)
    """)
    p = subprocess.Popen([sys.executable, "-c", consumer], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "leased"
        os.kill(p.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 20
        got = []
        while not got and time.monotonic() < deadline:
            got = client.lease_tasks(q, 1, visibility_ms=30_000)
            time.sleep(0.05)
        assert got and got[0].attempts == 2, got
        assert client.ack(q, got[0])
        os.kill(p.pid, signal.SIGCONT)
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "refused"
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGCONT)
            p.kill()


async def test_async_locks_and_registry(aclient, uniq):
    name = f"alk-{uniq}".replace("}", "")[:100]
    first = await aclient.lock(name, ttl_ms=2000)
    with pytest.raises(ctxstore.DeadlineExceededError):
        await aclient.lock(name, ttl_ms=2000, timeout=0.5)
    await aclient.guarded_batch(first, [ctxstore.Put(f"{{lock/{name}}}/s", "1")])
    first.keeper.close()
    second = await aclient.lock(name, ttl_ms=2000, timeout=20)
    assert second.fence > first.fence
    with pytest.raises(ctxstore.VersionMismatchError):
        await aclient.guarded_batch(first, [ctxstore.Put(f"{{lock/{name}}}/s", "stale")])
    await second.unlock()
    keeper = await aclient.register(f"asvc-{name}", "a", "addr", ttl_ms=1000)
    assert [kv.value for kv in await aclient.discover(f"asvc-{name}")] == [b"addr"]
    await keeper.revoke()
    assert await aclient.discover(f"asvc-{name}") == []
