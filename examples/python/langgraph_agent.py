"""A LangGraph agent that keeps its state in ctxstore and survives the loss of a node.

The agent is a small tool-using loop with a fake model (no network, no API key): the
model asks for a tool, the tool answers, and before a "refund" tool runs the graph
stops for a human's approval (``interrupt``). The run goes like this:

1. start a 3-node cluster (``ctxd`` processes on loopback ports, data in a temp dir);
2. run the agent on a thread until it stops for approval; its checkpoints are in
   ctxstore (``CtxstoreSaver``);
3. kill the node that leads the thread's shard (SIGKILL: no goodbye);
4. resume the same thread with the approval, from a new saver and a new graph
   object, as a restarted agent process would: it continues where it stopped;
5. print the conversation and the checkpoint history, and stop the cluster.

    python examples/python/langgraph_agent.py            # ctxd from target/debug
    CTXD_BIN=path/to/ctxd python examples/python/langgraph_agent.py

Needs the package with its LangGraph extra: ``pip install "./clients/python[langgraph]"``.
"""

from __future__ import annotations

import operator
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

import ctxstore
from ctxstore import keys
from ctxstore.langgraph import CtxstoreSaver

REPO = Path(__file__).resolve().parents[2]


class State(TypedDict):
    messages: Annotated[list[str], operator.add]
    pending_tool: str


def fake_model(state: State) -> dict:
    """Asks for the lookup tool, then for a refund, then answers."""
    tools_done = sum(1 for m in state["messages"] if m.startswith("tool:"))
    if tools_done == 0:
        return {"messages": ["assistant: let me look up the order"], "pending_tool": "lookup"}
    if tools_done == 1:
        return {"messages": ["assistant: the order was damaged; I will refund it"], "pending_tool": "refund"}
    return {"messages": ["assistant: done, the refund is on its way"], "pending_tool": ""}


def tools(state: State) -> dict:
    if state["pending_tool"] == "refund":
        # A human must approve refunds: the graph stops here until resumed.
        answer = interrupt({"approve": "refund order 42?"})
        if answer != "yes":
            return {"messages": ["tool: refund refused by a human"], "pending_tool": ""}
        return {"messages": ["tool: refund of order 42 issued"], "pending_tool": ""}
    return {"messages": ["tool: order 42, delivered damaged"], "pending_tool": ""}


def route(state: State) -> str:
    return "tools" if state["pending_tool"] else END


def agent(saver: CtxstoreSaver):
    g = StateGraph(State)
    g.add_node("model", fake_model)
    g.add_node("tools", tools)
    g.add_edge(START, "model")
    g.add_conditional_edges("model", route)
    g.add_edge("tools", "model")
    return g.compile(checkpointer=saver)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(ctxd: Path, data: Path) -> tuple[list[subprocess.Popen], list[str]]:
    addrs = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    initial = ",".join(f"{i + 1}={a}" for i, a in enumerate(addrs))
    procs = []
    for i, a in enumerate(addrs):
        log = open(data / f"node{i + 1}.log", "wb")
        procs.append(
            subprocess.Popen(
                [str(ctxd), "--node-id", str(i + 1), "--listen", a, "--data-dir", str(data / f"node{i + 1}"),
                 "--initial-cluster", initial, "--initial-shards", "4"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        )
    return procs, addrs


def wait_ready(addrs: list[str], deadline: float = 60.0) -> None:
    stop = time.monotonic() + deadline
    while True:
        try:
            with ctxstore.Client(addrs, timeout=2.0) as c:
                c.put("example/ready", "1")
                return
        except ctxstore.CtxstoreError:
            if time.monotonic() > stop:
                raise
            time.sleep(0.2)


def leader_of_thread(client: ctxstore.Client, addrs: list[str], thread_id: str) -> int | None:
    """Index of the node leading the shard that holds `thread_id`."""
    client.refresh_routing()
    table = client.routing_table()
    h = keys.thread_hash(thread_id)
    for route in table.shards:
        d = route.descriptor
        if d.shard_id == 0 or not any(r.lo <= h <= r.hi for r in d.arcs):
            continue
        for i, a in enumerate(addrs):
            try:
                st = client.node_status(a, timeout=2.0)
            except ctxstore.CtxstoreError:
                continue
            if any(s.descriptor.shard_id == d.shard_id and s.role == "leader" for s in st.shards):
                return i
    return None


def main() -> int:
    ctxd = Path(os.environ.get("CTXD_BIN") or REPO / "target" / "debug" / "ctxd")
    if not ctxd.is_file():
        print(f"ctxd not found at {ctxd}: build it (cargo build --bin ctxd) or set CTXD_BIN", file=sys.stderr)
        return 2
    data = Path(tempfile.mkdtemp(prefix="ctxstore-example-"))
    procs, addrs = start_cluster(ctxd, data)
    try:
        wait_ready(addrs)
        thread = {"configurable": {"thread_id": "support-ticket-42"}}

        # An agent process runs until the graph stops for approval.
        with ctxstore.Client(addrs) as client:
            graph = agent(CtxstoreSaver(client))
            graph.invoke({"messages": ["user: my order 42 arrived broken"], "pending_tool": ""}, thread)
            waiting = graph.get_state(thread)
            print("stopped for approval:", waiting.tasks[0].interrupts[0].value)

            victim = leader_of_thread(client, addrs, "support-ticket-42")
            if victim is None:
                print("no leader found for the thread's shard", file=sys.stderr)
                return 1
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            print(f"killed node {victim + 1} ({addrs[victim]}), the leader of the thread's shard")

        # A new agent process (new client, saver and graph) resumes the thread.
        with ctxstore.Client(addrs, timeout=30.0) as client:
            graph = agent(CtxstoreSaver(client))
            result = graph.invoke(Command(resume="yes"), thread)
            print("resumed on the surviving nodes; the conversation:")
            for m in result["messages"]:
                print("  ", m)
            history = list(graph.get_state_history(thread))
            print(f"{len(history)} checkpoints in the thread's history")
            expected_end = "assistant: done, the refund is on its way"
            if result["messages"][-1] != expected_end or "tool: refund of order 42 issued" not in result["messages"]:
                print("unexpected conversation", file=sys.stderr)
                return 1
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
