"""GeminiBatch and wrap_gemini against the offline emulator's Gemini routes, over HTTP.

Every test drives the adapter the way the bridge does (submit, then poll until a result
list, swapping in each `Pending` handle) through the real `google-genai` SDK, and checks
that each item got exactly its own answer or its own error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from google import genai
from google.genai import types

from batch_bridge._prices import DEFAULT_TABLE, TokenUsage, extract_usage
from batch_bridge.errors import BatchFailedError, BatchItemError, ConfigError
from batch_bridge.providers.gemini import GeminiBatch, wrap_gemini
from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.types import Pending

MODEL = "gemini-emulated"
DEADLINE_S = 15.0
GET_BATCH = "GET /gemini/{version}/batches/{batch}"
CREATE = "POST /gemini/{version}/models/{model}:batchGenerateContent"


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    """One server per test: the knobs are server-wide (Gemini jobs carry no metadata)."""
    with EmulatorServer(Emulator(in_progress_s=0.05), port=0) as running:
        yield running


@pytest.fixture
def client(server: EmulatorServer) -> genai.Client:
    options = types.HttpOptions(base_url=server.gemini_base_url)
    return genai.Client(api_key="test", http_options=options)


def set_knobs(server: EmulatorServer, **knobs: Any) -> None:
    emulator = server.emulator
    emulator.knobs = dataclasses.replace(emulator.knobs, **knobs)


def ask(text: str, **config: Any) -> dict[str, Any]:
    contents = [{"role": "user", "parts": [{"text": text}]}]
    item: dict[str, Any] = {"model": MODEL, "contents": contents}
    return {**item, "config": config} if config else item


def echo(result: Any) -> str:
    assert isinstance(result, dict), result
    return str(types.GenerateContentResponse.model_validate(result).text)


class Run:
    """The bridge's loop around one batch, remembering every handle it was given."""

    def __init__(self, adapter: GeminiBatch) -> None:
        self.adapter = adapter
        self.handles: list[dict[str, Any]] = []

    def keep(self, handle: dict[str, Any]) -> None:
        assert json.loads(json.dumps(handle)) == handle
        self.handles.append(json.loads(json.dumps(handle)))

    async def submit(self, items: list[Any], key: str | None = None) -> dict[str, Any]:
        handle = await self.adapter.submit(items, idempotency_key=key)
        self.keep(handle)
        return handle

    async def finish(self, handle: dict[str, Any]) -> list[Any]:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            outcome = await self.adapter.poll(handle)
            if outcome is None:
                await asyncio.sleep(0.02)
            elif isinstance(outcome, Pending):
                handle = outcome.handle
                self.keep(handle)
            else:
                assert not isinstance(outcome, BaseException), outcome
                return list(outcome)
        raise AssertionError(f"batch not done within {DEADLINE_S}s: {handle}")

    async def __call__(self, items: list[Any], key: str | None = None) -> list[Any]:
        return await self.finish(await self.submit(items, key))

    @property
    def jobs(self) -> set[str]:
        return {b for h in self.handles for p in h["parts"] for b in p["batches"]}


def gemini_stats(server: EmulatorServer) -> dict[str, Any]:
    stats: dict[str, Any] = server.emulator.stats()["gemini"]
    return stats


async def test_inline_results_are_matched_by_key_and_errors_stay_with_their_item(
    client: genai.Client, server: EmulatorServer
) -> None:
    texts = [f"question {i}" for i in range(20)]
    items: list[Any] = [ask(t) for t in texts]
    items[3] = ask("boom [[fail]]")
    items[7] = ask("bad [[status:400]]")
    items.append({"model": MODEL})  # no contents: refused before submitting
    run = Run(GeminiBatch(client))

    results = await run(items)

    for index, result in enumerate(results[:20]):
        if index not in (3, 7):
            assert echo(result) == f"Echo: question {index}"
    for index, code in {3: "500", 7: "400", 20: "invalid_request"}.items():
        assert isinstance(results[index], BatchItemError), results[index]
        assert results[index].code == code
    (job,) = run.jobs
    fetched = await client.aio.batches.get(name=job)
    assert fetched.dest is not None and fetched.dest.inlined_responses is not None
    order = [(r.metadata or {})["key"] for r in fetched.dest.inlined_responses]
    assert order != sorted(order, key=lambda key: int(key.rsplit("-", 1)[1]))
    stats = gemini_stats(server)
    assert stats["files_uploaded"] == 0 and stats["batches_created"] == 1


