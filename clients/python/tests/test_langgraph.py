"""CtxstoreSaver against LangGraph's InMemorySaver (the oracle) on the same calls, sync
and async, and real compiled graphs using it."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

import pytest

pytest.importorskip("langgraph")

from langgraph.checkpoint.base import WRITES_IDX_MAP, empty_checkpoint  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.types import Command, interrupt  # noqa: E402

import ctxstore  # noqa: E402
from ctxstore import pb  # noqa: E402
from ctxstore.langgraph import CtxstoreSaver  # noqa: E402


@pytest.fixture
def saver(client):
    return CtxstoreSaver(client)


@pytest.fixture
def asaver(aclient):
    return CtxstoreSaver(async_client=aclient)


def _cfg(thread: str, ns: str | None = "", cid: str | None = None) -> dict:
    c: dict[str, Any] = {"thread_id": thread}
    if ns is not None:
        c["checkpoint_ns"] = ns
    if cid is not None:
        c["checkpoint_id"] = cid
    return {"configurable": c}


_ids = iter(range(1, 1 << 30))


def _checkpoint(values: dict, versions: dict, cid: int | None = None) -> dict:
    """A checkpoint; ``cid`` makes its id deterministic (ids sort in creation order,
    as LangGraph's uuid6 ids do)."""
    c = empty_checkpoint()
    if cid is not None:
        c["id"] = f"1ef00000-0000-6000-8000-{cid:012d}"
        c["ts"] = f"2026-01-01T00:00:{cid:02d}+00:00"
    c["channel_values"] = dict(values)
    c["channel_versions"] = dict(versions)
    c["versions_seen"] = {"node": dict(versions)}
    return c


def _norm(t) -> Any:
    """A CheckpointTuple (or list of them) as plain data to compare."""
    if t is None:
        return None
    if isinstance(t, list):
        return [_norm(x) for x in t]
    return (t.config, t.checkpoint, t.metadata, t.parent_config, t.pending_writes)


def scenario(s, thread: str) -> list:
    """The same calls on any saver (sync); what each returned."""
    out: list = []
    ns2 = "child:1234"
    c1 = _checkpoint({"a": 1, "b": ["x"]}, {"a": s.get_next_version(None, None), "b": s.get_next_version(None, None)}, cid=1)
    r1 = s.put(_cfg(thread), c1, {"source": "input", "step": -1, "parents": {}}, c1["channel_versions"])
    out.append(r1)
    va = s.get_next_version(c1["channel_versions"]["a"], None)
    c2 = _checkpoint({"a": 2, "b": ["x"]}, {**c1["channel_versions"], "a": va}, cid=2)
    r2 = s.put(r1, c2, {"source": "loop", "step": 0, "parents": {}, "writes": {"n": {"a": 2}}}, {"a": va})
    out.append(r2)
    # A channel listed in new_versions without a value (an emptied channel).
    vb = s.get_next_version(c2["channel_versions"]["b"], None)
    c3 = _checkpoint({"a": 2}, {**c2["channel_versions"], "b": vb}, cid=3)
    r3 = s.put(r2, c3, {"source": "update", "step": 1, "parents": {}}, {"b": vb})
    out.append(r3)
    c4 = _checkpoint({"z": "sub"}, {"z": s.get_next_version(None, None)}, cid=4)
    r4 = s.put(_cfg(thread, ns2), c4, {"source": "loop", "step": 0, "parents": {"": r3["configurable"]["checkpoint_id"]}},
               c4["channel_versions"])
    out.append(r4)
    s.put_writes(r2, [("a", 10), ("b", ["y"])], "task-2", "~__pregel_pull, n2")
    s.put_writes(r2, [("a", 99)], "task-1", "~__pregel_pull, n1")
    s.put_writes(r2, [("a", 11)], "task-2", "~__pregel_pull, n2")  # kept: (task-2, 0) exists
    s.put_writes(r2, [("__error__", "first")], "task-1", "~__pregel_pull, n1")
    s.put_writes(r2, [("__error__", "second"), ("__interrupt__", {"v": 1})], "task-1", "~__pregel_pull, n1")
    s.put_writes(r3, [("__scheduled__", None), ("__resume__", [1, 2])], "task-3", "")
    out.append(_norm(s.get_tuple(_cfg(thread))))
    out.append(_norm(s.get_tuple(_cfg(thread, "", r2["configurable"]["checkpoint_id"]))))
    out.append(_norm(s.get_tuple(_cfg(thread, None, r1["configurable"]["checkpoint_id"]))))
    out.append(_norm(s.get_tuple(_cfg(thread, ns2))))
    out.append(_norm(s.get_tuple(_cfg(thread, "", "1ef00000-0000-6000-8000-000000000099"))))
    out.append(_norm(s.get_tuple(_cfg(thread + "-none"))))
    out.append(_norm(list(s.list(_cfg(thread)))))
    out.append(_norm(list(s.list(_cfg(thread), limit=2))))
    out.append(_norm(list(s.list(_cfg(thread), before=r3))))
    out.append(_norm(list(s.list(_cfg(thread), filter={"source": "loop"}))))
    out.append(_norm(list(s.list(_cfg(thread), filter={"step": 1, "source": "update"}))))
    out.append(_norm(list(s.list(_cfg(thread), filter={"step": 7}))))
    out.append(_norm(list(s.list(_cfg(thread, "", r2["configurable"]["checkpoint_id"])))))
    out.append(_norm(list(s.list(_cfg(thread, ns2)))))
    out.append(_norm(list(s.list(_cfg(thread), limit=0))))
    s.delete_thread(thread)
    out.append(_norm(s.get_tuple(_cfg(thread))))
    out.append(_norm(s.get_tuple(_cfg(thread, ns2))))
    return out


async def ascenario(s, thread: str) -> list:
    """`scenario` with the async methods."""
    out: list = []
    ns2 = "child:1234"
    c1 = _checkpoint({"a": 1, "b": ["x"]}, {"a": s.get_next_version(None, None), "b": s.get_next_version(None, None)}, cid=1)
    r1 = await s.aput(_cfg(thread), c1, {"source": "input", "step": -1, "parents": {}}, c1["channel_versions"])
    out.append(r1)
    va = s.get_next_version(c1["channel_versions"]["a"], None)
    c2 = _checkpoint({"a": 2, "b": ["x"]}, {**c1["channel_versions"], "a": va}, cid=2)
    r2 = await s.aput(r1, c2, {"source": "loop", "step": 0, "parents": {}}, {"a": va})
    out.append(r2)
    c4 = _checkpoint({"z": "sub"}, {"z": s.get_next_version(None, None)}, cid=4)
    await s.aput(_cfg(thread, ns2), c4, {"source": "loop", "step": 0, "parents": {}}, c4["channel_versions"])
    await s.aput_writes(r2, [("a", 10), ("__interrupt__", "stop")], "task-2", "p2")
    await s.aput_writes(r2, [("a", 11)], "task-1", "p1")
    out.append(_norm(await s.aget_tuple(_cfg(thread))))
    out.append(_norm(await s.aget_tuple(_cfg(thread, "", r1["configurable"]["checkpoint_id"]))))
    out.append(_norm([t async for t in s.alist(_cfg(thread))]))
    out.append(_norm([t async for t in s.alist(_cfg(thread), before=r2, limit=5)]))
    out.append(_norm([t async for t in s.alist(_cfg(thread), filter={"source": "input"})]))
    out.append(_norm([t async for t in s.alist(_cfg(thread, ns2))]))
    await s.adelete_thread(thread)
    out.append(_norm(await s.aget_tuple(_cfg(thread))))
    return out


def _fix_versions(s):
    """Both savers must produce the same channel versions: make the random part of
    get_next_version deterministic."""
    counter = iter(range(1, 1 << 30))

    def next_version(current, channel):
        v = 0 if current is None else int(str(current).split(".")[0])
        return f"{v + 1:032}.{next(counter):016}"

    s.get_next_version = next_version
    return s


def test_saver_matches_in_memory_saver(saver, uniq):
    oracle = scenario(_fix_versions(InMemorySaver()), uniq)
    mine = scenario(_fix_versions(saver), uniq)
    assert len(mine) == len(oracle)
    for i, (a, b) in enumerate(zip(mine, oracle)):
        assert a == b, f"step {i} differs"
    # Spot checks that the scenario covers what it should.
    latest = oracle[4]
    assert latest[1]["channel_values"] == {"a": 2}
    pw = oracle[5][4]
    assert [w[1] for w in pw][:2] == ["__interrupt__", "__error__"], "special writes (idx -3, -1) sort first"
    assert ("task-2", "a", 10) in pw and ("task-2", "a", 11) not in pw


async def test_async_saver_matches_in_memory_saver(asaver, uniq):
    oracle = await ascenario(_fix_versions(InMemorySaver()), uniq)
    mine = await ascenario(_fix_versions(asaver), uniq)
    for i, (a, b) in enumerate(zip(mine, oracle, strict=True)):
        assert a == b, f"step {i} differs"


async def test_saver_without_async_client_runs_async_methods_in_threads(saver, uniq):
    oracle = await ascenario(_fix_versions(InMemorySaver()), uniq)
    mine = await ascenario(_fix_versions(saver), uniq)
    assert mine == oracle


def test_list_across_threads_and_delete_for_runs(saver, uniq):
    for i, run in enumerate([f"{uniq}-r1", f"{uniq}-r2", f"{uniq}-r1"]):
        c = _checkpoint({"a": i}, {"a": f"{i + 1:032}.0"}, cid=i)
        saver.put(_cfg(f"{uniq}-t{i}"), c, {"run_id": run, "step": i}, c["channel_versions"])
    # Other tests share the cluster (and write checkpoints the saver did not make):
    # look only at this test's runs.
    mine = lambda: sorted(  # noqa: E731
        (t.config["configurable"]["thread_id"], t.metadata["run_id"])
        for run in (f"{uniq}-r1", f"{uniq}-r2")
        for t in saver.list(None, filter={"run_id": run})
    )
    assert mine() == [(f"{uniq}-t0", f"{uniq}-r1"), (f"{uniq}-t1", f"{uniq}-r2"), (f"{uniq}-t2", f"{uniq}-r1")]
    only_r2 = [t.config["configurable"]["thread_id"] for t in saver.list(None, filter={"run_id": f"{uniq}-r2"})]
    assert only_r2 == [f"{uniq}-t1"]
    assert len(list(saver.list(None, filter={"run_id": f"{uniq}-r1"}, limit=1))) == 1
    saver.delete_for_runs([f"{uniq}-r1"])
    assert mine() == [(f"{uniq}-t1", f"{uniq}-r2")]
    saver.delete_for_runs([f"{uniq}-r1"])  # again: nothing left to do
    assert mine() == [(f"{uniq}-t1", f"{uniq}-r2")]


async def test_async_list_across_threads_and_delete_for_runs(saver, asaver, uniq):
    c = _checkpoint({"a": 1}, {"a": f"{1:032}.0"}, cid=1)
    saver.put(_cfg(f"{uniq}-a"), c, {"run_id": f"{uniq}-run"}, c["channel_versions"])
    found = [t async for t in asaver.alist(None, filter={"run_id": f"{uniq}-run"})]
    assert [t.config["configurable"]["thread_id"] for t in found] == [f"{uniq}-a"]
    await asaver.adelete_for_runs([f"{uniq}-run"])
    assert [t async for t in asaver.alist(None, filter={"run_id": f"{uniq}-run"})] == []


def test_json_metadata_filters_match_the_in_memory_saver(saver, uniq):
    """The server compares metadata as JSON values, as LangGraph's own savers do:
    numbers by value, nested objects and lists as wholes."""
    oracle = InMemorySaver()
    metas = [
        {"source": "input", "tags": {"a": [1, 2]}, "score": 1.0},
        {"source": "loop", "tags": {"a": [1]}, "score": 2},
        {"source": "loop", "tags": None, "score": 1},
    ]
    for cp in (oracle, saver):
        cfg = _cfg(uniq)
        for step, meta in enumerate(metas):
            c = _checkpoint({"a": step}, {"a": f"{step + 1:032}.0"}, cid=step)
            cfg = cp.put(cfg, c, {**meta, "step": step}, c["channel_versions"])
    filters = [
        {"score": 1},
        {"score": 2.0, "source": "loop"},
        {"source": "loop"},
        {"tags": {"a": [1, 2]}},
        {"tags": {"a": [1.0]}},
        {"tags": None},
        {"step": "1"},
        {"missing": 1},
    ]
    for f in filters:
        got = [t.metadata["step"] for t in saver.list(_cfg(uniq), filter=f)]
        want = [t.metadata["step"] for t in oracle.list(_cfg(uniq), filter=f)]
        assert got == want, f
    assert [t.metadata["step"] for t in saver.list(_cfg(uniq), filter={"score": 1})] == [2, 0]


def test_names_over_the_limits_are_typed_errors(saver, uniq):
    with pytest.raises(ctxstore.LimitExceededError):
        saver.put(_cfg("t" * 1025), _checkpoint({}, {}), {}, {})
    with pytest.raises(ctxstore.LimitExceededError):
        saver.put(_cfg(uniq, "n" * 1025), _checkpoint({}, {}), {}, {})
    with pytest.raises(ctxstore.InvalidArgumentError):
        saver.put(_cfg(""), _checkpoint({}, {}), {}, {})
    assert WRITES_IDX_MAP["__error__"] == -1


def _fill(cp, thread: str) -> None:
    """Two checkpoints in each of two namespaces, pending writes on the last."""
    for ns in ["", "sub:1"]:
        cfg = _cfg(thread, ns)
        for step in range(2):
            c = _checkpoint({"a": step}, {"a": f"{step + 1:032}.0"}, cid=10 * len(ns) + step)
            cfg = cp.put(cfg, c, {"step": step}, c["channel_versions"])
        cp.put_writes(cfg, [("a", 5), ("__error__", "boom")], "task-1")


def _seen(cp, thread: str) -> list:
    return sorted(
        (
            t.config["configurable"]["checkpoint_ns"],
            t.metadata["step"],
            t.checkpoint["channel_values"],
            sorted(t.pending_writes),
        )
        for t in cp.list({"configurable": {"thread_id": thread}})
    )


def test_list_copy_and_prune_find_the_threads_namespaces(saver, uniq):
    oracle = InMemorySaver()
    _fill(oracle, uniq)
    _fill(saver, uniq)
    # list without checkpoint_ns: every namespace, as LangGraph's saver does.
    everything = _seen(saver, uniq)
    assert everything == _seen(oracle, uniq) and len(everything) == 4
    assert len(list(saver.list({"configurable": {"thread_id": uniq}}, limit=3))) == 3
    # copy_thread: the same checkpoints, values and writes under the new thread.
    saver.copy_thread(uniq, uniq + "-copy")
    assert _seen(saver, uniq + "-copy") == everything
    saver.copy_thread(uniq, uniq + "-copy")  # again: the same records
    assert _seen(saver, uniq + "-copy") == everything
    # prune without namespaces: the newest checkpoint of each namespace stays.
    saver.prune([uniq])
    assert [(ns, step) for ns, step, _, _ in _seen(saver, uniq)] == [("", 1), ("sub:1", 1)]
    assert len(_seen(saver, uniq + "-copy")) == 4


async def test_async_copy_and_prune(saver, asaver, uniq):
    _fill(saver, uniq)
    await asaver.acopy_thread(uniq, uniq + "-copy")
    assert _seen(saver, uniq + "-copy") == _seen(saver, uniq)
    await asaver.aprune([uniq])
    assert len(_seen(saver, uniq)) == 2


def test_prune_with_namespaces_and_delete(saver, uniq):
    cfg = _cfg(uniq)
    for step in range(3):
        c = _checkpoint({"a": step}, {"a": saver.get_next_version(None, None)})
        cfg = saver.put(cfg, c, {"step": step}, c["channel_versions"])
    saver.prune([uniq], strategy="keep_latest", namespaces=[""])
    left = list(saver.list(_cfg(uniq)))
    assert [t.metadata["step"] for t in left] == [2] and left[0].checkpoint["channel_values"] == {"a": 2}
    saver.prune([uniq], strategy="delete")
    assert saver.get_tuple(_cfg(uniq)) is None


# ---- real graphs ----


class State(TypedDict):
    log: Annotated[list[str], operator.add]
    n: int


def _graph(checkpointer, with_interrupt: bool = False):
    def step_a(s: State) -> dict:
        return {"log": ["a"], "n": s.get("n", 0) + 1}

    def step_b(s: State) -> dict:
        if with_interrupt:
            answer = interrupt({"question": "approve?", "n": s["n"]})
            return {"log": [f"b:{answer}"]}
        return {"log": ["b"], "n": s["n"] * 10}

    g = StateGraph(State)
    g.add_node("a", step_a)
    g.add_node("b", step_b)
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", END)
    return g.compile(checkpointer=checkpointer)


def _history(graph, config) -> list:
    return [(s.values, s.next, s.metadata.get("step"), s.metadata.get("source")) for s in graph.get_state_history(config)]


def test_graph_history_update_state_and_time_travel(saver, uniq):
    results = {}
    for name, cp in [("memory", InMemorySaver()), ("ctxstore", saver)]:
        graph = _graph(cp)
        cfg = {"configurable": {"thread_id": f"{uniq}-{name}"}}
        r1 = graph.invoke({"log": ["start"], "n": 1}, cfg)
        r2 = graph.invoke({"log": ["again"]}, cfg)
        graph.update_state(cfg, {"log": ["edited"], "n": 7})
        state = graph.get_state(cfg)
        hist = _history(graph, cfg)
        # Time travel: replay from the checkpoint before node "b" of the first run.
        before_b = next(s for s in graph.get_state_history(cfg) if s.next == ("b",) and "again" not in s.values["log"])
        forked = graph.invoke(None, before_b.config)
        results[name] = (r1, r2, state.values, state.next, hist, forked, len(list(graph.get_state_history(cfg))))
    assert results["ctxstore"] == results["memory"]
    r1, r2, values, _, hist, forked, n_after = results["ctxstore"]
    assert r1 == {"log": ["start", "a", "b"], "n": 20}
    assert values["log"][-1] == "edited" and values["n"] == 7
    assert forked["log"] == ["start", "a", "b"] and n_after > len(hist)


def test_graph_interrupt_and_resume(saver, uniq):
    results = {}
    for name, cp in [("memory", InMemorySaver()), ("ctxstore", saver)]:
        graph = _graph(cp, with_interrupt=True)
        cfg = {"configurable": {"thread_id": f"{uniq}-{name}"}}
        first = graph.invoke({"log": ["go"], "n": 1}, cfg)
        st = graph.get_state(cfg)
        pending = [(i.value) for t in st.tasks for i in t.interrupts]
        resumed = graph.invoke(Command(resume="yes"), cfg)
        results[name] = (first.get("log"), st.next, pending, resumed, graph.get_state(cfg).next)
    assert results["ctxstore"] == results["memory"]
    _, nxt, pending, resumed, final_next = results["ctxstore"]
    assert nxt == ("b",) and pending == [{"question": "approve?", "n": 2}]
    assert resumed["log"] == ["go", "a", "b:yes"] and final_next == ()


def _nested(depth: int, checkpointer):
    """A graph whose node runs a subgraph, `depth` levels deep; the innermost level
    interrupts once."""

    def leaf(s: State) -> dict:
        answer = interrupt("inner?")
        return {"log": [f"leaf:{answer}"]}

    g = StateGraph(State)
    g.add_node("leaf", leaf)
    g.add_edge(START, "leaf")
    inner = g.compile()
    for level in range(depth - 1):
        outer = StateGraph(State)
        outer.add_node(f"level{level}", inner)
        outer.add_edge(START, f"level{level}")
        inner = outer.compile(checkpointer=checkpointer) if level == depth - 2 else outer.compile()
    return inner


def test_graph_with_subgraphs_within_the_namespace_limit(saver, uniq):
    results = {}
    for name, cp in [("memory", InMemorySaver()), ("ctxstore", saver)]:
        graph = _nested(3, cp)
        cfg = {"configurable": {"thread_id": f"{uniq}-{name}"}}
        graph.invoke({"log": ["x"], "n": 0}, cfg)
        st = graph.get_state(cfg, subgraphs=True)
        inner_ns = st.tasks[0].state.tasks[0].state.config["configurable"]["checkpoint_ns"]
        resumed = graph.invoke(Command(resume="ok"), cfg)
        results[name] = (len(inner_ns.encode()) <= 128, inner_ns.count("|"), resumed)
    assert results["ctxstore"] == results["memory"]
    assert results["ctxstore"][2]["log"][-1] == "leaf:ok" and results["ctxstore"][1] == 1


def test_graph_with_subgraphs_nested_four_deep(saver, uniq):
    results = {}
    for name, cp in [("memory", InMemorySaver()), ("ctxstore", saver)]:
        graph = _nested(5, cp)  # the root graph and four levels of subgraphs
        cfg = {"configurable": {"thread_id": f"{uniq}-{name}"}}
        graph.invoke({"log": ["x"], "n": 0}, cfg)
        st = graph.get_state(cfg, subgraphs=True)
        for _ in range(4):  # down to the innermost subgraph
            st = st.tasks[0].state
        inner_ns = st.config["configurable"]["checkpoint_ns"]
        history = len(list(graph.get_state_history(cfg)))
        resumed = graph.invoke(Command(resume="ok"), cfg)
        results[name] = (inner_ns.count("|"), history, resumed)
    assert results["ctxstore"] == results["memory"]
    assert results["ctxstore"][0] == 3 and results["ctxstore"][2]["log"][-1] == "leaf:ok"
    # Past the 128 bytes checkpoint namespaces were held to before.
    assert len(inner_ns.encode()) > 128


def test_thread_ids_may_hold_braces(client, uniq):
    odd, plain = f"{uniq}}}x", uniq
    client.put_checkpoint(odd, "", pb.Checkpoint(checkpoint_id="odd"))
    client.put_checkpoint(plain, "", pb.Checkpoint(checkpoint_id="plain"))
    assert client.get_checkpoint(odd).checkpoint.checkpoint_id == "odd"
    assert client.get_checkpoint(plain).checkpoint.checkpoint_id == "plain"
    assert client.delete_thread(plain)
    assert client.get_checkpoint(odd) is not None


def test_thread_ids_and_namespaces_may_hold_any_characters(saver, client, uniq):
    """Any string is a thread id or checkpoint namespace: the key layout escapes the
    bytes it uses (and the client routes the escaped name as the server does: on 4
    shards, a wrong hash would not be served)."""
    oracle = InMemorySaver()
    names = [f"{uniq}\x00a", f"{uniq}\x01b", f"{uniq}\x02}}c", f"{uniq}\x03Bd", f"{uniq}\ttab"]
    for cp in (oracle, saver):
        for i, thread in enumerate(names):
            for ns in ["", "sub\x00x", "sub\x03@"]:
                c = _checkpoint({"a": i}, {"a": f"{i + 1:032}.0"}, cid=i)
                cp.put(_cfg(thread, ns), c, {"step": i, "ns": ns}, c["channel_versions"])
    for thread in names:
        assert _seen(saver, thread) == _seen(oracle, thread), repr(thread)
        assert client.checkpoint_namespaces(thread) == ["", "sub\x00x", "sub\x03@"]
        got = saver.get_tuple(_cfg(thread, "sub\x00x"))
        assert got.config["configurable"]["thread_id"] == thread
        assert got.config["configurable"]["checkpoint_ns"] == "sub\x00x"
    saver.delete_thread(names[0])
    assert saver.get_tuple(_cfg(names[0])) is None
    assert saver.get_tuple(_cfg(names[1])) is not None


async def test_async_graph(asaver, uniq):
    graph = _graph(asaver, with_interrupt=True)
    cfg = {"configurable": {"thread_id": uniq}}
    await graph.ainvoke({"log": ["go"], "n": 1}, cfg)
    assert (await graph.aget_state(cfg)).next == ("b",)
    out = await graph.ainvoke(Command(resume="fine"), cfg)
    assert out["log"] == ["go", "a", "b:fine"]
    hist = [s async for s in graph.aget_state_history(cfg)]
    assert len(hist) >= 4 and hist[0].next == ()
