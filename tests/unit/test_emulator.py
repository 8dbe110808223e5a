"""The offline OpenAI Batch API emulator, driven by the real `openai` SDK over HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import openai
import pytest
from click.testing import CliRunner
from openai.types import Batch, CreateEmbeddingResponse, FileObject
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from batch_bridge.testing import Emulator, EmulatorServer, Knobs
from batch_bridge.testing.__main__ import main

T = TypeVar("T")
CHAT = "/v1/chat/completions"
TERMINAL = {"completed", "failed", "expired", "cancelled"}


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(in_progress_s=0.1, max_file_bytes=64 * 1024)) as running:
        yield running


@pytest.fixture
async def client(server: EmulatorServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key="test", max_retries=0
    ) as sdk_client:
        yield sdk_client


async def wait_for(
    fetch: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout: float = 5.0
) -> T:
    """Poll `fetch` until `done` holds, failing the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await fetch()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"condition not met in {timeout}s; last: {value!r}"
        await asyncio.sleep(0.02)


def chat_line(custom_id: str, text: str, *, model: str = "gpt-4o-mini", **extra: Any) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body, **extra}


def jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


async def submit(
    client: openai.AsyncOpenAI,
    lines: list[dict] | bytes,
    *,
    endpoint: str = CHAT,
    metadata: dict[str, str] | None = None,
) -> Batch:
    data = lines if isinstance(lines, bytes) else jsonl(lines)
    uploaded = await client.files.create(file=("input.jsonl", data), purpose="batch")
    return await client.batches.create(
        input_file_id=uploaded.id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
        metadata=metadata,
    )


async def finish(client: openai.AsyncOpenAI, batch: Batch, **poll: float) -> Batch:
    return await wait_for(
        lambda: client.batches.retrieve(batch.id), lambda b: b.status in TERMINAL, **poll
    )


