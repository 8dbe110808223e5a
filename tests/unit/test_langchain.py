"""batch_bridge.integrations.langchain: batched chat models and the agent middleware.

`wait` / `wait_sync` are replaced by fakes that check the item is storable (as the real
`wait` does before interrupting) and answer with a canned provider reply.
"""

from __future__ import annotations

import builtins
import importlib
import sys
from datetime import timedelta
from typing import Any

import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from batch_bridge._wait import _check_item
from batch_bridge.integrations import langchain as lc
from batch_bridge.integrations.langchain import BatchedChatModel, batched, batching_middleware


class Weather(BaseModel):
    city: str
    degrees: int


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


def _chat_completion(message: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        "system_fingerprint": "fp_1",
    }


OPENAI_TEXT = _chat_completion({"role": "assistant", "content": "Hello there"})
OPENAI_TOOL_CALL = _chat_completion(
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    finish="tool_calls",
)
OPENAI_STRUCTURED = _chat_completion(
    {"role": "assistant", "content": '{"city": "Paris", "degrees": 21}'}
)


def _message(content: list[dict[str, Any]], stop: str = "end_turn") -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 5},
    }


ANTHROPIC_TEXT = _message([{"type": "text", "text": "Bonjour"}])
ANTHROPIC_TOOL_USE = _message(
    [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
    ],
    stop="tool_use",
)
ANTHROPIC_STRUCTURED = _message(
    [
        {
            "type": "tool_use",
            "id": "toolu_2",
            "name": "Weather",
            "input": {"city": "Oslo", "degrees": 3},
        }
    ],
    stop="tool_use",
)


