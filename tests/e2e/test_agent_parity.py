"""Batched agents end as unbatched ones do: real `langgraph dev`, the emulator as provider.

Each case runs the same tool-calling agent (tests/e2e/graphs/agent_parity_graphs.py) on a
few threads with the bridge and without, then checks that every batched thread holds the
messages its unbatched twin holds (human, AI calling the tool, tool result, AI answer; same
tool-call names, arguments and ids, same texts) and that each of its two model calls was a
request in a provider batch.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

import anthropic
import openai
import pytest

from batch_bridge.testing import EmulatorServer
from batch_bridge.testing.devserver import DevServer
from tests.conftest import E2E_GRAPHS, start_dev_server
from tests.e2e.helpers import agent_messages, summary

GRAPHS = [
    "parity_openai",
    "parity_anthropic",
    "openai_agent_batched",
    "openai_agent_plain",
    "anthropic_agent_batched",
    "anthropic_agent_plain",
    "openai_bound_batched",
    "openai_bound_plain",
]
ANTHROPIC_MODEL = "claude-parity"
"""The graphs' Anthropic model (the module cannot be imported here: it needs API keys)."""
THREADS = 3
MODEL_CALLS_PER_THREAD = 2


@pytest.fixture(scope="module")
def server(
    batch_api_emulator: EmulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevServer]:
    spec = str(E2E_GRAPHS / "agent_parity_graphs.py")
    env = {
        "OPENAI_BASE_URL": batch_api_emulator.base_url,
        "OPENAI_API_KEY": "emulator",
        "ANTHROPIC_BASE_URL": batch_api_emulator.anthropic_base_url,
        "ANTHROPIC_API_KEY": "emulator",
    }
    graphs = {name: f"{spec}:{name}" for name in GRAPHS}
    dev = start_dev_server(tmp_path_factory.mktemp("agent_parity"), graphs, env=env)
    yield dev
    dev.stop()


async def openai_batched(emulator: EmulatorServer) -> tuple[int, int]:
    """Batches the `parity_openai` bridge created, and the requests they held."""
    provider = openai.AsyncOpenAI(base_url=emulator.base_url, api_key="emulator", max_retries=0)
    batches = requests = 0
    async for batch in provider.batches.list(limit=100):
        if (batch.metadata or {}).get("test_bridge") == "parity_openai" and batch.request_counts:
            batches += 1
            requests += batch.request_counts.total
    return batches, requests


async def anthropic_batched(emulator: EmulatorServer) -> tuple[int, int]:
    """Message Batches holding `ANTHROPIC_MODEL` requests, and how many such requests
    (results are read only once a batch has ended: the bridge's have, by the time a
    thread it answered is idle)."""
    provider = anthropic.AsyncAnthropic(
        base_url=emulator.anthropic_base_url, api_key="emulator", max_retries=0
    )
    batches = requests = 0
    async for batch in provider.messages.batches.list(limit=100):
        if batch.processing_status != "ended":
            continue
        rows = [
            row
            async for row in await provider.messages.batches.results(batch.id)
            if row.result.type == "succeeded" and row.result.message.model == ANTHROPIC_MODEL
        ]
        batches += bool(rows)
        requests += len(rows)
    return batches, requests


Counter = Callable[[EmulatorServer], Awaitable[tuple[int, int]]]


@pytest.mark.parametrize(
    ("batched", "plain", "count"),
    [
        ("openai_agent_batched", "openai_agent_plain", openai_batched),
        ("anthropic_agent_batched", "anthropic_agent_plain", anthropic_batched),
        ("openai_bound_batched", "openai_bound_plain", openai_batched),
    ],
    ids=["openai-agent", "anthropic-agent", "openai-bind-tools"],
)
async def test_batched_threads_end_like_unbatched_ones(
    server: DevServer,
    batch_api_emulator: EmulatorServer,
    batched: str,
    plain: str,
    count: Counter,
) -> None:
    texts = [f"{batched} city {i}" for i in range(THREADS)]
    batches_before, requests_before = await count(batch_api_emulator)
    started = time.monotonic()
    with_bridge = await agent_messages(server, batched, texts)
    batched_s = time.monotonic() - started
    batches_after, requests_after = await count(batch_api_emulator)
    without = await agent_messages(server, plain, texts)

    for text, ours, theirs in zip(texts, with_bridge, without, strict=True):
        assert [m["type"] for m in ours] == ["human", "ai", "tool", "ai"]
        call = ours[1]["tool_calls"][0]
        assert (call["name"], call["args"]) == ("get_weather", {"city": text})
        assert ours[2]["tool_call_id"] == call["id"]
        assert summary(ours[3])["content"] == f"Echo: Sunny in {text}"
        assert [summary(m) for m in ours] == [summary(m) for m in theirs]
    assert await count(batch_api_emulator) == (batches_after, requests_after), (
        "the unbatched run must not create batches"
    )
    assert requests_after - requests_before == THREADS * MODEL_CALLS_PER_THREAD
    batches = batches_after - batches_before
    assert MODEL_CALLS_PER_THREAD <= batches <= THREADS * MODEL_CALLS_PER_THREAD
    print(f"{batched}: {THREADS} threads, {batches} provider batches, {batched_s:.1f} s")
