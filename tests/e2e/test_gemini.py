"""Gemini end to end: real `langgraph dev`, `wrap_gemini` in caller nodes and
`batched` agents, `GeminiBatch` in the bridge, and the real `google-genai` SDK over HTTP to
the emulator.

Each caller gets exactly its own answer or its own error; a batched agent's thread ends with
the messages its unbatched twin's holds (same tool-call names, arguments and ids, same
texts), each of its model calls a request in a Gemini batch job.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langgraph_sdk import get_client

from batch_bridge.testing import EmulatorServer
from tests.conftest import E2E_GRAPHS, DevServer, start_dev_server
from tests.e2e.helpers import agent_messages, error_of, finished, start, summary

GRAPHS = ["gm_bridge", "gm_file", "gm_ask", "gemini_agent_batched", "gemini_agent_plain"]
PARITY_MODEL = "gemini-parity"
"""The agents' model (tests/e2e/graphs/gemini_graphs.py)."""


@pytest.fixture(scope="module")
def server(
    batch_api_emulator: EmulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevServer]:
    spec = str(E2E_GRAPHS / "gemini_graphs.py")
    env = {
        "GOOGLE_GEMINI_BASE_URL": batch_api_emulator.gemini_base_url,
        "GEMINI_API_KEY": "emulator",
    }
    dev = start_dev_server(
        tmp_path_factory.mktemp("gemini"), {g: f"{spec}:{g}" for g in GRAPHS}, env=env
    )
    yield dev
    dev.stop()


def gemini_stats(emulator: EmulatorServer) -> dict[str, Any]:
    stats: dict[str, Any] = emulator.emulator.stats()["gemini"]
    return stats


@pytest.mark.parametrize("bridge", ["gm_bridge", "gm_file"], ids=["inline", "file"])
async def test_each_caller_gets_its_own_answer_and_a_row_error_stays_its_own(
    server: DevServer, batch_api_emulator: EmulatorServer, bridge: str
) -> None:
    client = get_client(url=server.url)
    texts = [f"{bridge} caller {i}" for i in range(12)]
    texts[5] = f"{bridge} caller 5 [[fail]]"
    before = gemini_stats(batch_api_emulator)

    done = await finished(
        client, await start(client, "gm_ask", [{"text": t, "bridge": bridge} for t in texts])
    )

    for index, (text, thread) in enumerate(zip(texts, done, strict=True)):
        if index == 5:
            assert thread["status"] == "error", thread
            assert (await error_of(client, thread["thread_id"]))["error"] == "BatchItemError"
        else:
            assert thread["status"] == "idle", server.log()[-3000:]
            assert thread["values"]["answer"] == f"Echo: {text}"
    after = gemini_stats(batch_api_emulator)
    jobs = after["batches_created"] - before["batches_created"]
    assert 1 <= jobs < len(texts)
    uploads = after["files_uploaded"] - before["files_uploaded"]
    assert uploads == (jobs if bridge == "gm_file" else 0)
    requests = after["requests_created"] - before["requests_created"]
    assert requests == len(texts)  # each caller's request went to Google once


async def test_a_batched_agent_ends_like_an_unbatched_one(
    server: DevServer, batch_api_emulator: EmulatorServer
) -> None:
    texts = [f"gemini agent city {i}" for i in range(3)]
    before = gemini_stats(batch_api_emulator)["requests_created"]
    with_bridge = await agent_messages(server, "gemini_agent_batched", texts)
    after = gemini_stats(batch_api_emulator)["requests_created"]
    without = await agent_messages(server, "gemini_agent_plain", texts)

    for text, ours, theirs in zip(texts, with_bridge, without, strict=True):
        assert [m["type"] for m in ours] == ["human", "ai", "tool", "ai"]
        call = ours[1]["tool_calls"][0]
        assert (call["name"], call["args"]) == ("get_weather", {"city": text})
        assert ours[2]["tool_call_id"] == call["id"]
        assert summary(ours[3])["content"] == f"Echo: Sunny in {text}"
        assert [summary(m) for m in ours] == [summary(m) for m in theirs]
    assert after - before == 2 * len(texts)  # two model calls per thread, all batched
    assert gemini_stats(batch_api_emulator)["requests_created"] == after  # none for plain
