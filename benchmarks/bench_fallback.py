"""From deadline to resume: how late after its `max_wait` does a caller get its answer when
its batch never finishes?

Run: `python benchmarks/bench_fallback.py --callers 20 --max-wait 3`.

A real `langgraph dev` serves an OpenAI bridge (`fallback=OpenAIBatch.fallback`) in front
of the emulator, whose batches stay `in_progress` for ever. N callers ask at once with the
same `max_wait`; each notes the wall-clock time its node got the answer. The figure per
caller is that time minus the deadline its ledger record holds (`deadline_at`): the wake of
the bridge's tick (the platform schedules runs in whole seconds), the flex call, and the
resume run of the caller's thread.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import uuid
from pathlib import Path
from typing import Any

import click
from _report import machine, start_callers
from langgraph_sdk import get_client

from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.testing.devserver import DevServer

HERE = Path(__file__).resolve().parent
GRAPHS = {name: f"fallback_graphs.py:{name}" for name in ("fb_bridge", "fb_agent")}


async def deadlines(client: Any) -> dict[str, float]:
    """Each caller thread's deadline, from the bridge's ledger records."""
    found: dict[str, float] = {}
    offset = 0
    while True:
        page = await client.store.search_items(
            ["batch_bridge", "fb_bridge", "items"], limit=100, offset=offset
        )
        for stored in page["items"]:
            value = stored["value"]
            if value.get("deadline_at") is not None:
                found[value["thread_id"]] = float(value["deadline_at"])
        offset += len(page["items"])
        if len(page["items"]) < 100:
            return found


async def measure(url: str, n: int, max_wait: float) -> list[float]:
    client = get_client(url=url)
    tag = f"fallback-{uuid.uuid4().hex[:8]}"
    inputs = [{"text": f"{tag} {i}", "max_wait": max_wait} for i in range(n)]
    threads = await start_callers(client, "fb_agent", tag, inputs)
    while await client.threads.count(metadata={"bench": tag}, status="idle") < n:
        await asyncio.sleep(0.2)
    due = await deadlines(client)
    lags = []
    for thread_id in threads:
        values = (await client.threads.get(thread_id))["values"]
        assert values["service_tier"] == "flex", values
        lags.append(float(values["answered_at"]) - due[thread_id])
    return lags


@click.command()
@click.option("--callers", default=20, show_default=True, help="Callers asking at once.")
@click.option("--max-wait", default=3.0, show_default=True, help="Each caller's max_wait, s.")
def main(callers: int, max_wait: float) -> None:
    env_emulator = Emulator(in_progress_s=10**9)
    with EmulatorServer(env_emulator, port=0) as emulator, tempfile.TemporaryDirectory() as work:
        env = {"OPENAI_BASE_URL": emulator.base_url, "OPENAI_API_KEY": "emulator"}
        with DevServer(Path(work), GRAPHS, base_dir=HERE, env=env) as dev:
            lags = asyncio.run(measure(dev.url, callers, max_wait))
    lags.sort()
    p95 = lags[min(len(lags) - 1, round(0.95 * (len(lags) - 1)))]
    print(machine())
    print(
        f"deadline -> resume over {callers} callers (max_wait {max_wait:g} s, batch never "
        f"finishes): median {statistics.median(lags):.2f} s, p95 {p95:.2f} s, "
        f"min {lags[0]:.2f} s, max {lags[-1]:.2f} s"
    )


if __name__ == "__main__":
    main()
