"""A LangChain agent whose model calls go through the bridge, against the emulator.

`lc_agent` is `create_agent(ChatOpenAI, [tool], middleware=[batching_middleware(...)])`
(the emulator calls its tool, so a run is two model calls); `lc_model` is a one-node graph
calling `batched(ChatOpenAI(...))` directly.
"""

from __future__ import annotations

from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import START, MessagesState, StateGraph

from batch_bridge import Bridge
from batch_bridge.integrations.langchain import batched, batching_middleware
from batch_bridge.providers.openai import OpenAIBatch

_provider = OpenAIBatch(retry_backoff_s=0, metadata={"test_bridge": "lc_bridge"})
lc_bridge = Bridge(
    submit=_provider.submit, poll=_provider.poll, name="lc_bridge", max_batch_age=1, poll_interval=1
)


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


lc_agent = create_agent(
    ChatOpenAI(model="gpt-4o-mini"),
    [get_weather],
    middleware=[batching_middleware(batcher="lc_bridge")],
)

_model = batched(ChatOpenAI(model="gpt-4o-mini"), batcher="lc_bridge")


async def _call(state: MessagesState) -> dict[str, Any]:
    answer = await _model.ainvoke(state["messages"])
    assert isinstance(answer, AIMessage)
    return {"messages": [answer]}


lc_model = StateGraph(MessagesState).add_node("call", _call).add_edge(START, "call").compile()
