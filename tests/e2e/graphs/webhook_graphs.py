"""Webhooks end to end: bridges that poll once at submit, then only every 10 minutes, so
any quicker answer came from the provider's webhook. `hook_hold`'s batches stay running."""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from batch_bridge import Bridge
from batch_bridge.providers.openai import OpenAIBatch, wrap_openai


def _bridge(name: str, **metadata: str) -> Bridge:
    provider = OpenAIBatch(retry_backoff_s=0, metadata={"test_bridge": name, **metadata})
    return Bridge(
        submit=provider.submit,
        poll=provider.poll,
        release=provider.release,
        name=name,
        max_batch_age=1,
        webhooks=True,
        first_poll=0,
        safety_poll=600,
    )


hook_bridge = _bridge("hook_bridge")
hook_hold = _bridge("hook_hold", emulator_in_progress_s="600")


class State(TypedDict, total=False):
    text: str
    bridge: str
    answer: Any


async def ask(state: State) -> State:
    client = wrap_openai(batcher=state.get("bridge", "hook_bridge"))
    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": state["text"]}]
    )
    return {"answer": completion.choices[0].message.content}


_builder = StateGraph(State)
_builder.add_node("ask", ask)
_builder.add_edge(START, "ask")
agent = _builder.compile()
