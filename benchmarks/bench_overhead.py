"""The bridge's cost against the platform's floor, side by side on one `langgraph dev`.

Run: `python benchmarks/bench_overhead.py --callers 200 --callers 2000 --pairs 3`.

Per round, N caller threads are created and run, and the clock stops when all N are idle.
*Floor*: each thread's node calls `interrupt()`; this script resumes every interrupted thread
directly (`Command(resume=...)`) as soon as it sees it: the least any interrupt-and-resume
design can cost on this server. *Bridge*: each node makes one `chat.completions.create`
through `wrap_openai` and the bridge, whose `OpenAIBatch` adapter talks to the offline
emulator (batches complete at once). Rounds are interleaved (floor, bridge, then bridge,
floor, ...), each on a fresh server after a warm-up (the in-memory runtime slows as runs pile
up), and the ratio is taken per pair; the median is reported.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import click
from _report import cpu_seconds, machine, start_callers, write_section
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from rich.console import Console
from rich.table import Table

from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.testing.devserver import DevServer

HERE = Path(__file__).resolve().parent
console = Console()
GATE = 20


async def _resume_interrupted(client: LangGraphClient, tag: str, done: set[str]) -> None:
    gate = asyncio.Semaphore(GATE)
    waiting = await client.threads.search(
        metadata={"bench": tag}, status="interrupted", limit=1000, select=["thread_id"]
    )  # ids only: full threads made the floor's own polling a visible load at 2,000

    async def resume(thread_id: str) -> None:
        async with gate:
            await client.runs.create(thread_id, "floor", command={"resume": "ok"})

    fresh = [t["thread_id"] for t in waiting if t["thread_id"] not in done]
    done.update(fresh)
    await asyncio.gather(*(resume(t) for t in fresh))


async def round_(url: str, kind: str, n: int) -> float:
    client = get_client(url=url)
    tag = f"{kind}-{uuid.uuid4().hex[:8]}"
    graph = "floor" if kind == "floor" else "emu_agent"
    started = time.monotonic()
    starting = asyncio.ensure_future(
        start_callers(client, graph, tag, [{"item": f"{tag} {i}"} for i in range(n)], GATE)
    )
    resumed: set[str] = set()
    while await client.threads.count(metadata={"bench": tag}, status="idle") < n:
        if kind == "floor":
            await _resume_interrupted(client, tag, resumed)
        await asyncio.sleep(0.05)
    await starting
    return time.monotonic() - started


@click.command()
@click.option("--callers", "loads", multiple=True, type=int, default=(200, 2000))
@click.option("--pairs", type=int, default=3)
@click.option("--jobs", type=int, default=10, help="--n-jobs-per-worker of langgraph dev")
@click.option("--max-batch-age", "age", type=float, default=0.2, help="The bridge's, in seconds.")
@click.option("--poll-interval", "poll", type=float, default=0.2, help="The bridge's, in seconds.")
def main(loads: tuple[int, ...], pairs: int, jobs: int, age: float, poll: float) -> None:
    emulator = EmulatorServer(Emulator(in_progress_s=0.0)).start()
    graphs = {name: f"bench_graphs.py:{name}" for name in ("emu_bridge", "emu_agent", "floor")}
    env = {
        "OPENAI_BASE_URL": emulator.base_url,
        "OPENAI_API_KEY": "emulator",
        "BENCH_MAX_BATCH_AGE_S": str(age),
        "BENCH_POLL_INTERVAL_S": str(poll),
    }
    rows: list[dict[str, Any]] = []

    def fresh_round(kind: str, n: int) -> tuple[float, float]:
        """One round on a server of its own: `langgraph dev`'s in-memory runtime scans every
        run it ever held on each run operation, so a shared server slows round after round.
        Returns the round's wall time and the server's CPU time."""
        with (
            tempfile.TemporaryDirectory() as workdir,
            DevServer(Path(workdir), graphs, base_dir=HERE, env=env, jobs=jobs) as server,
        ):
            asyncio.run(round_(server.url, kind, 20))  # warm-up: imports, first batch, caches
            pids = [server.process.pid] if server.process else []
            cpu = cpu_seconds(pids)
            took = asyncio.run(round_(server.url, kind, n))
            return took, cpu_seconds(pids) - cpu

    for n in loads:
        floors, bridges, cpu_ratios = [], [], []
        for pair in range(pairs):
            order = ("floor", "bridge") if pair % 2 == 0 else ("bridge", "floor")
            took = {kind: fresh_round(kind, n) for kind in order}
            floors.append(took["floor"][0])
            bridges.append(took["bridge"][0])
            cpu_ratios.append(took["bridge"][1] / took["floor"][1])
            console.log(
                f"N={n} pair {pair + 1}: floor {took['floor'][0]:.2f}s "
                f"(CPU {took['floor'][1]:.1f}s), bridge {took['bridge'][0]:.2f}s "
                f"(CPU {took['bridge'][1]:.1f}s)"
            )
        ratios = [b / f for b, f in zip(bridges, floors, strict=True)]
        rows.append(
            {
                "n": n,
                "floor": statistics.median(floors),
                "bridge": statistics.median(bridges),
                "ratios": ratios,
                "median": statistics.median(ratios),
                "worst": max(ratios),
                "cpu": statistics.median(cpu_ratios),
            }
        )
    emulator.stop()
    table = Table(
        "callers",
        "floor s (median)",
        "bridge s (median)",
        "ratio per pair",
        "median",
        "worst",
        "CPU",
    )
    lines = [
        "## Overhead against the platform floor",
        "",
        f"`python benchmarks/bench_overhead.py --pairs {pairs}"
        + "".join(f" --callers {n}" for n in loads)
        + f" --jobs {jobs} --max-batch-age {age:g} --poll-interval {poll:g}` on `langgraph dev "
        f"--n-jobs-per-worker {jobs}` (a fresh server per round, warmed up with 20 callers), "
        f"the bridge flushing after {age:g} s and polling every {poll:g} s; {machine()}.",
        "",
        "| callers | floor s (median) | bridge s (median) | bridge/floor per pair | median | "
        "worst | server CPU, median ratio |",
        "|---:|---:|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        per_pair = ", ".join(f"{r:.2f}" for r in row["ratios"])
        table.add_row(
            str(row["n"]),
            f"{row['floor']:.2f}",
            f"{row['bridge']:.2f}",
            per_pair,
            f"{row['median']:.2f}",
            f"{row['worst']:.2f}",
            f"{row['cpu']:.2f}",
        )
        lines.append(
            f"| {row['n']} | {row['floor']:.2f} | {row['bridge']:.2f} | {per_pair} | "
            f"**{row['median']:.2f}** | {row['worst']:.2f} | {row['cpu']:.2f} |"
        )
    console.print(table)
    write_section("overhead", "\n".join(lines))


if __name__ == "__main__":
    main()
