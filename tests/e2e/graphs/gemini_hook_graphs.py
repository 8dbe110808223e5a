"""Gemini webhooks end to end: a bridge that polls once at submit, then only every 10
minutes, so any quicker answer came from the Gemini webhook the emulator posts."""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from batch_bridge import Bridge
from batch_bridge.providers.gemini import GeminiBatch, wrap_gemini

provider = GeminiBatch(retry_backoff_s=0)
gm_hook = Bridge(
    submit=provider.submit,
    poll=provider.poll,
    release=provider.release,
    name="gm_hook",
    max_batch_age=1,
    webhooks=True,
    first_poll=0,
    safety_poll=600,
)


class State(TypedDict, total=False):
    text: str
    answer: Any


async def ask(state: State) -> State:
    client = wrap_gemini(batcher="gm_hook")
    response = await client.aio.models.generate_content(
        model="gemini-2.5-flash", contents=state["text"]
    )
    return {"answer": response.text}


gm_hook_ask = StateGraph(State).add_node("ask", ask).add_edge(START, "ask").compile()
