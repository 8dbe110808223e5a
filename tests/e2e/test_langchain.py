"""LangChain end to end: real `langgraph dev`, a `create_agent` agent with the batching
middleware and a node calling a batched `ChatOpenAI`, the OpenAI adapter in the bridge, and
the emulator as provider: it calls the agent's tool, then answers "Echo: <tool result>", so
an agent run is two model calls through the bridge; the tool-less node's one call is
answered "Echo: <text>". test_agent_parity.py compares these runs with unbatched ones.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from langgraph_sdk import get_client

from batch_bridge.testing import EmulatorServer
from tests.conftest import E2E_GRAPHS, DevServer, start_dev_server
from tests.e2e.helpers import finished, start


@pytest.fixture(scope="module")
def server(
    batch_api_emulator: EmulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevServer]:
    spec = str(E2E_GRAPHS / "langchain_graphs.py")
    graphs = {name: f"{spec}:{name}" for name in ("lc_bridge", "lc_agent", "lc_model")}
    env = {"OPENAI_BASE_URL": batch_api_emulator.base_url, "OPENAI_API_KEY": "emulator"}
    dev = start_dev_server(tmp_path_factory.mktemp("langchain"), graphs, env=env)
    yield dev
    dev.stop()


async def batched_requests(emulator: EmulatorServer) -> int:
    """How many requests the bridge sent to the emulator in batches (the plain chat
    endpoint, which an unbatched model would call, is not counted)."""
    provider = openai.AsyncOpenAI(base_url=emulator.base_url, api_key="emulator", max_retries=0)
    total = 0
    async for batch in provider.batches.list(limit=100):
        if (batch.metadata or {}).get("test_bridge") == "lc_bridge" and batch.request_counts:
            total += batch.request_counts.total
    return total


@pytest.mark.parametrize(
    ("graph", "types", "answer"),
    [
        ("lc_agent", ["human", "ai", "tool", "ai"], "Echo: Sunny in {}"),
        ("lc_model", ["human", "ai"], "Echo: {}"),
    ],
)
async def test_model_calls_go_through_the_bridge(
    server: DevServer,
    batch_api_emulator: EmulatorServer,
    graph: str,
    types: list[str],
    answer: str,
) -> None:
    client = get_client(url=server.url)
    before = await batched_requests(batch_api_emulator)
    texts = [f"{graph} question {i}" for i in range(3)]
    inputs = [{"messages": [{"role": "user", "content": text}]} for text in texts]
    threads = await start(client, graph, inputs)
    done = await finished(client, threads, timeout=120)
    for text, thread in zip(texts, done, strict=True):
        assert thread["status"] == "idle", thread
        messages = thread["values"]["messages"]
        assert [m["type"] for m in messages] == types
        last = messages[-1]
        assert last["content"] == answer.format(text)
        assert last["usage_metadata"]["total_tokens"] > 0
        assert last["response_metadata"]["model_provider"] == "openai"
    model_calls = types.count("ai")
    assert await batched_requests(batch_api_emulator) == before + model_calls * len(texts)
