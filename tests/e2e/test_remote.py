"""A caller graph on a second deployment reaches the bridge by URL and is resumed at home."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langgraph_sdk import get_client

from tests.conftest import E2E_GRAPHS, SHARED_SECRET, DevServer, start_dev_server
from tests.e2e.helpers import bridge_state, finished, interrupted, start, until


@pytest.fixture(scope="module")
def caller_server(
    dev_server: DevServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevServer]:
    callers = E2E_GRAPHS / "callers.py"
    graphs = {"agent": f"{callers}:agent", "sync_agent": f"{callers}:sync_agent"}
    server = start_dev_server(
        tmp_path_factory.mktemp("callers"),
        graphs,
        env={"BATCH_BRIDGE_URL": dev_server.url, **SHARED_SECRET},
        jobs=4,
    )
    yield server
    server.stop()


async def test_caller_on_another_deployment_is_resumed_with_its_result(dev_server, caller_server):
    bridge_client = get_client(url=dev_server.url)
    caller_client = get_client(url=caller_server.url)
    before = (await bridge_state(bridge_client, "bridge")).get("items_completed", 0)
    threads = await start(caller_client, "agent", [{"item": f"remote {i}"} for i in range(5)])
    done = await finished(caller_client, threads)
    assert [t["status"] for t in done] == ["idle"] * 5, caller_server.log()[-3000:]
    assert [t["values"]["result"]["echo"] for t in done] == [f"remote {i}" for i in range(5)]
    after = (await bridge_state(bridge_client, "bridge")).get("items_completed", 0)
    assert after - before >= 5


async def test_sync_node_on_another_deployment_reaches_the_bridge(caller_server):
    caller_client = get_client(url=caller_server.url)
    threads = await start(
        caller_client, "sync_agent", [{"item": f"remote sync {i}"} for i in range(3)]
    )
    done = await finished(caller_client, threads)
    assert [t["status"] for t in done] == ["idle"] * 3, caller_server.log()[-3000:]
    assert [t["values"]["result"]["echo"] for t in done] == [f"remote sync {i}" for i in range(3)]


async def test_results_wait_for_a_caller_deployment_that_is_down(dev_server, caller_server):
    bridge_client = get_client(url=dev_server.url)
    caller_client = get_client(url=caller_server.url)
    items = [{"text": f"while down {i}", "latency": 6} for i in range(3)]
    threads = await start(
        caller_client, "agent", [{"item": i, "bridge": "bridge_age"} for i in items]
    )
    await interrupted(caller_client, threads)

    async def submitted() -> bool:
        state = await bridge_state(bridge_client, "bridge_age")
        return any(b["size"] == 3 for b in state.get("in_flight", []))

    await until(submitted, timeout=60)
    caller_server.stop()  # the caller deployment goes away while its batch runs

    async def refused() -> bool:
        state = await bridge_state(bridge_client, "bridge_age")
        return state.get("delivering", 0) >= 3

    await until(refused, timeout=60)
    caller_server.start()  # back on the same URL, with its threads
    done = await finished(get_client(url=caller_server.url), threads, timeout=120)
    assert [t["values"]["result"]["echo"] for t in done] == items
