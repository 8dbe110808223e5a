"""Deadlines end to end: real `langgraph dev`, the real OpenAI and Anthropic SDKs over HTTP
to an emulator whose batches never finish. A caller with `max_wait` gets its answer from the
provider's normal API (OpenAI: the flex tier, or the standard one when flex refuses), once,
marked in its usage as a fallback and priced at what was paid.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest
from langgraph_sdk import get_client

from batch_bridge import usage
from batch_bridge.testing import Emulator, EmulatorServer
from tests.conftest import E2E_GRAPHS, DevServer, start_dev_server
from tests.e2e.helpers import bridge_state, finished, start, until

NEVER = 10**9
"""Seconds an emulated batch stays in progress: it never finishes during a test."""


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(in_progress_s=NEVER), port=0) as running:
        yield running


@pytest.fixture(scope="module")
def server(
    emulator: EmulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevServer]:
    spec = str(E2E_GRAPHS / "fallback_graphs.py")
    names = ["fb_openai", "fb_slow", "fb_anthropic", "openai_agent", "anthropic_agent"]
    env = {
        "OPENAI_BASE_URL": emulator.base_url,
        "OPENAI_API_KEY": "emulator",
        "ANTHROPIC_BASE_URL": emulator.anthropic_base_url,
        "ANTHROPIC_API_KEY": "emulator",
    }
    dev = start_dev_server(
        tmp_path_factory.mktemp("fallback"), {n: f"{spec}:{n}" for n in names}, env=env
    )
    yield dev
    dev.stop()


async def test_a_caller_past_its_deadline_gets_the_flex_answer_at_batch_price(server, emulator):
    client = get_client(url=server.url)
    started = time.monotonic()
    [thread] = await start(client, "openai_agent", [{"text": "in time", "max_wait": 3}])
    [done] = await finished(client, [thread], timeout=60)
    elapsed = time.monotonic() - started
    assert done["status"] == "idle", server.log()[-3000:]
    assert done["values"]["answer"] == "Echo: in time"
    assert done["values"]["service_tier"] == "flex"
    assert 3 <= elapsed < 30

    spent = await usage(client, thread, bridge="fb_openai")
    assert spent["items"] == spent["fallback_items"] == 1
    assert spent["batch_usd"] == pytest.approx(spent["normal_usd"] / 2)  # flex: batch price

    state = await until(lambda: _state_with(client, "items_fallen_back"))
    assert state["items_fallen_back"] >= 1
    provider = openai.AsyncOpenAI(base_url=emulator.base_url, api_key="x", max_retries=0)

    async def cancelled() -> bool:
        batches = [b async for b in provider.batches.list(limit=100)]
        ours = [b for b in batches if (b.metadata or {}).get("test_bridge") == "fb_openai"]
        return bool(ours) and all(b.status in ("cancelling", "cancelled") for b in ours)

    await until(cancelled, timeout=30)  # nobody waits on the batch any more


async def test_flex_refused_the_standard_tier_answers_at_normal_price(server, emulator):
    emulator.emulator.add_fault("POST /v1/chat/completions", status=429, times=1)
    client = get_client(url=server.url)
    [thread] = await start(client, "openai_agent", [{"text": "standard please", "max_wait": 2}])
    [done] = await finished(client, [thread], timeout=60)
    assert done["status"] == "idle", server.log()[-3000:]
    assert done["values"]["answer"] == "Echo: standard please"
    assert done["values"]["service_tier"] == "default"
    spent = await usage(client, thread, bridge="fb_openai")
    assert spent["fallback_items"] == 1
    assert spent["batch_usd"] == pytest.approx(spent["normal_usd"]) and spent["saved_usd"] == 0


async def test_anthropic_callers_fall_back_to_messages_by_the_bridge_default(server):
    client = get_client(url=server.url)
    threads = await start(client, "anthropic_agent", [{"text": "hi Claude"}, {"text": "again"}])
    done = await finished(client, threads, timeout=60)
    assert [t["values"]["answer"] for t in done] == ["Echo: hi Claude", "Echo: again"]
    for thread in threads:
        spent = await usage(client, thread, bridge="fb_anthropic")
        assert spent["fallback_items"] == 1 and spent["saved_usd"] == 0


async def test_a_short_deadline_wakes_a_bridge_whose_next_tick_is_far_away(server, emulator):
    client = get_client(url=server.url)
    provider = openai.AsyncOpenAI(base_url=emulator.base_url, api_key="x", max_retries=0)
    await start(client, "openai_agent", [{"text": "patient", "bridge": "fb_slow"}])

    async def submitted_and_scheduled() -> bool:
        batches = [b async for b in provider.batches.list(limit=100)]
        state = await bridge_state(client, "fb_slow")
        return any((b.metadata or {}).get("test_bridge") == "fb_slow" for b in batches) and (
            (state.get("next_tick_in_s") or 0) >= 60
        )

    await until(submitted_and_scheduled, timeout=30)  # the next tick is two minutes away
    started = time.monotonic()
    [hurried] = await start(
        client, "openai_agent", [{"text": "hurried", "bridge": "fb_slow", "max_wait": 2}]
    )
    [done] = await finished(client, [hurried], timeout=60)
    assert done["values"]["service_tier"] == "flex"
    assert time.monotonic() - started < 20  # woken early, not at the scheduled tick


async def _state_with(client, key):
    state = await bridge_state(client, "fb_openai")
    return state if state.get(key) else None
