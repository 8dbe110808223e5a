"""Two users of one deployment share a bridge under custom auth (examples/auth/auth.py).

Each is resumed with their own results; neither can read the other's threads, nor the
bridge's records or state; the bridge acts as the deployment itself. The status routes are
protected like the rest (`enable_custom_route_auth`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import NotFoundError

from batch_bridge import bridge_thread_id
from tests.conftest import E2E_GRAPHS, ROOT, DevServer
from tests.e2e.helpers import finished, start

TOKENS = {"alice": "alice-token", "bob": "bob-token"}


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    graphs = {
        "bridge": f"{E2E_GRAPHS / 'bridges.py'}:bridge",
        "agent": f"{E2E_GRAPHS / 'callers.py'}:agent",
    }
    env = {"EXAMPLE_USER_TOKENS": ",".join(f"{u}:{t}" for u, t in TOKENS.items())}
    server = DevServer(
        tmp_path_factory.mktemp("auth"),
        graphs,
        env=env,
        auth=str(ROOT / "examples" / "auth" / "auth.py") + ":auth",
        http=json.loads((ROOT / "examples" / "auth" / "langgraph.json").read_text())["http"],
    ).start()
    yield server
    server.stop()


def as_user(server: DevServer, user: str | None):
    headers = {"Authorization": f"Bearer {TOKENS[user]}"} if user else {}
    return get_client(url=server.url, headers=headers, api_key=None)


async def test_users_share_a_bridge_and_see_only_their_own(auth_server: DevServer) -> None:
    alice, bob = as_user(auth_server, "alice"), as_user(auth_server, "bob")
    alice_items = [f"alice secret {i}" for i in range(3)]
    bob_items = [f"bob secret {i}" for i in range(3)]
    alice_threads = await start(alice, "agent", [{"item": i} for i in alice_items])
    bob_threads = await start(bob, "agent", [{"item": i} for i in bob_items])

    alice_done = await finished(alice, alice_threads)
    bob_done = await finished(bob, bob_threads)
    assert [t["values"]["result"]["echo"] for t in alice_done] == alice_items
    assert [t["values"]["result"]["echo"] for t in bob_done] == bob_items

    for thread_id in bob_threads:  # alice cannot read bob's threads, items or results
        with pytest.raises(NotFoundError):
            await alice.threads.get_state(thread_id)
    assert {t["thread_id"] for t in await alice.threads.search(limit=100)} == set(alice_threads)
    with pytest.raises(NotFoundError):  # nor the bridge's thread
        await alice.threads.get_state(bridge_thread_id("bridge"))
    seen = await alice.store.search_items(("batch_bridge", "bridge", "items"), limit=100)
    assert seen["items"] == []  # her namespace is her own: the bridge's records are not in it
    # what bob writes "into the bridge" lands in bob's own namespace, which the bridge never reads
    await bob.store.put_item(("batch_bridge", "bridge", "items"), "x:y", {"status": "queued"})
    mine = await bob.store.search_items(("batch_bridge", "bridge", "items"), limit=100)
    assert [i["namespace"] for i in mine["items"]] == [["bob", "batch_bridge", "bridge", "items"]]

    with pytest.raises(Exception, match="unknown or missing token"):  # 401
        await as_user(auth_server, None).threads.search(limit=1)


async def test_the_status_page_is_refused_without_a_token_and_served_with_one(
    auth_server: DevServer,
) -> None:
    alice = as_user(auth_server, "alice")
    threads = await start(alice, "agent", [{"item": "alice status"}])
    await finished(alice, threads)
    page, data = f"{auth_server.url}/batch-bridge/", f"{auth_server.url}/batch-bridge/status.json"
    async with httpx.AsyncClient(timeout=30) as http:
        for url in (page, data):
            refused = await http.get(url)
            assert refused.status_code in (401, 403), (url, refused.status_code)
            assert "unknown or missing token" in refused.text
            assert "batch_bridge.status" not in refused.text and "<html" not in refused.text
        headers = {"Authorization": f"Bearer {TOKENS['alice']}"}
        assert (await http.get(page, headers=headers)).status_code == 200
        status = (await http.get(data, headers=headers)).json()
    # read as the deployment: the bridge's own thread and records, which alice cannot read
    assert status["kind"] == "batch_bridge.status" and status["ticks"] > 0
    assert status["totals"]["items_delivered"] >= 1

    cli = [str(Path(sys.executable).with_name("batch-bridge")), "status", "--url", auth_server.url]
    refused = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "refused the request (HTTP 40" in refused.stderr
    shown = subprocess.run(
        [*cli, "--json", "--token", TOKENS["alice"]], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["totals"]["items_delivered"] >= 1