class FakeBridge:
    """Stands in for `wait` and `wait_sync`: records each item, answers from a queue."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *replies: Any) -> None:
        self.replies = list(replies)
        self.items: list[Any] = []
        self.batchers: list[str] = []
        self.max_waits: list[float | None] = []
        monkeypatch.setattr(lc, "wait", self.wait)
        monkeypatch.setattr(lc, "wait_sync", self.wait_sync)

    def wait_sync(self, item: Any, *, batcher: str, max_wait: float | None = None) -> Any:
        _check_item(item)
        self.items.append(item)
        self.batchers.append(batcher)
        self.max_waits.append(max_wait)
        return self.replies.pop(0)

    async def wait(self, item: Any, *, batcher: str, max_wait: float | None = None) -> Any:
        return self.wait_sync(item, batcher=batcher, max_wait=max_wait)


def _openai() -> ChatOpenAI:
    return ChatOpenAI(model="gpt-4o-mini", api_key="sk-test")  # type: ignore[arg-type]


def _anthropic() -> ChatAnthropic:
    return ChatAnthropic(model="claude-sonnet-4-5", api_key="sk-test", max_tokens=256)  # type: ignore[call-arg,arg-type]


# -- the copy ---------------------------------------------------------------------------


def test_batched_is_a_copy_of_the_models_own_class() -> None:
    model = _openai()
    copy = batched(model, batcher="my-bridge")
    assert isinstance(copy, ChatOpenAI)
    assert isinstance(copy, BatchedChatModel)
    assert type(copy).__name__ == "BatchedChatOpenAI"
    assert copy.batcher == "my-bridge"
    assert copy.model_name == "gpt-4o-mini"
    assert copy.disable_streaming is True
    assert model.disable_streaming is False
    assert batched(copy, batcher="my-bridge") is copy
    assert batched(copy, batcher="other").batcher == "other"
    assert isinstance(batched(_anthropic()), ChatAnthropic)


def test_batched_refuses_other_models() -> None:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    with pytest.raises(TypeError, match=r"supports ChatOpenAI .* and ChatAnthropic"):
        batched(FakeListChatModel(responses=["x"]))


# -- OpenAI -----------------------------------------------------------------------------


async def test_openai_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    bridge = FakeBridge(monkeypatch, OPENAI_TEXT)
    model = batched(ChatOpenAI(model="gpt-4o-mini", api_key="sk-test", streaming=True))  # type: ignore[arg-type]
    answer = await model.ainvoke([HumanMessage("Hi")])

    [item] = bridge.items
    assert bridge.batchers == ["bridge"]
    assert item["url"] == "/v1/chat/completions"
    assert item["body"]["model"] == "gpt-4o-mini"
    assert item["body"]["messages"] == [{"role": "user", "content": "Hi"}]
    assert "stream" not in item["body"]
    assert isinstance(answer, AIMessage)
    assert answer.content == "Hello there"
    assert answer.usage_metadata is not None
    assert answer.usage_metadata["input_tokens"] == 11
    assert answer.usage_metadata["output_tokens"] == 7
    assert answer.usage_metadata["total_tokens"] == 18
    assert answer.response_metadata["id"] == "chatcmpl-1"
    assert answer.response_metadata["finish_reason"] == "stop"
    assert answer.id is not None and answer.id.startswith("lc_run-")
    assert bridge.max_waits == [None]


async def test_batched_models_and_the_middleware_carry_a_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bridge = FakeBridge(monkeypatch, OPENAI_TEXT)
    model = batched(_openai(), max_wait=timedelta(minutes=5))
    await model.ainvoke([HumanMessage("Hi")])
    assert bridge.max_waits == [300.0]
    assert batched(model, max_wait=300) is model
    assert batched(model, max_wait=60).max_wait_s == 60.0  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="max_wait must be positive"):
        batching_middleware(max_wait=0)


async def test_openai_tool_calls_survive(monkeypatch: pytest.MonkeyPatch) -> None:
    bridge = FakeBridge(monkeypatch, OPENAI_TOOL_CALL)
    model = batched(_openai()).bind_tools([get_weather], tool_choice="auto")
    answer = await model.ainvoke("Weather in Paris?")

    body = bridge.items[0]["body"]
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather"]
    assert body["tool_choice"] == "auto"
    assert isinstance(answer, AIMessage)
    assert answer.tool_calls == [
        {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1", "type": "tool_call"}
    ]


async def test_openai_same_item_as_unbatched_request() -> None:
    plain = _openai().bind_tools([get_weather])
    payload = plain.bound._get_request_payload([HumanMessage("Hi")], **plain.kwargs)  # type: ignore[attr-defined]
    payload.pop("stream")
    request = lc._openai_request(batched(_openai()), [HumanMessage("Hi")], None, dict(plain.kwargs))  # type: ignore[attr-defined]
    assert request.item == {"url": "/v1/chat/completions", "body": payload}


async def test_openai_structured_output_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    bridge = FakeBridge(monkeypatch, OPENAI_STRUCTURED)
    weather = await batched(_openai()).with_structured_output(Weather).ainvoke("Paris?")

    assert weather == Weather(city="Paris", degrees=21)
    fmt = bridge.items[0]["body"]["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Weather"
    assert fmt["json_schema"]["strict"] is True


async def test_openai_structured_output_with_function_calling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reply = _chat_completion(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "Weather", "arguments": '{"city":"Rome","degrees":30}'},
                }
            ],
        },
        finish="stop",
    )
    bridge = FakeBridge(monkeypatch, reply)
    structured = batched(_openai()).with_structured_output(
        Weather, method="function_calling", include_raw=True
    )
    out = await structured.ainvoke("Rome?")
    assert out["parsed"] == Weather(city="Rome", degrees=30)
    assert bridge.items[0]["body"]["tool_choice"]["function"]["name"] == "Weather"


def test_openai_sync_invoke_uses_wait_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    bridge = FakeBridge(monkeypatch, OPENAI_TEXT)
    answer = batched(_openai(), batcher="sync-bridge").invoke("Hi")
    assert answer.content == "Hello there"
    assert bridge.batchers == ["sync-bridge"]


def test_openai_responses_api_goes_to_responses_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    reply = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1700000000,
        "model": "gpt-4o-mini",
        "status": "completed",
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "From responses", "annotations": []}],
            }
        ],
        "usage": {
            "input_tokens": 3,
            "output_tokens": 2,
            "total_tokens": 5,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }
    bridge = FakeBridge(monkeypatch, reply)
    model = ChatOpenAI(model="gpt-4o-mini", api_key="sk-test", use_responses_api=True)  # type: ignore[arg-type]
    answer = batched(model).invoke("Hi")
    assert bridge.items[0]["url"] == "/v1/responses"
    assert "stream" not in bridge.items[0]["body"]
    assert answer.text == "From responses"
    assert answer.usage_metadata is not None and answer.usage_metadata["total_tokens"] == 5


# -- Anthropic --------------------------------------------------------------------------


async def test_anthropic_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    bridge = FakeBridge(monkeypatch, ANTHROPIC_TEXT)
    answer = await batched(_anthropic()).ainvoke("Salut")

    [item] = bridge.items
    assert item["model"] == "claude-sonnet-4-5"
    assert item["max_tokens"] == 256
    assert item["messages"] == [{"role": "user", "content": "Salut"}]
    assert "stream" not in item and "url" not in item
    assert answer.content == "Bonjour"
    assert answer.usage_metadata is not None
    assert answer.usage_metadata["input_tokens"] == 12
    assert answer.usage_metadata["output_tokens"] == 5
    assert answer.response_metadata["id"] == "msg_1"
    assert answer.id is not None and answer.id.startswith("lc_run-")


async def test_anthropic_tool_calls_survive(monkeypatch: pytest.MonkeyPatch) -> None:
    bridge = FakeBridge(monkeypatch, ANTHROPIC_TOOL_USE)
    answer = await batched(_anthropic()).bind_tools([get_weather]).ainvoke("Oslo?")

    assert [t["name"] for t in bridge.items[0]["tools"]] == ["get_weather"]
    assert isinstance(answer, AIMessage)
    assert answer.tool_calls == [
        {"name": "get_weather", "args": {"city": "Oslo"}, "id": "toolu_1", "type": "tool_call"}
    ]


async def test_anthropic_structured_output_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    bridge = FakeBridge(monkeypatch, ANTHROPIC_STRUCTURED)
    weather = await batched(_anthropic()).with_structured_output(Weather).ainvoke("Oslo?")
    assert weather == Weather(city="Oslo", degrees=3)
    assert bridge.items[0]["tool_choice"] == {"type": "tool", "name": "Weather"}


def test_anthropic_betas_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeBridge(monkeypatch)
    model = ChatAnthropic(  # type: ignore[call-arg]
        model="claude-sonnet-4-5",
        api_key="sk-test",  # type: ignore[arg-type]
        betas=["token-efficient-tools-2025-02-19"],
    )
    with pytest.raises(TypeError, match=r"betas .* cannot be sent with a batched Anthropic"):
        batched(model).invoke("Hi")


# -- streaming --------------------------------------------------------------------------


async def test_astream_yields_one_final_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    bridge = FakeBridge(monkeypatch, OPENAI_TOOL_CALL)
    model = batched(_openai()).bind_tools([get_weather])
    chunks = [chunk async for chunk in model.astream("Weather?")]
    assert len(chunks) == 1
    assert chunks[0].tool_calls[0]["args"] == {"city": "Paris"}
    assert len(bridge.items) == 1


def test_stream_yields_one_final_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeBridge(monkeypatch, ANTHROPIC_TEXT)
    chunks = list(batched(_anthropic()).stream("Salut"))
    assert [chunk.content for chunk in chunks] == ["Bonjour"]


def test_provider_streaming_path_is_refused() -> None:
    with pytest.raises(NotImplementedError, match="do not stream"):
        next(batched(_openai())._stream([HumanMessage("Hi")]))


# -- agents -----------------------------------------------------------------------------


async def test_agent_middleware_batches_each_model_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain.agents import create_agent

    bridge = FakeBridge(monkeypatch, OPENAI_TOOL_CALL, OPENAI_TEXT)
    agent = create_agent(
        _openai(), [get_weather], middleware=[batching_middleware(batcher="agent-bridge")]
    )
    state = await agent.ainvoke({"messages": [HumanMessage("Weather in Paris?")]})

    assert bridge.batchers == ["agent-bridge", "agent-bridge"]
    first, second = (item["body"] for item in bridge.items)
    assert [t["function"]["name"] for t in first["tools"]] == ["get_weather"]
    assert second["messages"][-1] == {
        "role": "tool",
        "content": "Sunny in Paris",
        "tool_call_id": "call_1",
    }
    assert [type(m).__name__ for m in state["messages"]] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ]
    assert state["messages"][-1].content == "Hello there"


def test_agent_middleware_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain.agents import create_agent

    bridge = FakeBridge(monkeypatch, ANTHROPIC_TOOL_USE, ANTHROPIC_TEXT)
    agent = create_agent(_anthropic(), [get_weather], middleware=[batching_middleware()])
    state = agent.invoke({"messages": [HumanMessage("Oslo?")]})
    assert len(bridge.items) == 2
    assert state["messages"][-1].content == "Bonjour"


# -- missing extras ---------------------------------------------------------------------


def _hide(monkeypatch: pytest.MonkeyPatch, *prefixes: str) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] in prefixes:
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "batch_bridge.integrations.langchain")
    _hide(monkeypatch, "langchain_core")
    with pytest.raises(ImportError, match=r"pip install 'batch-bridge\[langchain\]'"):
        importlib.import_module("batch_bridge.integrations.langchain")


def test_middleware_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    lc._middleware_class.cache_clear()
    _hide(monkeypatch, "langchain")
    try:
        with pytest.raises(ImportError, match=r"pip install 'batch-bridge\[langchain\]'"):
            batching_middleware()
    finally:
        lc._middleware_class.cache_clear()