async def read_lines(client: openai.AsyncOpenAI, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    content = await client.files.content(file_id)
    return [json.loads(line) for line in content.text.splitlines()]


async def raw_json(call: Callable[..., Awaitable[Any]], *args: Any) -> dict:
    """The JSON body behind an SDK call, for strict validation against the SDK types."""
    return json.loads((await call(*args)).text)


def test_server_starts_fast_and_stops_cleanly() -> None:
    started = time.monotonic()
    with EmulatorServer() as running:
        assert time.monotonic() - started < 1.0
        assert running.base_url == running.url + "/v1"
        assert running.url.startswith("http://127.0.0.1:")
        assert httpx.get(running.base_url + "/batches").json()["object"] == "list"
        url = running.url
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/v1/batches", timeout=1.0)


async def test_full_life_cycle(client: openai.AsyncOpenAI) -> None:
    lines = [chat_line(f"req-{i}", f"question {i}") for i in range(6)]
    metadata = {"emulator_validating_s": "0.15", "emulator_in_progress_s": "0.3", "run": "a"}
    batch = await submit(client, lines, metadata=metadata)
    assert batch.status == "validating"
    assert batch.request_counts is not None and batch.request_counts.total == 0

    seen = {batch.status}
    while batch.status not in TERMINAL:
        await asyncio.sleep(0.02)
        batch = await client.batches.retrieve(batch.id)
        seen.add(batch.status)
    assert {"validating", "in_progress", "completed"} <= seen
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert batch.request_counts.model_dump() == {"total": 6, "completed": 6, "failed": 0}
    assert batch.metadata == metadata
    assert batch.model == "gpt-4o-mini"
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at
    assert batch.expires_at == batch.created_at + 24 * 3600
    assert batch.failed_at is None and batch.error_file_id is None and batch.errors is None
    assert batch.usage is not None and batch.usage.total_tokens > 0

    Batch.model_validate(await raw_json(client.batches.with_raw_response.retrieve, batch.id))
    assert batch.output_file_id is not None
    output_file = await raw_json(client.files.with_raw_response.retrieve, batch.output_file_id)
    parsed_file = FileObject.model_validate(output_file)
    assert parsed_file.purpose == "batch_output" and parsed_file.status == "processed"
    assert parsed_file.bytes > 0 and parsed_file.filename.endswith(".jsonl")

    for line in await read_lines(client, batch.output_file_id):
        assert set(line) == {"id", "custom_id", "response", "error"} and line["error"] is None
        assert line["response"]["status_code"] == 200 and line["response"]["request_id"]
        completion = ChatCompletion.model_validate(line["response"]["body"])
        number = line["custom_id"].removeprefix("req-")
        assert completion.choices[0].message.content == f"Echo: question {number}"
        assert completion.choices[0].finish_reason == "stop"
        assert completion.model == "gpt-4o-mini"
        assert completion.usage is not None and completion.usage.prompt_tokens == 3


async def test_life_cycle_follows_the_clock_exactly() -> None:
    now = [1_000.0]
    emulator = Emulator(clock=lambda: now[0], validating_s=10, in_progress_s=10, finalizing_s=10)
    with EmulatorServer(emulator) as running:
        async with openai.AsyncOpenAI(
            base_url=running.base_url, api_key="test", max_retries=0
        ) as sdk:
            batch = await submit(sdk, [chat_line(f"c{i}", "x") for i in range(4)])
            steps = [
                (5, "validating", 0),
                (15, "in_progress", 2),
                (25, "finalizing", 4),
                (35, "completed", 4),
            ]
            for offset, status, completed in steps:
                now[0] = 1_000.0 + offset
                batch = await sdk.batches.retrieve(batch.id)
                assert batch.status == status
                assert batch.request_counts is not None
                assert batch.request_counts.completed == completed
            assert (batch.in_progress_at, batch.finalizing_at, batch.completed_at) == (
                1_010,
                1_020,
                1_030,
            )

            now[0] = 2_000.0
            expiring = await submit(
                sdk, [chat_line("x", "x")], metadata={"emulator_expire_after_s": "12"}
            )
            cancelled = await submit(sdk, [chat_line("y", "y")])
            assert expiring.expires_at == 2_012
            now[0] = 2_015.0
            assert (await sdk.batches.cancel(cancelled.id)).status == "cancelling"
            expiring = await sdk.batches.retrieve(expiring.id)
            assert (expiring.status, expiring.in_progress_at, expiring.expired_at) == (
                "expired",
                2_010,
                2_012,
            )
            assert expiring.finalizing_at is None and expiring.completed_at is None
            now[0] = 2_024.0
            assert (await sdk.batches.retrieve(cancelled.id)).status == "cancelling"
            now[0] = 2_025.0
            cancelled = await sdk.batches.retrieve(cancelled.id)
            assert (cancelled.status, cancelled.cancelling_at, cancelled.cancelled_at) == (
                "cancelled",
                2_015,
                2_025,
            )
            stats = emulator.stats()
    assert stats["batches"] == 3 and stats["requests"] == 6
    assert stats["batches_by_status"]["completed"] == 1
    assert stats["batches_by_status"]["expired"] == 1
    assert stats["batches_by_status"]["cancelled"] == 1


async def test_output_is_shuffled_and_complete_and_error_rate_is_deterministic(
    client: openai.AsyncOpenAI,
) -> None:
    ids = [f"item-{i:02d}" for i in range(20)]
    lines = [chat_line(cid, cid) for cid in ids]
    failing_sets = []
    for _ in range(2):
        batch = await finish(
            client, await submit(client, lines, metadata={"emulator_error_rate": "0.25"})
        )
        assert batch.status == "completed"
        output = await read_lines(client, batch.output_file_id)
        errors = await read_lines(client, batch.error_file_id)
        out_ids = [line["custom_id"] for line in output]
        err_ids = [line["custom_id"] for line in errors]
        assert sorted(out_ids + err_ids) == ids
        assert out_ids != sorted(out_ids)
        assert len(err_ids) == 5
        for line in errors:
            assert line["response"] is None and line["error"]["code"] == "server_error"
        assert batch.request_counts is not None
        assert (batch.request_counts.completed, batch.request_counts.failed) == (15, 5)
        failing_sets.append(set(err_ids))
    assert failing_sets[0] == failing_sets[1]


async def test_per_request_markers(client: openai.AsyncOpenAI) -> None:
    lines = [
        chat_line("ok", "fine"),
        chat_line("boom", "please [[fail]] here"),
        chat_line("bad", "reject me [[status:400]]"),
    ]
    batch = await finish(client, await submit(client, lines))
    assert batch.status == "completed"
    output = {line["custom_id"]: line for line in await read_lines(client, batch.output_file_id)}
    errors = {line["custom_id"]: line for line in await read_lines(client, batch.error_file_id)}
    assert set(output) == {"ok", "bad"} and set(errors) == {"boom"}
    assert errors["boom"]["error"]["code"] == "server_error"
    assert "boom" in errors["boom"]["error"]["message"]
    assert output["ok"]["response"]["status_code"] == 200
    rejected = output["bad"]["response"]
    assert rejected["status_code"] == 400
    assert set(rejected["body"]["error"]) == {"message", "type", "param", "code"}
    assert rejected["body"]["error"]["type"] == "invalid_request_error"
    assert batch.request_counts is not None
    assert batch.request_counts.model_dump() == {"total": 3, "completed": 1, "failed": 2}


async def test_expiry_keeps_partial_output(client: openai.AsyncOpenAI) -> None:
    ids = [f"e{i}" for i in range(10)]
    metadata = {"emulator_in_progress_s": "30", "emulator_expire_after_s": "0.3"}
    batch = await submit(client, [chat_line(cid, cid) for cid in ids], metadata=metadata)
    assert batch.expires_at is not None and batch.expires_at - batch.created_at in (0, 1)
    batch = await finish(client, batch)
    assert batch.status == "expired" and batch.expired_at is not None
    output = await read_lines(client, batch.output_file_id)
    errors = await read_lines(client, batch.error_file_id)
    assert len(output) == 5 and len(errors) == 5
    assert {line["error"]["code"] for line in errors} == {"batch_expired"}
    assert sorted(line["custom_id"] for line in output + errors) == ids
    assert batch.request_counts is not None
    assert batch.request_counts.model_dump() == {"total": 10, "completed": 5, "failed": 5}


async def test_cancel_keeps_partial_output(client: openai.AsyncOpenAI) -> None:
    ids = [f"k{i}" for i in range(8)]
    metadata = {
        "emulator_in_progress_s": "30",
        "emulator_finalizing_s": "0.2",
        "emulator_cancel_completed_fraction": "0.25",
    }
    batch = await submit(client, [chat_line(cid, cid) for cid in ids], metadata=metadata)
    cancelled = await client.batches.cancel(batch.id)
    assert cancelled.status == "cancelling" and cancelled.cancelling_at is not None
    assert cancelled.output_file_id is None
    batch = await finish(client, batch)
    assert batch.status == "cancelled" and batch.cancelled_at is not None
    output = await read_lines(client, batch.output_file_id)
    errors = await read_lines(client, batch.error_file_id)
    assert len(output) == 2 and len(errors) == 6
    assert {line["error"]["code"] for line in errors} == {"batch_cancelled"}
    assert sorted(line["custom_id"] for line in output + errors) == sorted(ids)
    again = await client.batches.cancel(batch.id)
    assert again.status == "cancelled"

    done = await finish(client, await submit(client, [chat_line("x", "x")]))
    with pytest.raises(openai.ConflictError):
        await client.batches.cancel(done.id)


async def test_output_file_arrives_late(client: openai.AsyncOpenAI) -> None:
    metadata = {"emulator_output_file_delay_s": "0.4"}
    batch = await submit(client, [chat_line("late", "late")], metadata=metadata)
    batch = await finish(client, batch)
    assert batch.status == "completed"
    assert batch.output_file_id is None and batch.error_file_id is None
    batch = await wait_for(
        lambda: client.batches.retrieve(batch.id), lambda b: b.output_file_id is not None
    )
    assert [line["custom_id"] for line in await read_lines(client, batch.output_file_id)] == [
        "late"
    ]


async def failed_codes(client: openai.AsyncOpenAI, batch: Batch) -> list[str | None]:
    batch = await finish(client, batch)
    assert batch.status == "failed" and batch.failed_at is not None
    assert batch.output_file_id is None and batch.errors is not None
    Batch.model_validate(await raw_json(client.batches.with_raw_response.retrieve, batch.id))
    return [error.code for error in batch.errors.data or []]


async def test_mixed_models_fail_validation(client: openai.AsyncOpenAI) -> None:
    lines = [chat_line("a", "a", model="gpt-4o"), chat_line("b", "b", model="gpt-4o-mini")]
    assert await failed_codes(client, await submit(client, lines)) == ["mixed_models"]


async def test_too_many_requests_with_metadata_override(client: openai.AsyncOpenAI) -> None:
    lines = [chat_line(f"t{i}", "t") for i in range(5)]
    metadata = {"emulator_max_requests_per_file": "3"}
    batch = await submit(client, lines, metadata=metadata)
    assert await failed_codes(client, batch) == ["too_many_requests"]
    metadata = {"emulator_max_requests_per_file": "5"}
    assert (await finish(client, await submit(client, lines, metadata=metadata))).status == (
        "completed"
    )


async def test_bad_jsonl_fails_validation_with_line_numbers(client: openai.AsyncOpenAI) -> None:
    data = b"\n".join(
        [
            json.dumps(chat_line("one", "fine")).encode(),
            b"{not json",
            json.dumps({"method": "POST", "url": CHAT, "body": {"model": "m"}}).encode(),
            json.dumps(chat_line("one", "dup")).encode(),
            json.dumps({**chat_line("two", "x"), "url": "/v1/embeddings"}).encode(),
        ]
    )
    batch = await finish(client, await submit(client, data))
    assert batch.errors is not None and batch.errors.data
    found = {(error.code, error.line) for error in batch.errors.data}
    assert found == {
        ("invalid_json_line", 2),
        ("missing_custom_id", 3),
        ("duplicate_custom_id", 4),
        ("mismatched_endpoint", 5),
    }


async def test_enqueued_token_limit_per_model(client: openai.AsyncOpenAI) -> None:
    text = "x" * 400
    lines = [chat_line(f"tok{i}", text, model="limit-model") for i in range(2)]
    metadata = {"emulator_enqueued_token_limit": "300", "emulator_in_progress_s": "30"}
    holder = await submit(client, lines, metadata=metadata)
    assert (await client.batches.retrieve(holder.id)).status == "in_progress"

    blocked = await submit(client, lines, metadata=metadata)
    assert blocked.status == "validating"
    assert await failed_codes(client, blocked) == ["token_limit_exceeded"]

    other_model = [chat_line("o", text, model="other-model")]
    other = await submit(client, other_model, metadata=metadata)
    assert (await client.batches.retrieve(other.id)).status == "in_progress"
    for batch in (holder, other):
        await client.batches.cancel(batch.id)

    after = await submit(client, lines, metadata=metadata)
    assert (await client.batches.retrieve(after.id)).status == "in_progress"
    await client.batches.cancel(after.id)


async def test_upload_limits_and_purpose(
    client: openai.AsyncOpenAI, server: EmulatorServer
) -> None:
    with pytest.raises(openai.BadRequestError, match="too large"):
        await client.files.create(file=("big.jsonl", b"x" * (65 * 1024)), purpose="batch")
    with pytest.raises(openai.BadRequestError):
        await client.files.create(file=("a.jsonl", b"{}"), purpose="nonsense")  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server.emulator.app)) as raw:
        reply = await raw.post("http://emu/v1/files", files={"file": ("a.jsonl", b"{}")})
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "purpose"


