"""End-to-end throughput of the bridge on `langgraph dev`, and its checkpoint size per load.

Run: `python benchmarks/bench_bridge.py [--callers 100 300 1000]`. Prints, per load: wall
time from the first run created to the last caller resumed, callers resumed per second,
batches, and the size of the bridge's checkpointed state, which must not grow with the
number of items (items live in the store, not in the checkpoint).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

import click
from _report import start_callers
from langgraph_sdk import get_client
from rich.console import Console
from rich.table import Table

from batch_bridge import bridge_thread_id
from batch_bridge.testing.devserver import DevServer

HERE = Path(__file__).resolve().parent


async def measure(url: str, callers: int) -> dict[str, float]:
    client = get_client(url=url)
    tag = f"bench-{callers}-{time.time()}"
    started = time.monotonic()
    await start_callers(client, "agent", tag, [{"item": f"i{i}"} for i in range(callers)])
    created = time.monotonic() - started
    interrupted_at = None
    while (idle := await client.threads.count(metadata={"bench": tag}, status="idle")) < callers:
        if interrupted_at is None and idle == 0:
            waiting = await client.threads.count(metadata={"bench": tag}, status="interrupted")
            if waiting == callers:
                interrupted_at = time.monotonic() - started
        await asyncio.sleep(0.2)
    wall = time.monotonic() - started
    state = await client.threads.get_state(bridge_thread_id("bridge"))
    return {
        "wall_s": wall,
        "created_s": created,
        "interrupted_s": interrupted_at or float("nan"),
        "per_s": callers / wall,
        "batches": state["values"]["batches_submitted"],
        "state_bytes": len(json.dumps(state["values"])),
    }


@click.command()
@click.option("--callers", "loads", multiple=True, type=int, default=(100, 300, 1000))
def main(loads: tuple[int, ...]) -> None:
    console = Console()
    table = Table(
        "callers",
        "runs created s",
        "all interrupted s",
        "all resumed s",
        "callers/s",
        "batches (cumulative)",
        "bridge state bytes",
    )
    graphs = {"bridge": "bench_graphs.py:bridge", "agent": "bench_graphs.py:agent"}
    with (
        tempfile.TemporaryDirectory() as workdir,
        DevServer(Path(workdir), graphs, base_dir=HERE) as server,
    ):
        for n in loads:
            r = asyncio.run(measure(server.url, n))
            table.add_row(
                str(n),
                f"{r['created_s']:.1f}",
                f"{r['interrupted_s']:.1f}",
                f"{r['wall_s']:.1f}",
                f"{r['per_s']:.0f}",
                str(r["batches"]),
                str(r["state_bytes"]),
            )
    console.print(table)


if __name__ == "__main__":
    main()
