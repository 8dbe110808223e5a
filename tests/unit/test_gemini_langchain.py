"""`batched(ChatGoogleGenerativeAI(...))`: the model's own request builder and parser around
a Gemini batch, against the emulator over HTTP.

`wait` is replaced by a stand-in that sends the item through `GeminiBatch` (submit, then
poll until done), so the batched model's answer comes from a real batch job; the plain
model calls `generateContent` on the same emulator, and both answers must agree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from google import genai
from google.genai import types
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_google_genai import ChatGoogleGenerativeAI

from batch_bridge._wait import _check_item
from batch_bridge.integrations import langchain as lc
from batch_bridge.integrations.langchain import BatchedChatModel, batched
from batch_bridge.providers.gemini import GeminiBatch
from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.types import Pending

MODEL = "gemini-emulated"


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(in_progress_s=0.02), port=0) as running:
        yield running


@pytest.fixture
def adapter(server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> GeminiBatch:
    options = types.HttpOptions(base_url=server.gemini_base_url)
    batch = GeminiBatch(genai.Client(api_key="test", http_options=options))

    async def wait(item: Any, *, batcher: str, max_wait: float | None = None) -> Any:
        _check_item(item)  # storable, as the real `wait` checks before interrupting
        handle: Any = await batch.submit([item])
        while True:
            outcome = await batch.poll(handle)
            if isinstance(outcome, Pending):
                handle = outcome.handle
            elif isinstance(outcome, list):
                return outcome[0]
            else:
                await asyncio.sleep(0.02)

    monkeypatch.setattr(lc, "wait", wait)
    return batch


def _model(server: EmulatorServer) -> ChatGoogleGenerativeAI:
    return ChatGoogleGenerativeAI(  # type: ignore[call-arg]
        model=MODEL, google_api_key="test", base_url=server.gemini_base_url
    )


def test_batched_is_a_copy_of_the_models_own_class(server: EmulatorServer) -> None:
    copy = batched(_model(server), batcher="gemini")
    assert isinstance(copy, ChatGoogleGenerativeAI) and isinstance(copy, BatchedChatModel)
    assert type(copy).__name__ == "BatchedChatGoogleGenerativeAI"


async def test_text_and_tool_calls_match_the_unbatched_model(
    server: EmulatorServer, adapter: GeminiBatch
) -> None:
    plain = _model(server).bind_tools([get_weather])
    through_batch = batched(_model(server)).bind_tools([get_weather])
    question = [HumanMessage("Lisbon")]

    ours = await through_batch.ainvoke(question)
    theirs = await plain.ainvoke(question)

    assert isinstance(ours, AIMessage) and isinstance(theirs, AIMessage)
    assert ours.tool_calls == theirs.tool_calls
    assert ours.tool_calls[0]["args"] == {"city": "Lisbon"}
    assert ours.usage_metadata == theirs.usage_metadata
    answered = [
        *question,
        ours,
        ToolMessage("Sunny in Lisbon", tool_call_id=ours.tool_calls[0]["id"]),
    ]
    final = await through_batch.ainvoke(answered)
    assert final.content == (await plain.ainvoke(answered)).content == "Echo: Sunny in Lisbon"
