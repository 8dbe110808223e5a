"""The seed README's examples, run as shipped: a script, and graphs on `langgraph dev`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from langgraph_sdk import get_client

from batch_bridge import PlatformError, bridge_thread_id, result
from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.testing.devserver import DevServer
from tests.conftest import ROOT
from tests.e2e.helpers import finished, start

EXAMPLES = ROOT / "examples"


def test_seed_script_batches_concurrent_submits_in_process():
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "seed_script.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    processed = [line for line in out if line.startswith("Processed: ")]
    assert sorted(processed) == sorted(f"Processed: item{i}" for i in range(1, 14))
    submitted = [int(line.split()[3]) for line in out if line.startswith("Submitting batch")]
    assert sum(submitted) == 13 and max(submitted) <= 5 and len(submitted) < 13


@pytest.fixture(scope="module")
def examples_emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(in_progress_s=0.5)) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def examples_server(
    examples_emulator: EmulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevServer]:
    graphs = json.loads((EXAMPLES / "langgraph.json").read_text())["graphs"]
    env = {"OPENAI_BASE_URL": examples_emulator.base_url, "OPENAI_API_KEY": "emulator"}
    with DevServer(
        tmp_path_factory.mktemp("examples"), graphs, base_dir=EXAMPLES, env=env
    ) as server:
        yield server


async def test_seed_batcher_in_a_sync_node(examples_server):
    client = get_client(url=examples_server.url)
    threads = await start(client, "seed_sync_agent", [{"item": f"test_item {i}"} for i in range(4)])
    done = await finished(client, threads)
    assert [t["values"]["result"] for t in done] == [f"Processed: test_item {i}" for i in range(4)]


async def test_seed_openai_bridge_and_wait(examples_server):
    """The seed matches results by position; each caller still gets one chat completion."""
    client = get_client(url=examples_server.url)
    inputs = [{"messages": [{"role": "user", "content": f"hello {i}"}]} for i in range(5)]
    threads = await start(client, "seed_openai_agent", inputs)
    done = await finished(client, threads)
    assert [t["status"] for t in done] == ["idle"] * 5, examples_server.log()[-3000:]
    answers = [t["values"]["messages"][-1] for t in done]
    assert all(a["object"] == "chat.completion" for a in answers)
    contents = sorted(a["choices"][0]["message"]["content"] for a in answers)
    assert contents == sorted(f"Echo: hello {i}" for i in range(5))


async def test_agent_with_tools_batches_both_model_calls(
    examples_server: DevServer, examples_emulator: EmulatorServer
) -> None:
    """The agent calls its tool, then answers; both model calls are batch requests."""
    client = get_client(url=examples_server.url)
    cities = ["Oslo", "Lima", "Pune"]
    before = examples_emulator.emulator.stats()
    inputs = [{"messages": [{"role": "user", "content": city}]} for city in cities]
    done = await finished(client, await start(client, "agent_with_tools", inputs))
    assert [t["status"] for t in done] == ["idle"] * 3, examples_server.log()[-3000:]
    for city, thread in zip(cities, done, strict=True):
        messages = thread["values"]["messages"]
        assert [m["type"] for m in messages] == ["human", "ai", "tool", "ai"]
        assert messages[1]["tool_calls"][0]["args"] == {"city": city, "days": 1}
        assert messages[2]["content"] == f"{city}: sunny for 1 day(s)."
        assert messages[3]["content"] == f"Echo: {city}: sunny for 1 day(s)."
    after = examples_emulator.emulator.stats()
    assert after["requests"] - before["requests"] == 2 * len(cities)
    sync_calls = "POST /v1/chat/completions"
    assert after["calls"].get(sync_calls, 0) == before["calls"].get(sync_calls, 0)


async def test_the_shipped_bridge_without_a_key_fails_its_callers_at_once(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    graphs = json.loads((ROOT / "langgraph.json").read_text())["graphs"]
    env = {"OPENAI_API_KEY": "", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    with DevServer(tmp_path_factory.mktemp("nokey"), graphs, base_dir=ROOT, env=env) as server:
        client = get_client(url=server.url)
        (thread,) = await start(client, "agent", [{"question": "anyone there?"}])
        with pytest.raises(PlatformError, match="OPENAI_API_KEY") as failure:
            await result(client, thread, timeout_s=30)  # dev profile: a 2 s flush, no retries
        assert "BatchFailedError" in str(failure.value)
        state = await client.threads.get_state(bridge_thread_id("bridge"))
        assert "OPENAI_API_KEY" in state["values"]["last_error"]