async def test_bad_batch_create_requests(client: openai.AsyncOpenAI) -> None:
    uploaded = await client.files.create(
        file=("in.jsonl", jsonl([chat_line("a", "a")])), purpose="batch"
    )
    with pytest.raises(openai.BadRequestError):
        await client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/moderations", completion_window="24h"
        )
    with pytest.raises(openai.BadRequestError, match="unknown emulator knob"):
        await client.batches.create(
            input_file_id=uploaded.id,
            endpoint=CHAT,
            completion_window="24h",
            metadata={"emulator_no_such_knob": "1"},
        )
    with pytest.raises(openai.BadRequestError):
        await client.batches.create(
            input_file_id=uploaded.id,
            endpoint=CHAT,
            completion_window="24h",
            metadata={"emulator_error_rate": "lots"},
        )


async def test_unknown_ids_give_openai_404s(client: openai.AsyncOpenAI) -> None:
    calls = [
        client.files.retrieve("file-missing"),
        client.files.content("file-missing"),
        client.files.delete("file-missing"),
        client.batches.retrieve("batch_missing"),
        client.batches.cancel("batch_missing"),
        client.get("/no/such/route", cast_to=object),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError) as caught:
            await call
        assert isinstance(caught.value.body, dict)
        assert set(caught.value.body) == {"message", "type", "param", "code"}


