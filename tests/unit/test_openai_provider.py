"""OpenAIBatch and wrap_openai against the offline Batch API emulator, over real HTTP.

Every test drives the adapter the way the bridge does (submit, then poll until a result
list, swapping in each `Pending` handle) through the real `openai` SDK, and checks that
each item got exactly its own answer or its own error: nothing lost, nothing swapped.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from batch_bridge.errors import (
    BatchFailedError,
    BatchItemError,
    ConfigError,
    ProviderError,
    WaitOutsideGraphError,
)
from batch_bridge.providers._packing import batch_key, custom_id, file_name, file_pattern
from batch_bridge.providers.openai import BatchedAsyncOpenAI, OpenAIBatch, wrap_openai
from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.types import Pending

MODEL = "gpt-4o-mini"
DEADLINE_S = 15.0


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    emulator = Emulator(in_progress_s=0.05)
    with EmulatorServer(emulator, port=0) as running:
        yield running


@pytest.fixture
async def client(server: EmulatorServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0) as c:
        yield c


def chat(text: str, model: str = MODEL) -> dict[str, Any]:
    return {
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": text}]},
    }


def echo(result: Any) -> str:
    assert isinstance(result, dict), result
    return result["choices"][0]["message"]["content"]


def assert_plain_json(value: Any) -> None:
    """Handles are stored by the bridge: only dicts, lists, str and int are allowed."""
    if isinstance(value, dict):
        for key, inner in value.items():
            assert isinstance(key, str)
            assert_plain_json(inner)
    elif isinstance(value, list):
        for inner in value:
            assert_plain_json(inner)
    else:
        assert type(value) in (str, int), value


class Run:
    """The bridge's loop around one batch, remembering every handle it was given."""

    def __init__(self, adapter: OpenAIBatch) -> None:
        self.adapter = adapter
        self.handles: list[dict[str, Any]] = []
        self.nones = 0

    async def submit(self, items: list[Any]) -> dict[str, Any]:
        handle = await self.adapter.submit(items)
        assert_plain_json(handle)
        self.handles.append(json.loads(json.dumps(handle)))
        return handle

    async def finish(self, handle: dict[str, Any]) -> list[Any]:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            outcome = await self.adapter.poll(handle)
            if outcome is None:
                self.nones += 1
                await asyncio.sleep(0.02)
            elif isinstance(outcome, Pending):
                handle = outcome.handle
                assert_plain_json(handle)
                self.handles.append(json.loads(json.dumps(handle)))
            else:
                assert not isinstance(outcome, BaseException), outcome
                return list(outcome)
        raise AssertionError(f"batch not done within {DEADLINE_S}s: {handle}")

    async def __call__(self, items: list[Any]) -> list[Any]:
        return await self.finish(await self.submit(items))

    @property
    def provider_batches(self) -> set[str]:
        return {b for h in self.handles for p in h["parts"] for b in p["batches"]}


def assert_echoes(results: list[Any], texts: list[str]) -> None:
    assert len(results) == len(texts)
    assert [echo(r) for r in results] == [f"Echo: {t}" for t in texts]


async def test_out_of_order_output_is_matched_by_custom_id(client: openai.AsyncOpenAI) -> None:
    texts = [f"question {i}" for i in range(40)]
    run = Run(OpenAIBatch(client))

    results = await run([chat(t) for t in texts])

    assert_echoes(results, texts)
    (batch_id,) = run.provider_batches
    batch = await client.batches.retrieve(batch_id)
    assert batch.output_file_id is not None
    output = (await client.files.content(batch.output_file_id)).text.splitlines()
    order = [json.loads(line)["custom_id"] for line in output]
    assert order != sorted(order, key=lambda cid: int(cid.rsplit("-", 1)[1]))


async def test_line_errors_and_error_statuses_fail_only_their_item(
    client: openai.AsyncOpenAI,
) -> None:
    texts = [
        "fine 0",
        "boom [[fail]]",
        "fine 2",
        "bad [[status:400]]",
        "fine 4",
        "x [[status:503]]",
    ]
    run = Run(OpenAIBatch(client))

    results = await run([chat(t) for t in texts])

    for index in (0, 2, 4):
        assert echo(results[index]) == f"Echo: {texts[index]}"
    failed = {1: "server_error", 3: "invalid_request_error", 5: "server_error"}
    for index, code in failed.items():
        error = results[index]
        assert type(error) is BatchItemError, error
        assert error.code == code
        assert error.item_id is not None and error.item_id.endswith(f"-{index}")
        assert str(error)


