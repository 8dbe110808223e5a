"""Reliability under chaos: many callers through the two-worker production engine.

Run from the repository root: `python -m tests.support.soak --items 10000` (several minutes;
`--items 300` to try). It is the tests' own tool, beside the engine it drives
(tests/support/prodengine.py); its figures go to benchmarks/RELIABILITY.md.

Starts PostgreSQL + Redis + two langgraph-api workers (`ProdEngine`) serving the crash-test
graphs of `tests/prod/graphs/faults.py` (`bridge`: the real OpenAIBatch adapter; `agent`: one
`chat.completions.create` per caller) against the OpenAI emulator running in this process.
Callers are started in waves with bounded concurrency while a seeded chaos loop, every 15-25 s,
either SIGKILLs a random worker (restarted 1-3 s later), arms a kill point (the next process to
reach that line SIGKILLs itself; a supervisor restarts it, as the platform would), or queues a
provider fault in the emulator. Then it waits (polling) until every caller thread is idle or in
error and the bridge's books are empty, or a deadline, and counts:

- submitted / submitted twice: per question, the accepted provider batches holding it (the
  emulator's in-process records, as tests/prod/test_faults.py counts them);
- delivered: idle threads whose answer is the echo of their own question; delivered twice: a
  caller thread with more than 2 runs (runs counted in PostgreSQL, cross-checked through the
  SDK), or an answer that is not its own;
- failed with a clear error: threads in error, grouped by message; undeliverable: the bridge's
  `undeliverable` count and records; lost: threads not idle/error at the deadline;
- recovery after each kill: worker back up (restart done), next bridge tick completed (the
  bridge checkpoint's `ticks` counter rises) and next caller resumed (one more caller thread
  reached idle), each measured from the kill by polling every 0.5 s.

Prints rich tables and writes benchmarks/RELIABILITY.md (a `## Notes` section already in that
file is kept; tests/support/soak_report.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import click
from langgraph_sdk.client import LangGraphClient

from batch_bridge import bridge_thread_id
from batch_bridge.testing import Emulator, EmulatorServer
from tests.support.install import ensure_prod_engine_installed
from tests.support.prodengine import ProdEngine
from tests.support.soak_chaos import Chaos, Clients, Event, Supervisor, console
from tests.support.soak_report import show, write_markdown
from tests.support.soak_tally import (
    bridge_runs,
    error_messages,
    faults_left,
    run_statuses,
    runs_per_thread,
    sdk_runs,
    submissions,
    undeliverable,
    worker_log_summary,
)

ROOT = Path(__file__).resolve().parents[2]
GRAPHS = ROOT / "tests" / "prod" / "graphs" / "faults.py"
OUT = ROOT / "benchmarks" / "RELIABILITY.md"
KILL_POINTS = ["submit_before", "submit_after", "poll", "deliver_after", "caller_after_wait"]
PROVIDER_FAULTS = ["500-after", "503x3", "429"]
DECK = (
    [("kill", "")] * 4
    + [("arm", point) for point in KILL_POINTS]
    + [("fault", kind) for kind in PROVIDER_FAULTS]
)


class _NoDisconnects(logging.Filter):
    """Drop the emulator's tracebacks for uploads a SIGKILLed worker abandoned half-way."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return type(exc).__name__ != "ClientDisconnect"


logging.getLogger("uvicorn.error").addFilter(_NoDisconnects())


