"""A provider answering 408 or 409 to a running batch's retrieves: real `langgraph dev`, the
bridge, each adapter with its SDK's own retries, and the emulator over HTTP.

Such answers mean "ask again later". The batch must be submitted once (one provider batch,
each request in it once) and every caller must get its own answer; before the fix the
OpenAI adapter resubmitted the batch on each and its callers failed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langgraph_sdk import get_client

from batch_bridge.testing import Emulator, EmulatorServer
from tests.conftest import E2E_GRAPHS, DevServer, start_dev_server
from tests.e2e.graphs.transient_graphs import CALLERS
from tests.e2e.helpers import finished, start

RETRIEVE = {
    "openai": "GET /v1/batches/{batch_id}",
    "anthropic": "GET /v1/messages/batches/{batch_id}",
}
FAULTS = 6
"""Two polls' worth: each poll's retrieve is tried three times by the SDK."""


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(in_progress_s=0.5)) as server:
        yield server


@pytest.fixture(scope="module")
def server(
    emulator: EmulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevServer]:
    spec = str(E2E_GRAPHS / "transient_graphs.py")
    graphs = {name: f"{spec}:{name}" for name in ("tr_openai", "tr_anthropic", "agent")}
    env = {
        "OPENAI_BASE_URL": emulator.base_url,
        "OPENAI_API_KEY": "emulator",
        "ANTHROPIC_BASE_URL": emulator.anthropic_base_url,
        "ANTHROPIC_API_KEY": "emulator",
    }
    dev = start_dev_server(tmp_path_factory.mktemp("transient"), graphs, env=env)
    yield dev
    dev.stop()


def provider_counts(emulator: EmulatorServer, provider: str) -> tuple[int, int]:
    """Batches ever created at the provider (deleted ones too), and the requests they held."""
    stats = emulator.emulator.stats()
    if provider == "anthropic":
        stats = stats["anthropic"]
        return stats["batches_created"], stats["requests_created"]
    return stats["batches_created"], sum(stats["submitted"].values())


@pytest.mark.parametrize("status", [408, 409])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_transient_retrieves_neither_resubmit_nor_fail(
    server: DevServer, emulator: EmulatorServer, provider: str, status: int
) -> None:
    route = RETRIEVE[provider]
    batches, requests = provider_counts(emulator, provider)
    calls = emulator.emulator.stats()["calls"].get(route, 0)
    emulator.emulator.add_fault(route, status=status, times=FAULTS)
    texts = [f"{provider} {status} caller {n}" for n in range(CALLERS)]
    client = get_client(url=server.url)
    inputs = [{"text": text, "provider": provider} for text in texts]
    done = await finished(client, await start(client, "agent", inputs), timeout=120)
    assert [t["status"] for t in done] == ["idle"] * CALLERS, server.log()[-3000:]
    assert [t["values"]["answer"] for t in done] == [f"Echo: {text}" for text in texts]
    assert emulator.emulator.stats()["calls"][route] - calls > FAULTS
    after = provider_counts(emulator, provider)
    assert (after[0] - batches, after[1] - requests) == (1, CALLERS)