async def test_expired_batch_delivers_finished_rows_and_resubmits_the_rest(
    client: openai.AsyncOpenAI,
) -> None:
    texts = [f"slow {i}" for i in range(20)]
    adapter = OpenAIBatch(
        client,
        metadata={"emulator_in_progress_s": "5", "emulator_expire_after_s": "0.1"},
    )
    run = Run(adapter)
    handle = await run.submit([chat(t) for t in texts])
    adapter.metadata = {}

    results = await run.finish(handle)

    assert_echoes(results, texts)
    first = await client.batches.retrieve(run.handles[0]["parts"][0]["batch"])
    assert first.status == "expired"
    assert 0 < first.request_counts.completed < len(texts)  # type: ignore[union-attr]
    assert len(run.provider_batches) == 2


async def test_expiry_past_max_attempts_fails_unfinished_items_by_name(
    client: openai.AsyncOpenAI,
) -> None:
    texts = [f"slow {i}" for i in range(20)]
    run = Run(
        OpenAIBatch(
            client,
            max_attempts=2,
            metadata={"emulator_in_progress_s": "5", "emulator_expire_after_s": "0.1"},
        )
    )

    results = await run([chat(t) for t in texts])

    done = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
    lost = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert done and lost
    for index in done:
        assert echo(results[index]) == f"Echo: {texts[index]}"
    batches = run.provider_batches
    assert len(batches) == 2
    for index in lost:
        error = results[index]
        assert isinstance(error, BatchFailedError)
        assert error.code == "batch_expired"
        assert "expired" in str(error) and any(b in str(error) for b in batches)


async def test_cancelled_batch_resubmits_unfinished_items(client: openai.AsyncOpenAI) -> None:
    texts = [f"cancel me {i}" for i in range(20)]
    run = Run(OpenAIBatch(client, metadata={"emulator_in_progress_s": "5"}))
    handle = await run.submit([chat(t) for t in texts])
    run.adapter.metadata = {}
    await client.batches.cancel(handle["parts"][0]["batch"])

    results = await run.finish(handle)

    assert_echoes(results, texts)
    first = await client.batches.retrieve(run.handles[0]["parts"][0]["batch"])
    assert first.status == "cancelled"
    assert len(run.provider_batches) == 2


async def test_failed_batch_is_retried_with_backoff(client: openai.AsyncOpenAI) -> None:
    texts = [f"retry {i}" for i in range(4)]
    adapter = OpenAIBatch(
        client, retry_backoff_s=0.2, metadata={"emulator_max_requests_per_file": "2"}
    )
    run = Run(adapter)
    handle = await run.submit([chat(t) for t in texts])
    adapter.metadata = {}
    started = time.monotonic()

    results = await run.finish(handle)

    assert_echoes(results, texts)
    assert time.monotonic() - started >= 0.2
    waiting = [h for h in run.handles if h["parts"][0]["state"] == "waiting"]
    assert waiting and waiting[0]["parts"][0]["code"] == "too_many_requests"
    assert len(run.provider_batches) == 2


async def test_failed_batch_past_max_attempts_fails_every_item(
    client: openai.AsyncOpenAI,
) -> None:
    texts = [f"doomed {i}" for i in range(3)]
    run = Run(
        OpenAIBatch(
            client,
            max_attempts=3,
            retry_backoff_s=0.01,
            metadata={"emulator_max_requests_per_file": "1"},
        )
    )

    results = await run([chat(t) for t in texts])

    assert len(run.provider_batches) == 3
    for index, error in enumerate(results):
        assert isinstance(error, BatchFailedError), error
        assert error.code == "too_many_requests"
        assert error.item_id is not None and error.item_id.endswith(f"-{index}")
        assert "failed" in str(error) and "3 attempts" in str(error)


