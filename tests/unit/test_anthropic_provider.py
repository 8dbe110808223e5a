"""AnthropicBatch and wrap_anthropic against the offline emulator's Anthropic routes, over HTTP.

Every test drives the adapter the way the bridge does (submit, then poll until a result
list, swapping in each `Pending` handle) through the real `anthropic` SDK, and checks that
each item got exactly its own answer or its own error.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import importlib
import json
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import pytest
from anthropic.types import Message

from batch_bridge.errors import BatchFailedError, BatchItemError, ConfigError
from batch_bridge.providers.anthropic import AnthropicBatch, BatchedAsyncAnthropic, wrap_anthropic
from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.types import Pending

MODEL = "claude-emulated"
DEADLINE_S = 15.0


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    """One server per test: knobs are server-wide (Message Batches carry no metadata)."""
    with EmulatorServer(Emulator(in_progress_s=0.05), port=0) as running:
        yield running


@pytest.fixture
async def client(server: EmulatorServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=server.anthropic_base_url, api_key="test", max_retries=0
    ) as c:
        yield c


def set_knobs(server: EmulatorServer, **knobs: Any) -> None:
    emulator = server.emulator
    emulator.knobs = dataclasses.replace(emulator.knobs, **knobs)


def ask(text: str) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": text}]}


def echo(result: Any) -> str:
    assert isinstance(result, dict), result
    message = Message.model_validate(result)
    return message.content[0].text  # type: ignore[union-attr]


def assert_plain_json(value: Any) -> None:
    assert json.loads(json.dumps(value)) == value


class Run:
    """The bridge's loop around one batch, remembering every handle it was given."""

    def __init__(self, adapter: AnthropicBatch) -> None:
        self.adapter = adapter
        self.handles: list[dict[str, Any]] = []

    async def submit(self, items: list[Any], key: str | None = None) -> dict[str, Any]:
        handle = await self.adapter.submit(items, idempotency_key=key)
        assert_plain_json(handle)
        self.handles.append(json.loads(json.dumps(handle)))
        return handle

    async def finish(self, handle: dict[str, Any]) -> list[Any]:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            outcome = await self.adapter.poll(handle)
            if outcome is None:
                await asyncio.sleep(0.02)
            elif isinstance(outcome, Pending):
                handle = outcome.handle
                assert_plain_json(handle)
                self.handles.append(json.loads(json.dumps(handle)))
            else:
                assert not isinstance(outcome, BaseException), outcome
                return list(outcome)
        raise AssertionError(f"batch not done within {DEADLINE_S}s: {handle}")

    async def __call__(self, items: list[Any], key: str | None = None) -> list[Any]:
        return await self.finish(await self.submit(items, key))

    @property
    def provider_batches(self) -> set[str]:
        return {b for h in self.handles for p in h["parts"] for b in p["batches"]}


def assert_echoes(results: list[Any], texts: list[str]) -> None:
    assert [echo(r) for r in results] == [f"Echo: {t}" for t in texts]


async def test_round_trip_matches_unordered_results_by_custom_id(
    client: anthropic.AsyncAnthropic,
) -> None:
    texts = [f"question {i}" for i in range(30)]
    run = Run(AnthropicBatch(client))

    results = await run([ask(t) for t in texts])

    assert_echoes(results, texts)
    (batch_id,) = run.provider_batches
    batch = await client.messages.batches.retrieve(batch_id)
    assert batch.processing_status == "ended" and batch.request_counts.succeeded == 30
    assert batch.results_url is not None and batch.results_url.startswith("http://")
    order = [row.custom_id async for row in await client.messages.batches.results(batch_id)]
    assert order != sorted(order, key=lambda cid: int(cid.rsplit("-", 1)[1]))
    assert batch_id in [b.id async for b in client.messages.batches.list(limit=2)]


