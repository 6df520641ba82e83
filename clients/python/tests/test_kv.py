"""Kv round trips (sync and asyncio), typed errors, and watches."""

from __future__ import annotations

import asyncio
import time

import pytest

import ctxstore
from ctxstore import Check, Delete, Put

from conftest import wait_until


def test_put_get_delete_versions(client, uniq):
    k = f"{uniq}/k"
    assert client.get(k) is None
    w1 = client.put(k, "v1")
    assert w1.version > 0 and w1.create_version == w1.version
    kv = client.get(k)
    assert (kv.key, kv.value, kv.version, kv.create_version) == (k.encode(), b"v1", w1.version, w1.version)
    w2 = client.put(k, b"v2")
    assert w2.version > w1.version and w2.create_version == w1.version
    d = client.delete(k)
    assert d.deleted and d.version > w2.version
    assert client.get(k) is None
    assert not client.delete(k).deleted


def test_ttl_expires(client, uniq):
    k = f"{uniq}/ttl"
    client.put(k, "soon gone", ttl_ms=300)
    kv = client.get(k)
    assert kv is not None and kv.expires_at_ms > 0
    wait_until("the key to expire", lambda: client.get(k) is None, timeout=10)


def test_compare_and_swap(client, uniq):
    k = f"{uniq}/cas"
    w = client.compare_and_swap(k, 0, "first")
    with pytest.raises(ctxstore.VersionMismatchError) as e:
        client.compare_and_swap(k, 0, "again")
    assert (e.value.expected, e.value.actual, e.value.key) == (0, w.version, k.encode())
    assert client.get(k).value == b"first", "nothing changed"
    w2 = client.compare_and_swap(k, w.version, "second")
    with pytest.raises(ctxstore.VersionMismatchError):
        client.compare_and_delete(k, w.version)
    client.compare_and_delete(k, w2.version)
    assert client.get(k) is None


def test_batch_is_atomic(client, uniq):
    tag = "{" + uniq + "}"
    v = client.batch([Put(f"{tag}a", "1"), Put(f"{tag}b", "2"), Check(f"{tag}c", 0)])
    assert client.get(f"{tag}a").version == v == client.get(f"{tag}b").version
    with pytest.raises(ctxstore.VersionMismatchError):
        client.batch([Put(f"{tag}c", "3"), Delete(f"{tag}a"), Check(f"{tag}b", 0)])
    assert client.get(f"{tag}c") is None and client.get(f"{tag}a") is not None, "all or nothing"
    client.batch([Delete(f"{tag}a"), Check(f"{tag}b", v)])
    assert client.get(f"{tag}a") is None


def test_batch_across_shards_is_invalid(client, uniq):
    keys = [f"{uniq}-{i}" for i in range(40)]
    shards = {client.route(k)[0]: k for k in keys}
    assert len(shards) >= 2
    a, b = list(shards.values())[:2]
    with pytest.raises(ctxstore.InvalidArgumentError) as e:
        client.batch([Put(a, "1"), Put(b, "2")])
    assert e.value.field == "ops"
    assert client.get(a) is None and client.get(b) is None


def test_scan_tagged_and_untagged(client, uniq):
    tag = "{" + uniq + "}"
    for i in range(25):
        client.put(f"{tag}:{i:03}", str(i))
    r = client.scan(f"{tag}:", limit=10)
    assert [kv.value for kv in r.kvs] == [str(i).encode() for i in range(10)] and r.more
    r2 = client.scan(f"{tag}:", start_after=r.kvs[-1].key, limit=100)
    assert len(r2.kvs) == 15 and not r2.more
    # An untagged prefix covers every shard.
    for i in range(30):
        client.put(f"{uniq}-u-{i:03}", str(i))
    assert len({client.route(f"{uniq}-u-{i:03}")[0] for i in range(30)}) > 1
    keys = [kv.key for kv in client.scan_all(f"{uniq}-u-", page=7)]
    assert keys == sorted(f"{uniq}-u-{i:03}".encode() for i in range(30))


def test_bad_input_raises_typed_errors_and_changes_nothing(client, uniq):
    with pytest.raises(ctxstore.InvalidArgumentError) as e:
        client.put(b"", "x")
    assert e.value.field == "key" and e.value.code is not None
    with pytest.raises(ctxstore.InvalidArgumentError):
        client.put(b"\x00reserved", "x")
    k = f"{uniq}/big"
    with pytest.raises(ctxstore.LimitExceededError) as e:
        client.put(k, b"x" * 300_000)
    assert e.value.limit == "max-value-size" and e.value.max == 262144 and e.value.actual >= 300_000
    assert client.get(k) is None
    with pytest.raises(ctxstore.LimitExceededError):
        client.scan("", limit=1_000_000)
    with pytest.raises(ctxstore.InvalidArgumentError):
        client.watch(prefix="no-tag")
    with pytest.raises(ctxstore.InvalidArgumentError):
        ctxstore.Client([])


def test_deadline_when_no_node_answers():
    from conftest import free_port

    c = ctxstore.Client([f"127.0.0.1:{free_port()}"], timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(ctxstore.DeadlineExceededError) as e:
        c.get("k")
    assert 0.9 <= time.monotonic() - t0 < 8
    assert isinstance(e.value, TimeoutError)
    c.close()


def test_watch_key_and_prefix_sync(client, uniq):
    tag = "{" + uniq + "}"
    k = f"{tag}w"
    with client.watch(k) as w, client.watch(prefix=tag) as wp:
        v1 = client.put(k, "1").version
        client.put(f"{tag}other", "x")
        v3 = client.delete(k).version
        evs = [w.next(timeout=10) for _ in range(2)]
        assert [(e.kind, e.version, e.kv.value) for e in evs] == [
            (ctxstore.pb.WatchEvent.PUT, v1, b"1"),
            (ctxstore.pb.WatchEvent.DELETE, v3, b""),
        ]
        got = [wp.next(timeout=10) for _ in range(3)]
        assert [e.kv.key for e in got] == [k.encode(), f"{tag}other".encode(), k.encode()]
        assert w.next(timeout=0.2) is None
    # Resume from a version: replays what came after it.
    with client.watch(k, from_version=v1) as w2:
        e = w2.next(timeout=10)
        assert e.version == v3 and e.kind == ctxstore.pb.WatchEvent.DELETE


async def test_async_round_trips(aclient, uniq):
    k = f"{uniq}/a"
    w = await aclient.put(k, "v")
    assert (await aclient.get(k)).version == w.version
    with pytest.raises(ctxstore.VersionMismatchError):
        await aclient.compare_and_swap(k, w.version + 1000, "no")
    keys = [f"{uniq}/c{i}" for i in range(20)]
    await asyncio.gather(*(aclient.put(x, x) for x in keys))
    got = await asyncio.gather(*(aclient.get(x) for x in keys))
    assert [g.value for g in got] == [x.encode() for x in keys]
    listed = [kv.key async for kv in aclient.scan_all(f"{uniq}/c")]
    assert listed == sorted(x.encode() for x in keys)
    assert (await aclient.delete(k)).deleted


async def test_async_watch(aclient, uniq):
    k = "{" + uniq + "}k"
    w = await aclient.watch(k)
    async with w:
        versions = [(await aclient.put(k, str(i))).version for i in range(5)]

        async def collect():
            seen = []
            async for ev in w:
                seen.append(ev.version)
                if len(seen) == 5:
                    return seen

        assert await asyncio.wait_for(collect(), 10) == versions