async def test_token_budget_splits_and_starts_parts_as_earlier_ones_finish(
    client: openai.AsyncOpenAI,
) -> None:
    texts = [f"budget item {i:02d} " + "x" * 200 for i in range(12)]
    budget = 300
    run = Run(
        OpenAIBatch(
            client,
            enqueued_token_budget={MODEL: budget},
            metadata={"emulator_enqueued_token_limit": str(budget)},
        )
    )

    results = await run([chat(t) for t in texts])

    assert_echoes(results, texts)
    first = run.handles[0]["parts"]
    assert len(first) > 2
    assert all(p["tokens"] <= budget for p in first)
    assert [p["state"] for p in first].count("running") == 1
    assert len(run.provider_batches) == len(first)


async def test_token_limit_refusal_is_resubmitted_after_other_parts(
    client: openai.AsyncOpenAI,
) -> None:
    texts = [f"crowded {i:02d} " + "y" * 200 for i in range(6)]
    run = Run(
        OpenAIBatch(
            client,
            max_requests_per_file=2,
            retry_backoff_s=0.01,
            max_attempts=6,
            metadata={"emulator_enqueued_token_limit": "150"},
        )
    )

    results = await run([chat(t) for t in texts])

    assert_echoes(results, texts)
    codes = {p["code"] for h in run.handles for p in h["parts"]}
    assert "token_limit_exceeded" in codes
    assert len(run.provider_batches) > 3


async def test_late_output_file_is_waited_for(client: openai.AsyncOpenAI) -> None:
    texts = [f"late {i}" for i in range(5)]
    run = Run(OpenAIBatch(client, metadata={"emulator_output_file_delay_s": "0.5"}))
    handle = await run.submit([chat(t) for t in texts])
    batch_id = handle["parts"][0]["batch"]
    deadline = time.monotonic() + DEADLINE_S
    while (batch := await client.batches.retrieve(batch_id)).status != "completed":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert batch.output_file_id is None

    assert await run.adapter.poll(handle) is None
    results = await run.finish(handle)

    assert_echoes(results, texts)


async def test_vanished_output_file_resubmits_the_part(client: openai.AsyncOpenAI) -> None:
    texts = [f"vanish {i}" for i in range(3)]
    run = Run(OpenAIBatch(client, retry_backoff_s=0.01))
    handle = await run.submit([chat(t) for t in texts])
    batch_id = handle["parts"][0]["batch"]
    deadline = time.monotonic() + DEADLINE_S
    while (batch := await client.batches.retrieve(batch_id)).output_file_id is None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    await client.files.delete(batch.output_file_id)

    results = await run.finish(handle)

    assert_echoes(results, texts)
    assert len(run.provider_batches) == 2
    assert any("No such File" in p["error"] for h in run.handles for p in h["parts"])


async def test_request_and_byte_limits_split_files(client: openai.AsyncOpenAI) -> None:
    texts = [f"split {i:02d}" for i in range(10)]
    by_count = Run(
        OpenAIBatch(
            client,
            max_requests_per_file=3,
            metadata={"emulator_max_requests_per_file": "3"},
        )
    )
    assert_echoes(await by_count([chat(t) for t in texts]), texts)
    assert [len(p["ids"]) for p in by_count.handles[0]["parts"]] == [3, 3, 3, 1]

    max_bytes = 400
    items = [chat(t) for t in texts] + [chat("huge " + "z" * max_bytes)]
    by_size = Run(
        OpenAIBatch(
            client,
            max_bytes_per_file=max_bytes,
            metadata={"emulator_max_file_bytes": str(max_bytes)},
        )
    )
    handle = await by_size.submit(items)
    parts = handle["parts"]
    assert len(parts) > 2
    for part in parts:
        content = await client.files.content(part["file"])
        assert len(content.content) <= max_bytes

    results = await by_size.finish(handle)

    assert_echoes(results[:-1], texts)
    assert isinstance(results[-1], BatchItemError) and results[-1].code == "request_too_large"


