"""The graphs `bench_fallback.py` serves: an OpenAI bridge with a deadline fallback, and a
caller that notes when its answer reached it."""

from __future__ import annotations

import time
from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from batch_bridge import Bridge
from batch_bridge.providers.openai import OpenAIBatch, wrap_openai

_provider = OpenAIBatch()
fb_bridge = Bridge(
    submit=_provider.submit,
    poll=_provider.poll,
    cancel=_provider.cancel,
    release=_provider.release,
    fallback=_provider.fallback,
    max_batch_age=1,
    poll_interval=30,  # far apart: the deadline, not a poll, must wake the bridge
    name="fb_bridge",
)


class State(TypedDict, total=False):
    text: str
    max_wait: float
    service_tier: str | None
    answered_at: float


async def ask(state: State) -> dict[str, Any]:
    client = wrap_openai(batcher="fb_bridge", max_wait=state["max_wait"])
    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": state["text"]}]
    )
    return {"service_tier": completion.service_tier, "answered_at": time.time()}


fb_agent = StateGraph(State).add_node(ask).add_edge(START, "ask").compile()
