"""The main job: many agent threads through the bridge and the offline Batch API emulator.

Starts the emulator and a `langgraph dev` server with this project's langgraph.json, starts
one agent thread per question, shows live progress, and ends with a summary of batches,
waits, tokens and what the Batch API's half price saved.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.schema import ThreadStatus
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from batch_bridge._constants import bridge_thread_id
from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.testing.devserver import DevServer

PRICES_PER_MTOK = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
}
"""Normal (non-batch) USD prices per million input/output tokens; the Batch API halves them."""
BATCH_DISCOUNT = 0.5


@dataclass(frozen=True, kw_only=True)
class DemoSettings:
    threads: int = 300
    model: str = "gpt-4o-mini"
    max_batch_size: int = 100
    max_batch_age_s: float = 2.0
    poll_interval_s: float = 1.0
    provider_latency_s: float = 3.0
    config: Path = Path("langgraph.json")
    timeout_s: float = 600.0


@dataclass(frozen=True)
class DemoSummary:
    threads: int
    succeeded: int
    failed: int
    batches: int
    wall_s: float
    wait_p50_s: float
    wait_p95_s: float
    input_tokens: int
    output_tokens: int
    cost_normal_usd: float
    cost_batch_usd: float

    @property
    def savings_usd(self) -> float:
        return self.cost_normal_usd - self.cost_batch_usd


def _graphs(config: Path) -> tuple[dict[str, str], Path]:
    spec = json.loads(config.read_text())
    return dict(spec["graphs"]), config.resolve().parent


async def _counts(client: LangGraphClient, run_tag: str) -> dict[str, int]:
    statuses: tuple[ThreadStatus, ...] = ("idle", "error", "interrupted", "busy")
    counts = await asyncio.gather(
        *(client.threads.count(metadata={"demo": run_tag}, status=s) for s in statuses)
    )
    return dict(zip(statuses, counts, strict=True))


async def _bridge_summary(client: LangGraphClient) -> dict[str, Any]:
    try:
        state = await client.threads.get_state(bridge_thread_id("bridge"))
    except Exception:
        return {}
    values = state.get("values")
    return values if isinstance(values, dict) else {}


async def _start_threads(client: LangGraphClient, settings: DemoSettings, run_tag: str) -> None:
    gate = asyncio.Semaphore(20)

    async def one(i: int) -> None:
        async with gate:
            thread = await client.threads.create(metadata={"demo": run_tag})
            question = f"Question {i}: what is {i} squared?"
            await client.runs.create(thread["thread_id"], "agent", input={"question": question})

    await asyncio.gather(*(one(i) for i in range(settings.threads)))


def _timestamp(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value)).timestamp()


async def _collect(
    client: LangGraphClient, run_tag: str, settings: DemoSettings, wall_s: float
) -> DemoSummary:
    threads: list[dict[str, Any]] = []
    while len(threads) < settings.threads:
        page = await client.threads.search(
            metadata={"demo": run_tag}, limit=500, offset=len(threads)
        )
        if not page:
            break
        threads.extend(dict(t) for t in page)
    waits = sorted(_timestamp(t["updated_at"]) - _timestamp(t["created_at"]) for t in threads)
    ok = [t for t in threads if t["status"] == "idle" and (t.get("values") or {}).get("answer")]
    tokens_in = sum(t["values"]["usage"].get("prompt_tokens", 0) for t in ok)
    tokens_out = sum(t["values"]["usage"].get("completion_tokens", 0) for t in ok)
    price_in, price_out = PRICES_PER_MTOK.get(settings.model, PRICES_PER_MTOK["gpt-4o-mini"])
    normal = (tokens_in * price_in + tokens_out * price_out) / 1_000_000
    bridge = await _bridge_summary(client)
    return DemoSummary(
        threads=len(threads),
        succeeded=len(ok),
        failed=len(threads) - len(ok),
        batches=int(bridge.get("batches_submitted", 0)),
        wall_s=wall_s,
        wait_p50_s=statistics.median(waits) if waits else 0.0,
        wait_p95_s=waits[min(len(waits) - 1, int(len(waits) * 0.95))] if waits else 0.0,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cost_normal_usd=normal,
        cost_batch_usd=normal * BATCH_DISCOUNT,
    )


async def _drive(url: str, settings: DemoSettings, console: Console) -> DemoSummary:
    client = get_client(url=url)
    run_tag = uuid.uuid4().hex[:8]
    started = time.monotonic()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("agents", total=settings.threads, detail="starting threads")
        await _start_threads(client, settings, run_tag)
        deadline = started + settings.timeout_s
        while time.monotonic() < deadline:
            counts, bridge = await asyncio.gather(_counts(client, run_tag), _bridge_summary(client))
            finished = counts["idle"] + counts["error"]
            in_flight = sum(b.get("size", 0) for b in bridge.get("in_flight", []))
            detail = (
                f"pending {bridge.get('pending', 0)} · in flight {in_flight} "
                f"· done {counts['idle']} · failed {counts['error']}"
            )
            progress.update(task, completed=finished, detail=detail)
            if finished >= settings.threads:
                break
            await asyncio.sleep(0.5)
    return await _collect(client, run_tag, settings, time.monotonic() - started)


def render(summary: DemoSummary, console: Console) -> None:
    table = Table(title="BatchBridge demo summary", show_header=False)
    rows = [
        ("agent threads", f"{summary.threads} ({summary.succeeded} ok, {summary.failed} failed)"),
        ("provider batches", str(summary.batches)),
        ("wall time", f"{summary.wall_s:.1f} s"),
        ("wait p50 / p95", f"{summary.wait_p50_s:.1f} s / {summary.wait_p95_s:.1f} s"),
        ("tokens in / out", f"{summary.input_tokens:,} / {summary.output_tokens:,}"),
        ("cost at normal price", f"${summary.cost_normal_usd:.6f}"),
        ("cost at batch price", f"${summary.cost_batch_usd:.6f}"),
        ("saved", f"${summary.savings_usd:.6f} ({1 - BATCH_DISCOUNT:.0%})"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def run_demo(settings: DemoSettings, console: Console | None = None) -> DemoSummary:
    console = console or Console()
    graphs, base_dir = _graphs(settings.config)
    emulator = Emulator(in_progress_s=settings.provider_latency_s)
    with (
        tempfile.TemporaryDirectory(prefix="batch-bridge-demo-") as workdir,
        EmulatorServer(emulator) as provider,
    ):
        env = {
            "OPENAI_BASE_URL": provider.base_url,
            "OPENAI_API_KEY": "emulator",
            "BATCH_BRIDGE_MAX_BATCH_SIZE": str(settings.max_batch_size),
            "BATCH_BRIDGE_MAX_BATCH_AGE_S": str(settings.max_batch_age_s),
            "BATCH_BRIDGE_POLL_INTERVAL_S": str(settings.poll_interval_s),
            "BATCH_BRIDGE_DEMO_MODEL": settings.model,
        }
        console.print(f"emulator at {provider.base_url}; starting langgraph dev …")
        server = DevServer(Path(workdir), graphs, base_dir=base_dir, env=env)
        with server:
            console.print(f"langgraph dev at {server.url} (log: {server.log_path})")
            summary = asyncio.run(_drive(server.url, settings, console))
    render(summary, console)
    return summary