async def test_models_and_endpoints_get_separate_files(client: openai.AsyncOpenAI) -> None:
    items = [
        chat("alpha", model="model-a"),
        {"url": "/v1/embeddings", "body": {"model": "emb-1", "input": "vector me"}},
        chat("beta", model="model-b"),
        {"url": "/v1/responses", "body": {"model": "model-a", "input": "respond"}},
        chat("gamma", model="model-a"),
    ]
    run = Run(OpenAIBatch(client))

    results = await run(items)

    assert echo(results[0]) == "Echo: alpha"
    assert echo(results[2]) == "Echo: beta"
    assert echo(results[4]) == "Echo: gamma"
    assert results[1]["object"] == "list" and results[1]["model"] == "emb-1"
    assert results[3]["output"][0]["content"][0]["text"] == "Echo: respond"
    parts = run.handles[0]["parts"]
    assert [(p["url"], p["model"], p["ids"]) for p in parts] == [
        ("/v1/chat/completions", "model-a", [0, 4]),
        ("/v1/embeddings", "emb-1", [1]),
        ("/v1/chat/completions", "model-b", [2]),
        ("/v1/responses", "model-a", [3]),
    ]
    for part in parts:
        batch = await client.batches.retrieve(part["batches"][0])
        assert batch.status == "completed"


async def test_malformed_items_fail_alone(client: openai.AsyncOpenAI) -> None:
    items: list[Any] = [
        chat("ok 0"),
        "not a dict",
        {"url": "/v1/images/generations", "body": {"model": MODEL}},
        {"url": "/v1/chat/completions", "body": {"messages": []}},
        chat("ok 4"),
        {"url": "/v1/chat/completions", "body": {"model": MODEL, "stream": True}},
        {"url": "/v1/chat/completions", "body": {"model": MODEL, "x": object()}},
    ]
    run = Run(OpenAIBatch(client))

    results = await run(items)

    assert echo(results[0]) == "Echo: ok 0"
    assert echo(results[4]) == "Echo: ok 4"
    reasons = {1: "dict", 2: "url", 3: "model", 5: "stream", 6: "JSON"}
    for index, word in reasons.items():
        error = results[index]
        assert type(error) is BatchItemError and error.code == "invalid_request", error
        assert word in str(error)


async def test_all_malformed_needs_no_provider_call() -> None:
    dead = openai.AsyncOpenAI(base_url="http://127.0.0.1:9/v1", api_key="x", max_retries=0)
    results = await Run(OpenAIBatch(dead))([None, {"url": "/v1/embeddings", "body": {}}])

    assert [type(r) for r in results] == [BatchItemError, BatchItemError]


async def test_transport_errors_poll_none_and_submit_raises(client: openai.AsyncOpenAI) -> None:
    dead = openai.AsyncOpenAI(base_url="http://127.0.0.1:9/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIConnectionError):
        await OpenAIBatch(dead).submit([chat("never sent")])

    live = Run(OpenAIBatch(client))
    handle = await live.submit([chat("survives")])
    assert await OpenAIBatch(dead).poll(handle) is None
    assert_echoes(await live.finish(handle), ["survives"])


async def test_wrapped_client_returns_sdk_types(client: openai.AsyncOpenAI) -> None:
    calls: list[tuple[Any, str]] = []

    async def fake_wait(item: Any, *, batcher: str = "bridge") -> Any:
        calls.append((item, batcher))
        (result,) = await Run(OpenAIBatch(client))([item])
        if isinstance(result, BaseException):
            raise result
        return result

    wrapped = BatchedAsyncOpenAI(client, batcher="cheap", _wait=fake_wait)

    completion = await wrapped.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], timeout=5
    )
    response = await wrapped.responses.create(model=MODEL, input="hello")
    embedding = await wrapped.embeddings.create(
        model="emb-1", input="vec", extra_body={"dimensions": 4}
    )

    assert isinstance(completion, ChatCompletion)
    assert completion.choices[0].message.content == "Echo: hi"
    assert isinstance(response, Response) and response.output_text == "Echo: hello"
    assert isinstance(embedding, CreateEmbeddingResponse)
    assert len(embedding.data[0].embedding) == 4
    assert [batcher for _, batcher in calls] == ["cheap"] * 3
    assert calls[0][0]["url"] == "/v1/chat/completions" and "timeout" not in calls[0][0]["body"]
    assert calls[2][0]["body"] == {"model": "emb-1", "input": "vec", "dimensions": 4}
    with pytest.raises(BatchItemError, match="Emulated error status 404"):
        await wrapped.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "[[status:404]]"}]
        )


