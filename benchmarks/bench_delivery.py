"""Is the bridge's cost per item flat in the load? 100 against 10,000 queued items.

Run: `python benchmarks/bench_delivery.py --items 100 --items 10000`.

N callers wait on a bridge whose flush rule never fires on its own (instant in-process
provider, `max_batch_age` one hour); once all N threads are interrupted and their items
queued, one forced flush (`input={"flush": True}`) starts the clock, which stops when every
caller is idle again. That span holds the owner check, the batch records, submit, poll and
one resume run per caller: the bridge's whole per-item work, divided by N.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import click
from _report import machine, peak_rss_mb, start_callers, write_section
from langgraph_sdk import get_client
from rich.console import Console
from rich.table import Table

from batch_bridge import bridge_thread_id
from batch_bridge.testing.devserver import DevServer

HERE = Path(__file__).resolve().parent
console = Console()


async def measure(url: str, n: int) -> dict[str, float]:
    client = get_client(url=url)
    tag = f"flat-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    await start_callers(client, "agent", tag, [{"item": f"{tag} {i}"} for i in range(n)])
    while await client.threads.count(metadata={"bench": tag}, status="interrupted") < n:
        await asyncio.sleep(0.2)
    queued_s = time.monotonic() - started
    bridge = bridge_thread_id("bridge")
    await client.runs.create(bridge, "bridge", input={"flush": True}, multitask_strategy="enqueue")
    flushed = time.monotonic()
    while await client.threads.count(metadata={"bench": tag}, status="idle") < n:
        await asyncio.sleep(0.1)
    spent = time.monotonic() - flushed
    return {"n": n, "queued_s": queued_s, "bridge_s": spent, "per_item_ms": spent / n * 1000}


@click.command()
@click.option("--items", "loads", multiple=True, type=int, default=(100, 10_000))
@click.option("--jobs", type=int, default=10, help="--n-jobs-per-worker of langgraph dev")
def main(loads: tuple[int, ...], jobs: int) -> None:
    graphs = {"bridge": "bench_graphs.py:bridge", "agent": "bench_graphs.py:agent"}
    env = {"BENCH_MAX_BATCH_AGE_S": "3600", "BENCH_POLL_INTERVAL_S": "0.5"}
    rows = []
    with (
        tempfile.TemporaryDirectory() as workdir,
        DevServer(Path(workdir), graphs, base_dir=HERE, env=env, jobs=jobs) as server,
    ):
        asyncio.run(measure(server.url, 20))  # warm-up
        for n in loads:
            rows.append(asyncio.run(measure(server.url, n)))
            console.log(rows[-1])
        assert server.process is not None
        rss = peak_rss_mb(server.process.pid)
    table = Table("queued items", "all queued s", "flush to all resumed s", "ms per item")
    lines = [
        "## Flat delivery: bridge time per item against the load",
        "",
        "`python benchmarks/bench_delivery.py"
        + "".join(f" --items {n}" for n in loads)
        + f"` on `langgraph dev --n-jobs-per-worker {jobs}`, instant in-process provider; "
        f"{machine()}. Peak RSS of the server process: {rss or 0:.0f} MB.",
        "",
        "| queued items | all queued s | forced flush to all resumed s | ms per item |",
        "|---:|---:|---:|---:|",
    ]
    for r in rows:
        table.add_row(
            str(r["n"]), f"{r['queued_s']:.1f}", f"{r['bridge_s']:.2f}", f"{r['per_item_ms']:.2f}"
        )
        lines.append(
            f"| {r['n']} | {r['queued_s']:.1f} | {r['bridge_s']:.2f} | {r['per_item_ms']:.2f} |"
        )
    if len(rows) >= 2:
        ratio = rows[-1]["per_item_ms"] / rows[0]["per_item_ms"]
        lines += ["", f"Per-item ratio, {rows[-1]['n']} against {rows[0]['n']}: **{ratio:.2f}**."]
    console.print(table)
    write_section("delivery", "\n".join(lines))


if __name__ == "__main__":
    main()