async def test_errored_rows_and_malformed_items_fail_only_their_item(
    client: anthropic.AsyncAnthropic,
) -> None:
    items: list[Any] = [
        ask("fine 0"),
        ask("boom [[fail]]"),
        ask("bad [[status:400]]"),
        {"model": MODEL, "messages": []},  # no max_tokens: refused before submitting
        ask("fine 4"),
    ]
    run = Run(AnthropicBatch(client))

    results = await run(items)

    assert echo(results[0]) == "Echo: fine 0" and echo(results[4]) == "Echo: fine 4"
    for index, code in {1: "api_error", 2: "invalid_request_error", 3: "invalid_request"}.items():
        error = results[index]
        assert type(error) is BatchItemError, error
        assert error.code == code
        assert error.item_id is not None and error.item_id.endswith(f"-{index}")


async def test_requests_split_at_the_request_and_byte_limits(
    client: anthropic.AsyncAnthropic,
) -> None:
    texts = [f"part {i} " + "x" * 300 for i in range(7)]
    run = Run(AnthropicBatch(client, max_requests_per_batch=3))
    results = await run([ask(t) for t in texts])
    assert_echoes(results, texts)
    assert len(run.provider_batches) == 3

    by_bytes = Run(AnthropicBatch(client, max_bytes_per_batch=1000))
    assert_echoes(await by_bytes([ask(t) for t in texts]), texts)
    assert len(by_bytes.provider_batches) == 4


async def test_expired_rows_are_resubmitted_then_delivered(
    client: anthropic.AsyncAnthropic, server: EmulatorServer
) -> None:
    texts = [f"slow {i}" for i in range(20)]
    set_knobs(server, in_progress_s=5.0, expire_after_s=0.1)
    run = Run(AnthropicBatch(client))
    handle = await run.submit([ask(t) for t in texts])
    set_knobs(server, in_progress_s=0.05, expire_after_s=None)

    results = await run.finish(handle)

    assert_echoes(results, texts)
    first = await client.messages.batches.retrieve(run.handles[0]["parts"][0]["batch"])
    assert 0 < first.request_counts.expired < len(texts)
    assert first.request_counts.succeeded + first.request_counts.expired == len(texts)
    assert len(run.provider_batches) == 2
    assert run.handles[-1]["parts"][0]["params"] == []  # finished rows keep no params


async def test_expiry_past_max_attempts_fails_unfinished_items_only(
    client: anthropic.AsyncAnthropic, server: EmulatorServer
) -> None:
    texts = [f"slow {i}" for i in range(10)]
    set_knobs(server, in_progress_s=5.0, expire_after_s=0.1)

    results = await Run(AnthropicBatch(client, max_attempts=2))([ask(t) for t in texts])

    done = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert done and lost
    for index in done:
        assert echo(results[index]) == f"Echo: {texts[index]}"
    for error in lost:
        assert type(error) is BatchFailedError and error.code == "batch_expired"
        assert "gave up after 2 attempts" in str(error)


async def test_cancel_ends_the_batch_and_canceled_rows_fail_by_name(
    client: anthropic.AsyncAnthropic, server: EmulatorServer
) -> None:
    texts = [f"stop {i}" for i in range(8)]
    set_knobs(server, in_progress_s=30.0)
    adapter = AnthropicBatch(client, max_attempts=1)
    handle = await adapter.submit([ask(t) for t in texts])

    await adapter.cancel(handle)
    await adapter.cancel(handle)

    batch = await client.messages.batches.retrieve(handle["parts"][0]["batch"])
    assert batch.processing_status == "ended" and batch.cancel_initiated_at is not None
    results = await Run(adapter).finish(handle)
    codes = [r.code if isinstance(r, BatchFailedError) else "ok" for r in results]
    assert sorted(set(codes)) == ["batch_canceled", "ok"]
    for index, code in enumerate(codes):
        if code == "ok":
            assert echo(results[index]) == f"Echo: {texts[index]}"
    with pytest.raises(ValueError, match="handle"):
        await adapter.cancel({"v": 1, "kind": "openai"})