async def test_wrapped_client_refuses_streams_and_delegates_the_rest(
    client: openai.AsyncOpenAI,
) -> None:
    async def never(item: Any, *, batcher: str = "bridge") -> Any:
        raise AssertionError("no call expected")

    wrapped = BatchedAsyncOpenAI(client, _wait=never)
    with pytest.raises(TypeError, match="stream"):
        await wrapped.chat.completions.create(model=MODEL, messages=[], stream=True)
    assert wrapped.batches is client.batches
    assert wrapped.api_key == "test"
    assert wrapped.chat.completions.with_raw_response is not None
    assert isinstance(wrap_openai(client), BatchedAsyncOpenAI)


def test_no_api_key_needed_until_first_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    adapter = OpenAIBatch(enqueued_token_budget=10, metadata={"team": "a"})
    wrapped = wrap_openai(batcher="cheap")

    assert adapter._client is None and wrapped._client is None


@pytest.mark.parametrize(
    "options",
    [
        {"max_requests_per_file": 0},
        {"max_bytes_per_file": -1},
        {"max_attempts": True},
        {"enqueued_token_budget": {"m": 0}},
        {"retry_backoff_s": -1},
        {"metadata": {"k": 1}},
        {"metadata": {f"k{i}": "v" for i in range(14)}},
        {"timeout_s": 0},
        {"lookback_s": float("nan")},
    ],
)
def test_bad_options_are_refused_by_name(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=next(iter(options))):
        OpenAIBatch(openai.AsyncOpenAI(api_key="x"), **options)


async def test_wrapped_client_waits_through_the_bridge_by_default(
    client: openai.AsyncOpenAI,
) -> None:
    wrapped = wrap_openai(client)

    with pytest.raises(WaitOutsideGraphError):
        await wrapped.embeddings.create(model="emb-1", input="outside a graph")


# Idempotency: a submit or poll interrupted by a crash and run again with the same key or
# handle adopts what the first run created. The emulator's stats count, per custom_id, how
# many created batches held it: "submitted once" is `submitted[cid] == 1`.


class Killed(BaseException):
    """Stands for the worker dying (SIGKILL) at that point: nothing after it runs."""


def submissions(server: EmulatorServer, key: str) -> dict[str, int]:
    submitted = server.emulator.stats()["submitted"]
    return {cid: n for cid, n in submitted.items() if cid.rsplit("-", 1)[0] == key}


def counters(server: EmulatorServer) -> tuple[int, int]:
    stats = server.emulator.stats()
    return stats["batches_created"], stats["files_uploaded"]


async def input_files_of(client: openai.AsyncOpenAI, key: str) -> list[str]:
    prefix = key + "-"
    return [
        f.filename
        async for f in client.files.list(purpose="batch")
        if f.filename.startswith(prefix)
    ]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("bb_3f2a9c0d1e4b", "bb_3f2a9c0d1e4b"),
        ("A-z_09", "A-z_09"),
        ("x" * 40, "x" * 40),
        ("x" * 41, None),
        ("has space", None),
        ("bb.3f2a", None),
        ("", None),
    ],
)
def test_batch_keys_are_pure_and_fit_custom_ids(given: str, expected: str | None) -> None:
    key = batch_key(given)

    assert key == batch_key(given)
    assert expected is None or key == expected
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", key)
    assert len(custom_id(key, 10_000_000)) <= 64
    assert file_pattern(key).fullmatch(file_name(key, 3, 0))
    assert file_pattern(key).fullmatch(file_name(key, 3, 2))
    assert not file_pattern(key).fullmatch(file_name(key + "-1", 0, 0))
    assert not file_pattern(key).fullmatch(file_name(key + "x", 0, 0))


def test_random_keys_differ() -> None:
    assert batch_key(None) != batch_key(None)


async def test_retried_submit_reuses_files_and_batches(
    client: openai.AsyncOpenAI, server: EmulatorServer
) -> None:
    texts = [f"again {i}" for i in range(5)]
    items = [chat(t) for t in texts]
    key = "bb_retry0000001"
    adapter = OpenAIBatch(client, max_requests_per_file=3)
    before = counters(server)

    first = await adapter.submit(items, idempotency_key=key)
    created = counters(server)
    again = await OpenAIBatch(client, max_requests_per_file=3).submit(items, idempotency_key=key)

    assert created == (before[0] + 2, before[1] + 2)
    assert counters(server) == created
    assert again == first
    assert first["key"] == key
    assert [p["state"] for p in first["parts"]] == ["running", "running"]
    assert sorted(await input_files_of(client, key)) == [f"{key}-0.jsonl", f"{key}-1.jsonl"]
    batch = await client.batches.retrieve(first["parts"][1]["batch"])
    assert batch.metadata == {
        "batch_bridge_key": key,
        "batch_bridge_part": "1",
        "batch_bridge_attempt": "0",
    }

    assert_echoes(await Run(adapter).finish(again), texts)
    assert submissions(server, key) == {f"{key}-{i}": 1 for i in range(5)}
    assert await input_files_of(client, key) == []