class Run:
    def __init__(
        self, opts: dict[str, Any], engine: ProdEngine, emulator: EmulatorServer, fault_dir: Path
    ) -> None:
        self.o = opts
        self.engine, self.emulator, self.fault_dir = engine, emulator, fault_dir
        self.clients = Clients(engine)
        self.tag = f"rel-{uuid.uuid4().hex[:8]}"
        self.n = opts["items"]
        self.texts = [f"{self.tag} q{i}" for i in range(self.n)]
        self.threads: list[str | None] = [None] * self.n
        self.t0 = time.monotonic()
        self.chaos = Chaos(self.t0)
        self.rng = random.Random(opts["seed"])
        self.supervisor = Supervisor(engine, self.chaos, fault_dir)
        self.samples: list[tuple[float, int, int]] = []  # (t, bridge ticks, idle callers)
        self.snapshot: dict[str, Any] = {}
        self.all_started_at: float | None = None
        self.chaos_stop = asyncio.Event()
        self.enqueue_failures: list[tuple[int, str]] = []
        self.deck: list[tuple[str, str]] = []

    # -- callers ---------------------------------------------------------------------------

    async def enqueue(self, i: int, gate: asyncio.Semaphore) -> None:
        tid = str(uuid.uuid4())
        meta = {"reliability": self.tag, "i": i}
        async with gate:
            run_tried = False
            last: Exception | None = None
            for _ in range(60):
                try:
                    client = self.clients.live()
                    await client.threads.create(
                        thread_id=tid, metadata=meta, if_exists="do_nothing"
                    )
                    if run_tried and await client.runs.list(tid, limit=1):
                        break  # the earlier attempt did create the run
                    run_tried = True
                    await client.runs.create(
                        tid, "agent", input={"question": self.texts[i]}, multitask_strategy="reject"
                    )
                    break
                except Exception as exc:
                    last = exc
                    await asyncio.sleep(0.5)
            else:
                self.enqueue_failures.append((i, repr(last)[:200]))
                return
        self.threads[i] = tid

    async def count(self, status: str) -> int:
        return int(
            await self.clients.call(
                lambda c: c.threads.count(metadata={"reliability": self.tag}, status=status)
            )
        )

    async def start_callers(self) -> None:
        gate = asyncio.Semaphore(self.o["concurrency"])
        wave = self.o["wave"]
        for start in range(0, self.n, wave):
            while (busy := await self.count("busy")) >= self.o["max_busy"]:
                await asyncio.sleep(1)
            began = time.monotonic()
            await asyncio.gather(
                *(self.enqueue(i, gate) for i in range(start, min(self.n, start + wave)))
            )
            console.log(
                f"wave {start // wave + 1}: callers {start}-{min(self.n, start + wave) - 1}"
                f" started in {time.monotonic() - began:.1f}s (busy before: {busy})"
            )
        self.all_started_at = time.monotonic()

    # -- chaos -----------------------------------------------------------------------------

    async def chaos_loop(self) -> None:
        lo, hi = self.o["chaos_every"]
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.chaos_stop.wait(), self.rng.uniform(lo, hi))
            if self.chaos_stop.is_set():
                return
            action, what = self.draw()
            if action == "kill":
                i = self.rng.randrange(self.engine.workers)
                hold = self.rng.uniform(1, 3)
                event = await asyncio.to_thread(self.supervisor.kill, i, hold)
                if event:
                    console.log(f"[yellow]chaos: {event.detail}")
            elif action == "arm":
                point = what
                (self.fault_dir / point).write_text("1")
                self.chaos.armed[point] += 1
                self.chaos.add(Event(time.monotonic(), "arm", f"armed kill point {point}"))
                console.log(f"[yellow]chaos: armed kill point {point}")
            else:
                kind = what
                emu = self.emulator.emulator
                if kind == "500-after":
                    emu.add_fault("POST /v1/batches", status=500, after=True)
                    self.chaos.fault_times += 1
                    detail = "POST /v1/batches 500 after acting (reply lost)"
                elif kind == "503x3":
                    emu.add_fault("GET /v1/batches/{batch_id}", status=503, times=3)
                    self.chaos.fault_times += 3
                    detail = "GET /v1/batches/{id} 503 x3"
                else:
                    route = self.rng.choice(["POST /v1/batches", "GET /v1/batches/{batch_id}"])
                    retry = round(self.rng.uniform(0.5, 3), 1)
                    emu.add_fault(route, status=429, times=2, retry_after_s=retry)
                    self.chaos.fault_times += 2
                    detail = f"{route} 429 x2 retry-after {retry}s"
                self.chaos.faults[kind] += 1
                self.chaos.add(Event(time.monotonic(), "fault", detail))
                console.log(f"[yellow]chaos: provider fault {detail}")

    def draw(self) -> tuple[str, str]:
        """The next action from a seeded, shuffled deck holding every kind of fault, so each
        kill point and provider fault comes up in every cycle of DECK actions."""
        for _ in range(2 * len(DECK)):
            if not self.deck:
                self.deck = list(DECK)
                self.rng.shuffle(self.deck)
            action, what = self.deck.pop()
            if action == "kill" and len(self.supervisor.alive()) < self.engine.workers:
                self.deck.insert(0, (action, what))  # keep a worker up; kill later
                continue
            if what == "caller_after_wait" and self.all_started_at is not None:
                continue  # no caller node will reach that line any more
            return action, what
        return "fault", "503x3"

    def disarm(self) -> Counter[str]:
        left: Counter[str] = Counter()
        for point in KILL_POINTS:
            path = self.fault_dir / point
            with contextlib.suppress(FileNotFoundError):
                left[point] += int(path.read_text() or "1")
                path.unlink()
        return left

    def fired(self) -> Counter[str]:
        log = self.fault_dir / "fired.log"
        lines = log.read_text().split() if log.exists() else []
        return Counter(lines[0::2])

    # -- monitoring ------------------------------------------------------------------------

    async def bridge_state(self) -> dict[str, Any]:
        async def get(c: LangGraphClient) -> dict[str, Any]:
            try:
                state = await c.threads.get_state(bridge_thread_id("bridge"))
            except Exception as exc:
                if "404" in repr(exc) or "not found" in repr(exc).lower():
                    return {}
                raise
            values: Any = state.get("values") or {}
            return dict(values)

        return dict(await self.clients.call(get))

    async def monitor(self) -> None:
        last_print = 0.0
        while True:
            try:
                bridge, idle = await asyncio.gather(self.bridge_state(), self.count("idle"))
                now = time.monotonic()
                self.samples.append((now, int(bridge.get("ticks") or 0), idle))
                self.snapshot = {"bridge": bridge, "idle": idle}
                if now - last_print >= 10:
                    last_print = now
                    error, busy, waiting = await asyncio.gather(
                        self.count("error"), self.count("busy"), self.count("interrupted")
                    )
                    self.snapshot.update(error=error, busy=busy, interrupted=waiting)
                    started = sum(t is not None for t in self.threads)
                    console.log(
                        f"t={now - self.t0:5.0f}s started {started} | busy {busy} waiting "
                        f"{waiting} idle {idle} error {error} | bridge ticks "
                        f"{bridge.get('ticks')} pending {bridge.get('pending')} in_flight "
                        f"{len(bridge.get('in_flight') or [])} delivering "
                        f"{bridge.get('delivering')} undeliverable {bridge.get('undeliverable')}"
                        f" | workers {self.engine.pids}"
                    )
            except Exception as exc:
                console.log(f"[red]monitor: {exc!r}"[:300])
            await asyncio.sleep(0.5)

    async def settle(self, deadline: float) -> bool:
        """Every started caller idle or in error, and the bridge's books empty."""
        while time.monotonic() < deadline:
            started = sum(t is not None for t in self.threads)
            idle, error = await asyncio.gather(self.count("idle"), self.count("error"))
            if idle + error >= started:
                bridge = await self.bridge_state()
                if (
                    not bridge.get("pending")
                    and not bridge.get("delivering")
                    and not bridge.get("in_flight")
                ):
                    return True
            await asyncio.sleep(2)
        return False

    # -- the run ---------------------------------------------------------------------------

    async def go(self) -> dict[str, Any]:
        monitor = asyncio.create_task(self.monitor())
        chaos = asyncio.create_task(self.chaos_loop()) if self.o["chaos"] else None
        began = time.monotonic()
        await self.start_callers()
        started_s = time.monotonic() - began
        console.log(
            f"all {self.n} callers started in {started_s:.0f}s; chaos for "
            f"{self.o['chaos_tail_s']}s more"
        )
        if chaos:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(chaos), self.o["chaos_tail_s"])
            self.chaos_stop.set()
            await chaos
        left = self.disarm()
        console.log(f"chaos stopped; kill points disarmed unfired: {dict(left)}")
        settled = await self.settle(time.monotonic() + self.o["deadline_s"])
        wall = time.monotonic() - began
        console.log(f"settled={settled} after {wall:.0f}s; counting")
        monitor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor
        self.supervisor.stop()
        for i, pid in enumerate(self.engine.pids):
            if pid is None:
                self.engine.restart(i)
        result = await self.count_all()
        result.update(settled=settled, wall_s=wall, started_s=started_s, disarmed=left)
        result["worker_log"] = worker_log_summary(self.engine)
        result["bridge_runs"] = bridge_runs(self.engine)
        try:
            result["run_statuses"] = await run_statuses(self.engine)
        except Exception as exc:
            result["run_statuses"] = [f"run statuses unavailable: {exc!r}"]
        self.recovery()
        return result

    def recovery(self) -> None:
        for event in self.chaos.events:
            if event.kind not in ("kill", "killpoint"):
                continue
            before = [s for s in self.samples if s[0] <= event.at]
            after = [s for s in self.samples if s[0] > event.at]
            if not before:
                continue
            _, ticks0, idle0 = before[-1]
            event.tick_s = next((t - event.at for t, k, _ in after if k > ticks0), None)
            event.resume_s = next((t - event.at for t, _, i in after if i > idle0), None)

    async def count_all(self) -> dict[str, Any]:
        threads: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            page = await self.clients.call(
                lambda c, o=offset: c.threads.search(
                    metadata={"reliability": self.tag},
                    limit=1000,
                    offset=o,
                    sort_by="created_at",
                    sort_order="asc",
                )
            )
            for thread in page:
                threads[str(thread["thread_id"])] = dict(thread)
            if len(page) < 1000:
                break
            offset += 1000
        index = {tid: i for i, tid in enumerate(self.threads) if tid}
        runs = await runs_per_thread(self.engine, list(index))
        counts = submissions(self.emulator)
        mine = [counts[t] for t in self.texts]
        statuses: Counter[str] = Counter()
        delivered, wrong, doubled, lost, errors = [], [], [], [], []
        for tid, i in index.items():
            thread = threads.get(tid)
            status = thread["status"] if thread else "missing"
            statuses[status] += 1
            answer = ((thread or {}).get("values") or {}).get("answer")
            if status == "idle" and answer == f"Echo: {self.texts[i]}":
                delivered.append(tid)
            elif answer is not None:
                wrong.append(tid)
            if runs.get(tid, 0) > 2:
                doubled.append(tid)
            if status == "error":
                errors.append(tid)
            elif status != "idle":
                lost.append(tid)
        messages = await error_messages(self.clients, errors)
        bridge = await self.bridge_state()
        stuck = await undeliverable(self.clients)
        run_hist = Counter(runs.get(t, 0) for t in index)
        # Cross-check the database's run counts through the SDK on a sample and the outliers.
        sample = random.Random(1).sample(list(index), min(100, len(index)))
        check = sorted(set(sample) | set(doubled) | {t for t in index if runs.get(t, 0) != 2})
        by_sdk = await sdk_runs(self.clients, check[:300])
        mismatch = {t: (runs.get(t, 0), n) for t, n in by_sdk.items() if n != runs.get(t, 0)}
        stats = self.emulator.emulator.stats()
        return {
            "enqueued": len(index),
            "not_enqueued": self.enqueue_failures,
            "submitted": sum(1 for c in mine if c >= 1),
            "never_submitted": sum(1 for c in mine if c == 0),
            "submitted_twice": sum(1 for c in mine if c > 1),
            "submitted_twice_examples": [(self.texts[i], c) for i, c in enumerate(mine) if c > 1][
                :10
            ],
            "delivered": len(delivered),
            "doubled": doubled,
            "wrong": wrong,
            "errors": messages,
            "lost": lost,
            "statuses": statuses,
            "runs_hist": run_hist,
            "runs_mismatch": mismatch,
            "bridge": bridge,
            "undeliverable": stuck,
            "emulator": {k: stats[k] for k in ("batches_created", "batches_by_status", "calls")},
            "faults_fired": self.chaos.fault_times - faults_left(self.emulator),
            "fired": self.fired(),
        }


