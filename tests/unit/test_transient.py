"""A transient answer about a batch that exists means "poll again later", on every adapter.

Transient: 408, 409, 429, 5xx, a dropped connection. Each test makes one kind of call about
a running or ended batch (retrieve, result download, list, cancel) answer one of those,
then checks that the batch was neither resubmitted nor failed: every item is submitted
once and gets its own answer. `max_attempts=1` makes any resubmission show as a failure.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import openai
import pytest

from batch_bridge.providers.anthropic import AnthropicBatch
from batch_bridge.providers.openai import OpenAIBatch
from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.types import Pending
from tests.unit.adapter_helpers import finish

STATUSES = [408, 409, 429, 500, 503, 0]
"""0: the connection drops half-way through the answer."""
DEADLINE_S = 15.0

OPENAI_RETRIEVE = "GET /v1/batches/{batch_id}"
OPENAI_DOWNLOAD = "GET /v1/files/{file_id}/content"
OPENAI_LIST = "GET /v1/batches"
OPENAI_CANCEL = "POST /v1/batches/{batch_id}/cancel"
ANTHROPIC_RETRIEVE = "GET /v1/messages/batches/{batch_id}"
ANTHROPIC_DOWNLOAD = "GET /v1/messages/batches/{batch_id}/results"
ANTHROPIC_CANCEL = "POST /v1/messages/batches/{batch_id}/cancel"


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(in_progress_s=0.05, retry_after_s=0), port=0) as running:
        yield running


@pytest.fixture(autouse=True)
def no_faults_left(server: EmulatorServer) -> Iterator[None]:
    yield
    server.emulator.clear_faults()


@pytest.fixture
async def oai(server: EmulatorServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="t", max_retries=0) as c:
        yield c


@pytest.fixture
async def claude(server: EmulatorServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=server.anthropic_base_url, api_key="t", max_retries=0
    ) as c:
        yield c


def calls(server: EmulatorServer, route: str) -> int:
    return int(server.emulator.stats()["calls"].get(route, 0))


async def poll_through_faults(
    server: EmulatorServer, adapter: Any, handle: Any, route: str, times: int
) -> Any:
    """Poll until `route` answered `times` more calls; no poll may end the batch meanwhile."""
    wanted = calls(server, route) + times
    deadline = time.monotonic() + DEADLINE_S
    while calls(server, route) < wanted:
        assert time.monotonic() < deadline, f"{route} not called {times} times"
        outcome = await adapter.poll(handle)
        assert outcome is None or isinstance(outcome, Pending), outcome
        if isinstance(outcome, Pending):
            handle = outcome.handle
    return handle


def chat(text: str) -> dict[str, Any]:
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    return {"url": "/v1/chat/completions", "body": body}


def ask(text: str) -> dict[str, Any]:
    return {"model": "claude", "max_tokens": 16, "messages": [{"role": "user", "content": text}]}


def answer(result: Any) -> str:
    """The echoed text of an OpenAI chat completion or an Anthropic message."""
    if "choices" in result:
        return str(result["choices"][0]["message"]["content"])
    return str(result["content"][0]["text"])


def submitted(server: EmulatorServer, handle: Any) -> list[int]:
    """How many accepted provider batches held each item of the handle."""
    stats = server.emulator.stats()
    counts = stats["anthropic"]["submitted"] if "kind" in handle else stats["accepted"]
    return [counts.get(f"{handle['key']}-{n}", 0) for n in range(handle["n"])]


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize(
    "route", [OPENAI_RETRIEVE, OPENAI_DOWNLOAD, ANTHROPIC_RETRIEVE, ANTHROPIC_DOWNLOAD]
)
async def test_batch_polled_through_transient_answers(
    server: EmulatorServer,
    oai: openai.AsyncOpenAI,
    claude: anthropic.AsyncAnthropic,
    route: str,
    status: int,
) -> None:
    texts = [f"{route} {status} {n}" for n in range(3)]
    adapter: OpenAIBatch | AnthropicBatch
    if "/messages/" in route:
        adapter = AnthropicBatch(claude, max_attempts=1, retry_backoff_s=0)
        handle = await adapter.submit([ask(t) for t in texts])
    else:
        adapter = OpenAIBatch(oai, max_attempts=1, retry_backoff_s=0)
        handle = await adapter.submit([chat(t) for t in texts])
    server.emulator.add_fault(route, status=status, times=3)
    last = await poll_through_faults(server, adapter, handle, route, 3)
    results = await finish(adapter, last)
    assert [answer(r) for r in results] == [f"Echo: {t}" for t in texts]
    assert submitted(server, handle) == [1, 1, 1]


@pytest.mark.parametrize("status", STATUSES)
async def test_openai_list_before_a_create_answering_transient_waits(
    server: EmulatorServer, oai: openai.AsyncOpenAI, status: int
) -> None:
    """A budget of one request keeps the second part waiting; the poll that would start it
    first lists earlier batches, and that list answers a transient status."""
    texts = [f"openai list {status} {n}" for n in range(2)]
    adapter = OpenAIBatch(oai, max_attempts=1, retry_backoff_s=0, enqueued_token_budget=40)
    handle = await adapter.submit([chat(t) for t in texts])
    assert [p["state"] for p in handle["parts"]] == ["running", "waiting"]
    server.emulator.add_fault(OPENAI_LIST, status=status, times=2)
    handle = await poll_through_faults(server, adapter, handle, OPENAI_LIST, 2)
    results = await finish(adapter, handle)
    assert [answer(r) for r in results] == [f"Echo: {t}" for t in texts]
    assert submitted(server, handle) == [1, 1]


@pytest.mark.parametrize("status", STATUSES)
async def test_openai_cancel_answering_transient_raises_to_be_tried_again(
    server: EmulatorServer, oai: openai.AsyncOpenAI, status: int
) -> None:
    adapter = OpenAIBatch(oai, metadata={"emulator_in_progress_s": "30"})
    handle = await adapter.submit([chat(f"openai cancel {status}")])
    server.emulator.add_fault(OPENAI_CANCEL, status=status)
    with pytest.raises(openai.APIError):
        await adapter.cancel(handle)
    batch = await oai.batches.retrieve(handle["parts"][0]["batch"])
    assert batch.status == "in_progress"
    await adapter.cancel(handle)
    batch = await oai.batches.retrieve(batch.id)
    assert batch.status in ("cancelling", "cancelled")


@pytest.mark.parametrize("status", STATUSES)
async def test_anthropic_cancel_answering_transient_raises_to_be_tried_again(
    server: EmulatorServer, claude: anthropic.AsyncAnthropic, status: int
) -> None:
    emulator = server.emulator
    knobs = emulator.knobs
    emulator.knobs = dataclasses.replace(knobs, in_progress_s=30)
    try:
        adapter = AnthropicBatch(claude)
        handle = await adapter.submit([ask(f"anthropic cancel {status}")])
    finally:
        emulator.knobs = knobs
    emulator.add_fault(ANTHROPIC_CANCEL, status=status)
    with pytest.raises(anthropic.APIError):
        await adapter.cancel(handle)
    batch = await claude.messages.batches.retrieve(handle["parts"][0]["batch"])
    assert batch.processing_status == "in_progress"
    await adapter.cancel(handle)
    batch = await claude.messages.batches.retrieve(batch.id)
    assert batch.processing_status in ("canceling", "ended")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_404_about_the_batch_is_terminal_and_resubmits_the_part(
    oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic, provider: str
) -> None:
    """The other side of the rule: a batch the provider says it does not hold is gone."""
    texts = [f"{provider} gone {n}" for n in range(2)]
    adapter: OpenAIBatch | AnthropicBatch
    if provider == "anthropic":
        adapter = AnthropicBatch(claude, max_attempts=2, retry_backoff_s=0)
        handle = await adapter.submit([ask(t) for t in texts])
    else:
        adapter = OpenAIBatch(oai, max_attempts=2, retry_backoff_s=0)
        handle = await adapter.submit([chat(t) for t in texts])
    handle["parts"][0]["batch"] += "_gone"
    outcome = await adapter.poll(handle)
    assert isinstance(outcome, Pending), outcome
    retried = outcome.handle["parts"][0]
    assert (retried["state"], retried["attempt"]) == ("running", 1)
    assert "refused a call about batch" in retried["error"]
    results = await finish(adapter, outcome.handle)
    assert [answer(r) for r in results] == [f"Echo: {t}" for t in texts]