async def test_submit_killed_before_the_batch_was_created_reuses_its_file(
    client: openai.AsyncOpenAI, server: EmulatorServer
) -> None:
    texts = ["dropped 0", "dropped 1"]
    key = "bb_dropped00001"
    server.emulator.add_fault("POST /v1/batches", status=0)
    before = counters(server)

    with pytest.raises(openai.APIConnectionError):
        await OpenAIBatch(client).submit([chat(t) for t in texts], idempotency_key=key)
    assert counters(server) == (before[0], before[1] + 1)
    handle = await OpenAIBatch(client).submit([chat(t) for t in texts], idempotency_key=key)

    assert counters(server) == (before[0] + 1, before[1] + 1)
    assert_echoes(await Run(OpenAIBatch(client)).finish(handle), texts)
    assert submissions(server, key) == {f"{key}-0": 1, f"{key}-1": 1}


async def test_a_changed_file_is_replaced_not_reused(
    client: openai.AsyncOpenAI, server: EmulatorServer
) -> None:
    key = "bb_changed00001"
    stale = await client.files.create(file=(f"{key}-0.jsonl", b"{}\n"), purpose="batch")

    handle = await OpenAIBatch(client).submit([chat("fresh")], idempotency_key=key)

    assert handle["parts"][0]["file"] != stale.id
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(stale.id)
    assert_echoes(await Run(OpenAIBatch(client)).finish(handle), ["fresh"])


async def test_a_create_whose_reply_was_lost_is_adopted(
    client: openai.AsyncOpenAI, server: EmulatorServer
) -> None:
    key = "bb_lostreply001"
    server.emulator.add_fault("POST /v1/batches", status=0, after=True)
    before = counters(server)

    handle = await OpenAIBatch(client).submit([chat("lost")], idempotency_key=key)

    assert counters(server) == (before[0] + 1, before[1] + 1)
    assert handle["parts"][0]["state"] == "running"
    assert_echoes(await Run(OpenAIBatch(client)).finish(handle), ["lost"])
    assert submissions(server, key) == {f"{key}-0": 1}


