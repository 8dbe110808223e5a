"""Bridges with a deadline fallback, against an emulator whose batches never finish, and a
caller that asks through the drop-in clients with `max_wait`."""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from batch_bridge import Bridge
from batch_bridge.providers.anthropic import AnthropicBatch, wrap_anthropic
from batch_bridge.providers.openai import OpenAIBatch, wrap_openai

FAST = {"max_batch_age": 0.5, "poll_interval": 1}

_openai = OpenAIBatch(metadata={"test_bridge": "fb_openai"})
fb_openai = Bridge(
    submit=_openai.submit,
    poll=_openai.poll,
    cancel=_openai.cancel,
    release=_openai.release,
    fallback=_openai.fallback,
    name="fb_openai",
    **FAST,
)

_slow = OpenAIBatch(metadata={"test_bridge": "fb_slow"})
fb_slow = Bridge(
    submit=_slow.submit,
    poll=_slow.poll,
    fallback=_slow.fallback,
    name="fb_slow",
    max_batch_age=0.5,
    poll_interval=120,  # its next tick is far away: a short deadline must wake it
)

_anthropic = AnthropicBatch()
fb_anthropic = Bridge(
    submit=_anthropic.submit,
    poll=_anthropic.poll,
    cancel=_anthropic.cancel,
    release=_anthropic.release,
    fallback=_anthropic.fallback,
    name="fb_anthropic",
    max_wait=2,  # the bridge's default: callers below give none
    **FAST,
)


class State(TypedDict, total=False):
    text: str
    bridge: str
    max_wait: float
    answer: str
    service_tier: str | None


async def ask_openai(state: State) -> dict[str, Any]:
    client = wrap_openai(batcher=state.get("bridge", "fb_openai"), max_wait=state.get("max_wait"))
    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": state["text"]}]
    )
    return {
        "answer": completion.choices[0].message.content,
        "service_tier": completion.service_tier,
    }


async def ask_anthropic(state: State) -> dict[str, Any]:
    client = wrap_anthropic(batcher="fb_anthropic")
    message = await client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=100,
        messages=[{"role": "user", "content": state["text"]}],
    )
    return {"answer": message.content[0].text}  # type: ignore[union-attr]


openai_agent = StateGraph(State).add_node(ask_openai).add_edge(START, "ask_openai").compile()
anthropic_agent = (
    StateGraph(State).add_node(ask_anthropic).add_edge(START, "ask_anthropic").compile()
)
