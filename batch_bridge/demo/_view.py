"""What the demo shows: its stage and counts while it runs, and the summary table after."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Literal, NamedTuple

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from batch_bridge.demo._settings import DemoSummary

__all__ = ["Display", "Snapshot", "Stage", "describe", "render"]

Stage = Literal[
    "starting emulator",
    "starting server",
    "creating threads",
    "waiting for batches",
    "delivering",
    "done",
]


class Snapshot(NamedTuple):
    """What the demo knows at one moment: its threads' statuses and the bridge's counts."""

    created: int
    """Agent threads created so far."""
    answered: int
    """Threads whose run finished (`idle`)."""
    failed: int
    """Threads whose run failed (`error`)."""
    waiting: int
    """Threads interrupted: their callers wait on the bridge."""
    pending: int
    """Items waiting at the bridge for a batch."""
    in_flight: int
    """Items in provider batches."""
    batches_in_flight: int
    delivering: int
    """Results the bridge holds and has yet to deliver."""
    resumed: int
    """Callers the bridge has resumed with their result (seen waiting, and no longer)."""


def describe(snapshot: Snapshot, threads: int) -> tuple[Stage, str]:
    """The demo's stage once the server is up, and the line of counts shown beside it."""
    resumed = max(snapshot.resumed, snapshot.answered + snapshot.failed)
    batches = f"{snapshot.batches_in_flight} batch" + ("es" * (snapshot.batches_in_flight != 1))
    flight = f"in flight {snapshot.in_flight}" + (f" ({batches})" if snapshot.in_flight else "")
    if snapshot.created < threads:
        detail = f"created {snapshot.created} of {threads}"
        return "creating threads", detail + (f" · resumed {resumed}" if resumed else "")
    if snapshot.answered + snapshot.failed >= threads:
        return "done", f"answered {snapshot.answered} · failed {snapshot.failed}"
    if resumed or snapshot.delivering:
        detail = f"resumed {resumed} · still waiting {threads - resumed}"
        to_deliver = min(snapshot.delivering, threads - resumed)  # the bridge's count lags
        if to_deliver:
            detail += f" · results to deliver {to_deliver}"
        if snapshot.in_flight:
            detail += f" · {flight}"
        return "delivering", detail + (f" · pending {snapshot.pending}" if snapshot.pending else "")
    return (
        "waiting for batches",
        f"waiting {snapshot.waiting} · pending {snapshot.pending} · {flight}",
    )


class _Progress(Progress):
    """Rich's progress row, with the current counts on a line of their own beneath it."""

    def get_renderables(self) -> Iterator[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        for task in self.tasks:
            if task.fields.get("detail"):
                yield Text("  " + task.fields["detail"], style="dim")


class Display:
    """A live progress row (stage, answered agents, elapsed time) over the current counts,
    and a line printed on each change of stage, so the history stays on screen and in
    captured output. On an error the live part is cleared: the history and the error stay.
    """

    def __init__(self, console: Console, threads: int) -> None:
        self.progress = _Progress(
            SpinnerColumn(finished_text="[green]✓"),
            TextColumn("[bold]{task.fields[stage]:<19}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("answered"),
            TimeElapsedColumn(),
            console=console,
        )
        self.threads = threads
        self.stage: str | None = None
        self.started = time.monotonic()
        self.task = TaskID(0)

    def __enter__(self) -> Display:
        self.progress.start()
        self.started = time.monotonic()
        self.task = self.progress.add_task("agents", total=self.threads, stage="", detail="")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if exc_type is not None:
            self.progress.live.transient = True
        self.progress.stop()

    def show(self, stage: Stage, detail: str = "", *, answered: int | None = None) -> None:
        if stage != self.stage:
            self.stage = stage
            self.note(f"{stage:<19} {detail}")
        self.progress.update(self.task, stage=stage, detail=detail, completed=answered)

    def note(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        self.progress.console.print(f"[dim]{elapsed:6.1f}s[/] {text}".rstrip(), highlight=False)


def _threads_row(summary: DemoSummary) -> str:
    unfinished = f", {summary.unfinished} unfinished" if summary.unfinished else ""
    return f"{summary.threads} ({summary.succeeded} ok, {summary.failed} failed{unfinished})"


def _saved(summary: DemoSummary) -> str:
    share = summary.savings_usd / summary.cost_normal_usd if summary.cost_normal_usd else None
    return f"${summary.savings_usd:.6f}" + (f" ({share:.0%})" if share is not None else "")


def _status_lines(summary: DemoSummary, serving: bool) -> list[str]:
    """Where the run's batches and savings can be seen: the status page, and its figures."""
    if summary.status_url is None:
        return []
    lines = [f"status page: {summary.status_url}"]
    if summary.status_batches is not None and summary.status_saved_usd is not None:
        batches = f"{summary.status_batches} finished batch" + "es" * (summary.status_batches != 1)
        lines.append(f"  it shows {batches}, saved ${summary.status_saved_usd:.6f}")
    if not serving:
        lines += [
            "  the server stopped with the demo; to see the page again, run "
            "`batch-bridge demo --keep-serving`",
            "  (or `batch-bridge status --url URL` against a deployed bridge)",
        ]
    return lines


def render(summary: DemoSummary, console: Console, *, serving: bool = False) -> None:
    """The summary table, then the status page's URL and figures (`serving`: still up)."""
    table = Table(title="BatchBridge demo summary", show_header=False)
    rows = [
        ("agent threads", _threads_row(summary)),
        ("provider batches", str(summary.batches)),
        ("wall time", f"{summary.wall_s:.1f} s"),
        ("wait p50 / p95", f"{summary.wait_p50_s:.1f} s / {summary.wait_p95_s:.1f} s"),
        ("tokens in / out", f"{summary.input_tokens:,} / {summary.output_tokens:,}"),
        ("cost at normal price", f"${summary.cost_normal_usd:.6f}"),
        ("cost at batch price", f"${summary.cost_batch_usd:.6f}"),
        ("saved", _saved(summary)),
    ]
    if summary.sample_answer is not None:
        rows.append(("one answer (batch_bridge.result)", summary.sample_answer))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    for line in _status_lines(summary, serving):
        console.print(line, highlight=False, soft_wrap=True, markup=False)