async def test_file_round_trip(client: openai.AsyncOpenAI) -> None:
    data = jsonl([chat_line("f", "f")])
    uploaded = await client.files.create(file=("mine.jsonl", data), purpose="batch")
    raw = await raw_json(client.files.with_raw_response.retrieve, uploaded.id)
    assert FileObject.model_validate(raw).filename == "mine.jsonl"
    assert (await client.files.content(uploaded.id)).content == data
    deleted = await client.files.delete(uploaded.id)
    assert deleted.deleted and deleted.id == uploaded.id
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(uploaded.id)


async def test_list_pages_newest_first() -> None:
    with EmulatorServer(Emulator(in_progress_s=0.0)) as running:
        async with openai.AsyncOpenAI(
            base_url=running.base_url, api_key="test", max_retries=0
        ) as sdk:
            created = [(await submit(sdk, [chat_line("p", "p")])).id for _ in range(5)]
            first = await sdk.batches.list(limit=2)
            assert [b.id for b in first.data] == created[::-1][:2] and first.has_more
            listed = [batch.id async for batch in sdk.batches.list(limit=2)]
            raw = await raw_json(sdk.batches.with_raw_response.list)
    assert listed == created[::-1]
    assert raw["object"] == "list" and raw["first_id"] == created[-1]
    assert raw["last_id"] == created[0] and raw["has_more"] is False