async def test_a_large_batch_goes_as_an_uploaded_file_and_release_deletes_everything(
    client: genai.Client, server: EmulatorServer
) -> None:
    texts = [f"file question {i}" for i in range(12)]
    adapter = GeminiBatch(client, max_inline_bytes=1)
    run = Run(adapter)

    results = await run([ask(t) for t in texts] + [ask("x [[fail]]")])

    assert [echo(r) for r in results[:12]] == [f"Echo: {t}" for t in texts]
    assert isinstance(results[12], BatchItemError) and results[12].code == "500"
    stats = gemini_stats(server)
    assert stats["files_uploaded"] == 1 and stats["files"] == 2  # the requests, the responses
    await adapter.release(run.handles[-1])
    await adapter.release(run.handles[-1])  # idempotent
    stats = gemini_stats(server)
    assert stats["batches"] == 0 and stats["files"] == 0


async def test_models_get_a_job_each(client: genai.Client, server: EmulatorServer) -> None:
    items = [ask("a"), {**ask("b"), "model": "gemini-other"}, ask("c")]
    run = Run(GeminiBatch(client))

    results = await run(items)

    assert [echo(r) for r in results] == ["Echo: a", "Echo: b", "Echo: c"]
    assert len(run.jobs) == 2


async def test_expired_rows_are_resubmitted_then_fail_after_max_attempts(
    client: genai.Client, server: EmulatorServer
) -> None:
    set_knobs(server, expire_after_s=0.01, expire_completed_fraction=0.5)
    run = Run(GeminiBatch(client, max_attempts=2, retry_backoff_s=0))

    results = await run([ask(f"q{i}") for i in range(4)])

    done = [r for r in results if isinstance(r, dict)]
    failed = [r for r in results if isinstance(r, BatchFailedError)]
    assert len(done) == 3 and len(failed) == 1  # 2 in the first job, 1 of 2 resubmitted
    assert failed[0].code == "batch_expired" and "gave up after 2 attempts" in str(failed[0])
    for index, result in enumerate(results):
        if isinstance(result, dict):
            assert echo(result) == f"Echo: q{index}"
    assert sum(gemini_stats(server)["submitted"].values()) == 6


async def test_a_failed_job_is_retried_whole(client: genai.Client, server: EmulatorServer) -> None:
    server.emulator.gemini.fail_batches = 1
    run = Run(GeminiBatch(client, retry_backoff_s=0))

    results = await run([ask("one"), ask("two")])

    assert [echo(r) for r in results] == ["Echo: one", "Echo: two"]
    assert len(run.jobs) == 2
    assert gemini_stats(server)["batches_by_state"] == {"FAILED": 1, "SUCCEEDED": 1}


async def test_a_job_failing_every_attempt_fails_its_items(
    client: genai.Client, server: EmulatorServer
) -> None:
    server.emulator.gemini.fail_batches = 2
    run = Run(GeminiBatch(client, max_attempts=2, retry_backoff_s=0))

    results = await run([ask("one")])

    assert isinstance(results[0], BatchFailedError) and results[0].code == "batch_failed"


async def test_cancel_keeps_finished_rows_and_fails_the_rest(
    client: genai.Client, server: EmulatorServer
) -> None:
    set_knobs(server, in_progress_s=30, cancel_completed_fraction=0.5)
    adapter = GeminiBatch(client)
    run = Run(adapter)
    handle = await run.submit([ask(f"c{i}") for i in range(4)])

    cancelled = await adapter.cancel(handle)
    await adapter.cancel(cancelled)  # idempotent
    results = await run.finish(cancelled)

    assert sum(isinstance(r, dict) for r in results) == 2
    codes = {r.code for r in results if isinstance(r, BatchFailedError)}
    assert codes == {"batch_cancelled"}
    assert gemini_stats(server)["batches_created"] == 1


@pytest.mark.parametrize("status", [503, 429, 408, 0])
async def test_transient_poll_answers_mean_later(
    client: genai.Client, server: EmulatorServer, status: int
) -> None:
    adapter = GeminiBatch(client)
    handle = await adapter.submit([ask("patient")])
    await asyncio.sleep(0.1)
    server.emulator.add_fault(GET_BATCH, times=2, status=status)

    assert await adapter.poll(handle) is None
    assert await adapter.poll(handle) is None
    results = await Run(adapter).finish(handle)

    assert echo(results[0]) == "Echo: patient"
    assert gemini_stats(server)["batches_created"] == 1


async def test_a_404_about_a_job_resubmits_its_part(
    client: genai.Client, server: EmulatorServer
) -> None:
    adapter = GeminiBatch(client, retry_backoff_s=0)
    run = Run(adapter)
    handle = await run.submit([ask("lost")])
    job = handle["parts"][0]["batch"]
    while not (await client.aio.batches.get(name=job)).done:
        await asyncio.sleep(0.02)
    await client.aio.batches.delete(name=job)  # gone before the bridge read it: a 404

    results = await run.finish(handle)

    assert echo(results[0]) == "Echo: lost"
    assert len(run.jobs) == 2


