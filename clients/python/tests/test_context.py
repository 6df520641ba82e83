"""Conversations, checkpoints and the model registry (sync and asyncio)."""

from __future__ import annotations

import asyncio

import pytest

import ctxstore
from ctxstore import Message, pb

NS = "pytest"


def texts(resp):
    return [m.content for m in resp.messages]


def test_append_read_and_sequence_rules(client, uniq):
    r = client.append(NS, uniq, [Message("user", "hello", 2), {"role": "assistant", "content": "hi!", "token_count": 3}],
                      expected_last_seq=0)
    assert (r.first_seq, r.last_seq, r.replayed) == (1, 2, False)
    with pytest.raises(ctxstore.SequenceMismatchError) as e:
        client.append(NS, uniq, [Message("user", "lost", 1)], expected_last_seq=0)
    assert (e.value.expected, e.value.actual) == (0, 2)
    assert e.value.conversation == f"{NS}/{uniq}"
    assert texts(client.read(NS, uniq)) == ["hello", "hi!"], "nothing was appended"
    r3 = client.append(NS, uniq, [Message("user", "third", 1)], expected_last_seq=2)
    assert r3.first_seq == 3
    info = client.get_conversation(NS, uniq)
    assert (info.message_count, info.token_total, info.first_seq, info.last_seq) == (3, 6, 1, 3)
    assert texts(client.read(NS, uniq, last_n=2)) == ["hi!", "third"]
    page = client.read(NS, uniq, limit=2)
    assert texts(page) == ["hello", "hi!"] and page.next_seq == 3
    assert texts(client.read(NS, uniq, limit=2, after_seq=page.next_seq - 1)) == ["third"]
    assert [m.content for m in client.read_all(NS, uniq, page=1)] == ["hello", "hi!", "third"]
    assert client.get_conversation(NS, uniq + "-none") is None


def test_idempotency_key_replays(client, uniq):
    a = client.append(NS, uniq, [Message("user", "once", 1)], idempotency_key="step-1")
    b = client.append(NS, uniq, [Message("user", "once", 1)], idempotency_key="step-1")
    assert not a.replayed and b.replayed and (a.first_seq, a.last_seq) == (b.first_seq, b.last_seq)
    assert texts(client.read(NS, uniq)) == ["once"]


def test_token_budget_trim_compact_metadata(client, uniq):
    client.append(NS, uniq, [
        Message("system", "be brief", 5),
        Message("user", "q1", 10),
        Message("assistant", "call", 10, {"tool_call_id": "t1"}),
        Message("tool", "result", 10, {"tool_call_id": "t1"}),
        Message("user", "q2", 10),
    ])
    # 25 tokens: the system message (pinned) first, then the newest units that fit;
    # the tool call and its result are one unit of 20 and do not fit after q2.
    r = client.read(NS, uniq, max_tokens=25, include_pinned=True)
    assert texts(r) == ["be brief", "q2"] and r.total_tokens == 15
    r = client.read(NS, uniq, max_tokens=35, include_pinned=True)
    assert texts(r) == ["be brief", "call", "result", "q2"]
    c = client.compact(NS, uniq, 2, 5, Message("assistant", "summary", 4), expected_last_seq=5)
    assert c.removed == 3 and c.summary_seq == 2
    assert texts(client.read(NS, uniq)) == ["be brief", "summary", "q2"]
    t = client.trim(NS, uniq, 2)
    assert t.removed == 1
    assert texts(client.read(NS, uniq)) == ["summary", "q2"]
    info = client.set_conversation_metadata(NS, uniq, {"user": "ada"}, expected_metadata_version=0)
    assert info.metadata["user"] == "ada" and info.metadata_version > 0
    with pytest.raises(ctxstore.VersionMismatchError):
        client.set_conversation_metadata(NS, uniq, {"user": "bob"}, expected_metadata_version=0)
    assert client.get_conversation(NS, uniq).metadata["user"] == "ada"
    with pytest.raises(ctxstore.NotFoundError):
        client.trim(NS, uniq + "-none", 2)
    assert client.delete_conversation(NS, uniq)
    assert client.read(NS, uniq).messages == [] and not client.delete_conversation(NS, uniq)


def test_conversation_names_are_checked(client, uniq):
    for ns, cid, field in [("a/b", "c", "conversation.namespace"), ("a", "c}", "conversation.id"),
                           ("", "c", "conversation.namespace"), ("a", "x" * 129, "conversation.id"),
                           ("a", "x\ny", "conversation.id")]:
        with pytest.raises(ctxstore.InvalidArgumentError) as e:
            client.append(ns, cid, [Message("user", "x", 1)])
        assert e.value.field == field
    with pytest.raises(ctxstore.InvalidArgumentError) as e:
        client.compact(NS, uniq, 0, 0, Message("assistant", "s", 1))