async def test_sync_endpoints(client: openai.AsyncOpenAI, server: EmulatorServer) -> None:
    before = server.emulator.stats()["requests"]
    parts = [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]
    chat = await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": parts}]
    )
    completion = ChatCompletion.model_validate(json.loads(chat.text))
    assert completion.choices[0].message.content == "Echo: part one part two"
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )

    for given in ("hello there", [{"role": "user", "content": "hello there"}]):
        reply = await client.responses.with_raw_response.create(model="gpt-4o", input=given)
        response = Response.model_validate(json.loads(reply.text))
        assert response.output_text == "Echo: hello there" and response.usage is not None

    floats = await client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["a", "b"], encoding_format="float"
    )
    parsed = CreateEmbeddingResponse.model_validate(json.loads(floats.text))
    assert [len(item.embedding) for item in parsed.data] == [8, 8]
    decoded = await client.embeddings.create(model="text-embedding-3-small", input="a")
    assert decoded.data[0].embedding == pytest.approx(parsed.data[0].embedding, abs=1e-6)

    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "[[status:429]]"}]
        )
    with pytest.raises(openai.InternalServerError):
        await client.responses.create(model="m", input="[[fail]]")
    assert server.emulator.stats()["requests"] == before + 7


async def test_response_and_embedding_batches_parse(client: openai.AsyncOpenAI) -> None:
    def line(custom_id: str, url: str, body: dict) -> dict:
        return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}

    responses = [
        line("r1", "/v1/responses", {"model": "gpt-4o", "input": "plain"}),
        line(
            "r2",
            "/v1/responses",
            {"model": "gpt-4o", "input": [{"role": "user", "content": "msg"}]},
        ),
    ]
    embeddings = [
        line("e1", "/v1/embeddings", {"model": "emb", "input": "one"}),
        line("e2", "/v1/embeddings", {"model": "emb", "input": ["one", "two"]}),
    ]
    batch = await finish(client, await submit(client, responses, endpoint="/v1/responses"))
    texts = {}
    for output in await read_lines(client, batch.output_file_id):
        texts[output["custom_id"]] = Response.model_validate(output["response"]["body"]).output_text
    assert texts == {"r1": "Echo: plain", "r2": "Echo: msg"}

    batch = await finish(client, await submit(client, embeddings, endpoint="/v1/embeddings"))
    vectors = {}
    for output in await read_lines(client, batch.output_file_id):
        parsed = CreateEmbeddingResponse.model_validate(output["response"]["body"])
        vectors[output["custom_id"]] = [item.embedding for item in parsed.data]
    assert len(vectors["e1"]) == 1 and len(vectors["e2"]) == 2
    assert vectors["e1"][0] == vectors["e2"][0]


