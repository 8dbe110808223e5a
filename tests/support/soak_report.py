"""The soak's report: a rich table on the console and benchmarks/RELIABILITY.md."""

from __future__ import annotations

import datetime as dt
import os
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from tests.support.soak import Run

__all__ = ["show", "write_markdown"]


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _summary(values: list[float]) -> str:
    if not values:
        return "-"
    return f"median {statistics.median(values):.1f} s, max {max(values):.1f} s (n={len(values)})"


def build_rows(r: dict[str, Any], run: Run) -> list[tuple[str, str]]:
    kills = [e for e in run.chaos.events if e.kind in ("kill", "killpoint")]
    bridge = r["bridge"]
    lost = len(r["lost"]) + len(r["not_enqueued"])
    return [
        ("items enqueued (caller threads with a run)", str(r["enqueued"])),
        ("not enqueued (client gave up)", str(len(r["not_enqueued"]))),
        ("submitted to the provider (distinct items)", str(r["submitted"])),
        ("never submitted", str(r["never_submitted"])),
        ("submitted twice (in >1 accepted batch)", str(r["submitted_twice"])),
        ("delivered (idle, own answer)", str(r["delivered"])),
        ("delivered twice (>2 runs on the thread)", str(len(r["doubled"]))),
        ("answer not its own", str(len(r["wrong"]))),
        ("failed with a clear error (thread in error)", str(sum(map(len, r["errors"].values())))),
        ("undeliverable (bridge state)", str(bridge.get("undeliverable"))),
        ("lost (not finished by the deadline)", str(lost)),
        ("wall time (first caller created -> settled)", f"{r['wall_s']:.0f} s"),
        ("callers start phase", f"{r['started_s']:.0f} s"),
        ("items/s (delivered / wall time)", f"{r['delivered'] / r['wall_s']:.1f}"),
        (
            "worker kills (chaos SIGKILL + kill points fired)",
            f"{len(kills)} ({sum(e.kind == 'kill' for e in kills)} + "
            f"{sum(e.kind == 'killpoint' for e in kills)})",
        ),
        (
            "kill points armed / fired",
            f"{sum(run.chaos.armed.values())} / {sum(r['fired'].values())} {dict(r['fired'])}",
        ),
        (
            "provider faults injected / fired (failed calls)",
            f"{sum(run.chaos.faults.values())} faults = {run.chaos.fault_times} calls / "
            f"{r['faults_fired']} {dict(run.chaos.faults)}",
        ),
        ("recovery: worker back up", _summary([e.back_at - e.at for e in kills if e.back_at])),
        ("recovery: next bridge tick", _summary([e.tick_s for e in kills if e.tick_s is not None])),
        (
            "recovery: next caller resumed",
            _summary([e.resume_s for e in kills if e.resume_s is not None]),
        ),
        ("provider batches created", str(r["emulator"]["batches_created"])),
        (
            "bridge checkpoint totals (lose a killed tick's share)",
            f"batches {bridge.get('batches_submitted')}, items submitted "
            f"{bridge.get('items_submitted')}, completed {bridge.get('items_completed')}, failed "
            f"{bridge.get('items_failed')}, delivered {bridge.get('items_delivered')}, ticks "
            f"{bridge.get('ticks')}",
        ),
        (
            "runs per caller thread",
            ", ".join(f"{k}: {v}" for k, v in sorted(r["runs_hist"].items())),
        ),
        ("settled before the deadline", str(r["settled"])),
    ]


def event_rows(run: Run) -> list[list[str]]:
    rows = []
    for e in run.chaos.events:
        back = e.back_at - e.at if e.back_at else None
        rows.append(
            [f"{e.at - run.t0:.0f}", e.kind, e.detail, _s(back), _s(e.tick_s), _s(e.resume_s)]
        )
    return rows


