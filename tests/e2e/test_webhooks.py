"""Provider webhooks on a real `langgraph dev`: the emulator signs and posts OpenAI's batch
events to the deployment's route, verified by the `openai` SDK there. A bridge that polls
only every 10 minutes answers within seconds of the batch's end, with no poll in between;
forged and replayed events change nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.testing._webhooks import new_secret, sign_webhook
from tests.conftest import E2E_GRAPHS, DevServer
from tests.e2e.helpers import finished, start, until

SECRET = new_secret()
ROUTE = "/batch-bridge/webhooks/openai"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(in_progress_s=3.0, webhook_secret=SECRET)) as server:
        yield server


@pytest.fixture(scope="module")
def server(
    emulator: EmulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevServer]:
    spec = str(E2E_GRAPHS / "webhook_graphs.py")
    graphs = {name: f"{spec}:{name}" for name in ("hook_bridge", "hook_hold", "agent")}
    env = {
        "OPENAI_BASE_URL": emulator.base_url,
        "OPENAI_API_KEY": "emulator",
        "OPENAI_WEBHOOK_SECRET": SECRET,
    }
    dev = DevServer(
        tmp_path_factory.mktemp("webhooks"),
        graphs,
        env=env,
        http={"app": "batch_bridge.http:app"},
    ).start()
    emulator.emulator.webhooks.url = dev.url + ROUTE
    yield dev
    dev.stop()


def retrievals(emulator: EmulatorServer, batch_id: str) -> list[float]:
    return [at for b, at in list(emulator.emulator.retrievals) if b == batch_id]


def webhook(batch_id: str, secret: str = SECRET, **sign: Any) -> tuple[bytes, dict[str, str]]:
    event = {"id": "evt_t", "object": "event", "created_at": int(time.time())}
    body = json.dumps(event | {"type": "batch.completed", "data": {"id": batch_id}}).encode()
    return body, sign_webhook(secret, body, **sign)


async def test_a_webhook_brings_the_answer_without_a_poll_in_between(server, emulator):
    client = get_client(url=server.url)
    threads = await start(client, "agent", [{"text": f"hook {i}"} for i in range(3)])
    done = await finished(client, threads, timeout=60)
    assert [t["status"] for t in done] == ["idle"] * 3
    assert all("hook" in str(t["values"]["answer"]) for t in done)
    (delivery,) = emulator.emulator.webhooks.sent
    assert (delivery["type"], delivery["status"]) == ("batch.completed", 200)
    polled = retrievals(emulator, delivery["batch_id"])
    before = [at for at in polled if at < delivery["sent_at"]]
    after = [at for at in polled if at >= delivery["sent_at"]]
    assert len(before) == 1  # the poll at submit; the next one was 10 minutes away
    assert len(after) == 2  # the poll that finds it done, and `release` checking its status
    fetched_in = after[0] - delivery["sent_at"]
    print(f"fetched {fetched_in:.2f}s after the webhook was sent")
    assert fetched_in < 3.0


async def test_forged_and_replayed_webhooks_change_nothing(server, emulator):
    client = get_client(url=server.url)
    (thread,) = await start(client, "agent", [{"text": "held", "bridge": "hook_hold"}])
    sent = {b for b, _ in emulator.emulator.retrievals}

    async def held_batch() -> str | None:
        fresh = {b for b, _ in emulator.emulator.retrievals} - sent
        return next(iter(fresh), None)

    batch_id = await until(held_batch, timeout=30, every=0.1)
    async with httpx.AsyncClient(base_url=server.url) as http:

        async def post(body: bytes, headers: dict[str, str]) -> int:
            return (await http.post(ROUTE, content=body, headers=headers)).status_code

        forged = await post(*webhook(batch_id, secret=new_secret()))
        stray = await post(*webhook("batch_nobody_holds"))
        body, headers = webhook(batch_id)
        first = await post(body, headers)
        await until(lambda: _polled_again(emulator, batch_id), timeout=10, every=0.1)
        replayed = await post(body, headers)
        status = (await http.get("/batch-bridge/status.json?bridge=hook_hold")).json()
    assert (forged, stray, first, replayed) == (401, 404, 200, 409)
    counts = status["webhooks"]["openai"]
    assert (counts["bad_signature"], counts["unknown_batch"], counts["replayed"]) == (1, 1, 1)
    polls = len(retrievals(emulator, batch_id))
    assert polls == 2  # at submit, and after the one genuine webhook
    await until(lambda: _next_poll_far(client), timeout=10, every=0.2)
    assert len(retrievals(emulator, batch_id)) == polls
    assert (await client.threads.get(thread))["status"] == "interrupted"


async def _polled_again(emulator: EmulatorServer, batch_id: str) -> bool:
    return len(retrievals(emulator, batch_id)) >= 2


async def _next_poll_far(client: Any) -> bool:
    """The hold batch is in flight and the bridge rests: the webhook said it ended but it
    still runs, so it is looked at again after `poll_backoff` (30 s), not at once."""
    from tests.e2e.helpers import bridge_state

    state = await bridge_state(client, "hook_hold")
    return bool(state.get("in_flight")) and (state.get("next_tick_in_s") or 0) >= 20
