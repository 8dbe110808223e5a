"""The soak's counts: what the emulator accepted, what PostgreSQL and the SDK say about runs,
the bridge's undeliverable records, and the workers' logs."""

from __future__ import annotations

import asyncio
import re
import statistics
from collections import Counter
from typing import Any

from langgraph_sdk.client import LangGraphClient

from batch_bridge.testing import EmulatorServer
from tests.support.prodengine import ProdEngine
from tests.support.soak_chaos import Clients

__all__ = [
    "bridge_runs",
    "error_messages",
    "faults_left",
    "run_statuses",
    "runs_per_thread",
    "sdk_runs",
    "submissions",
    "undeliverable",
    "worker_log_summary",
]

ITEMS_NS = ("batch_bridge", "bridge", "items")


def bridge_runs(engine: ProdEngine) -> str:
    """How the bridge thread's runs fared, from the workers' "Starting background run" lines."""
    queued: list[float] = []
    attempts: Counter[int] = Counter()
    for i in range(engine.workers):
        for line in engine.log(i).splitlines():
            if "Starting background run" in line and "graph_id=bridge" in line:
                if found := re.search(r"run_queue_ms=(\d+)", line):
                    queued.append(int(found.group(1)) / 1000)
                if found := re.search(r"run_attempt=(\d+)", line):
                    attempts[int(found.group(1))] += 1
    if not queued:
        return "no bridge runs found in the worker logs"
    return (
        f"bridge runs started {len(queued)} (by attempt: {dict(sorted(attempts.items()))}); "
        f"time queued before starting: median {statistics.median(queued):.1f} s, "
        f"max {max(queued):.1f} s"
    )


def worker_log_summary(engine: ProdEngine, top: int = 12) -> list[tuple[int, str]]:
    """Warning and error lines of every worker's log, normalised and counted."""
    counts: Counter[str] = Counter()
    for i in range(engine.workers):
        for match in re.finditer(r"\[(warning|error|critical)\s*\] (.{0,110})", engine.log(i)):
            line = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|bb_[0-9a-f]{16}", "<id>", match.group(2))
            line = re.sub(r"\s+", " ", re.sub(r"[0-9]+", "N", line))
            counts[f"{match.group(1)}: {line}"] += 1
    return [(n, line) for line, n in counts.most_common(top)]


def submissions(emulator: EmulatorServer) -> Counter[str]:
    """How many provider batches that passed validation held each user message."""
    return emulator.emulator.accepted_by(lambda body: body["messages"][-1]["content"])


def faults_left(emulator: EmulatorServer) -> int:
    emu = emulator.emulator
    with emu._lock:
        return emu._faults.left()


async def runs_per_thread(engine: ProdEngine, tids: list[str]) -> dict[str, int]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(engine.database_uri) as conn:
        cur = await conn.execute(
            "SELECT thread_id::text, count(*) FROM runs WHERE thread_id = ANY(%s::uuid[]) "
            "GROUP BY thread_id",
            (tids,),
        )
        return {tid: int(n) for tid, n in await cur.fetchall()}


async def run_statuses(engine: ProdEngine) -> list[str]:
    """Runs per graph and status, and the ones the platform gave up on after retries."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(engine.database_uri) as conn:
        cur = await conn.execute(
            "SELECT a.graph_id, r.status, count(*) FROM runs r JOIN assistants a "
            "USING (assistant_id) GROUP BY 1, 2 ORDER BY 1, 2"
        )
        by_status = [f"{graph} {status}: {n}" for graph, status, n in await cur.fetchall()]
        cur = await conn.execute(
            "SELECT a.graph_id, r.run_id::text, r.thread_id::text, c.count FROM runs r "
            "JOIN assistants a USING (assistant_id) JOIN retry_counters c USING (run_id) "
            "WHERE r.status = 'error' ORDER BY r.created_at"
        )
        gave_up = [
            f"{graph} run {run_id} on thread {thread_id} (attempts {n})"
            for graph, run_id, thread_id, n in await cur.fetchall()
        ]
    lines = [f"runs by graph and status: {', '.join(by_status)}"]
    if gave_up:
        lines.append(f"runs in error after crash retries: {'; '.join(gave_up[:10])}")
    return lines


async def sdk_runs(clients: Clients, tids: list[str]) -> dict[str, int]:
    gate = asyncio.Semaphore(20)

    async def one(tid: str) -> tuple[str, int]:
        async with gate:
            runs = await clients.call(lambda c: c.runs.list(tid, limit=50))
            return tid, len(runs)

    return dict(await asyncio.gather(*(one(t) for t in tids)))


async def error_messages(clients: Clients, tids: list[str]) -> dict[str, list[str]]:
    gate = asyncio.Semaphore(10)

    async def one(tid: str) -> tuple[str, str]:
        async with gate:

            async def get(c: LangGraphClient) -> str:
                runs = await c.runs.list(tid, limit=50)
                for run in runs:
                    if run["status"] == "error":
                        joined = await c.runs.join(tid, run["run_id"])
                        err = (joined or {}).get("__error__") or {}
                        return f"{err.get('error', '?')}: {err.get('message', joined)}"
                return f"no run in error (runs: {[r['status'] for r in runs]})"

            return tid, await clients.call(get)

    grouped: dict[str, list[str]] = {}
    for tid, message in await asyncio.gather(*(one(t) for t in tids[:500])):
        grouped.setdefault(message[:300], []).append(tid)
    return grouped


async def undeliverable(clients: Clients) -> list[dict[str, Any]]:
    found = await clients.call(
        lambda c: c.store.search_items(ITEMS_NS, filter={"status": "undeliverable"}, limit=200)
    )
    return [
        {
            "key": item["key"],
            "thread_id": item["value"].get("thread_id"),
            "last_error": item["value"].get("last_error"),
        }
        for item in found.get("items", [])
    ]