async def test_stats_counts_files_batches_and_requests() -> None:
    emulator = Emulator(in_progress_s=0.0)
    assert emulator.stats()["files"] == emulator.stats()["batches"] == 0
    with EmulatorServer(emulator) as running:
        async with openai.AsyncOpenAI(
            base_url=running.base_url, api_key="test", max_retries=0
        ) as sdk:
            lines = "".join(
                json.dumps(
                    {
                        "custom_id": f"c{i}",
                        "method": "POST",
                        "url": "/v1/chat/completions",
                        "body": {
                            "model": "gpt-4o-mini",
                            "messages": [{"role": "user", "content": f"q{i}"}],
                        },
                    }
                )
                + "\n"
                for i in range(3)
            )
            uploaded = await sdk.files.create(file=("in.jsonl", lines.encode()), purpose="batch")
            batch = await sdk.batches.create(
                completion_window="24h", endpoint="/v1/chat/completions", input_file_id=uploaded.id
            )
            await sdk.batches.retrieve(batch.id)
            await sdk.files.delete(uploaded.id)
    stats = emulator.stats()
    assert stats["files_uploaded"] == 1 and stats["files_deleted"] == 1
    assert stats["batches"] == stats["batches_created"] == 1
    assert stats["batches_by_status"]["completed"] == 1
    assert stats["requests"] == 3
    assert stats["submitted"] == stats["accepted"] == {"c0": 1, "c1": 1, "c2": 1}
    assert stats["calls"]["POST /v1/batches"] == 1
    assert stats["calls"]["GET /v1/batches/{batch_id}"] == 1


def test_knob_validation() -> None:
    with pytest.raises(TypeError, match="bad emulator knob"):
        Emulator(no_such_knob=1.0)
    with pytest.raises(ValueError, match="error_rate"):
        Emulator(error_rate=1.5)
    with pytest.raises(ValueError, match="in_progress_s"):
        Emulator(in_progress_s=-1)


def test_cli_exposes_every_knob() -> None:
    runner = CliRunner()
    usage = runner.invoke(main, ["--help"])
    assert usage.exit_code == 0
    knobs = [field.name for field in dataclasses.fields(Knobs)]
    assert len(knobs) > 10
    for knob in knobs:
        assert f"--{knob.replace('_', '-')}" in usage.output, knob
    refused = runner.invoke(main, ["--port", "0", "--error-rate", "2"])
    assert refused.exit_code == 2 and "error_rate" in refused.output


