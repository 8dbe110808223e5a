"""Gemini bridges against the emulator, a wrapped-client caller, and the same tool-calling
agent with and without batching.

`GeminiBatch()` and `ChatGoogleGenerativeAI` build their `google-genai` clients from the
environment (GOOGLE_GEMINI_BASE_URL, GEMINI_API_KEY), as a deployment would. Item text
markers: `[[fail]]` (a row error), `[[status:400]]`.
"""

from __future__ import annotations

from typing import Any, TypedDict

from langchain.agents import create_agent
from langchain_core.tools import tool
from langchain_google_genai import ChatGoogleGenerativeAI
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from batch_bridge import Bridge
from batch_bridge.integrations.langchain import batching_middleware
from batch_bridge.providers.gemini import GeminiBatch, wrap_gemini

MODEL = "gemini-2.5-flash"
PARITY_MODEL = "gemini-parity"
"""The agents' model: test_gemini.py counts their batch requests by it."""


def _bridge(name: str, provider: GeminiBatch) -> Bridge:
    return Bridge(
        submit=provider.submit,
        poll=provider.poll,
        release=provider.release,
        name=name,
        max_batch_age=1,
        poll_interval=0.5,
    )


gm_bridge = _bridge("gm_bridge", GeminiBatch(retry_backoff_s=0))
gm_file = _bridge("gm_file", GeminiBatch(retry_backoff_s=0, max_inline_bytes=1))


class State(TypedDict, total=False):
    text: str
    bridge: str
    answer: Any


async def ask(state: State) -> State:
    client = wrap_gemini(batcher=state.get("bridge", "gm_bridge"))
    response = await client.aio.models.generate_content(model=MODEL, contents=state["text"])
    return {"answer": response.text}


gm_ask = StateGraph(State).add_node("ask", ask).add_edge(START, "ask").compile()


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


def _agent(batcher: str | None) -> CompiledStateGraph[Any, Any, Any, Any]:
    model = ChatGoogleGenerativeAI(model=PARITY_MODEL)
    middleware = [] if batcher is None else [batching_middleware(batcher=batcher)]
    return create_agent(model, [get_weather], middleware=middleware)


gemini_agent_batched = _agent("gm_bridge")
gemini_agent_plain = _agent(None)