def test_list_conversations_across_shards(client, uniq):
    ns = uniq[:100].replace("/", "-")
    ids = [f"c{i:02}" for i in range(12)]
    for i in ids:
        client.append(ns, i, [Message("user", i, 1)])
    assert len({client._core.routing.shard_for_hash(ctxstore.keys.conversation_hash(ns, i)) for i in ids}) > 1
    r = client.list_conversations(ns, limit=5)
    assert [c.conversation.id for c in r.conversations] == ids[:5] and r.more
    r2 = client.list_conversations(ns, after_id="c04", limit=100)
    assert [c.conversation.id for c in r2.conversations] == ids[5:] and not r2.more


def _thread_namespace(uniq: str) -> str:
    return uniq[:100].replace("/", "-")


def test_list_threads_of_a_namespace(client, uniq):
    ns = _thread_namespace(uniq)
    ids = sorted([f"t{i:02}" for i in range(10)] + ["t}", "t/x"])
    for i in ids:
        client.put_checkpoint(i, "", pb.Checkpoint(checkpoint_id="1"), namespace=ns)
    # Another namespace's threads and a default-namespace thread are not listed.
    client.put_checkpoint("t00", "", pb.Checkpoint(checkpoint_id="1"), namespace=ns + "-other")
    client.put_checkpoint(f"{ns}/t00", "", pb.Checkpoint(checkpoint_id="1"))
    r = client.list_threads(ns, limit=5)
    assert [t.thread for t in r.threads] == ids[:5] and r.more
    assert {t.namespace for t in r.threads} == {ns} and all(t.created_at_ms > 0 for t in r.threads)
    assert client.delete_thread(ids[6], namespace=ns)
    rest = ids[5:6] + ids[7:]
    r2 = client.list_threads(ns, after_thread=ids[4], limit=100)
    assert [t.thread for t in r2.threads] == rest and not r2.more
    with pytest.raises(ctxstore.InvalidArgumentError) as e:
        client.list_threads("a/b")
    assert e.value.field == "namespace"


def test_watch_conversation(client, uniq):
    with client.watch_conversation(NS, uniq) as w:
        a = client.append(NS, uniq, [Message("user", "m1", 1), Message("user", "m2", 1)])
        client.trim(NS, uniq, 2)
        evs = [w.next(timeout=10) for _ in range(3)]
        assert [(e.seq, e.message.content if e.HasField("message") else None) for e in evs] == [
            (1, "m1"), (2, "m2"), (1, None)]
        assert evs[0].version == a.version


def _ckpt(cid: str, parent: str = "", **meta) -> pb.Checkpoint:
    return pb.Checkpoint(checkpoint_id=cid, parent_id=parent, checkpoint=b"state-" + cid.encode(),
                         metadata=meta, channel_versions={"messages": cid})


def test_checkpoints_round_trip(client, uniq):
    t = uniq
    client.put_checkpoint(t, "", _ckpt("0001", step="1"), [pb.ChannelBlob(channel="messages", version="0001", value=b"m1")])
    client.put_checkpoint(t, "", _ckpt("0002", "0001", step="2"), [pb.ChannelBlob(channel="messages", version="0002", value=b"m2")])
    client.put_checkpoint(t, "sub", _ckpt("0009"))
    w = client.put_writes(t, "", "0002", "task-a", [("messages", b"w0"), ("__error__", b"boom"), ("other", b"w1")],
                          task_path="p")
    assert w.stored == 3
    assert client.put_writes(t, "", "0002", "task-a", [("messages", b"again")]).stored == 0, "kept, not replaced"
    latest = client.get_checkpoint(t)
    assert latest.checkpoint.checkpoint_id == "0002" and latest.checkpoint.parent_id == "0001"
    assert [(b.channel, b.value) for b in latest.blobs] == [("messages", b"m2")]
    got = {(p.task_id, p.channel, p.value, p.idx) for p in latest.pending_writes}
    assert got == {("task-a", "messages", b"w0", 0), ("task-a", "other", b"w1", 2),
                   ("task-a", "__error__", b"boom", 2**32 - 1)}
    assert client.get_checkpoint(t, "", "0001").blobs[0].value == b"m1"
    assert client.get_checkpoint(t, "sub").checkpoint.checkpoint_id == "0009"
    assert [x.checkpoint.checkpoint_id for x in client.list_checkpoints(t)] == ["0002", "0001"]
    assert [x.checkpoint.checkpoint_id for x in client.list_checkpoints(t, before="0002")] == ["0001"]
    assert [x.checkpoint.checkpoint_id for x in client.list_checkpoints(t, filter={"step": "1"})] == ["0001"]
    p = client.prune_checkpoints(t, "", keep_latest=1)
    assert p.removed_checkpoints == 1
    assert [x.checkpoint.checkpoint_id for x in client.list_checkpoints(t)] == ["0002"]
    with pytest.raises(ctxstore.InvalidArgumentError) as e:
        client.prune_checkpoints(t, "")
    assert e.value.field == "keep"
    assert client.delete_thread(t)
    assert client.get_checkpoint(t) is None and client.get_checkpoint(t, "sub") is None


