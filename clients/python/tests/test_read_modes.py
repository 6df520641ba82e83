"""Read modes against a real cluster: follower and bounded-staleness reads see the
client's own writes, are served by more than the leader, and bad modes are refused
before anything is sent (docs/python.md, "Read modes")."""

from __future__ import annotations

import pytest

import ctxstore


def test_read_modes_parse_and_bad_ones_are_refused(cluster, uniq):
    for text, shown in [("leader", "leader"), ("linearizable", "leader"), ("follower", "follower"),
                        ("stale", "stale"), ("bounded:500ms", "bounded:500ms"), ("bounded:2s", "bounded:2000ms"),
                        ("bounded:1m", "bounded:60000ms")]:
        assert str(ctxstore.ReadMode.parse(text)) == shown
    for bad in ["", "fast", "bounded:", "bounded:0ms", "bounded:5x", "bounded:-1s", "Leader"]:
        with pytest.raises(ctxstore.InvalidArgumentError) as e:
            ctxstore.ReadMode.parse(bad)
        assert e.value.field == "read_mode"
    with pytest.raises(ctxstore.InvalidArgumentError):
        ctxstore.Client(cluster.addrs, options=ctxstore.Options(read_mode="bounded:0s"))
    with cluster.client() as c:
        calls = c.stats.calls
        with pytest.raises(ctxstore.InvalidArgumentError):
            c.get(f"{uniq}/k", read_mode="sometimes")
        assert c.stats.calls == calls


@pytest.mark.parametrize("mode", ["follower", "bounded:10s"])
def test_replica_reads_see_the_clients_own_writes_and_spread_over_the_replicas(cluster, uniq, mode):
    with cluster.client(options=ctxstore.Options(read_mode=mode)) as c:
        # Each read right after its write: a follower serves it only once it has
        # applied the write (follower: the leader's commit index; bounded: the
        # version the write returned, the client's floor for the shard).
        for i in range(40):
            k = f"{uniq}/k{i % 4}"
            w = c.put(k, f"v{i}")
            kv = c.get(k)
            assert kv is not None and (kv.value, kv.version) == (f"v{i}".encode(), w.version), (i, kv)
        served = dict(c.stats.replica_reads)
        assert sum(served.values()) == 40, served
        # Replicas are picked at random: 40 reads of 3 replicas all landing on one
        # node would be a 1 in 10^18 event.
        assert len(served) >= 2, served


def test_stale_reads_go_to_replicas_and_leader_reads_do_not(client, uniq):
    k = f"{uniq}/k"
    w = client.put(k, "v")
    before = sum(client.stats.replica_reads.values())
    assert client.get(k).version == w.version
    assert sum(client.stats.replica_reads.values()) == before
    got = client.get(k, stale=True)
    # A stale read may come from a replica that has not applied the put yet.
    assert got is None or got.version == w.version
    assert sum(client.stats.replica_reads.values()) == before + 1


async def test_async_follower_reads(cluster, uniq):
    async with ctxstore.AsyncClient(cluster.addrs, options=ctxstore.Options(read_mode="follower")) as c:
        for i in range(10):
            w = await c.put(f"{uniq}/a", f"v{i}")
            kv = await c.get(f"{uniq}/a")
            assert (kv.value, kv.version) == (f"v{i}".encode(), w.version)
        assert sum(c.stats.replica_reads.values()) == 10
        assert (await c.get(f"{uniq}/a", read_mode="leader")).version == w.version
        assert sum(c.stats.replica_reads.values()) == 10
