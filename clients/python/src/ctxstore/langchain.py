"""LangChain chat message history on a ctxstore conversation (needs the ``langchain``
extra).

    from ctxstore import Client
    from ctxstore.langchain import CtxstoreChatMessageHistory
    history = CtxstoreChatMessageHistory(Client(["127.0.0.1:7000"]), "chats", "user-42")
    history.add_user_message("hi")

Each LangChain message is one ``ChatMessage`` of the conversation: ``role`` is the
message type (``human``, ``ai``, ``system``, ``tool``...), ``content`` its text, and the
metadata key ``lc`` holds the whole message as LangChain's JSON dict, so messages come
back with their ids, tool calls and additional fields. Tool calls and their results
share the store's ``tool_call_id`` metadata, so a token-budget read
(:meth:`CtxstoreChatMessageHistory.messages_within`) never splits them; system
messages are pinned by the store.
"""

from __future__ import annotations

import json
from typing import Callable, Sequence

try:
    from langchain_core.chat_history import BaseChatMessageHistory
    from langchain_core.messages import (
        AIMessage,
        BaseMessage,
        ChatMessage as LcChatMessage,
        HumanMessage,
        SystemMessage,
        ToolMessage,
        message_to_dict,
        messages_from_dict,
    )
except ImportError as e:  # pragma: no cover
    raise ImportError("ctxstore.langchain needs langchain-core: pip install 'ctxstore[langchain]'") from e

from ._proto import context_pb2
from .aio import AsyncClient
from .client import Client

__all__ = ["CtxstoreChatMessageHistory", "approximate_tokens"]

#: Metadata key holding the LangChain message as JSON.
LC_KEY = "lc"


def _text(m: BaseMessage) -> str:
    c = m.content
    if isinstance(c, str):
        return c
    parts = []
    for p in c:
        if isinstance(p, str):
            parts.append(p)
        elif isinstance(p, dict) and isinstance(p.get("text"), str):
            parts.append(p["text"])
    return "".join(parts)


def approximate_tokens(m: BaseMessage) -> int:
    """A rough token count (characters / 4, at least 1) for messages stored without a
    tokenizer. Pass ``token_counter=`` for real counts."""
    return max(1, len(_text(m)) // 4)


def _tool_call_ids(m: BaseMessage) -> list[str]:
    if isinstance(m, ToolMessage):
        return [m.tool_call_id]
    if isinstance(m, AIMessage):
        return [tc["id"] for tc in m.tool_calls if tc.get("id")]
    return []


class CtxstoreChatMessageHistory(BaseChatMessageHistory):
    """A LangChain ``BaseChatMessageHistory`` stored in one ctxstore conversation
    (``namespace``, ``conversation_id``; 1..128 bytes each, no ``}``, and no ``/`` in
    the namespace).

    Args:
        client: sync :class:`ctxstore.Client` for the sync methods.
        async_client: :class:`ctxstore.AsyncClient` for the ``a*`` methods (without
            one they run the sync ones in a worker thread).
        token_counter: tokens of a message, stored with it for budget reads
            (default: :func:`approximate_tokens`).
        idle_ttl_ms: when set, every append sets the conversation's idle TTL.
    """

    def __init__(
        self,
        client: Client | None,
        namespace: str,
        conversation_id: str,
        *,
        async_client: AsyncClient | None = None,
        token_counter: Callable[[BaseMessage], int] = approximate_tokens,
        idle_ttl_ms: int | None = None,
    ) -> None:
        if client is None and async_client is None:
            raise ValueError("CtxstoreChatMessageHistory needs a Client or an AsyncClient")
        self.client = client
        self.async_client = async_client
        self.namespace = namespace
        self.conversation_id = conversation_id
        self.token_counter = token_counter
        self.idle_ttl_ms = idle_ttl_ms

    # ---- conversions ----

    def _to_pb(self, m: BaseMessage) -> context_pb2.ChatMessage:
        meta = {LC_KEY: json.dumps(message_to_dict(m), separators=(",", ":"))}
        ids = _tool_call_ids(m)
        if ids:
            meta["tool_call_id"] = ",".join(ids)
        role = m.role if isinstance(m, LcChatMessage) else m.type
        return context_pb2.ChatMessage(
            role=role, content=_text(m), token_count=int(self.token_counter(m)), metadata=meta
        )

    @staticmethod
    def _from_pb(m: context_pb2.ChatMessage) -> BaseMessage:
        raw = m.metadata.get(LC_KEY)
        if raw:
            return messages_from_dict([json.loads(raw)])[0]
        # Written by another client: rebuild from role and content.
        if m.role in ("human", "user"):
            return HumanMessage(content=m.content)
        if m.role in ("ai", "assistant"):
            return AIMessage(content=m.content)
        if m.role == "system":
            return SystemMessage(content=m.content)
        if m.role == "tool" and m.metadata.get("tool_call_id"):
            return ToolMessage(content=m.content, tool_call_id=m.metadata["tool_call_id"])
        return LcChatMessage(role=m.role, content=m.content)

    def _sync(self) -> Client:
        if self.client is None:
            raise RuntimeError("this history has only an AsyncClient: use the a* methods")
        return self.client

    # ---- sync ----

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """Every message, oldest first."""
        return [self._from_pb(m) for m in self._sync().read_all(self.namespace, self.conversation_id)]

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Appends messages in one atomic append."""
        if not messages:
            return
        self._sync().append(
            self.namespace, self.conversation_id, [self._to_pb(m) for m in messages], idle_ttl_ms=self.idle_ttl_ms
        )

    def clear(self) -> None:
        """Deletes the conversation."""
        self._sync().delete_conversation(self.namespace, self.conversation_id)

    def last(self, n: int) -> list[BaseMessage]:
        """The newest ``n`` messages, oldest first."""
        r = self._sync().read(self.namespace, self.conversation_id, last_n=n)
        return [self._from_pb(m) for m in r.messages]

    def messages_within(self, max_tokens: int, *, include_pinned: bool = True) -> list[BaseMessage]:
        """The newest messages whose stored token counts fit ``max_tokens`` (a tool
        call and its results are kept together; with ``include_pinned``, system and
        pinned messages come first and count against the budget), oldest first."""
        r = self._sync().read(
            self.namespace, self.conversation_id, max_tokens=max_tokens, include_pinned=include_pinned
        )
        return [self._from_pb(m) for m in r.messages]

    # ---- async ----

    async def aget_messages(self) -> list[BaseMessage]:
        if self.async_client is None:
            return await super().aget_messages()
        return [self._from_pb(m) async for m in self.async_client.read_all(self.namespace, self.conversation_id)]

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        if self.async_client is None:
            return await super().aadd_messages(messages)
        if messages:
            await self.async_client.append(
                self.namespace,
                self.conversation_id,
                [self._to_pb(m) for m in messages],
                idle_ttl_ms=self.idle_ttl_ms,
            )

    async def aclear(self) -> None:
        if self.async_client is None:
            return await super().aclear()
        await self.async_client.delete_conversation(self.namespace, self.conversation_id)

    async def amessages_within(self, max_tokens: int, *, include_pinned: bool = True) -> list[BaseMessage]:
        """Async :meth:`messages_within`."""
        if self.async_client is None:
            import asyncio

            return await asyncio.to_thread(self.messages_within, max_tokens, include_pinned=include_pinned)
        r = await self.async_client.read(
            self.namespace, self.conversation_id, max_tokens=max_tokens, include_pinned=include_pinned
        )
        return [self._from_pb(m) for m in r.messages]