async def test_resubmitting_with_the_same_key_adopts_the_earlier_job(
    client: genai.Client, server: EmulatorServer
) -> None:
    adapter = GeminiBatch(client)
    items = [ask("once"), ask("only")]
    first = await adapter.submit(items, idempotency_key="bb_same_key")
    # The reply to the create was lost: the retry must find the job by its display name.
    server.emulator.add_fault(CREATE, times=1, status=503, after=True)
    with pytest.raises(Exception, match="503"):
        await adapter.submit(items, idempotency_key="bb_other_key")
    second = await adapter.submit(items, idempotency_key="bb_same_key")
    third = await adapter.submit(items, idempotency_key="bb_other_key")

    assert first["parts"][0]["batch"] == second["parts"][0]["batch"]
    assert gemini_stats(server)["batches_created"] == 2
    results = await Run(adapter).finish(third)
    assert [echo(r) for r in results] == ["Echo: once", "Echo: only"]


async def test_function_calls_come_back_as_the_sdk_parses_them(client: genai.Client) -> None:
    weather = {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "OBJECT",
            "properties": {"city": {"type": "STRING"}},
            "required": ["city"],
        },
    }
    item = ask("Paris", tools=[{"function_declarations": [weather]}])
    adapter = GeminiBatch(client)

    (batched,) = await Run(adapter)([item])
    direct = await adapter.fallback(item)

    for result in (batched, direct):
        response = types.GenerateContentResponse.model_validate(result)
        (call,) = response.function_calls or []
        assert call.name == "get_weather" and call.args == {"city": "Paris"}
    assert batched["candidates"] == direct["candidates"]


async def test_fallback_answers_one_item_at_standard_price(
    client: genai.Client, server: EmulatorServer
) -> None:
    adapter = GeminiBatch(client)

    answer = await adapter.fallback(ask("now please"))
    refused = await adapter.fallback(ask("no [[status:400]]"))

    assert echo(answer) == "Echo: now please"
    assert isinstance(refused, BatchItemError) and refused.code == "400"
    assert gemini_stats(server)["batches_created"] == 0


async def test_wrap_gemini_returns_the_sdks_response(client: genai.Client) -> None:
    adapter = GeminiBatch(client)
    seen: list[Any] = []

    async def wait(item: Any, *, batcher: str) -> Any:
        seen.append(item)
        (result,) = await Run(adapter)([item])
        return result

    wrapped = wrap_gemini(client)
    wrapped._wait = wait
    config = types.GenerateContentConfig(temperature=0.5)
    response = await wrapped.aio.models.generate_content(
        model=MODEL, contents="wrapped hello", config=config
    )

    assert isinstance(response, types.GenerateContentResponse)
    assert response.text == "Echo: wrapped hello"
    assert seen == [{"model": MODEL, "contents": "wrapped hello", "config": {"temperature": 0.5}}]
    assert wrapped.aio.batches is client.aio.batches


async def test_results_carry_usage_the_price_table_reads(client: genai.Client) -> None:
    item = {**ask("what does this cost"), "model": "gemini-2.5-flash"}

    (result,) = await Run(GeminiBatch(client))([item])

    usage = types.GenerateContentResponse.model_validate(result).usage_metadata
    assert usage is not None and usage.prompt_token_count and usage.candidates_token_count
    cost = DEFAULT_TABLE.cost(result)
    assert cost is not None and cost["model"] == "gemini-2.5-flash"
    normal = (usage.prompt_token_count * 0.30 + usage.candidates_token_count * 2.50) / 1e6
    assert cost["normal_usd"] == pytest.approx(normal)
    assert cost["batch_usd"] == pytest.approx(normal / 2)


def test_gemini_usage_counts_thinking_as_output_and_cached_tokens_apart() -> None:
    usage = {
        "prompt_token_count": 100,
        "cached_content_token_count": 40,
        "candidates_token_count": 7,
        "thoughts_token_count": 5,
    }
    result = {"model_version": "gemini-2.5-flash", "usage_metadata": usage}

    assert extract_usage(result) == TokenUsage("gemini-2.5-flash", 60, 12, 40)
    assert extract_usage({"usage_metadata": {"prompt_token_count": "x"}}) is None
    assert DEFAULT_TABLE.price("gemini-2.5-pro") is None  # unpriced: never guessed


def test_bad_settings_and_vertex_clients_are_refused_when_built() -> None:
    with pytest.raises(ConfigError, match="max_inline_bytes"):
        GeminiBatch(max_inline_bytes=0)
    vertex = genai.Client(vertexai=True, project="p", location="us-central1")
    with pytest.raises(ConfigError, match="Vertex AI"):
        GeminiBatch(vertex)


async def test_a_missing_key_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="GEMINI_API_KEY"):
        await GeminiBatch().submit([ask("hello")])
