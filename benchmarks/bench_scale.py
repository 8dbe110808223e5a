"""Many callers, one bridge, end to end, on `langgraph dev` or the PostgreSQL engine.

Run:
- `python benchmarks/bench_scale.py --engine dev --callers 50000 --one-batch` (50,000 requests
  in one provider batch);
- `python benchmarks/bench_scale.py --engine pg --callers 5000 --workers 1 --workers 2`
  (scale-out);
- `python benchmarks/bench_scale.py --engine pg --callers 500 --per-thread 100 --one-batch`
  (50,000 requests from 500 threads, each making 100 calls in parallel: the bridge's work per
  request is the same, the platform's per-thread runs are a hundred times fewer).

Each caller makes one `chat.completions.create` through `wrap_openai` and the `emu_bridge` of
`bench_graphs.py` (the real `OpenAIBatch` adapter), against the offline emulator in this process
(batches complete at once). With `--one-batch` the flush rule never fires on its own: once every
caller waits, one forced flush sends all items as one batch. Reports: time until every caller
waits (enqueue), the provider batch's life as the emulator saw it (input file uploaded to
batch created: build and upload; batch complete to output fetched: parse and match), time
until every caller was resumed (deliver), CPU of every engine process, peak RSS of the server
processes and, on PostgreSQL, store bytes and all bytes written (WAL) per item.

Beside each bridge round runs the platform's floor (`_floor.py`): the same threads and the
same number of interrupts, resumed directly by this driver, on a fresh server of the same
engine; `--pairs N` interleaves N floor/bridge pairs, and every figure is also given as a
ratio to the floor (`--no-floor`: the bridge alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from _floor import Resumer
from _report import cpu_seconds, machine, peak_rss_mb, start_callers, write_section
from langgraph_sdk import get_client
from langgraph_sdk.schema import ThreadStatus
from rich.console import Console
from rich.table import Table

from batch_bridge import bridge_thread_id
from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.testing.devserver import DevServer

HERE = Path(__file__).resolve().parent
console = Console()
GRAPHS = {
    name: f"bench_graphs.py:{name}"
    for name in ("emu_bridge", "emu_agent", "emu_fanout", "floor", "floor_fanout")
}


@contextlib.contextmanager
def server(engine: str, workers: int, env: dict[str, str], jobs: int) -> Iterator[Any]:
    with tempfile.TemporaryDirectory() as workdir:
        if engine == "dev":
            with DevServer(Path(workdir), GRAPHS, base_dir=HERE, env=env, jobs=jobs) as dev:
                yield dev
        else:
            # The PostgreSQL engine is the tests' own tool (tests/support), not the library's.
            sys.path.insert(0, str(HERE.parent))
            from tests.support.install import ensure_prod_engine_installed
            from tests.support.prodengine import ProdEngine

            ensure_prod_engine_installed()
            with ProdEngine(
                Path(workdir), GRAPHS, workers=workers, env=env, jobs=jobs, base_dir=HERE
            ) as pg:
                yield pg


def server_pids(running: Any) -> list[int]:
    if isinstance(running, DevServer):
        return [running.process.pid] if running.process else []
    return [pid for pid in running.pids if pid is not None]


def service_pids(running: Any) -> list[int]:
    """Every process of the engine: the server's, and PostgreSQL's and Redis's."""
    return server_pids(running) + list(getattr(running, "service_pids", []))


def server_log(running: Any) -> str:
    if isinstance(running, DevServer):
        return running.log_path.read_text(errors="replace")
    return "".join(running.log(i) for i in range(running.workers))


