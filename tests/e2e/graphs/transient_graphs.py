"""Bridges whose provider answers 408 or 409 to retrieves, and an agent for either provider.

The adapters use SDK clients built from the environment (OPENAI_BASE_URL,
ANTHROPIC_BASE_URL), with the SDKs' own retries, as a new user's would be. One batch per
round: the bridge flushes at `max_batch_size` callers, long before `max_batch_age`.
"""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from batch_bridge import Bridge
from batch_bridge.providers.anthropic import AnthropicBatch, wrap_anthropic
from batch_bridge.providers.openai import OpenAIBatch, wrap_openai

CALLERS = 4
"""Callers per round; the test starts this many at once."""


def _bridge(name: str, provider: OpenAIBatch | AnthropicBatch) -> Bridge:
    return Bridge(
        submit=provider.submit,
        poll=provider.poll,
        release=provider.release,
        name=name,
        max_batch_size=CALLERS,
        max_batch_age=60,
        poll_interval=1,
    )


tr_openai = _bridge("tr_openai", OpenAIBatch(retry_backoff_s=0))
tr_anthropic = _bridge("tr_anthropic", AnthropicBatch(retry_backoff_s=0))


class State(TypedDict, total=False):
    text: str
    provider: str
    answer: Any


async def ask(state: State) -> State:
    text = state["text"]
    if state["provider"] == "anthropic":
        message = await wrap_anthropic(batcher="tr_anthropic").messages.create(
            model="claude-emulated", max_tokens=64, messages=[{"role": "user", "content": text}]
        )
        return {"answer": message.content[0].text}  # type: ignore[union-attr]
    completion = await wrap_openai(batcher="tr_openai").chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
    )
    return {"answer": completion.choices[0].message.content}


agent = StateGraph(State).add_node(ask).add_edge(START, "ask").compile()
