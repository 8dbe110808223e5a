"""Cancellation end to end: a bridge whose batches stay in progress until cancelled, and a
caller whose run can linger (a parallel node sleeps) after its item is recorded."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from batch_bridge import Bridge
from batch_bridge.providers.openai import OpenAIBatch, wrap_openai

_provider = OpenAIBatch(retry_backoff_s=0, metadata={"test_bridge": "cancel_hold"})
cancel_hold = Bridge(
    submit=_provider.submit,
    poll=_provider.poll,
    cancel=_provider.cancel,
    release=_provider.release,
    name="cancel_hold",
    max_batch_age=3,
    poll_interval=1,
)


class State(TypedDict, total=False):
    text: str
    linger_s: float
    answer: Any


async def ask(state: State) -> State:
    client = wrap_openai(batcher="cancel_hold")
    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": state["text"]}]
    )
    return {"answer": completion.choices[0].message.content}


async def linger(state: State) -> State:
    await asyncio.sleep(state.get("linger_s", 0))
    return {}


_builder = StateGraph(State)
_builder.add_node("ask", ask)
_builder.add_node("linger", linger)
_builder.add_edge(START, "ask")
_builder.add_edge(START, "linger")
agent = _builder.compile()