@contextlib.contextmanager
def profiled(pids: list[int], out: Path | None, label: str) -> Iterator[None]:
    """py-spy on every server process for the round, as collapsed stacks in `out`
    (`--profile DIR`): what bounds a figure is read from these."""
    if out is None:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    spies = [
        subprocess.Popen(
            [
                "py-spy",
                "record",
                "--pid",
                str(pid),
                "--rate",
                "50",
                "--nonblocking",
                "--format",
                "raw",
                "-o",
                str(out / f"{label}-{pid}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(timeout=60)


@contextlib.contextmanager
def rss_sampled(pids: list[int], out: Path | None, label: str) -> Iterator[list[float]]:
    """The largest resident memory of any server process up to each second of the round,
    so a peak can be placed in its phase (`--profile DIR`: the timeline as a TSV too)."""
    timeline: list[float] = []
    rows: list[str] = []
    stop = threading.Event()

    def sample() -> None:
        started = time.monotonic()
        while not stop.wait(1.0):
            sizes = [rss_mb(pid) for pid in pids]
            timeline.append(max(sizes, default=0.0))
            rows.append("\t".join([f"{time.monotonic() - started:.0f}", *map(str, sizes)]))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield timeline
    finally:
        stop.set()
        sampler.join()
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{label}-rss.tsv").write_text("\n".join(rows) + "\n")


def rss_mb(pid: int) -> float:
    found = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return round(int(found.group(1)) / 1024, 1) if found else 0.0


def pg_bytes(running: Any) -> tuple[int, int] | None:
    """(store table bytes, WAL position) of the engine's database."""
    if isinstance(running, DevServer):
        return None
    import psycopg

    with psycopg.connect(running.database_uri) as conn:
        row = conn.execute(
            "select pg_total_relation_size('store'), "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def tally(client: Any, tag: str, per_thread: int) -> tuple[int, int]:
    """(threads waiting on all their calls, threads answered).

    One-call threads are counted by status, which the server counts itself (reading 5,000
    whole threads a second was a load of its own). Many-call threads are read, a few hundred
    at most: on the PostgreSQL runtime a thread whose run ended in a hundred interrupts was
    now and then left `idle`, not `interrupted`, so they are judged by interrupts and values.
    """
    if per_thread == 1:
        waiting = await client.threads.count(metadata={"bench": tag}, status="interrupted")
        return waiting, await client.threads.count(metadata={"bench": tag}, status="idle")
    waiting = answered = offset = 0
    while True:
        page = await client.threads.search(metadata={"bench": tag}, limit=1000, offset=offset)
        offset += len(page)
        for thread in page:
            calls = sum(len(found) for found in (thread.get("interrupts") or {}).values())
            values = thread.get("values") or {}
            if calls >= per_thread and thread["status"] != "busy":
                waiting += 1
            elif thread["status"] == "idle" and not calls:
                answered += len(values.get("results") or []) == per_thread
        if len(page) < 1000:
            return waiting, answered


async def run_callers(
    url: str, n: int, per_thread: int, one_batch: bool, floor: bool = False
) -> dict[str, float]:
    """One round: the bridge's (callers through `emu_bridge`), or the floor's (the same
    threads interrupted and resumed by this driver)."""
    client = get_client(url=url, timeout=60)
    tag = f"scale-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    inputs: list[dict[str, Any]]
    if per_thread == 1:
        graph, inputs = "emu_agent", [{"item": f"q{i}"} for i in range(n)]
    else:
        graph = "emu_fanout"
        inputs = [{"items": [f"q{i}.{j}" for j in range(per_thread)]} for i in range(n)]
    graph = {"emu_agent": "floor", "emu_fanout": "floor_fanout"}[graph] if floor else graph
    resumer = Resumer(client, tag, per_thread) if floor else None
    creating = asyncio.ensure_future(start_callers(client, graph, tag, inputs))
    figures: dict[str, float] = {}

    async def count(status: ThreadStatus) -> int:
        return int(await client.threads.count(metadata={"bench": tag}, status=status))

    async def waiting() -> int:
        """Threads read only once none is busy: whole threads are heavy to serve."""
        if not creating.done() or await count("busy"):
            return 0
        return (await tally(client, tag, per_thread))[0]

    async def answered() -> int:
        """Threads answered; none before every run is created (a created thread whose run
        is not yet is idle too, and the round would end with it never run)."""
        if not creating.done():
            return 0
        if per_thread > 1 and (await count("busy") or await count("interrupted")):
            return min(await count("idle"), n - 1)  # some are not answered yet
        return (await tally(client, tag, per_thread))[1]

    if one_batch:
        while await waiting() < n:
            await asyncio.sleep(0.5)
        figures["enqueue_s"] = time.monotonic() - started
        if resumer is None:
            await client.runs.create(
                bridge_thread_id("emu_bridge"),
                "emu_bridge",
                input={"flush": True},
                multitask_strategy="enqueue",
            )
    last_log = 0.0
    while (done := await answered()) < n:
        if resumer is not None:
            await resumer.fresh()
        if time.monotonic() - last_log > 15:
            console.log(f"{done}/{n} callers answered")
            last_log = time.monotonic()
            if one_batch and resumer is None:  # items queued after the forced flush
                await client.runs.create(
                    bridge_thread_id("emu_bridge"),
                    "emu_bridge",
                    input={"flush": True},
                    multitask_strategy="enqueue",
                )
        await asyncio.sleep(0.5)
    await creating
    figures["total_s"] = time.monotonic() - started
    figures["deliver_s"] = figures["total_s"] - figures.get("enqueue_s", 0.0)
    return figures


def provider_view(log_text: str) -> dict[str, float]:
    """The adapter's own timings, logged by bench_graphs.py: the largest submit (build the
    file, upload, create the batch) and the largest results poll (download, parse, match)."""
    figures: dict[str, float] = {}
    for kind, key in (("submit", "submit_s"), ("results", "results_s")):
        found = [
            (int(n), float(s))
            for n, s in re.findall(rf"bench {kind} items=(\d+) s=([\d.]+)", log_text)
        ]
        if found:
            figures[f"{kind}_batches"] = float(len(found))
            figures["largest_batch"] = float(max(n for n, _ in found))
            figures[key] = max(found)[1]
    return figures


def one_round(
    engine: str,
    workers: int,
    jobs: int,
    shape: tuple[int, int],
    one_batch: bool,
    floor: bool,
    profile: Path | None = None,
) -> dict[str, float]:
    """A round on a fresh emulator and server: time, CPU of every engine process, peak RSS
    per worker and, on PostgreSQL, store and WAL bytes per request."""
    callers, per_thread = shape
    requests = callers * per_thread
    with EmulatorServer(Emulator(in_progress_s=0.0)) as emu:
        env = {
            "OPENAI_BASE_URL": emu.base_url,
            "OPENAI_API_KEY": "emulator",
            "BENCH_MAX_BATCH_AGE_S": "86400" if one_batch else "1",
            # One batch: no rule fires before the forced flush (it would resume some
            # callers before all of them were seen waiting).
            "BENCH_MAX_BATCH_SIZE": str(requests + 1 if one_batch else 50_000),
            "BENCH_POLL_INTERVAL_S": "1",
        }
        with server(engine, workers, env, jobs) as running:
            before, cpu = pg_bytes(running), cpu_seconds(service_pids(running))
            label = f"{'floor' if floor else 'bridge'}-{int(time.time())}"
            pids = server_pids(running)
            with profiled(pids, profile, label), rss_sampled(pids, profile, label) as rss_s:
                figures = asyncio.run(
                    run_callers(running.url, callers, per_thread, one_batch, floor)
                )
            if "enqueue_s" in figures:
                figures["enqueue_rss_mb"] = max(rss_s[: int(figures["enqueue_s"])], default=0)
            figures["cpu_s"] = cpu_seconds(service_pids(running)) - cpu
            after = pg_bytes(running)
            rss = [peak_rss_mb(pid) or 0.0 for pid in server_pids(running)]
            figures |= {} if floor else provider_view(server_log(running))
    figures["workers"] = workers
    figures["peak_rss_mb"] = max(rss, default=0.0)
    if before and after:
        figures["store_b_per_item"] = (after[0] - before[0]) / requests
        figures["wal_b_per_item"] = (after[1] - before[1]) / requests
    return figures


COLUMNS = [
    ("workers", "workers", "{:.0f}"),
    ("round", "round", "{}"),
    ("enqueue_s", "all waiting s", "{:.1f}"),
    ("submit_s", "build + upload + create s", "{:.2f}"),
    ("results_s", "download + index s", "{:.2f}"),
    ("deliver_s", "then all resumed s", "{:.1f}"),
    ("total_s", "total s", "{:.1f}"),
    ("cpu_s", "CPU s (server, PG, Redis)", "{:.1f}"),
    ("submit_batches", "provider batches", "{:.0f}"),
    ("largest_batch", "largest batch", "{:.0f}"),
    ("enqueue_rss_mb", "RSS MB when all wait", "{:.0f}"),
    ("peak_rss_mb", "peak RSS MB (per worker)", "{:.0f}"),
    ("store_b_per_item", "store bytes/request", "{:.0f}"),
    ("wal_b_per_item", "bytes written/request (WAL)", "{:.0f}"),
]
RATIOS = ("total_s", "cpu_s", "peak_rss_mb", "store_b_per_item", "wal_b_per_item")


def ratio_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Bridge over floor, per pair and as the median, for each figure both rounds have."""
    lines = ["", "| figure | bridge / floor per pair | median |", "|---|---:|---:|"]
    for workers in sorted({r["workers"] for r in rows}):
        floors = [r for r in rows if r["workers"] == workers and r["round"] == "floor"]
        bridges = [r for r in rows if r["workers"] == workers and r["round"] == "bridge"]
        for key in RATIOS:
            pairs = [
                b[key] / f[key]
                for f, b in zip(floors, bridges, strict=False)
                if f.get(key) and key in b
            ]
            if pairs:
                per_pair = ", ".join(f"{r:.2f}×" for r in pairs)
                median = statistics.median(pairs)
                lines.append(f"| {key}, {workers} worker(s) | {per_pair} | **{median:.2f}×** |")
    return lines if len(lines) > 3 else []


@click.command()
@click.option("--engine", type=click.Choice(["dev", "pg"]), default="dev")
@click.option("--callers", type=int, default=5000)
@click.option("--workers", "worker_counts", multiple=True, type=int, default=(1,))
@click.option(
    "--per-thread", type=int, default=1, help="Requests per caller thread, made in parallel."
)
@click.option("--one-batch", is_flag=True, help="One forced flush once every caller waits.")
@click.option("--jobs", type=int, default=10)
@click.option("--pairs", type=int, default=1, help="Floor and bridge rounds, interleaved.")
@click.option("--floor/--no-floor", default=True, help="Run the platform's floor beside.")
@click.option(
    "--profile",
    type=click.Path(file_okay=False, path_type=Path),
    help="Record py-spy profiles of the server processes here.",
)
def main(
    engine: str,
    callers: int,
    per_thread: int,
    worker_counts: tuple[int, ...],
    one_batch: bool,
    jobs: int,
    pairs: int,
    floor: bool,
    profile: Path | None,
) -> None:
    rows: list[dict[str, Any]] = []
    for workers in worker_counts:
        for pair in range(pairs):
            kinds = ("floor", "bridge") if pair % 2 == 0 else ("bridge", "floor")
            for kind in kinds if floor else ("bridge",):
                shape = (callers, per_thread)
                figures = one_round(
                    engine, workers, jobs, shape, one_batch, kind == "floor", profile
                )
                rows.append({**figures, "round": kind})
                console.log(rows[-1])
    report(rows, engine, (callers, per_thread), worker_counts, one_batch, pairs if floor else 0)


def report(
    rows: list[dict[str, Any]],
    engine: str,
    shape: tuple[int, int],
    worker_counts: tuple[int, ...],
    one_batch: bool,
    pairs: int,
) -> None:
    callers, per_thread = shape
    shown = [c for c in COLUMNS if any(c[0] in r for r in rows)]
    table = Table(*(title for _, title, _ in shown))
    lines = [
        "| " + " | ".join(title for _, title, _ in shown) + " |",
        "|" + "---:|" * len(shown),
    ]
    for r in rows:
        cells = [fmt.format(r[key]) if key in r else "" for key, _, fmt in shown]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    lines += ratio_lines(rows)
    console.print(table)
    for line in ratio_lines(rows):
        console.print(line)
    name = f"scale-{engine}-{callers if per_thread == 1 else f'{callers}x{per_thread}'}"
    name += "-one" if one_batch else ""
    command = (
        f"python benchmarks/bench_scale.py --engine {engine} --callers {callers}"
        + (f" --per-thread {per_thread}" if per_thread > 1 else "")
        + "".join(f" --workers {w}" for w in worker_counts)
        + (" --one-batch" if one_batch else "")
        + (f" --pairs {pairs}" if pairs else " --no-floor")
    )
    engine_name = (
        "`langgraph dev`" if engine == "dev" else "PostgreSQL + Redis, stock langgraph-api"
    )
    title = (
        f"## {callers:,} callers on {engine_name}"
        if per_thread == 1
        else f"## {callers * per_thread:,} requests from {callers:,} threads × {per_thread} "
        f"parallel calls on {engine_name}"
    )
    write_section(name, "\n".join([title, "", f"`{command}`; {machine()}.", "", *lines]))


if __name__ == "__main__":
    main()
