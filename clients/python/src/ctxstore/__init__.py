"""Python client of ctxstore, a sharded, Raft-replicated key/value and agent-context
store.

    import ctxstore
    with ctxstore.Client(["127.0.0.1:7000"]) as c:
        c.put("greeting", "hello")
        print(c.get("greeting").value)

:class:`Client` is synchronous, :class:`AsyncClient` (``ctxstore.aio``) is for
asyncio; both speak TLS to the nodes when given a :class:`ClientTls`. Errors are
:class:`CtxstoreError` subclasses (``ctxstore.errors``). The LangGraph checkpointer
is ``ctxstore.langgraph.CtxstoreSaver`` and the LangChain chat history
``ctxstore.langchain.CtxstoreChatMessageHistory`` (optional extras ``langgraph`` and
``langchain``). The generated protobuf modules are in ``ctxstore.pb``.
"""

from . import errors, keys, ring
from ._core import ClientTls, Options, ReadMode, Stats
from .aio import AsyncClient, AsyncLeaseKeeper, AsyncLockGuard, AsyncWatch
from .client import Client, LeaseKeeper, LockGuard, Watch
from .errors import *  # noqa: F401,F403 (the exception classes)
from .errors import __all__ as _errors_all
from .types import Check, Delete, DeleteResult, KeyValue, Lease, Message, Put, ScanResult, WriteResult

__version__ = "0.1.0"

__all__ = [
    "Client",
    "AsyncClient",
    "Watch",
    "AsyncWatch",
    "AsyncLeaseKeeper",
    "AsyncLockGuard",
    "Options",
    "ReadMode",
    "ClientTls",
    "Stats",
    "KeyValue",
    "Lease",
    "LeaseKeeper",
    "LockGuard",
    "WriteResult",
    "DeleteResult",
    "ScanResult",
    "Put",
    "Delete",
    "Check",
    "Message",
    "errors",
    "keys",
    "ring",
    *[n for n in _errors_all if n.endswith("Error")],
]
