"""OpenAI end to end: real `langgraph dev`, the wrapped `AsyncOpenAI` in caller nodes, the
OpenAI adapter in the bridge, and the real `openai` SDK over HTTP to the emulator.

Every test asserts that each caller got exactly its own answer or its own error, none lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import openai
import pytest
from langgraph_sdk import get_client

from batch_bridge.testing import EmulatorServer
from tests.conftest import E2E_GRAPHS, DevServer, start_dev_server
from tests.e2e.helpers import finished, start, until


@pytest.fixture(scope="module")
def server(
    batch_api_emulator: EmulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevServer]:
    spec = str(E2E_GRAPHS / "openai_graphs.py")
    names = [
        "oa_bridge",
        "oa_expire",
        "oa_cancel",
        "oa_invalid",
        "oa_tokens",
        "oa_token_limit",
        "oa_late",
        "oa_split",
    ]
    graphs = {name: f"{spec}:{name}" for name in names} | {"oa_agent": f"{spec}:agent"}
    env = {"OPENAI_BASE_URL": batch_api_emulator.base_url, "OPENAI_API_KEY": "emulator"}
    dev = start_dev_server(tmp_path_factory.mktemp("openai"), graphs, env=env)
    yield dev
    dev.stop()


@pytest.fixture
def provider(openai_env: EmulatorServer) -> openai.AsyncOpenAI:
    """The real SDK configured from the environment, as user code would build it."""
    return openai.AsyncOpenAI(max_retries=0)


async def provider_batches(provider: openai.AsyncOpenAI, bridge: str) -> list[openai.types.Batch]:
    return [
        b
        async for b in provider.batches.list(limit=100)
        if (b.metadata or {}).get("test_bridge") == bridge
    ]


async def run_agents(server, texts, bridge, **extra):
    client = get_client(url=server.url)
    inputs = [{"text": t, "bridge": bridge, **extra} for t in texts]
    threads = await start(client, "oa_agent", inputs)
    return client, threads, await finished(client, threads, timeout=120)


async def error_of(client, thread_id):
    runs = await client.runs.list(thread_id, limit=10)
    run = next(r for r in runs if r["status"] == "error")
    return (await client.runs.join(thread_id, run["run_id"]))["__error__"]


async def assert_each_own(client, texts, done, allowed_errors=()):
    """Every thread is finished: an idle one carries exactly its own echo, one in error
    failed with one of the named errors."""
    for text, thread in zip(texts, done, strict=True):
        if thread["status"] == "idle":
            assert thread["values"]["answer"] == f"Echo: {text}"
        else:
            assert thread["status"] == "error", thread
            error = await error_of(client, thread["thread_id"])
            assert error["error"] in allowed_errors, error


async def test_many_callers_get_their_own_answers_from_shuffled_output(server, provider):
    texts = [f"question number {i}" for i in range(30)]
    _, _, done = await run_agents(server, texts, "oa_bridge")
    assert [t["status"] for t in done] == ["idle"] * 30, server.log()[-3000:]
    await assert_each_own(get_client(url=server.url), texts, done)
    assert all(t["values"]["usage"]["total_tokens"] > 0 for t in done)
    batches = await provider_batches(provider, "oa_bridge")
    assert len(batches) < 30
    files = {f for b in batches for f in (b.input_file_id, b.output_file_id, b.error_file_id)}
    stored = {f.id async for f in provider.files.list()}
    assert not (files - {None}) & stored  # released once the results were recorded


async def test_responses_and_embeddings_endpoints(server):
    client = get_client(url=server.url)
    threads = await start(
        client,
        "oa_agent",
        [
            {"text": "a response please", "bridge": "oa_bridge", "endpoint": "responses"},
            {"text": "embed me", "bridge": "oa_bridge", "endpoint": "embeddings"},
        ],
    )
    done = await finished(client, threads)
    assert done[0]["values"]["answer"] == "Echo: a response please"
    assert done[1]["values"]["answer"] == 8


async def test_per_request_errors_fail_only_their_callers(server):
    texts = ["fine one", "broken [[fail]] line", "refused [[status:400]] line", "fine two"]
    client, threads, done = await run_agents(server, texts, "oa_bridge")
    assert [t["status"] for t in done] == ["idle", "error", "error", "idle"]
    await assert_each_own(client, texts, done, allowed_errors=("BatchItemError",))
    failed_line = await error_of(client, threads[1])
    refused = await error_of(client, threads[2])
    assert failed_line["error"] == refused["error"] == "BatchItemError"
    assert "server had an error while processing request" in failed_line["message"]
    assert "error status 400" in refused["message"]


async def test_expired_batches_keep_finished_rows_and_resubmit_the_rest(server, provider):
    texts = [f"slow item {i}" for i in range(12)]
    client, threads, done = await run_agents(server, texts, "oa_expire")
    await assert_each_own(client, texts, done, allowed_errors=("BatchFailedError",))
    statuses = [t["status"] for t in done]
    assert "idle" in statuses and "error" in statuses, statuses
    for thread_id, thread in zip(threads, done, strict=True):
        if thread["status"] == "error":
            error = await error_of(client, thread_id)
            assert error["error"] == "BatchFailedError" and "expired" in error["message"]
    batches = await provider_batches(provider, "oa_expire")
    assert len(batches) >= 2 and all(b.status == "expired" for b in batches)


async def test_cancelled_batches_deliver_partial_output_then_fail_the_rest(server, provider):
    texts = [f"cancel me {i}" for i in range(8)]
    client = get_client(url=server.url)
    threads = await start(client, "oa_agent", [{"text": t, "bridge": "oa_cancel"} for t in texts])

    async def cancel_running() -> bool:
        for batch in await provider_batches(provider, "oa_cancel"):
            if batch.status in ("validating", "in_progress"):
                await provider.batches.cancel(batch.id)
        states = await asyncio.gather(*(client.threads.get(t) for t in threads))
        return all(s["status"] in ("idle", "error") for s in states)

    await until(cancel_running, timeout=120, every=0.5)
    done = await finished(client, threads)
    await assert_each_own(client, texts, done, allowed_errors=("BatchFailedError",))
    statuses = [t["status"] for t in done]
    assert "idle" in statuses and "error" in statuses, statuses
    failed = [t for t, d in zip(threads, done, strict=True) if d["status"] == "error"]
    error = await error_of(client, failed[0])
    assert error["error"] == "BatchFailedError" and "cancelled" in error["message"]


async def test_a_batch_failing_validation_is_retried_then_failed_to_its_callers(server, provider):
    texts = [f"too many {i}" for i in range(4)]
    client, threads, done = await run_agents(server, texts, "oa_invalid")
    assert [t["status"] for t in done] == ["error"] * 4
    for thread_id in threads:
        error = await error_of(client, thread_id)
        assert error["error"] == "BatchFailedError"
        assert "too_many_requests" in error["message"], error
    assert len(await provider_batches(provider, "oa_invalid")) == 2


async def test_enqueued_token_budget_splits_a_batch(server, provider):
    texts = [f"budgeted question {i}" for i in range(12)]
    _, _, done = await run_agents(server, texts, "oa_tokens")
    assert [t["status"] for t in done] == ["idle"] * 12
    await assert_each_own(get_client(url=server.url), texts, done)
    assert len(await provider_batches(provider, "oa_tokens")) >= 2


async def test_provider_token_limit_failures_are_resubmitted(server, provider):
    """Each batch of 3 (~90 tokens) fits the 100-token limit alone, not next to another."""
    texts = [f"limited question {i} " + "y" * 100 for i in range(9)]
    _, _, done = await run_agents(server, texts, "oa_token_limit")
    assert [t["status"] for t in done] == ["idle"] * 9
    await assert_each_own(get_client(url=server.url), texts, done)
    batches = await provider_batches(provider, "oa_token_limit")
    failed = [b for b in batches if b.status == "failed"]
    assert failed and all(b.errors.data[0].code == "token_limit_exceeded" for b in failed)


async def test_late_output_file_is_waited_for(server):
    texts = [f"late file {i}" for i in range(5)]
    _, _, done = await run_agents(server, texts, "oa_late")
    assert [t["status"] for t in done] == ["idle"] * 5
    await assert_each_own(get_client(url=server.url), texts, done)


async def test_splitting_past_request_and_byte_limits(server, provider):
    texts = [f"split item {i} " + "x" * (i * 10) for i in range(8)]
    _, _, done = await run_agents(server, texts, "oa_split")
    assert [t["status"] for t in done] == ["idle"] * 8
    await assert_each_own(get_client(url=server.url), texts, done)
    batches = await provider_batches(provider, "oa_split")
    assert len(batches) >= 3
    assert all(b.request_counts.total <= 3 for b in batches)


async def test_mixed_models_in_one_flush_go_to_separate_files(server, provider):
    texts = [f"model mix {i}" for i in range(6)]
    client = get_client(url=server.url)
    models = ["gpt-4o-mini", "gpt-4o"] * 3
    inputs = [
        {"text": t, "bridge": "oa_split", "model": m} for t, m in zip(texts, models, strict=True)
    ]
    before = {b.id for b in await provider_batches(provider, "oa_split")}
    threads = await start(client, "oa_agent", inputs)
    done = await finished(client, threads)
    assert [t["status"] for t in done] == ["idle"] * 6
    await assert_each_own(get_client(url=server.url), texts, done)
    new = [b for b in await provider_batches(provider, "oa_split") if b.id not in before]
    # the emulator fails a file that mixes models, and names each batch's one model
    assert all(b.status == "completed" for b in new)
    assert {b.model for b in new} == {"gpt-4o-mini", "gpt-4o"}


async def test_a_result_file_past_the_memory_spool_is_read_from_disk(server):
    """Rows past `SPOOL_BYTES` wait in a temporary file: `langgraph dev` refuses blocking
    file calls on its event loop, so a buffered spool failed every poll there."""
    from batch_bridge.providers._rows import SPOOL_BYTES

    texts = [f"long answer {i} " + "x" * (SPOOL_BYTES + 1000) for i in range(3)]
    client, _, done = await run_agents(server, texts, "oa_bridge")
    assert [t["status"] for t in done] == ["idle"] * 3, server.log()[-3000:]
    await assert_each_own(client, texts, done)
    assert "BlockingError" not in server.log()
