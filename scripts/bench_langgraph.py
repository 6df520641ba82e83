"""LangGraph steps per second with each checkpointer, one run (scripts/bench-langgraph.sh
starts the servers and calls this).

A small agent loop (model -> tools -> model, a growing message list, about 1 KiB of
state added per step) runs on WORKERS threads, each on its own thread ids, for
DURATION seconds per saver; a step is one super-step LangGraph checkpoints (a
checkpoint put plus its pending writes). Prints one JSON line per saver.

    python bench_langgraph.py --ctxstore HOST:PORT,... --postgres DSN --sqlite FILE
"""

from __future__ import annotations

import argparse
import json
import operator
import threading
import time
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict):
    messages: Annotated[list[str], operator.add]
    turns: int


PAYLOAD = "x" * 1000


def build(checkpointer, turns: int):
    def model(s: State) -> dict:
        return {"messages": [f"assistant {s['turns']}: {PAYLOAD}"], "turns": s["turns"] + 1}

    def tools(s: State) -> dict:
        return {"messages": [f"tool result {s['turns']}"]}

    def route(s: State) -> str:
        return END if s["turns"] >= turns else "tools"

    g = StateGraph(State)
    g.add_node("model", model)
    g.add_node("tools", tools)
    g.add_edge(START, "model")
    g.add_conditional_edges("model", route)
    g.add_edge("tools", "model")
    return g.compile(checkpointer=checkpointer)


def run(name: str, checkpointer, workers: int, duration: float, turns: int) -> dict:
    graph = build(checkpointer, turns)
    steps = [0] * workers
    latencies: list[list[float]] = [[] for _ in range(workers)]
    stop = time.monotonic() + duration
    errors = [0]

    def worker(w: int) -> None:
        n = 0
        while time.monotonic() < stop:
            cfg = {"configurable": {"thread_id": f"bench-{name}-{w}-{n}"}}
            n += 1
            t0 = time.monotonic()
            try:
                # Each run: one checkpoint per super-step (input, then model/tools turns).
                for _ in graph.stream({"messages": ["user: go"], "turns": 0}, cfg, stream_mode="updates"):
                    steps[w] += 1
            except Exception as e:  # counted, not hidden
                errors[0] += 1
                print(f"{name}: {e!r}", flush=True)
            latencies[w].append(time.monotonic() - t0)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    runs = sorted(x for ls in latencies for x in ls)
    p50 = runs[len(runs) // 2] * 1000 if runs else 0.0
    return {
        "saver": name,
        "workers": workers,
        "steps_per_sec": round(sum(steps) / elapsed, 1),
        "runs": len(runs),
        "run_p50_ms": round(p50, 1),
        "errors": errors[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ctxstore", required=True)
    ap.add_argument("--postgres")
    ap.add_argument("--sqlite")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--turns", type=int, default=4)
    a = ap.parse_args()

    import ctxstore
    from ctxstore.langgraph import CtxstoreSaver

    with ctxstore.Client(a.ctxstore.split(",")) as client:
        print(json.dumps(run("ctxstore", CtxstoreSaver(client), a.workers, a.duration, a.turns)), flush=True)
    if a.postgres:
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg_pool import ConnectionPool

        kwargs = {"autocommit": True, "prepare_threshold": 0}
        with ConnectionPool(a.postgres, min_size=1, max_size=a.workers, kwargs=kwargs) as pool:
            saver = PostgresSaver(pool)
            saver.setup()
            print(json.dumps(run("postgres", saver, a.workers, a.duration, a.turns)), flush=True)
    if a.sqlite:
        import sqlite3

        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(a.sqlite, check_same_thread=False)
        print(json.dumps(run("sqlite", SqliteSaver(conn), a.workers, a.duration, a.turns)), flush=True)


if __name__ == "__main__":
    main()