async def test_files_list_pages_both_ways_and_filters_by_purpose() -> None:
    with EmulatorServer(Emulator()) as running:
        async with openai.AsyncOpenAI(
            base_url=running.base_url, api_key="test", max_retries=0
        ) as sdk:
            names = [f"f{i}.jsonl" for i in range(5)]
            for name in names:
                await sdk.files.create(file=(name, name.encode() * 2), purpose="batch")
            await sdk.files.create(file=("other.txt", b"x"), purpose="user_data")

            newest = [f async for f in sdk.files.list(purpose="batch", limit=2)]
            oldest = [f.filename async for f in sdk.files.list(purpose="batch", order="asc")]
            page = await sdk.files.list(purpose="batch", limit=2, order="asc")
            everything = [f.filename async for f in sdk.files.list()]
            with pytest.raises(openai.BadRequestError):
                await sdk.files.list(order="sideways")  # type: ignore[arg-type]

    assert [f.filename for f in newest] == names[::-1]
    assert [f.bytes for f in newest] == [len(n) * 2 for n in names[::-1]]
    assert all(f.purpose == "batch" and f.created_at > 0 for f in newest)
    assert oldest == names
    assert [f.filename for f in page.data] == names[:2] and page.has_more
    assert everything == ["other.txt", *names[::-1]]


async def test_batches_list_carries_metadata(client: openai.AsyncOpenAI) -> None:
    tags = {"batch_bridge_key": "bb_listed", "batch_bridge_part": "0"}
    batch = await submit(client, [chat_line("m", "m")], metadata=tags)

    listed = [b async for b in client.batches.list(limit=100) if b.id == batch.id]

    assert [b.metadata for b in listed] == [tags]


async def test_hanging_polls_and_creates(client: openai.AsyncOpenAI) -> None:
    batch = await submit(client, [chat_line("h", "h")], metadata={"emulator_hang_polls_s": "0.3"})
    started = time.monotonic()
    await client.batches.retrieve(batch.id)
    assert time.monotonic() - started >= 0.3
    with pytest.raises(openai.APITimeoutError):
        await client.with_options(timeout=0.1).batches.retrieve(batch.id)

    uploaded = await client.files.create(
        file=("c.jsonl", jsonl([chat_line("c", "c")])), purpose="batch"
    )
    with pytest.raises(openai.APITimeoutError):
        await client.with_options(timeout=0.1).batches.create(
            input_file_id=uploaded.id,
            endpoint=CHAT,
            completion_window="24h",
            metadata={"emulator_hang_creates_s": "0.5"},
        )
    made = [b async for b in client.batches.list(limit=100) if b.input_file_id == uploaded.id]
    assert len(made) == 1  # recorded, although its answer never came


async def test_first_calls_of_each_route_fail_then_rate_limit() -> None:
    emulator = Emulator(server_errors_first_n=2, rate_limits_first_n=1, retry_after_s=0.05)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emulator.app), base_url="http://emu"
    ) as raw:
        listed = [await raw.get("/v1/batches") for _ in range(4)]
        files = await raw.get("/v1/files")
    assert [r.status_code for r in listed] == [500, 500, 429, 200]
    assert listed[0].json()["error"]["type"] == "server_error"
    assert listed[2].headers["retry-after"] == "0.05"
    assert listed[2].json()["error"]["code"] == "rate_limit_exceeded"
    assert files.status_code == 500
    assert emulator.stats()["calls"] == {"GET /v1/batches": 4, "GET /v1/files": 1}

    with EmulatorServer(
        Emulator(server_errors_first_n=1, rate_limits_first_n=1, retry_after_s=0.2)
    ) as running:
        async with openai.AsyncOpenAI(
            base_url=running.base_url, api_key="test", max_retries=2
        ) as sdk:
            started = time.monotonic()
            assert (await sdk.batches.list()).data == []
            assert time.monotonic() - started >= 0.2  # the SDK waited as told