@click.command()
@click.option("--items", type=int, default=10_000, show_default=True)
@click.option("--wave", type=int, default=500, show_default=True)
@click.option(
    "--max-busy",
    type=int,
    default=500,
    show_default=True,
    help="start the next wave once fewer caller threads than this are busy",
)
@click.option("--concurrency", type=int, default=50, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--chaos/--no-chaos", default=True)
@click.option("--chaos-every", type=(float, float), default=(15.0, 25.0), show_default=True)
@click.option("--chaos-tail-s", type=float, default=30.0, show_default=True)
@click.option("--deadline-s", type=float, default=900.0, show_default=True)
@click.option("--batch-size", type=int, default=500, show_default=True)
@click.option("--batch-age", type=float, default=2.0, show_default=True)
@click.option("--in-progress-s", type=float, default=2.0, show_default=True)
@click.option("--jobs", type=int, default=10, show_default=True)
@click.option("--workdir", type=click.Path(path_type=Path), default=None)
@click.option("--out", type=click.Path(path_type=Path), default=OUT, show_default=True)
def main(**opts: Any) -> None:
    command = "python -m tests.support.soak " + " ".join(sys.argv[1:])
    ensure_prod_engine_installed()
    workdir = opts["workdir"] or Path(tempfile.mkdtemp(prefix="bb-reliability-"))
    fault_dir = workdir / "faults"
    fault_dir.mkdir(parents=True, exist_ok=True)
    fault_dir.chmod(0o777)
    console.log(f"workdir {workdir} (worker logs: worker-N.log)")
    with EmulatorServer(Emulator(in_progress_s=opts["in_progress_s"])) as emulator:
        env = {
            "OPENAI_BASE_URL": emulator.base_url,
            "OPENAI_API_KEY": "sk-test-not-a-real-key",
            "BB_FAULT_DIR": str(fault_dir),
            "BB_MAX_BATCH_SIZE": str(opts["batch_size"]),
            "BB_MAX_BATCH_AGE_S": str(opts["batch_age"]),
            "BB_POLL_INTERVAL_S": "1",
        }
        graphs = {name: f"{GRAPHS}:{name}" for name in ("bridge", "agent")}
        began = time.monotonic()
        with ProdEngine(
            workdir / "engine", graphs, workers=2, env=env, jobs=opts["jobs"]
        ) as engine:
            console.log(f"engine up in {time.monotonic() - began:.0f}s: {engine.urls}")
            run = Run(opts, engine, emulator, fault_dir)
            try:
                result = asyncio.run(run.go())
            finally:
                run.supervisor.stop()
            show(result, run, console)
            write_markdown(opts["out"], result, run, command)
            console.log(
                f"wrote {opts['out']}; total runtime {time.monotonic() - began:.0f}s; "
                f"logs in {workdir / 'engine'}"
            )


if __name__ == "__main__":
    main()
