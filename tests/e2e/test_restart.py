"""The bridge's server stops with batches in flight and starts again: nothing is lost.

Items, batch records and the tick marker live in the platform store, the provider keeps its
batches, and the safety-net cron wakes the bridge after the restart.
"""

from __future__ import annotations

import openai
from langgraph_sdk import get_client

from batch_bridge import ensure_cron
from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.testing.devserver import DevServer
from tests.conftest import E2E_GRAPHS
from tests.e2e.helpers import bridge_state, finished, start, until


async def test_callers_are_resumed_after_the_bridge_server_restarts(tmp_path):
    spec = str(E2E_GRAPHS / "openai_graphs.py")
    graphs = {"oa_bridge": f"{spec}:oa_bridge", "oa_agent": f"{spec}:agent"}
    texts = [f"survive restart {i}" for i in range(6)]
    with EmulatorServer(Emulator(in_progress_s=4.0)) as emulator:
        env = {"OPENAI_BASE_URL": emulator.base_url, "OPENAI_API_KEY": "emulator"}
        provider = openai.AsyncOpenAI(base_url=emulator.base_url, api_key="t", max_retries=0)
        with DevServer(tmp_path, graphs, env=env) as first:
            client = get_client(url=first.url)
            await ensure_cron(client, bridge="oa_bridge", schedule="* * * * * */5")
            inputs = [{"text": t, "bridge": "oa_bridge"} for t in texts]
            threads = await start(client, "oa_agent", inputs)

            async def in_flight() -> bool:
                return bool((await bridge_state(client, "oa_bridge")).get("in_flight"))

            await until(in_flight)
        running = [b async for b in provider.batches.list() if b.status != "completed"]
        assert running, "the restart must happen while a provider batch is in flight"
        with DevServer(tmp_path, graphs, env=env) as second:
            client = get_client(url=second.url)
            done = await finished(client, threads, timeout=120)
            assert [t["status"] for t in done] == ["idle"] * 6, second.log()[-3000:]
            assert [t["values"]["answer"] for t in done] == [f"Echo: {t}" for t in texts]