async def test_canceled_rows_are_resubmitted_within_max_attempts(
    client: anthropic.AsyncAnthropic, server: EmulatorServer
) -> None:
    texts = [f"again {i}" for i in range(8)]
    set_knobs(server, in_progress_s=30.0)
    adapter = AnthropicBatch(client)
    run = Run(adapter)
    handle = await run.submit([ask(t) for t in texts])
    await adapter.cancel(handle)
    set_knobs(server, in_progress_s=0.05)

    assert_echoes(await run.finish(handle), texts)
    assert len(run.provider_batches) == 2


async def test_the_handle_cancel_returns_resubmits_no_canceled_row(
    client: anthropic.AsyncAnthropic, server: EmulatorServer
) -> None:
    """The bridge polls what `cancel` returned: an operator's cancel is not undone."""
    texts = [f"halt {i}" for i in range(8)]
    set_knobs(server, in_progress_s=30.0)
    adapter = AnthropicBatch(client)  # attempts left
    run = Run(adapter)
    handle = await run.submit([ask(t) for t in texts])
    cancelled = await adapter.cancel(handle)
    set_knobs(server, in_progress_s=0.05)

    results = await run.finish(cancelled)
    assert len(run.provider_batches) == 1
    codes = [r.code if isinstance(r, BatchFailedError) else "ok" for r in results]
    assert sorted(set(codes)) == ["batch_canceled", "ok"]


async def test_retried_submit_with_the_same_key_is_at_least_once(
    client: anthropic.AsyncAnthropic, server: EmulatorServer
) -> None:
    """No sound lookup exists (no batch metadata; custom ids only in results after the
    end), so a retry makes a second batch: the same custom ids, one result per caller."""
    texts = [f"twice {i}" for i in range(4)]
    key = "bb_anthropic_retry1"
    adapter = AnthropicBatch(client)
    first = await adapter.submit([ask(t) for t in texts], idempotency_key=key)

    second = await adapter.submit([ask(t) for t in texts], idempotency_key=key)

    assert first["key"] == second["key"] == key
    assert first["parts"][0]["batch"] != second["parts"][0]["batch"]
    submitted = server.emulator.anthropic.stats()["submitted"]
    assert {cid: n for cid, n in submitted.items() if cid.startswith(key)} == {
        f"{key}-{i}": 2 for i in range(4)
    }
    assert_echoes(await Run(adapter).finish(second), texts)


async def test_transport_errors_poll_none_and_submit_raises(
    client: anthropic.AsyncAnthropic, server: EmulatorServer
) -> None:
    dead = anthropic.AsyncAnthropic(base_url="http://127.0.0.1:9", api_key="x", max_retries=0)
    with pytest.raises(anthropic.APIConnectionError):
        await AnthropicBatch(dead).submit([ask("never sent")])

    server.emulator.add_fault("POST /v1/messages/batches", status=503)
    with pytest.raises(anthropic.InternalServerError):
        await AnthropicBatch(client).submit([ask("refused")])

    live = Run(AnthropicBatch(client))
    handle = await live.submit([ask("survives")])
    assert await AnthropicBatch(dead).poll(handle) is None
    server.emulator.add_fault("GET /v1/messages/batches/{batch_id}", status=500)
    assert await live.adapter.poll(handle) is None
    assert_echoes(await live.finish(handle), ["survives"])


async def test_hanging_polls_are_bounded_by_timeout(
    client: anthropic.AsyncAnthropic, server: EmulatorServer
) -> None:
    set_knobs(server, hang_polls_s=3.0)
    adapter = AnthropicBatch(client, timeout_s=0.3)
    handle = await adapter.submit([ask("hang")])

    started = time.monotonic()
    assert await adapter.poll(handle) is None
    assert time.monotonic() - started < 2.0


