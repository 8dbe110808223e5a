"""Gemini webhooks on a real `langgraph dev`: the emulator signs and posts Gemini's
`batch.succeeded` to the deployment's `/batch-bridge/webhooks/gemini`, verified there with
`GEMINI_WEBHOOK_SECRET`. A bridge that polls only every 10 minutes fetches the job within
about a second of the webhook, with no poll in between; forged or replayed copies change
nothing."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from langgraph_sdk import get_client

from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.testing._webhooks import new_secret, sign_webhook
from tests.conftest import E2E_GRAPHS, DevServer
from tests.e2e.helpers import finished, start

SECRET = new_secret()
ROUTE = "/batch-bridge/webhooks/gemini"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(in_progress_s=3.0, gemini_webhook_secret=SECRET)) as server:
        yield server


@pytest.fixture(scope="module")
def server(
    emulator: EmulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevServer]:
    spec = str(E2E_GRAPHS / "gemini_hook_graphs.py")
    env = {
        "GOOGLE_GEMINI_BASE_URL": emulator.gemini_base_url,
        "GEMINI_API_KEY": "emulator",
        "GEMINI_WEBHOOK_SECRET": SECRET,
    }
    graphs = {name: f"{spec}:{name}" for name in ("gm_hook", "gm_hook_ask")}
    dev = DevServer(
        tmp_path_factory.mktemp("gemini-webhooks"),
        graphs,
        env=env,
        http={"app": "batch_bridge.http:app"},
    ).start()
    emulator.emulator.gemini.webhooks.url = dev.url + ROUTE
    yield dev
    dev.stop()


async def test_a_gemini_webhook_brings_the_answer_without_a_poll_in_between(server, emulator):
    client = get_client(url=server.url)
    texts = [f"gemini hook {i}" for i in range(3)]
    done = await finished(client, await start(client, "gm_hook_ask", [{"text": t} for t in texts]))
    assert [t["status"] for t in done] == ["idle"] * 3, server.log()[-3000:]
    assert [t["values"]["answer"] for t in done] == [f"Echo: {t}" for t in texts]
    gemini = emulator.emulator.gemini
    (delivery,) = gemini.webhooks.sent
    assert (delivery["type"], delivery["status"]) == ("batch.succeeded", 200)
    polled = [at for job, at in list(gemini.retrievals) if job == delivery["batch_id"]]
    before = [at for at in polled if at < delivery["sent_at"]]
    after = [at for at in polled if at >= delivery["sent_at"]]
    assert len(before) == 1  # the poll at submit; the next one was 10 minutes away
    assert after, "the job was never fetched after its webhook"
    fetched_in = after[0] - delivery["sent_at"]
    print(f"gemini: fetched {fetched_in:.3f}s after the webhook was sent")
    assert fetched_in < 1.5  # measured 0.87 s: the queue starts a run about 1 s after it is made

    async with httpx.AsyncClient(base_url=server.url) as http:
        forged = await http.post(
            ROUTE, content=delivery["body"], headers=sign_webhook(new_secret(), delivery["body"])
        )
        replayed = await http.post(ROUTE, content=delivery["body"], headers=delivery["headers"])
        status = (await http.get("/batch-bridge/status.json?bridge=gm_hook")).json()
    assert (forged.status_code, replayed.status_code) == (401, 409)
    counts = status["webhooks"]["gemini"]
    assert (counts["accepted"], counts["bad_signature"], counts["replayed"]) == (1, 1, 1)
