"""Bridges and an agent for the cost end-to-end test: OpenAI and Anthropic against the
emulator, one model priced by `Bridge(prices=)`, one by the `BATCH_BRIDGE_PRICES` file.

The agent asks its questions one per step and keeps each answer's usage as the SDK saw it,
so the test can compare the bridge's records with what the caller received.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from batch_bridge import Bridge
from batch_bridge.providers.anthropic import AnthropicBatch, wrap_anthropic
from batch_bridge.providers.openai import OpenAIBatch, wrap_openai

FAST = {"max_batch_age": 1, "poll_interval": 1}
ARGUMENT_PRICE = {"input": 1.0, "output": 2.0}

_openai = OpenAIBatch(retry_backoff_s=0, metadata={"test_bridge": "cost_oa"})
cost_oa = Bridge(
    submit=_openai.submit,
    poll=_openai.poll,
    release=_openai.release,
    name="cost_oa",
    prices={"argument-model": ARGUMENT_PRICE},
    **FAST,
)
_anthropic = AnthropicBatch(retry_backoff_s=0)
cost_an = Bridge(
    submit=_anthropic.submit,
    poll=_anthropic.poll,
    release=_anthropic.release,
    name="cost_an",
    **FAST,
)


class State(TypedDict, total=False):
    questions: list[dict[str, str]]
    """Each {"text", "model", "bridge"}: asked in order, one per step."""
    usages: Annotated[list[dict[str, Any]], operator.add]


async def ask(state: State) -> State:
    question = state["questions"][len(state.get("usages") or [])]
    model, text = question["model"], question["text"]
    if question["bridge"] == "cost_an":
        message = await wrap_anthropic(batcher="cost_an").messages.create(
            model=model, max_tokens=64, messages=[{"role": "user", "content": text}]
        )
        return {"usages": [{"model": message.model, **message.usage.model_dump()}]}
    completion = await wrap_openai(batcher="cost_oa").chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}]
    )
    assert completion.usage is not None
    return {"usages": [{"model": completion.model, **completion.usage.model_dump()}]}


def more(state: State) -> str:
    return "ask" if len(state.get("usages") or []) < len(state["questions"]) else END


agent = (
    StateGraph(State)
    .add_node(ask)
    .add_edge(START, "ask")
    .add_conditional_edges("ask", more, ["ask", END])
    .compile()
)
