"""OpenAI-compatible services end to end: real `langgraph dev`, `OpenAIBatch(profile=...)`
in the bridge, the real `openai` SDK over HTTP to an emulator behaving like Groq, and one
behaving like Azure OpenAI (served under `/openai/v1`, batches never expired)."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from langgraph_sdk import get_client

from batch_bridge.providers.openai import AZURE_OPENAI, GROQ
from batch_bridge.testing import Emulator, EmulatorServer
from tests.conftest import E2E_GRAPHS, DevServer, start_dev_server
from tests.e2e.helpers import finished, start


@pytest.fixture(scope="module")
def groq() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(profile=GROQ, in_progress_s=0.5)) as server:
        yield server


@pytest.fixture(scope="module")
def azure() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(profile=AZURE_OPENAI, in_progress_s=0.5)) as server:
        yield server


@pytest.fixture(scope="module")
def server(
    groq: EmulatorServer, azure: EmulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevServer]:
    spec = str(E2E_GRAPHS / "profile_graphs.py")
    graphs = {name: f"{spec}:{name}" for name in ("groq", "azure", "agent")}
    env = {"GROQ_BASE_URL": groq.base_url, "AZURE_OPENAI_BASE_URL": azure.base_url}
    dev = start_dev_server(tmp_path_factory.mktemp("profiles"), graphs, env=env)
    yield dev
    dev.stop()


async def test_groq_runs_chat_in_a_7d_window_and_refuses_embeddings_per_item(
    server: DevServer, groq: EmulatorServer
) -> None:
    client = get_client(url=server.url)
    inputs = [{"text": f"groq {i}", "bridge": "groq"} for i in range(5)]
    inputs.append({"text": "embed me", "bridge": "groq", "endpoint": "embeddings"})
    done = await finished(client, await start(client, "agent", inputs), timeout=120)

    assert [t["values"].get("answer") for t in done[:5]] == [f"Echo: groq {i}" for i in range(5)]
    assert done[5]["status"] == "error"
    async with openai.AsyncOpenAI(base_url=groq.base_url, api_key="x") as sdk:
        batches = (await sdk.batches.list()).data
    assert {(b.endpoint, b.completion_window) for b in batches} == {("/v1/chat/completions", "7d")}
    assert groq.emulator.stats()["files_uploaded"] == len(batches)


async def test_azure_batches_past_their_window_run_on_to_completion(
    server: DevServer, azure: EmulatorServer
) -> None:
    assert azure.base_url.endswith("/openai/v1")
    client = get_client(url=server.url)
    inputs = [{"text": f"azure {i}", "bridge": "azure"} for i in range(4)]
    done = await finished(client, await start(client, "agent", inputs), timeout=120)

    assert [t["values"].get("answer") for t in done] == [f"Echo: azure {i}" for i in range(4)]
    stats = azure.emulator.stats()
    assert stats["batches_by_status"]["completed"] == stats["batches"] >= 1
    assert stats["batches_by_status"]["expired"] == 0