async def test_queued_faults_fire_once_each(
    client: openai.AsyncOpenAI, server: EmulatorServer
) -> None:
    emulator = server.emulator
    uploaded = await client.files.create(
        file=("q.jsonl", jsonl([chat_line("q", "q")])), purpose="batch"
    )

    def create() -> Awaitable[Batch]:
        return client.batches.create(
            input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h"
        )

    before = emulator.stats()["batches_created"]
    emulator.add_fault("POST /v1/batches", status=503, times=2)
    emulator.add_fault("POST /v1/batches", status=429, retry_after_s=7)
    emulator.add_fault("POST /v1/batches", status=0)
    emulator.add_fault("POST /v1/batches", status=500, after=True)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await create()
    with pytest.raises(openai.RateLimitError) as limited:
        await create()
    assert limited.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.APIConnectionError):
        await create()
    assert emulator.stats()["batches_created"] == before
    with pytest.raises(openai.InternalServerError):
        await create()
    assert emulator.stats()["batches_created"] == before + 1  # acted, answer lost
    await create()
    assert emulator.stats()["batches_created"] == before + 2

    emulator.add_fault("GET /v1/batches", status=502)
    emulator.clear_faults()
    await client.batches.list()
    with pytest.raises(ValueError, match="unknown emulator route"):
        emulator.add_fault("GET /v1/nowhere")
    with pytest.raises(ValueError, match="status"):
        emulator.add_fault("GET /v1/batches", status=404)
    with pytest.raises(ValueError, match="times"):
        emulator.add_fault("GET /v1/batches", times=0)


async def test_faults_and_stats_over_http(
    client: openai.AsyncOpenAI, server: EmulatorServer
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as raw:
        armed = await raw.post(
            "/_emulator/faults", json={"route": "GET /v1/files/{file_id}", "status": 504}
        )
        refused = await raw.post("/_emulator/faults", json={"route": "GET /nope"})
        with pytest.raises(openai.InternalServerError):
            await client.files.retrieve("file-x")
        await raw.post("/_emulator/faults", json={"route": "GET /v1/files/{file_id}"})
        cleared = await raw.delete("/_emulator/faults")
        stats = (await raw.get("/_emulator/stats")).json()
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve("file-x")
    assert armed.status_code == 200 and cleared.status_code == 200
    assert refused.status_code == 400 and "unknown emulator route" in refused.text
    assert set(stats) == set(server.emulator.stats())
    assert stats["calls"]["GET /v1/files/{file_id}"] >= 1


async def test_stats_count_submissions_per_custom_id() -> None:
    emulator = Emulator(in_progress_s=30)
    with EmulatorServer(emulator) as running:
        async with openai.AsyncOpenAI(
            base_url=running.base_url, api_key="test", max_retries=0
        ) as sdk:
            first = await submit(sdk, [chat_line("a", "a"), chat_line("b", "b")])
            await submit(sdk, [chat_line("b", "b")])
            failing = await submit(
                sdk, [chat_line("c", "c")], metadata={"emulator_max_requests_per_file": "0"}
            )
            await sdk.batches.cancel(first.id)
            await sdk.batches.cancel(first.id)
            await sdk.files.delete(first.input_file_id)
            async with httpx.AsyncClient(base_url=running.url) as raw:
                served = (await raw.get("/_emulator/stats")).json()
    stats = emulator.stats()

    assert served == stats
    assert stats["submitted"] == {"a": 1, "b": 2, "c": 1}
    assert stats["accepted"] == {"a": 1, "b": 2}
    assert stats["batches_by_status"]["cancelled"] == 1
    assert stats["batches_by_status"]["failed"] == 1 and failing.id
    assert stats["batches_created"] == 3 and stats["batches_cancelled"] == 1
    assert stats["files_uploaded"] == 3 and stats["files_deleted"] == 1
    assert stats["calls"]["POST /v1/batches/{batch_id}/cancel"] == 2


def test_server_knobs_are_refused_per_batch() -> None:
    knobs = Emulator().knobs
    assert knobs.with_metadata({"emulator_hang_polls_s": "2"}).hang_polls_s == 2.0
    for name in ("server_errors_first_n", "rate_limits_first_n", "retry_after_s"):
        with pytest.raises(ValueError, match="whole server"):
            knobs.with_metadata({f"emulator_{name}": "1"})
