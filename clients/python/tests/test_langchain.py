"""CtxstoreChatMessageHistory: LangChain's chat history on a conversation."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_core")

from langchain_core.chat_history import InMemoryChatMessageHistory  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage  # noqa: E402

from ctxstore.langchain import CtxstoreChatMessageHistory  # noqa: E402

NS = "lc"


def _messages():
    return [
        SystemMessage(content="You are terse.", id="m0"),
        HumanMessage(content="weather in Paris?", id="m1"),
        AIMessage(content="", id="m2", tool_calls=[{"name": "weather", "args": {"city": "Paris"}, "id": "call-1"}]),
        ToolMessage(content="18C and sunny", tool_call_id="call-1", id="m3"),
        AIMessage(content=[{"type": "text", "text": "18C, sunny."}], id="m4"),
        HumanMessage(content="thanks", id="m5", additional_kwargs={"lang": "en"}),
    ]


def test_history_matches_langchains_in_memory_history(client, uniq):
    mine = CtxstoreChatMessageHistory(client, NS, uniq, token_counter=lambda m: 10)
    oracle = InMemoryChatMessageHistory()
    for h in (mine, oracle):
        h.add_user_message("hello")
        h.add_ai_message("hi there")
        h.add_messages(_messages())
    assert mine.messages == oracle.messages
    assert [m.type for m in mine.messages] == ["human", "ai", "system", "human", "ai", "tool", "ai", "human"]
    # The stored conversation is readable by any client.
    stored = client.read(NS, uniq)
    assert [(m.role, m.content) for m in stored.messages][:2] == [("human", "hello"), ("ai", "hi there")]
    assert stored.messages[4].metadata["tool_call_id"] == "call-1"
    # Budget reads keep the tool call with its result and the system message pinned.
    last = mine.messages_within(30, include_pinned=True)
    assert [m.id for m in last] == ["m0", "m4", "m5"]
    last = mine.messages_within(50, include_pinned=True)
    assert [m.id for m in last] == ["m0", "m2", "m3", "m4", "m5"]
    assert [m.id for m in mine.last(2)] == ["m4", "m5"]
    mine.clear()
    oracle.clear()
    assert mine.messages == oracle.messages == []


async def test_async_history(aclient, client, uniq):
    mine = CtxstoreChatMessageHistory(None, NS, uniq, async_client=aclient)
    await mine.aadd_messages(_messages())
    got = await mine.aget_messages()
    assert got == _messages()
    assert [m.id for m in await mine.amessages_within(1000)] == [m.id for m in _messages()]
    await mine.aclear()
    assert await mine.aget_messages() == []
    # Without an AsyncClient the async methods run the sync ones in a thread.
    sync_backed = CtxstoreChatMessageHistory(client, NS, uniq + "-s")
    await sync_backed.aadd_messages([HumanMessage(content="x")])
    assert [m.content for m in await sync_backed.aget_messages()] == ["x"]
