"""The same end-to-end matrix for OpenAI, Anthropic and Gemini: one real `langgraph dev`,
the provider SDKs over HTTP to one emulator, a bridge per provider
(tests/e2e/graphs/matrix_graphs.py).

Each scenario runs once per provider: every caller gets its own answer; a row error fails
only its caller; an expired batch's finished rows answer and the rest are resubmitted;
`cancel_batch` fails the unfinished rows with `BatchCancelledError`; a tool-calling agent
and a structured-output call end batched as they do unbatched.

Expiry and cancellation need slow batches: the test sets the emulator's server-wide knobs
while its callers' batches are created (each batch pins the knobs it was created with),
so this module has its own emulator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from batch_bridge import cancel_batch
from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.testing.devserver import DevServer
from tests.conftest import E2E_GRAPHS
from tests.e2e.helpers import (
    agent_messages,
    bridge_state,
    emulator_env,
    error_of,
    finished,
    start,
    summary,
    until,
)

PROVIDERS = ["openai", "anthropic", "gemini"]
GRAPHS = [
    *(f"mx_{p}" for p in PROVIDERS),
    "mx_ask",
    "mx_structured",
    *(f"mx_{kind}_{p}" for kind in ("agent", "plain") for p in PROVIDERS),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DevServer, EmulatorServer]]:
    """One `langgraph dev` serving the matrix graphs, and the emulator it calls."""
    graphs = {g: f"{E2E_GRAPHS / 'matrix_graphs.py'}:{g}" for g in GRAPHS}
    with EmulatorServer(Emulator()) as emulator:
        workdir = tmp_path_factory.mktemp("matrix")
        with DevServer(workdir, graphs, env=emulator_env(emulator)) as dev:
            yield dev, emulator


@pytest.fixture
def server(stack: tuple[DevServer, EmulatorServer]) -> DevServer:
    return stack[0]


@pytest.fixture
def emulator(stack: tuple[DevServer, EmulatorServer]) -> EmulatorServer:
    return stack[1]


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def requests_sent(emulator: EmulatorServer, provider: str) -> int:
    """Requests this provider's routes received in batches so far (a resubmitted one again)."""
    stats = emulator.emulator.stats()
    if provider == "openai":
        return sum(stats["submitted"].values())
    return int(stats[provider]["requests_created"])


async def ask(
    server: DevServer, provider: str, texts: list[str]
) -> tuple[LangGraphClient, list[str]]:
    client = get_client(url=server.url)
    return client, await start(client, "mx_ask", [{"provider": provider, "text": t} for t in texts])


async def outcomes(client: LangGraphClient, texts: list[str], threads: list[str]) -> list[str]:
    """Each caller's answer checked against its own question: "answered", or its error name."""
    done = await finished(client, threads, timeout=60)
    found = []
    for text, thread in zip(texts, done, strict=True):
        if thread["status"] == "idle":
            assert thread["values"]["answer"] == f"Echo: {text}", thread["values"]
            found.append("answered")
        else:
            found.append((await error_of(client, thread["thread_id"]))["error"])
    return found


async def submitted_with(
    emulator: EmulatorServer, client: LangGraphClient, bridge: str, items: int, **knobs: Any
) -> list[str]:
    """Let the batches created until `items` items are out pin `knobs` (then put the
    server's knobs back, for the batches after them); returns those batches' bridge ids."""
    before = emulator.emulator.knobs
    emulator.emulator.knobs = dataclasses.replace(before, **knobs)

    async def out() -> list[str] | None:
        flights = (await bridge_state(client, bridge)).get("in_flight") or []
        mine = [f for f in flights if f["status"] == "submitted"]
        return [f["batch_id"] for f in mine] if sum(f["size"] for f in mine) >= items else None

    try:
        batch_ids: list[str] = await until(out, timeout=30, every=0.1)
    finally:
        emulator.emulator.knobs = before
    return batch_ids


