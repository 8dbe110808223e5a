"""Dedup end to end: real `langgraph dev`, the real OpenAI SDK against the emulator. The same
question from several caller threads in one flush window reaches the provider once, and
every thread gets the answer; the bridge's state counts the riders."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from batch_bridge import bridge_thread_id
from batch_bridge.testing import EmulatorServer
from tests.conftest import E2E_GRAPHS, DevServer, start_dev_server
from tests.e2e.helpers import finished, start, until

QUESTIONS = ["what is a batch?"] * 3 + ["something else"]


@pytest.fixture(scope="module")
def server(
    batch_api_emulator: EmulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevServer]:
    spec = str(E2E_GRAPHS / "dedupe_graphs.py")
    graphs = {"dedupe_oa": f"{spec}:dedupe_oa", "dedupe_agent": f"{spec}:agent"}
    env = {"OPENAI_BASE_URL": batch_api_emulator.base_url, "OPENAI_API_KEY": "emulator"}
    dev = start_dev_server(tmp_path_factory.mktemp("dedupe"), graphs, env=env)
    yield dev
    dev.stop()


def provider_requests(emulator: EmulatorServer) -> int:
    stats = httpx.get(f"{emulator.url}/_emulator/stats").json()
    return int(stats["requests"])


async def test_identical_questions_from_several_threads_are_submitted_once(
    server: DevServer, batch_api_emulator: EmulatorServer
) -> None:
    client = get_client(url=server.url)
    before = provider_requests(batch_api_emulator)

    threads = await start(client, "dedupe_agent", [{"question": q} for q in QUESTIONS])
    done = await finished(client, threads, timeout=120)

    assert [t["status"] for t in done] == ["idle"] * len(QUESTIONS), server.log()[-3000:]
    assert provider_requests(batch_api_emulator) - before == 2
    by_thread = {t["thread_id"]: t["values"] for t in done}
    values = [by_thread[t] for t in threads]
    assert all(v["answer"] for v in values)
    assert len({v["completion_id"] for v in values[:3]}) == 1  # one answer, three callers
    assert values[3]["completion_id"] != values[0]["completion_id"]

    async def counted() -> dict[str, Any] | None:
        state = await client.threads.get_state(bridge_thread_id("dedupe_oa"))
        found = state["values"]
        return found if found.get("items_delivered") == len(QUESTIONS) else None

    state = await until(counted, timeout=60)
    assert state["items_submitted"] == 2 and state["items_deduplicated"] == 2
