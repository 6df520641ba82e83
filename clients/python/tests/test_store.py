"""ctxstore.langgraph.CtxstoreStore against LangGraph's InMemoryStore (the oracle):
the same calls give the same items, sync and async."""

from __future__ import annotations

import pytest
from langgraph.store.base import GetOp, PutOp
from langgraph.store.memory import InMemoryStore

import ctxstore
from ctxstore.langgraph import CtxstoreStore, _store_key


@pytest.fixture
def store(client):
    return CtxstoreStore(client)


def _items(items) -> list:
    return sorted((tuple(i.namespace), i.key, repr(sorted(i.value.items()))) for i in items)


def _fill(s, root: str) -> None:
    # Inserted in key order, so the oracle's insertion order is the store's key order.
    s.put((root, "memories"), "a-likes", {"kind": "pref", "text": "likes tea", "n": 1})
    s.put((root, "memories"), "b-lives", {"kind": "fact", "text": "lives in Oslo", "n": 2})
    s.put((root, "memories"), "c-works", {"kind": "fact", "text": "works nights", "n": 3})
    s.put((root, "memoriesX"), "d-other", {"kind": "fact", "n": 4})
    s.put((root, "memories", "old"), "e-deep", {"kind": "pref", "n": 5})
    s.put((f"{root}-other", "memories"), "f-else", {"kind": "fact", "n": 6})


def test_store_matches_in_memory_store(store, uniq):
    oracle = InMemoryStore()
    results = {}
    for name, s in (("memory", oracle), ("ctxstore", store)):
        _fill(s, uniq)
        got = s.get((uniq, "memories"), "b-lives")
        missing = s.get((uniq, "memories"), "nope")
        every = _items(s.search((uniq,), limit=100))
        under = _items(s.search((uniq, "memories"), limit=100))
        facts = _items(s.search((uniq,), filter={"kind": "fact"}, limit=100))
        ranged = _items(s.search((uniq,), filter={"n": {"$gte": 2, "$lt": 5}}, limit=100))
        page = [i.key for i in s.search((uniq, "memories"), limit=2, offset=1)]
        s.delete((uniq, "memories"), "a-likes")
        after = _items(s.search((uniq, "memories"), limit=100))
        namespaces = [ns for ns in s.list_namespaces(prefix=(uniq,))]
        shallow = s.list_namespaces(prefix=(uniq,), max_depth=2)
        suffixed = s.list_namespaces(prefix=(uniq,), suffix=("old",))
        # A batch reads before it writes.
        batch = s.batch([GetOp((uniq, "b"), "k"), PutOp((uniq, "b"), "k", {"v": 1}), GetOp((uniq, "b"), "k")])
        updated = s.get((uniq, "b"), "k").value
        results[name] = (
            (got.namespace, got.key, got.value), missing, every, under, facts, ranged, page, after,
            namespaces, shallow, suffixed, [b.value if b else None for b in batch], updated,
        )
    assert results["ctxstore"] == results["memory"]
    _, _, every, under, *_ = results["ctxstore"]
    assert len(every) == 5 and len(under) == 4, "('a', 'memoriesX') is not under ('a', 'memories')"


def test_created_at_stays_and_updated_at_moves(store, uniq):
    store.put((uniq,), "k", {"v": 1})
    first = store.get((uniq,), "k")
    store.put((uniq,), "k", {"v": 2})
    second = store.get((uniq,), "k")
    assert second.created_at == first.created_at and second.updated_at > first.updated_at
    assert second.value == {"v": 2}


def test_bad_names_are_typed_errors(store, uniq):
    with pytest.raises(ctxstore.InvalidArgumentError):
        store.put((uniq, "bad\x01label"), "k", {"v": 1})
    with pytest.raises(ctxstore.InvalidArgumentError):
        store.put((uniq,), "bad\x1ekey", {"v": 1})
    assert store.search((uniq,)) == []


async def test_async_store(store, uniq):
    await store.aput((uniq, "x"), "k", {"v": 1})
    assert (await store.aget((uniq, "x"), "k")).value == {"v": 1}
    assert [i.key for i in await store.asearch((uniq,))] == ["k"]
    await store.adelete((uniq, "x"), "k")
    assert await store.aget((uniq, "x"), "k") is None


def test_items_expire_with_their_ttl(store, uniq):
    from conftest import wait_until

    store.put((uniq,), "short", {"v": 1}, ttl=0.02)  # minutes: 1.2 s
    store.put((uniq,), "long", {"v": 2})
    # The record carries its expiry (read raw: the check holds however slow the run).
    raw = store.client.get(_store_key((uniq,), "short"))
    assert raw is None or raw.expires_at_ms > 0
    assert store.client.get(_store_key((uniq,), "long")).expires_at_ms == 0
    wait_until("the item to expire", lambda: store.get((uniq,), "short", refresh_ttl=False) is None, timeout=30)
    assert [i.key for i in store.search((uniq,))] == ["long"]


def test_a_read_does_not_undo_a_newer_write(store, uniq):
    """A read refreshes the TTL only of the record it read: a write that came in
    between is kept, not replaced by the value read."""
    store.put((uniq,), "k", {"v": 1}, ttl=10)
    old = store.client.get(_store_key((uniq,), "k"))
    store.put((uniq,), "k", {"v": 2}, ttl=10)
    store._touch(old, 10)
    assert store.get((uniq,), "k").value == {"v": 2}
