"""Callers on another deployment that the bridge would refuse learn why at once.

The bridge's server (`dev_server`) allows callbacks to `http://127.0.0.1:*` and signs with
the shared secret. One caller deployment calls itself `http://localhost:PORT` (not on that
list), another holds a different BATCH_BRIDGE_SECRET, a third is set up right.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import NotFoundError

from batch_bridge import PlatformError, bridge_thread_id, result
from batch_bridge._notice import NOTICE_KEY, REFUSED_URL
from tests.conftest import E2E_GRAPHS, SHARED_SECRET, DevServer
from tests.e2e.helpers import bridge_state, finished, interrupted, start, until


def caller_deployment(workdir: Path, bridge_url: str, **env: str) -> DevServer:
    server = DevServer(
        workdir,
        {"agent": f"{E2E_GRAPHS / 'callers.py'}:agent"},
        env={"BATCH_BRIDGE_URL": bridge_url, **SHARED_SECRET, **env},
        jobs=2,
    )
    if env.get("BATCH_BRIDGE_CALLBACK_URL") == "localhost":
        server.env["BATCH_BRIDGE_CALLBACK_URL"] = server.url.replace("127.0.0.1", "localhost")
    return server.start()


@pytest.fixture(scope="module")
def localhost_caller(
    dev_server: DevServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevServer]:
    server = caller_deployment(
        tmp_path_factory.mktemp("localhost"), dev_server.url, BATCH_BRIDGE_CALLBACK_URL="localhost"
    )
    yield server
    server.stop()


async def published(client: LangGraphClient, bridge: str) -> None:
    """Run one tick of `bridge` and wait for its trust notice."""
    thread_id = bridge_thread_id(bridge)
    await client.runs.create(
        thread_id, bridge, input={}, if_not_exists="create", multitask_strategy="enqueue"
    )

    async def notice() -> bool:
        try:
            return bool(await client.store.get_item(("batch_bridge", bridge, "meta"), NOTICE_KEY))
        except NotFoundError:
            return False

    await until(notice, timeout=60)


async def error_of(client: LangGraphClient, thread_id: str) -> str:
    (thread,) = await finished(client, [thread_id], timeout=60)
    assert thread["status"] == "error"
    with pytest.raises(PlatformError) as failed:
        await result(client, thread_id, timeout_s=5)
    return str(failed.value)


async def test_a_caller_whose_url_the_bridge_does_not_allow_fails_at_once(
    dev_server, localhost_caller
):
    bridge_client = get_client(url=dev_server.url)
    caller_client = get_client(url=localhost_caller.url)
    await published(bridge_client, "bridge")
    (thread_id,) = await start(caller_client, "agent", [{"item": "never sent"}])

    message = await error_of(caller_client, thread_id)

    origin = localhost_caller.url.replace("127.0.0.1", "localhost")
    assert f"ConfigError: The bridge at {dev_server.url} will not resume callers at" in message
    assert f"Add {origin} to BATCH_BRIDGE_CALLBACK_URLS on the bridge's deployment." in message
    queued = await bridge_client.store.search_items(
        ("batch_bridge", "bridge", "items"), filter={"thread_id": thread_id}
    )
    assert queued["items"] == []  # nothing was sent to the bridge, nothing billed


async def test_before_the_bridge_ever_ran_the_caller_goes_ahead_and_the_bridge_shows_why(
    dev_server, localhost_caller
):
    bridge_client = get_client(url=dev_server.url)
    caller_client = get_client(url=localhost_caller.url)
    assert await bridge_state(bridge_client, "bridge_fresh") == {}  # no tick, no notice yet
    threads = await start(caller_client, "agent", [{"item": "early", "bridge": "bridge_fresh"}])
    await interrupted(caller_client, threads)

    async def refused() -> list[dict]:
        state = await bridge_state(bridge_client, "bridge_fresh")
        return state.get("refused_origins") or []

    (entry,) = await until(refused, timeout=60)
    origin = localhost_caller.url.replace("127.0.0.1", "localhost")
    assert (entry["url"], entry["reason"], entry["count"]) == (origin, REFUSED_URL, 1)
    assert "early" not in str(await bridge_state(bridge_client, "bridge_fresh"))
    assert (await bridge_state(bridge_client, "bridge_fresh")).get("items_submitted", 0) == 0


async def test_a_caller_with_another_secret_fails_at_once(dev_server, tmp_path):
    bridge_client = get_client(url=dev_server.url)
    await published(bridge_client, "bridge")
    server = caller_deployment(tmp_path, dev_server.url, BATCH_BRIDGE_SECRET="another secret")
    try:
        client = get_client(url=server.url)
        (thread_id,) = await start(client, "agent", [{"item": "never sent"}])
        message = await error_of(client, thread_id)
    finally:
        server.stop()
    assert (
        f"ConfigError: The bridge at {dev_server.url} signs records with another key than this "
        "deployment's BATCH_BRIDGE_SECRET, so it would refuse every item sent from here: set "
        "BATCH_BRIDGE_SECRET to the same value on both deployments." in message
    )


async def test_a_caller_set_up_right_still_gets_its_answer(dev_server, tmp_path):
    bridge_client = get_client(url=dev_server.url)
    await published(bridge_client, "bridge")
    server = caller_deployment(tmp_path, dev_server.url)
    try:
        client = get_client(url=server.url)
        threads = await start(client, "agent", [{"item": f"right {i}"} for i in range(3)])
        done = await finished(client, threads)
    finally:
        server.stop()
    assert [t["status"] for t in done] == ["idle"] * 3, server.log()[-3000:]
    assert [t["values"]["result"]["echo"] for t in done] == [f"right {i}" for i in range(3)]
