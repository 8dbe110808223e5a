"""What polling costs: one batch that runs 10 minutes, polled three ways.

Run: `python benchmarks/bench_polling.py` (about 10 seconds; no `langgraph dev`).

The emulator runs on a virtual clock (`Emulator(clock=...)`, `in_progress_s=600`), so ten
minutes pass in a moment; every poll is a real `OpenAIBatch.poll` through the `openai` SDK
over HTTP, and the provider calls counted are the emulator's `GET /v1/batches/{id}`. The
bridge's own schedule (`FlushPolicy.first_poll_in` / `poll_gap`) decides when each poll
comes: *fixed* is `poll_interval=30`, *backoff* the default (5 s, then 30 s growing by half
up to 10 minutes), *webhook* `webhooks=True` (5 s, then a 15-minute safety poll). In the
webhook case the emulator signs and posts `batch.completed` the moment its clock passes the
batch's end, to the deployment's real webhook route (`batch_bridge.http`, verified by the
SDK's `webhooks.unwrap`), whose wake-up makes the bridge poll at once.

"End to fetch" is from the batch's end to the poll that reads its results (virtual seconds,
plus the real time the webhook took in that case). Callers resume after one more step, the
same in every case: a run on the caller's thread, about 1 s on `langgraph dev` (measured in
`tests/e2e/test_webhooks.py`: fetched 0.9 s after the webhook was sent).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import httpx
import openai
from _report import machine, write_section
from langgraph.store.memory import InMemoryStore
from rich.console import Console
from rich.table import Table

from batch_bridge import Bridge
from batch_bridge._store import BatchHeader, Ledger
from batch_bridge.http import status_app
from batch_bridge.providers._handles import provider_ids
from batch_bridge.providers.openai import OpenAIBatch
from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.testing._webhooks import new_secret
from batch_bridge.types import FlushPolicy, Pending

RUNS_S = (600.0, 610.0, 620.0)
"""Ten minutes, and a little more: where the end falls between two polls matters."""
ITEMS = [{"url": "/v1/chat/completions", "body": {"model": "gpt-4o-mini", "messages": []}}]
console = Console()


class VirtualClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def policy(mode: str) -> FlushPolicy:
    def nothing(_: Any) -> None:
        return None

    options: dict[str, Any] = {
        "fixed": {"poll_interval": 30},
        "backoff": {},
        "webhook": {"webhooks": True},
    }[mode]
    return Bridge(submit=nothing, poll=nothing, **options).policy


async def one_batch(mode: str, run_s: float) -> dict[str, Any]:
    secret = new_secret()
    os.environ["OPENAI_WEBHOOK_SECRET"] = secret
    clock = VirtualClock()
    emulator = Emulator(clock=clock, in_progress_s=run_s, webhook_secret=secret)
    woke: list[float] = []
    store = InMemoryStore()

    async def wake(_store: Any, bridge: str) -> bool:
        woke.append(time.monotonic())
        return True

    async def no_state(bridge: str) -> None:
        return None

    if mode == "webhook":
        emulator.webhooks.url = "http://bridge/batch-bridge/webhooks/openai"
        app = status_app(store=lambda: store, state=no_state, wake=wake)
        emulator.webhooks.transport = httpx.ASGITransport(app=app)
    rules = policy(mode)
    with EmulatorServer(emulator, port=0) as server:
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="x") as client:
            adapter = OpenAIBatch(client, retry_backoff_s=0, delete_results_after_s=None)
            handle = await adapter.submit(ITEMS)
            submitted = clock.now
            ledger = Ledger(store, "bridge")  # what the bridge holds once it submitted
            header = BatchHeader(batch_id="bb_bench", status="submitted", size=1, created_at=0)
            await ledger.put_header(header)
            await ledger.index(header.batch_id, provider_ids(handle))
            end = submitted + run_s
            next_at, polls, extra = submitted + rules.first_poll_in(), 0, 0.0
            while True:
                if mode == "webhook" and clock.now < end <= next_at:
                    clock.now = end
                    real = time.monotonic()
                    while not woke:
                        await asyncio.sleep(0.001)
                    extra = woke[0] - real  # the webhook's real time, on top
                else:
                    clock.now = next_at
                result = await adapter.poll(handle)
                polls += 1
                if isinstance(result, Pending):
                    handle = result.handle
                elif result is not None:
                    break
                next_at = clock.now + rules.poll_gap(polls)
    return {
        "mode": mode,
        "retrieves": len(emulator.retrievals),
        "end_to_fetch_s": clock.now - end + extra,
        "webhooks_sent": len(emulator.webhooks.sent),
    }


async def main() -> None:
    table = Table(title="One batch running 10 minutes (600 / 610 / 620 s)")
    for column in ("Polling", "Provider polls (GET batch)", "Batch end -> results fetched"):
        table.add_column(column)
    lines = [
        "| Polling | Provider polls (`GET /v1/batches/{id}`) | Batch end -> results fetched |",
        "|---|---:|---:|",
    ]
    for mode in ("fixed", "backoff", "webhook"):
        rows = [await one_batch(mode, run_s) for run_s in RUNS_S]
        polls = " / ".join(str(r["retrieves"]) for r in rows)
        fetched = " / ".join(f"{r['end_to_fetch_s']:.2f} s" for r in rows)
        table.add_row(mode, polls, fetched)
        lines.append(f"| {mode} | {polls} | {fetched} |")
    console.print(table)
    body = "\n".join(
        [
            "## Polling: fixed, backoff, webhook",
            "",
            f"`python benchmarks/bench_polling.py` ({machine()}). One batch of 600, 610 and "
            "620 s on the emulator's virtual clock: fixed is `poll_interval=30`, backoff the "
            "default, webhook `webhooks=True` with the emulator's signed `batch.completed` "
            "posted to the real route. Callers resume about 1 s after the fetch on "
            "`langgraph dev` in every case (`tests/e2e/test_webhooks.py`: 0.9 s after the "
            "webhook was sent).",
            "",
            *lines,
        ]
    )
    write_section("polling", body)


if __name__ == "__main__":
    asyncio.run(main())