def details(r: dict[str, Any]) -> list[str]:
    out = []
    for message, tids in r["errors"].items():
        out.append(f"- error x{len(tids)}: `{message}` (e.g. {', '.join(tids[:3])})")
    for label, key in (
        ("delivered twice", "doubled"),
        ("answer not its own", "wrong"),
        ("lost", "lost"),
    ):
        if r[key]:
            out.append(f"- {label}: {len(r[key])}, e.g. {', '.join(r[key][:10])}")
    if r["not_enqueued"]:
        out.append(f"- not enqueued: {r['not_enqueued'][:5]}")
    if r["submitted_twice_examples"]:
        out.append(f"- submitted twice, e.g.: {r['submitted_twice_examples']}")
    for u in r["undeliverable"][:10]:
        out.append(f"- undeliverable: thread {u['thread_id']}: {u['last_error']}")
    if r["runs_mismatch"]:
        out.append(f"- run counts differ between PostgreSQL and the SDK: {r['runs_mismatch']}")
    statuses = dict(r["statuses"])
    out.append(f"- caller thread statuses at the end: {statuses}")
    out.append(f"- {r['bridge_runs']}")
    out.extend(f"- {line}" for line in r.get("run_statuses", []))
    for n, line in r.get("worker_log", []):
        out.append(f"- worker logs x{n}: `{line}`")
    out.append(
        f"- emulator: batches by status {r['emulator']['batches_by_status']}, calls "
        f"{r['emulator']['calls']}"
    )
    return out


def write_markdown(path: Path, r: dict[str, Any], run: Run, command: str) -> None:
    notes = ""
    if path.exists():
        old = path.read_text()
        if "\n## Notes" in old:
            notes = old[old.index("\n## Notes") :]
    o = run.o
    lines = [
        "# Reliability under chaos (production engine)",
        "",
        "Generated by `python -m tests.support.soak`; rerunning overwrites everything above "
        "`## Notes`.",
        "",
        f"- command: `{command}`",
        f"- date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}, machine: "
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
        f"- engine: PostgreSQL + Redis + {run.engine.workers} langgraph-api workers, "
        f"N_JOBS_PER_WORKER={run.engine.jobs}, LG_BG_JOB_HEARTBEAT={run.engine.heartbeat_s}",
        f"- bridge (tests/prod/graphs/faults.py, real OpenAIBatch adapter): "
        f"BB_MAX_BATCH_SIZE={o['batch_size']}, BB_MAX_BATCH_AGE_S={o['batch_age']}, "
        f"BB_POLL_INTERVAL_S=1; emulator in_progress_s={o['in_progress_s']}",
        f"- callers: graph `agent`, waves of {o['wave']} (next wave once fewer than "
        f"{o['max_busy']} caller threads are busy), {o['concurrency']} concurrent creates",
        f"- chaos: seed {o['seed']}, an action every {o['chaos_every'][0]}-"
        f"{o['chaos_every'][1]} s until {o['chaos_tail_s']} s after the last caller started: "
        "SIGKILL a random worker (restart after 1-3 s), arm a kill point, or queue a provider "
        "fault; kill points left unfired at the end were disarmed: "
        f"{dict(r['disarmed']) or 'none'}",
        "",
        "## Results",
        "",
        "| figure | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in build_rows(r, run)),
        "",
        "Recovery is measured from the kill (chaos: when SIGKILL returned; kill point: when "
        "the supervisor saw the process gone, within 0.2 s) to: the worker answering /ok "
        "again; the bridge checkpoint's `ticks` counter rising (a tick completed); one more "
        "caller thread reaching idle (a caller resumed and finished). Both are sampled every "
        "0.5 s and include the ordinary wait for a batch when none was due.",
        "",
        "## Details",
        "",
        *details(r),
        "",
        "## Chaos events",
        "",
        "| t (s) | kind | what | worker back (s) | next tick (s) | next caller resumed (s) |",
        "|---|---|---|---|---|---|",
        *(f"| {' | '.join(row)} |" for row in event_rows(run)),
        "",
    ]
    path.write_text("\n".join(lines) + notes)


def show(r: dict[str, Any], run: Run, console: Console) -> None:
    table = Table("figure", "value", title="Reliability under chaos")
    for k, v in build_rows(r, run):
        table.add_row(k, v)
    console.print(table)
    events = Table("t s", "kind", "what", "back s", "tick s", "resumed s", title="Chaos events")
    for row in event_rows(run):
        events.add_row(*row)
    console.print(events)
    for line in details(r):
        console.print(line, markup=False, highlight=False)
