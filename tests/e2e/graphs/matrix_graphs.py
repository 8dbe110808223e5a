"""One bridge per provider and the callers test_matrix.py runs against each of them.

`mx_ask` asks through the provider's drop-in client (`wrap_openai` / `wrap_anthropic` /
`wrap_gemini`); `mx_structured` asks `batched(chat model).with_structured_output(City)`, or
the plain model when `batched` is false; `mx_agent_<provider>` / `mx_plain_<provider>` are
the same tool-calling agent with and without `batching_middleware`. Every SDK client is
built from the environment the test sets (base URLs point at the emulator).
"""

from __future__ import annotations

from typing import Any, TypedDict

from langchain.agents import create_agent
from langchain_anthropic import ChatAnthropic
from langchain_core.language_models import BaseChatModel
from langchain_core.tools import tool
from langchain_google_genai import ChatGoogleGenerativeAI
from langchain_openai import ChatOpenAI
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel

from batch_bridge import Bridge
from batch_bridge.integrations.langchain import batched, batching_middleware
from batch_bridge.providers.anthropic import AnthropicBatch, wrap_anthropic
from batch_bridge.providers.gemini import GeminiBatch, wrap_gemini
from batch_bridge.providers.openai import OpenAIBatch, wrap_openai

MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-matrix", "gemini": "gemini-2.5-flash"}


mx_openai, mx_anthropic, mx_gemini = (
    Bridge(
        submit=adapter.submit,
        poll=adapter.poll,
        cancel=adapter.cancel,
        release=adapter.release,
        name=f"mx_{provider}",
        max_batch_age=0.25,
        poll_interval=0.25,
    )
    for provider, adapter in (
        ("openai", OpenAIBatch(retry_backoff_s=0)),
        ("anthropic", AnthropicBatch(retry_backoff_s=0)),
        ("gemini", GeminiBatch(retry_backoff_s=0)),
    )
)


class State(TypedDict, total=False):
    provider: str
    text: str
    batched: bool
    answer: Any


async def _ask_with(provider: str, text: str) -> str | None:
    """The provider SDK's own call, through its drop-in client."""
    batcher, model = f"mx_{provider}", MODELS[provider]
    if provider == "openai":
        completion = await wrap_openai(batcher=batcher).chat.completions.create(
            model=model, messages=[{"role": "user", "content": text}]
        )
        return completion.choices[0].message.content
    if provider == "anthropic":
        message = await wrap_anthropic(batcher=batcher).messages.create(
            model=model, max_tokens=64, messages=[{"role": "user", "content": text}]
        )
        return "".join(b.text for b in message.content if b.type == "text")
    response = await wrap_gemini(batcher=batcher).aio.models.generate_content(
        model=model, contents=text
    )
    return response.text


async def ask(state: State) -> State:
    return {"answer": await _ask_with(state["provider"], state["text"])}


mx_ask = StateGraph(State).add_node("ask", ask).add_edge(START, "ask").compile()


def chat_model(provider: str) -> BaseChatModel:
    model = MODELS[provider]
    if provider == "openai":
        return ChatOpenAI(model=model)
    if provider == "anthropic":
        return ChatAnthropic(model=model, max_tokens=256)  # type: ignore[call-arg]
    return ChatGoogleGenerativeAI(model=model)


class City(BaseModel):
    """A city and how many people live there."""

    name: str
    population: int


async def structured(state: State) -> State:
    provider = state["provider"]
    model = chat_model(provider)
    if state.get("batched", True):
        model = batched(model, batcher=f"mx_{provider}")
    answer = await model.with_structured_output(City, method="function_calling").ainvoke(
        state["text"]
    )
    assert isinstance(answer, City)
    return {"answer": answer.model_dump()}


mx_structured = StateGraph(State).add_node(structured).add_edge(START, "structured").compile()


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


def _agent(provider: str, batcher: str | None) -> CompiledStateGraph[Any, Any, Any, Any]:
    middleware = [] if batcher is None else [batching_middleware(batcher=batcher)]
    return create_agent(chat_model(provider), [get_weather], middleware=middleware)


mx_agent_openai = _agent("openai", "mx_openai")
mx_plain_openai = _agent("openai", None)
mx_agent_anthropic = _agent("anthropic", "mx_anthropic")
mx_plain_anthropic = _agent("anthropic", None)
mx_agent_gemini = _agent("gemini", "mx_gemini")
mx_plain_gemini = _agent("gemini", None)