async def test_retried_submit_after_part_one_of_two_creates_only_part_two(
    client: openai.AsyncOpenAI, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [f"half {i}" for i in range(4)]
    items = [chat(t) for t in texts]
    key = "bb_halfway00001"
    adapter = OpenAIBatch(client, max_requests_per_file=2)
    create = adapter._create
    calls: list[int] = []

    async def dies_at_the_second(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise Killed
        return await create(*args)

    monkeypatch.setattr(adapter, "_create", dies_at_the_second)
    before = counters(server)
    with pytest.raises(Killed):
        await adapter.submit(items, idempotency_key=key)
    assert counters(server) == (before[0] + 1, before[1] + 2)
    monkeypatch.undo()

    handle = await OpenAIBatch(client, max_requests_per_file=2).submit(items, idempotency_key=key)

    assert counters(server) == (before[0] + 2, before[1] + 2)
    assert [p["state"] for p in handle["parts"]] == ["running", "running"]
    assert_echoes(await Run(adapter).finish(handle), texts)
    assert submissions(server, key) == {f"{key}-{i}": 1 for i in range(4)}


async def test_replayed_poll_adopts_the_resubmission_it_made(
    client: openai.AsyncOpenAI, server: EmulatorServer
) -> None:
    texts = [f"replay {i}" for i in range(10)]
    key = "bb_replay000001"
    metadata = {"emulator_in_progress_s": "5", "emulator_expire_after_s": "0.1"}
    adapter = OpenAIBatch(client, metadata=metadata)
    handle = await adapter.submit([chat(t) for t in texts], idempotency_key=key)
    adapter.metadata = {}
    await asyncio.sleep(0.2)

    first = await adapter.poll(handle)
    created = counters(server)
    replayed = await adapter.poll(handle)

    assert isinstance(first, Pending) and isinstance(replayed, Pending)
    assert counters(server) == created
    new, again = first.handle["parts"][1], replayed.handle["parts"][1]
    assert (new["batch"], new["file"]) == (again["batch"], again["file"])
    assert (new["origin"], new["attempt"]) == (0, 1)
    assert f"{key}-0-r1.jsonl" in await input_files_of(client, key)
    assert_echoes(await Run(adapter).finish(replayed.handle), texts)
    expired = await client.batches.retrieve(handle["parts"][0]["batch"])
    assert expired.status == "expired" and expired.error_file_id is not None
    errors = (await client.files.content(expired.error_file_id)).text.splitlines()
    unfinished = {json.loads(line)["custom_id"] for line in errors}
    assert 0 < len(unfinished) < len(texts)
    assert submissions(server, key) == {
        f"{key}-{i}": 2 if f"{key}-{i}" in unfinished else 1 for i in range(len(texts))
    }
    assert await input_files_of(client, key) == []


async def test_cancel_stops_named_and_unrecorded_batches(
    client: openai.AsyncOpenAI, server: EmulatorServer
) -> None:
    texts = [f"stop {i:02d} " + "w" * 200 for i in range(6)]
    key = "bb_cancel000001"
    adapter = OpenAIBatch(
        client,
        max_requests_per_file=2,
        enqueued_token_budget=200,
        metadata={"emulator_in_progress_s": "30"},
    )
    handle = await adapter.submit([chat(t) for t in texts], idempotency_key=key)
    assert [p["state"] for p in handle["parts"]] == ["running", "waiting", "waiting"]
    orphan = await client.batches.create(  # made by a poll that crashed before returning
        input_file_id=handle["parts"][1]["file"],
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={
            "emulator_in_progress_s": "30",
            "batch_bridge_key": key,
            "batch_bridge_part": "1",
            "batch_bridge_attempt": "0",
        },
    )

    await adapter.cancel(handle)
    await adapter.cancel(handle)

    for batch_id in (handle["parts"][0]["batch"], orphan.id):
        assert (await client.batches.retrieve(batch_id)).status == "cancelled"
    assert await input_files_of(client, key) == []
    results = await Run(adapter).finish(handle)
    for index in (0, 1), (2, 3):
        done = [i for i in index if not isinstance(results[i], BaseException)]
        assert len(done) == 1 and echo(results[done[0]]) == f"Echo: {texts[done[0]]}"
    codes = [r.code if isinstance(r, BatchFailedError) else "ok" for r in results]
    assert sorted(codes[:4]) == ["batch_cancelled", "batch_cancelled", "ok", "ok"]
    assert codes[4:] == ["input_file_missing", "input_file_missing"]
    assert submissions(server, key) == {f"{key}-{i}": 1 for i in range(4)}


async def test_the_handle_cancel_returns_starts_and_resubmits_nothing(
    client: openai.AsyncOpenAI, server: EmulatorServer
) -> None:
    """The bridge polls what `cancel` returned: parts still waiting never start, and rows
    the cancelled batch left unfinished fail as cancelled, not as missing input files."""
    texts = [f"halt {i:02d} " + "w" * 200 for i in range(6)]
    key = "bb_cancel000002"
    adapter = OpenAIBatch(
        client,
        max_requests_per_file=2,
        enqueued_token_budget=200,
        metadata={"emulator_in_progress_s": "30"},
    )
    handle = await adapter.submit([chat(t) for t in texts], idempotency_key=key)

    cancelled = await adapter.cancel(handle)
    results = await Run(adapter).finish(cancelled)

    codes = [r.code if isinstance(r, BatchFailedError) else "ok" for r in results]
    assert set(codes[:2]) <= {"ok", "batch_cancelled"}
    assert codes[2:] == ["batch_cancelled"] * 4
    assert submissions(server, key) == {f"{key}-{i}": 1 for i in range(2)}


async def test_cancel_tolerates_ended_and_unknown_batches(client: openai.AsyncOpenAI) -> None:
    adapter = OpenAIBatch(client)
    handle = await adapter.submit([chat("quick")])
    assert_echoes(await Run(adapter).finish(handle), ["quick"])
    handle["parts"][0].update(state="running", batch="batch_missing")

    await adapter.cancel(handle)

    with pytest.raises(ValueError, match="handle"):
        await adapter.cancel({"v": 0})


async def test_timeouts_bound_hanging_calls(
    client: openai.AsyncOpenAI, server: EmulatorServer
) -> None:
    adapter = OpenAIBatch(client, timeout_s=0.3, metadata={"emulator_hang_polls_s": "3"})
    handle = await adapter.submit([chat("hang")])

    started = time.monotonic()
    assert await adapter.poll(handle) is None
    assert time.monotonic() - started < 2.0

    key = "bb_hangcreate01"
    hanging = OpenAIBatch(client, timeout_s=0.3, metadata={"emulator_hang_creates_s": "3"})
    before = counters(server)
    started = time.monotonic()
    handle = await hanging.submit([chat("slow create")], idempotency_key=key)
    assert time.monotonic() - started < 2.0
    assert counters(server) == (before[0] + 1, before[1] + 1)
    assert handle["parts"][0]["state"] == "running"


async def test_sdk_retries_and_rate_limits_still_submit_once() -> None:
    emulator = Emulator(
        in_progress_s=0.05, server_errors_first_n=1, rate_limits_first_n=1, retry_after_s=0.05
    )
    texts = [f"flaky {i}" for i in range(6)]
    key = "bb_flaky0000001"
    with EmulatorServer(emulator) as running:
        async with openai.AsyncOpenAI(
            base_url=running.base_url, api_key="test", max_retries=2
        ) as sdk:
            adapter = OpenAIBatch(sdk, max_requests_per_file=4)
            handle = await adapter.submit([chat(t) for t in texts], idempotency_key=key)
            results = await Run(adapter).finish(handle)
    stats = emulator.stats()

    assert_echoes(results, texts)
    assert stats["submitted"] == {f"{key}-{i}": 1 for i in range(6)}
    assert stats["batches_created"] == 2 and stats["files_uploaded"] == 2
    assert stats["calls"]["POST /v1/batches"] == 4  # a 500, a 429, then the two batches


def test_passed_clients_get_the_timeout() -> None:
    sdk = openai.AsyncOpenAI(api_key="x", timeout=600, max_retries=5)

    bounded = OpenAIBatch(sdk, timeout_s=7)
    unbounded = OpenAIBatch(sdk, timeout_s=None)

    assert bounded.client.timeout == 7 and bounded.client.max_retries == 5
    assert unbounded.client is sdk


async def test_a_retry_with_other_items_is_refused_not_adopted(
    client: openai.AsyncOpenAI, server: EmulatorServer
) -> None:
    key = "bb_otheritems01"
    await OpenAIBatch(client).submit([chat("first version")], idempotency_key=key)
    before = counters(server)

    with pytest.raises(ProviderError, match="same items") as refused:
        await OpenAIBatch(client).submit([chat("second, longer version")], idempotency_key=key)

    assert refused.value.retryable is False and refused.value.provider == "openai"
    assert counters(server) == before


async def test_a_failed_submit_without_a_key_deletes_its_uploads(
    client: openai.AsyncOpenAI, server: EmulatorServer
) -> None:
    server.emulator.add_fault("POST /v1/batches", status=503)
    before = server.emulator.stats()

    with pytest.raises(openai.InternalServerError):
        await OpenAIBatch(client).submit([chat("never runs")])

    after = server.emulator.stats()
    assert after["files_uploaded"] == before["files_uploaded"] + 1
    assert after["files_deleted"] == before["files_deleted"] + 1
    assert after["batches_created"] == before["batches_created"]


async def test_release_deletes_every_file_of_a_recorded_batch(client: openai.AsyncOpenAI) -> None:
    texts = [f"release {i}" for i in range(4)] + ["[[fail]] release"]
    run = Run(OpenAIBatch(client))
    results = await run([chat(t) for t in texts])
    assert_echoes(results[:4], texts[:4])
    (batch_id,) = run.provider_batches
    batch = await client.batches.retrieve(batch_id)
    files = {batch.input_file_id, batch.output_file_id, batch.error_file_id} - {None}
    assert len(files) == 3

    await run.adapter.release(run.handles[-1])
    await run.adapter.release(run.handles[-1])  # a bridge that crashed in between calls again

    remaining = {f.id async for f in client.files.list()}
    assert not files & remaining