async def test_wrapped_client_returns_the_sdk_message(client: anthropic.AsyncAnthropic) -> None:
    calls: list[tuple[Any, str]] = []

    async def fake_wait(item: Any, *, batcher: str = "bridge") -> Any:
        calls.append((item, batcher))
        (result,) = await Run(AnthropicBatch(client))([item])
        if isinstance(result, BaseException):
            raise result
        return result

    wrapped = BatchedAsyncAnthropic(client, batcher="cheap", _wait=fake_wait)

    message = await wrapped.messages.create(
        model=MODEL,
        max_tokens=32,
        messages=[{"role": "user", "content": "hi"}],
        timeout=5,
        extra_body={"temperature": 0.5},
    )

    assert isinstance(message, Message)
    assert message.content[0].text == "Echo: hi"  # type: ignore[union-attr]
    assert message.usage.output_tokens > 0
    assert calls[0] == (
        {
            "model": MODEL,
            "max_tokens": 32,
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.5,
        },
        "cheap",
    )
    with pytest.raises(BatchItemError, match="Emulated error status 404"):
        await wrapped.messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "[[status:404]]"}]
        )


async def test_wrapped_client_refuses_streams_and_delegates_the_rest(
    client: anthropic.AsyncAnthropic,
) -> None:
    async def never(item: Any, *, batcher: str = "bridge") -> Any:
        raise AssertionError("no call expected")

    wrapped = BatchedAsyncAnthropic(client, _wait=never)
    with pytest.raises(TypeError, match="stream"):
        await wrapped.messages.create(model=MODEL, max_tokens=8, messages=[], stream=True)
    assert wrapped.messages.batches is client.messages.batches
    assert wrapped.api_key == "test"
    assert isinstance(wrap_anthropic(client), BatchedAsyncAnthropic)
    plain = await wrapped.messages.with_raw_response.create(
        model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "direct"}]
    )
    assert (await plain.parse()).content[0].text == "Echo: direct"  # type: ignore[union-attr]


def test_no_api_key_needed_until_first_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert AnthropicBatch()._client is None
    assert wrap_anthropic(batcher="cheap")._client is None


@pytest.mark.parametrize(
    "options",
    [
        {"max_requests_per_batch": 0},
        {"max_bytes_per_batch": True},
        {"max_attempts": -1},
        {"retry_backoff_s": float("inf")},
        {"timeout_s": 0},
    ],
)
def test_bad_options_are_refused_by_name(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=next(iter(options))):
        AnthropicBatch(anthropic.AsyncAnthropic(api_key="x"), **options)


async def test_a_foreign_handle_fails_the_batch_clearly() -> None:
    outcome = await AnthropicBatch(anthropic.AsyncAnthropic(api_key="x")).poll({"v": 1})
    assert isinstance(outcome, BatchFailedError) and outcome.code == "bad_handle"


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_anthropic(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "anthropic" or name.startswith("anthropic."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_anthropic)
    monkeypatch.delitem(sys.modules, "batch_bridge.providers.anthropic")
    with pytest.raises(ImportError, match=r"pip install 'batch-bridge\[anthropic\]'"):
        importlib.import_module("batch_bridge.providers.anthropic")


async def test_emulator_validates_with_the_installed_types(
    client: anthropic.AsyncAnthropic,
) -> None:
    with pytest.raises(anthropic.BadRequestError, match="custom_id"):
        await client.messages.batches.create(
            requests=[{"custom_id": "has space", "params": ask("x")}]  # type: ignore[typeddict-item]
        )
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        await client.messages.create(**ask("x"), extra_body={"max_tokens": "many"})
    with pytest.raises(anthropic.BadRequestError, match="role"):
        await client.messages.create(
            model=MODEL,
            max_tokens=8,
            messages=[{"role": "bot", "content": "x"}],  # type: ignore[misc,list-item]
        )


async def test_release_deletes_the_ended_batches(client: anthropic.AsyncAnthropic) -> None:
    run = Run(AnthropicBatch(client))
    texts = [f"release {i}" for i in range(3)]
    assert_echoes(await run([ask(t) for t in texts]), texts)
    (batch_id,) = run.provider_batches

    await run.adapter.release(run.handles[-1])
    await run.adapter.release(run.handles[-1])

    with pytest.raises(anthropic.NotFoundError):
        await client.messages.batches.retrieve(batch_id)