def test_checkpoint_limits_are_typed_errors(client, uniq):
    with pytest.raises(ctxstore.InvalidArgumentError) as e:
        client.put_checkpoint("", "", _ckpt("1"))
    assert e.value.field == "thread.thread"
    with pytest.raises(ctxstore.LimitExceededError) as e:
        client.put_checkpoint(uniq, "n" * 1025, _ckpt("1"))
    assert e.value.limit == "max-checkpoint-ns-size"
    with pytest.raises(ctxstore.InvalidArgumentError) as e:
        client.put_checkpoint(uniq, "n" * (16 * 1024 + 1), _ckpt("1"))
    assert e.value.field == "thread.ns"
    with pytest.raises(ctxstore.InvalidArgumentError) as e:
        client.put_checkpoint(uniq, "", pb.Checkpoint(checkpoint_id="c" * 129))
    assert e.value.field == "checkpoint.checkpoint_id"
    with pytest.raises(ctxstore.LimitExceededError):
        client.put_checkpoint(uniq, "", _ckpt("1"), [pb.ChannelBlob(channel="c", version="1", value=b"x" * 300_000)])
    assert client.get_checkpoint(uniq) is None, "nothing was written"


def test_models_and_watch(client, uniq):
    name = f"model-{uniq}"
    with client.watch_models() as w:
        v = client.put_model({"name": name, "provider": "acme", "context_window": 8192,
                              "input_price_per_mtok": 1.5, "metadata": {"tier": "small"}}, expected_version=0)
        with pytest.raises(ctxstore.VersionMismatchError):
            client.put_model({"name": name, "provider": "other"}, expected_version=0)
        m = client.get_model(name, consistent=True)
        assert (m.provider, m.context_window, m.input_price_per_mtok, m.metadata["tier"], m.version) == (
            "acme", 8192, 1.5, "small", v)
        assert name in [x.name for x in client.list_models(consistent=True)]
        assert client.delete_model(name) and not client.delete_model(name)
        assert client.get_model(name, consistent=True) is None
        evs = []
        while len(evs) < 2:
            e = w.next(timeout=10)
            assert e is not None, "model events"
            if e.name == name:
                evs.append(e)
        assert evs[0].version == v and evs[0].model.provider == "acme" and not evs[1].HasField("model")


async def test_async_list_threads(aclient, uniq):
    ns = _thread_namespace(uniq)
    for i in ["b", "a", "c"]:
        await aclient.put_checkpoint(i, "", pb.Checkpoint(checkpoint_id="1"), namespace=ns)
    r = await aclient.list_threads(ns, after_thread="a", limit=1)
    assert [t.thread for t in r.threads] == ["b"] and r.more


async def test_async_context_round_trips(aclient, uniq):
    r = await aclient.append(NS, uniq, [Message("user", "a", 1)], idempotency_key="k")
    again = await aclient.append(NS, uniq, [Message("user", "a", 1)], idempotency_key="k")
    assert again.replayed and again.last_seq == r.last_seq
    assert texts(await aclient.read(NS, uniq, last_n=5)) == ["a"]
    assert [m.content async for m in aclient.read_all(NS, uniq)] == ["a"]
    await aclient.put_checkpoint(uniq, "", _ckpt("0001"))
    assert (await aclient.get_checkpoint(uniq)).checkpoint.checkpoint_id == "0001"
    assert len(await aclient.list_checkpoints(uniq)) == 1
    assert await aclient.delete_thread(uniq)
    w = await aclient.watch_conversation(NS, uniq)
    async with w:
        await aclient.append(NS, uniq, [Message("user", "b", 1)])
        ev = await asyncio.wait_for(w.__anext__(), 10)
        assert ev.message.content == "b"
    lst = await aclient.list_conversations(NS, after_id=uniq[:-1], limit=1000)
    assert uniq in [c.conversation.id for c in lst.conversations]
    name = f"am-{uniq}"
    await aclient.put_model({"name": name})
    assert (await aclient.get_model(name, consistent=True)).name == name
    assert await aclient.delete_model(name)


def test_one_checkpoint_is_removed_by_id(client, uniq):
    for cid in ("0001", "0002"):
        client.put_checkpoint(uniq, "", _ckpt(cid))
    assert client.prune_checkpoints(uniq, remove_id="nope").removed_checkpoints == 0
    assert client.prune_checkpoints(uniq, remove_id="0002").removed_checkpoints == 1
    assert [t.checkpoint.checkpoint_id for t in client.list_checkpoints(uniq)] == ["0001"]
    with pytest.raises(ctxstore.InvalidArgumentError):
        client.prune_checkpoints(uniq, keep_latest=1, remove_id="0001")