async def test_each_caller_gets_its_own_answer(server: DevServer, provider: str) -> None:
    texts = [f"{provider} own question {i}" for i in range(8)]
    client, threads = await ask(server, provider, texts)
    assert await outcomes(client, texts, threads) == ["answered"] * 8, server.log()[-3000:]


async def test_a_row_error_fails_only_its_caller(server: DevServer, provider: str) -> None:
    texts = [f"{provider} row error {i}" for i in range(4)]
    texts[1] += " [[fail]]"
    texts[2] += " [[status:400]]"
    client, threads = await ask(server, provider, texts)
    expected = ["answered", "BatchItemError", "BatchItemError", "answered"]
    assert await outcomes(client, texts, threads) == expected


async def test_an_expired_batch_answers_finished_rows_and_resubmits_the_rest(
    server: DevServer, emulator: EmulatorServer, provider: str
) -> None:
    texts = [f"{provider} expiring {i}" for i in range(16)]
    before = requests_sent(emulator, provider)
    client, threads = await ask(server, provider, texts)
    slow = {"in_progress_s": 30.0, "expire_after_s": 2.0, "expire_completed_fraction": 0.5}
    await submitted_with(emulator, client, f"mx_{provider}", len(texts), **slow)

    assert await outcomes(client, texts, threads) == ["answered"] * len(texts)
    resent = requests_sent(emulator, provider) - before - len(texts)
    assert 0 < resent < len(texts)  # the rows the expired batch had not finished, only


async def test_cancel_batch_fails_unfinished_callers_once(
    server: DevServer, emulator: EmulatorServer, provider: str
) -> None:
    texts = [f"{provider} cancelled {i}" for i in range(8)]
    client, threads = await ask(server, provider, texts)
    held = {"in_progress_s": 600.0, "cancel_completed_fraction": 0.25}
    bridge = f"mx_{provider}"
    for batch_id in await submitted_with(emulator, client, bridge, len(texts), **held):
        assert await cancel_batch(client, batch_id, bridge=bridge) in ("cancelling", "cancelled")

    found = await outcomes(client, texts, threads)
    assert set(found) <= {"answered", "BatchCancelledError"} and "BatchCancelledError" in found
    for thread_id in threads:
        runs = await client.runs.list(thread_id, limit=10)
        assert len(runs) == 2, runs  # the caller's first run, and the one resume


async def test_a_batched_agent_with_a_tool_ends_like_an_unbatched_one(
    server: DevServer, emulator: EmulatorServer, provider: str
) -> None:
    texts = [f"{provider} agent city {i}" for i in range(3)]
    before = requests_sent(emulator, provider)
    ours = await agent_messages(server, f"mx_agent_{provider}", texts)
    assert requests_sent(emulator, provider) - before == 2 * len(texts)
    theirs = await agent_messages(server, f"mx_plain_{provider}", texts)

    for text, mine, plain in zip(texts, ours, theirs, strict=True):
        assert [m["type"] for m in mine] == ["human", "ai", "tool", "ai"]
        call = mine[1]["tool_calls"][0]
        assert (call["name"], call["args"]) == ("get_weather", {"city": text})
        assert summary(mine[3])["content"] == f"Echo: Sunny in {text}"
        assert [summary(m) for m in mine] == [summary(m) for m in plain]


async def test_structured_output_parses_through_the_bridge(
    server: DevServer, emulator: EmulatorServer, provider: str
) -> None:
    texts = [f"{provider} structured {i}" for i in range(3)]
    client = get_client(url=server.url)
    before = requests_sent(emulator, provider)
    results = {}
    for batched in (True, False):
        inputs = [{"provider": provider, "text": t, "batched": batched} for t in texts]
        done = await finished(client, await start(client, "mx_structured", inputs), timeout=60)
        assert [t["status"] for t in done] == ["idle"] * len(texts), server.log()[-3000:]
        results[batched] = [t["values"]["answer"] for t in done]
        if batched:
            assert requests_sent(emulator, provider) - before == len(texts)

    assert results[True] == results[False]
    assert results[True] == [{"name": t, "population": 1} for t in texts]
