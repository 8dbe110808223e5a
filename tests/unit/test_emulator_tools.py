"""The emulator's deterministic tool calls (OpenAI chat completions and Anthropic messages),
checked with the installed SDK types and with unbatched LangChain agents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import Message, ToolUseBlock
from langchain.agents import create_agent
from langchain_anthropic import ChatAnthropic
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from openai.types.chat import ChatCompletion

from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.testing._anthropic_synth import synthesize_message
from batch_bridge.testing._synth import synthesize, tool_arguments

CHAT = "/v1/chat/completions"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer"},
        "metric": {"type": "boolean"},
        "unit": {"enum": ["celsius", "fahrenheit"]},
        "note": {"anyOf": [{"type": "null"}, {"type": "string"}]},
        "where": {
            "type": "object",
            "properties": {"lat": {"type": "number"}, "name": {"type": "string"}},
            "required": ["lat"],
        },
        "optional": {"type": "string"},
    },
    "required": ["city", "days", "metric", "unit", "note", "where"],
}
ARGUMENTS = {
    "city": "Oslo?",
    "days": 1,
    "metric": True,
    "unit": "celsius",
    "note": "Oslo?",
    "where": {"lat": 1},
}


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(in_progress_s=0.1)) as running:
        yield running


def openai_tools(*names: str) -> Any:
    return [
        {"type": "function", "function": {"name": name, "parameters": SCHEMA}} for name in names
    ]


def anthropic_tools(*names: str) -> Any:
    return [{"name": name, "input_schema": SCHEMA} for name in names]


def test_arguments_follow_the_schema() -> None:
    assert tool_arguments(SCHEMA, "Oslo?") == ARGUMENTS
    assert tool_arguments({"type": "object", "properties": {"a": {}}}, "x") == {}
    assert tool_arguments(None, "x") == {}


async def test_openai_calls_the_first_tool_then_echoes_its_result(server: EmulatorServer) -> None:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="t", max_retries=0) as client:
        user: Any = {"role": "user", "content": "Oslo?"}
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[user], tools=openai_tools("weather", "other")
        )
        completion = ChatCompletion.model_validate(json.loads(raw.text))
        choice = completion.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        (call,) = choice.message.tool_calls or []
        assert call.type == "function" and call.id.startswith("call_")
        assert call.function.name == "weather"
        assert json.loads(call.function.arguments) == ARGUMENTS

        answered: Any = [
            user,
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny"},
        ]
        final = await client.chat.completions.create(
            model="gpt-4o-mini", messages=answered, tools=openai_tools("weather")
        )
        assert final.choices[0].finish_reason == "stop"
        assert final.choices[0].message.content == "Echo: Sunny"
        assert final.choices[0].message.tool_calls is None


def test_openai_tool_choice_is_followed() -> None:
    body: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": "Oslo?"}],
        "tools": openai_tools("first", "second"),
    }
    named = {"type": "function", "function": {"name": "second"}}
    _, reply = synthesize(CHAT, {**body, "tool_choice": named})
    assert reply["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "second"
    _, reply = synthesize(CHAT, {**body, "tool_choice": "none"})
    assert reply["choices"][0]["message"]["content"] == "Echo: Oslo?"
    assert reply["choices"][0]["finish_reason"] == "stop"


def test_openai_same_request_same_tool_call_batched_or_not() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "Oslo?"}],
        "tools": openai_tools("weather"),
    }
    _, sync = synthesize(CHAT, body)
    _, line = synthesize(CHAT, body, key="bb-0")
    _, again = synthesize(CHAT, {**body, "stream": False}, key="bb-7")
    message = sync["choices"][0]["message"]
    assert message == line["choices"][0]["message"] == again["choices"][0]["message"]
    _, other = synthesize(CHAT, {**body, "messages": [{"role": "user", "content": "Rome?"}]})
    assert message["tool_calls"][0]["id"] != other["choices"][0]["message"]["tool_calls"][0]["id"]


async def test_anthropic_calls_the_first_tool_then_echoes_its_result(
    server: EmulatorServer,
) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=server.anthropic_base_url, api_key="t", max_retries=0
    ) as client:
        user: Any = {"role": "user", "content": "Oslo?"}
        raw = await client.messages.with_raw_response.create(
            model="claude-emulated",
            max_tokens=64,
            messages=[user],
            tools=anthropic_tools("weather", "other"),
        )
        message = Message.model_validate(json.loads(raw.http_response.text))
        assert message.stop_reason == "tool_use"
        (block,) = message.content
        assert isinstance(block, ToolUseBlock) and block.id.startswith("toolu_")
        assert block.name == "weather" and block.input == ARGUMENTS

        result = {"type": "tool_result", "tool_use_id": block.id, "content": "Sunny"}
        answered: Any = [
            user,
            {"role": "assistant", "content": [block.model_dump(exclude_none=True)]},
            {"role": "user", "content": [result]},
        ]
        final = await client.messages.create(
            model="claude-emulated",
            max_tokens=64,
            messages=answered,
            tools=anthropic_tools("weather"),
        )
        assert final.stop_reason == "end_turn"
        assert [b.type for b in final.content] == ["text"]
        assert final.content[0].text == "Echo: Sunny"  # type: ignore[union-attr]


def test_anthropic_tool_choice_and_parity() -> None:
    params: dict[str, Any] = {
        "model": "m",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Oslo?"}]}],
        "tools": anthropic_tools("first", "second"),
    }
    _, sync = synthesize_message(params)
    _, row = synthesize_message(params, key="bb-3")
    assert sync["content"] == row["content"] and sync["content"][0]["name"] == "first"
    _, named = synthesize_message({**params, "tool_choice": {"type": "tool", "name": "second"}})
    assert named["content"][0]["name"] == "second"
    _, none = synthesize_message({**params, "tool_choice": {"type": "none"}})
    assert none["content"][0]["text"] == "Echo: Oslo?" and none["stop_reason"] == "end_turn"


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_an_unbatched_agent_runs_a_tool_round_trip(
    server: EmulatorServer, provider: str
) -> None:
    model = (
        ChatOpenAI(model="gpt-4o-mini", base_url=server.base_url, api_key="t")  # type: ignore[arg-type]
        if provider == "openai"
        else ChatAnthropic(model="claude-emulated", base_url=server.anthropic_base_url, api_key="t")  # type: ignore[call-arg,arg-type]
    )
    agent = create_agent(model, [get_weather])
    state = await agent.ainvoke({"messages": [{"role": "user", "content": "Paris"}]})
    messages = state["messages"]
    assert [m.type for m in messages] == ["human", "ai", "tool", "ai"]
    assert [(c["name"], c["args"]) for c in messages[1].tool_calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert messages[2].content == "Sunny in Paris"
    assert messages[2].tool_call_id == messages[1].tool_calls[0]["id"]
    assert messages[3].text == "Echo: Sunny in Paris"
