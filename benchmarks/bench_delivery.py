"""Is the bridge's cost per item flat in the load? 100 against 10,000 queued items.

Run: `python benchmarks/bench_delivery.py --items 100 --items 10000 --per-thread 100`.

With `--per-thread K`, each caller thread waits on K items at once (K parallel `Send` tasks)
and is resumed by one run: 10,000 items are 100 threads, which `langgraph dev` handles,
where 10,000 one-item threads are beyond it (its in-memory runtime scans every run it holds
on each run operation).

N callers wait on a bridge whose flush rule never fires on its own (instant in-process
provider, `max_batch_age` one hour); once all N threads are interrupted and their items
queued, one forced flush (`input={"flush": True}`) starts the clock, which stops when every
caller is idle again. That span holds the owner check, the batch records, submit, poll and
one resume run per caller: the bridge's whole per-item work, divided by N. The floor does the
same with N threads on a bare `interrupt()` node, resumed by this script: what the server
itself costs per resume at that load.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import click
from _report import machine, peak_rss_mb, start_callers, write_section
from langgraph_sdk import get_client
from rich.console import Console
from rich.table import Table

from batch_bridge import bridge_thread_id
from batch_bridge.testing.devserver import DevServer

HERE = Path(__file__).resolve().parent
console = Console()


async def measure(url: str, n: int, kind: str, per_thread: int) -> dict[str, float]:
    """`kind` "bridge": one forced flush, then every caller resumed by the bridge; "floor":
    the same threads on the `floor` graph, resumed by this script directly."""
    client = get_client(url=url)
    tag = f"flat-{kind}-{uuid.uuid4().hex[:8]}"
    n_threads = max(1, n // per_thread)
    inputs: list[dict[str, Any]]
    if per_thread == 1:
        graph = "agent" if kind == "bridge" else "floor"
        inputs = [{"item": f"{tag} {i}"} for i in range(n)]
    else:
        graph = "fanout" if kind == "bridge" else "floor_fanout"
        inputs = [
            {"items": [f"{tag} {i}.{j}" for j in range(per_thread)]} for i in range(n_threads)
        ]
    started = time.monotonic()
    threads = await start_callers(client, graph, tag, inputs)
    while await client.threads.count(metadata={"bench": tag}, status="interrupted") < n_threads:
        await asyncio.sleep(0.2)
    queued_s = time.monotonic() - started
    flushed = time.monotonic()
    if kind == "bridge":
        await client.runs.create(
            bridge_thread_id("bridge"),
            "bridge",
            input={"flush": True},
            multitask_strategy="enqueue",
        )
    else:
        gate = asyncio.Semaphore(20)

        async def resume(thread_id: str) -> None:
            async with gate:
                if per_thread == 1:
                    await client.runs.create(thread_id, graph, command={"resume": "ok"})
                    return
                waiting = (await client.threads.get(thread_id))["interrupts"]
                ids = [i["id"] for pending in waiting.values() for i in pending]
                resume_map = dict.fromkeys(ids, "ok")
                await client.runs.create(thread_id, graph, command={"resume": resume_map})

        await asyncio.gather(*(resume(t) for t in threads))
    while await client.threads.count(metadata={"bench": tag}, status="idle") < n_threads:
        await asyncio.sleep(0.1)
    spent = time.monotonic() - flushed
    return {"n": n, "queued_s": queued_s, "spent_s": spent, "per_item_ms": spent / n * 1000}


@click.command()
@click.option("--items", "loads", multiple=True, type=int, default=(100, 10_000))
@click.option(
    "--per-thread", type=int, default=1, help="Items per caller thread, waited on in parallel."
)
@click.option("--jobs", type=int, default=10, help="--n-jobs-per-worker of langgraph dev")
def main(loads: tuple[int, ...], per_thread: int, jobs: int) -> None:
    names = ("bridge", "agent", "floor", "fanout", "floor_fanout")
    graphs = {name: f"bench_graphs.py:{name}" for name in names}
    env = {"BENCH_MAX_BATCH_AGE_S": "3600", "BENCH_POLL_INTERVAL_S": "0.5"}
    rows: list[tuple[dict[str, float], dict[str, float]]] = []
    rss = 0.0

    def fresh(n: int, kind: str) -> dict[str, float]:
        """On a server of its own: the in-memory runtime slows as runs pile up."""
        nonlocal rss
        with (
            tempfile.TemporaryDirectory() as workdir,
            DevServer(Path(workdir), graphs, base_dir=HERE, env=env, jobs=jobs) as server,
        ):
            asyncio.run(measure(server.url, 20, kind, 1))  # warm-up
            figures = asyncio.run(measure(server.url, n, kind, per_thread))
            assert server.process is not None
            rss = max(rss, peak_rss_mb(server.process.pid) or 0.0)
            return figures

    for n in loads:
        rows.append((fresh(n, "bridge"), fresh(n, "floor")))
        console.log({"bridge": rows[-1][0], "floor": rows[-1][1]})
    table = Table("queued items", "bridge: flush to all resumed s", "ms/item", "floor ms/item")
    lines = [
        "## Flat delivery: time per item against the load",
        "",
        "`python benchmarks/bench_delivery.py"
        + "".join(f" --items {n}" for n in loads)
        + (f" --per-thread {per_thread}" if per_thread > 1 else "")
        + f"` on `langgraph dev --n-jobs-per-worker {jobs}`, instant in-process provider; "
        f"{machine()}; a fresh server per measure. Peak RSS of the server: {rss:.0f} MB. "
        "*Bridge*: from one forced flush of N queued items to N callers resumed. "
        "*Floor*: N threads interrupted on a bare `interrupt()` node, resumed by the script."
        + (
            f" Each thread carries {per_thread} items (parallel `Send` tasks), resumed by one run."
            if per_thread > 1
            else ""
        ),
        "",
        "| queued items | bridge s | bridge ms/item | floor s | floor ms/item |",
        "|---:|---:|---:|---:|---:|",
    ]
    for bridge, floor in rows:
        table.add_row(
            str(bridge["n"]),
            f"{bridge['spent_s']:.2f}",
            f"{bridge['per_item_ms']:.2f}",
            f"{floor['per_item_ms']:.2f}",
        )
        lines.append(
            f"| {bridge['n']} | {bridge['spent_s']:.2f} | {bridge['per_item_ms']:.2f} | "
            f"{floor['spent_s']:.2f} | {floor['per_item_ms']:.2f} |"
        )
    if len(rows) >= 2:
        (b0, f0), (b1, f1) = rows[0], rows[-1]
        lines += [
            "",
            f"Per-item ratio, {b1['n']} against {b0['n']}: bridge "
            f"**{b1['per_item_ms'] / b0['per_item_ms']:.2f}**, floor "
            f"**{f1['per_item_ms'] / f0['per_item_ms']:.2f}**.",
        ]
    console.print(table)
    write_section("delivery", "\n".join(lines))


if __name__ == "__main__":
    main()
