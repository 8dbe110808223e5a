"""The same tool-calling agents with and without batching, against the emulator.

The emulator calls the first offered tool when the user speaks and echoes a tool's result,
so each run is two model calls: the `*_batched` graphs answer both through a bridge
(`batching_middleware`, or `batched(...).bind_tools(...)` in a plain node), the `*_plain`
ones call the provider's synchronous API. Tests compare the threads they leave.
"""

from __future__ import annotations

from typing import Any

from langchain.agents import create_agent
from langchain_anthropic import ChatAnthropic
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from batch_bridge import Bridge
from batch_bridge.integrations.langchain import batched, batching_middleware
from batch_bridge.providers.anthropic import AnthropicBatch
from batch_bridge.providers.openai import OpenAIBatch

ANTHROPIC_MODEL = "claude-parity"
"""Message Batches carry no metadata: test_agent_parity.py finds these requests by model."""


def _bridge(provider: OpenAIBatch | AnthropicBatch, name: str) -> Bridge:
    return Bridge(
        submit=provider.submit,
        poll=provider.poll,
        name=name,
        max_batch_age=0.5,
        poll_interval=0.5,
    )


parity_openai = _bridge(
    OpenAIBatch(retry_backoff_s=0, metadata={"test_bridge": "parity_openai"}), "parity_openai"
)
parity_anthropic = _bridge(AnthropicBatch(retry_backoff_s=0), "parity_anthropic")


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


def _agent(model: BaseChatModel, batcher: str | None) -> CompiledStateGraph[Any, Any, Any, Any]:
    middleware = [] if batcher is None else [batching_middleware(batcher=batcher)]
    return create_agent(model, [get_weather], middleware=middleware)


def _openai_model() -> ChatOpenAI:
    return ChatOpenAI(model="gpt-4o-mini")


def _anthropic_model() -> ChatAnthropic:
    return ChatAnthropic(model=ANTHROPIC_MODEL, max_tokens=256)  # type: ignore[call-arg]


openai_agent_batched = _agent(_openai_model(), "parity_openai")
openai_agent_plain = _agent(_openai_model(), None)
anthropic_agent_batched = _agent(_anthropic_model(), "parity_anthropic")
anthropic_agent_plain = _agent(_anthropic_model(), None)


def _tool_loop(model: Runnable[Any, Any]) -> CompiledStateGraph[Any, Any, Any, Any]:
    """A hand-written agent: a node calling the tool-bound model, and a `ToolNode`."""

    async def call(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    return (
        StateGraph(MessagesState)
        .add_node("call", call)
        .add_node("tools", ToolNode([get_weather]))
        .add_edge(START, "call")
        .add_conditional_edges("call", tools_condition)
        .add_edge("tools", "call")
        .compile()
    )


openai_bound_batched = _tool_loop(
    batched(_openai_model(), batcher="parity_openai").bind_tools([get_weather])
)
openai_bound_plain = _tool_loop(_openai_model().bind_tools([get_weather]))
