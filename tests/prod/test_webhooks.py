"""Webhooks on the production engine: two langgraph-api workers on one PostgreSQL, the stock
custom-route app (`LANGGRAPH_HTTP`) and the emulator. A signed OpenAI `batch.completed`
posted to the worker that did not run the bridge's tick still wakes the bridge exactly once:
one tick run, the batch fetched once, each caller resumed once. Copies of one delivery
posted to both workers at once wake it once; every other copy gets the replay answer (409),
though several pass the store's check together (`platform_claim` settles them)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from batch_bridge import bridge_thread_id
from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.testing._webhooks import new_secret, sign_webhook
from tests.e2e.helpers import until
from tests.prod.helpers import (
    assert_exactly_once,
    engine_env,
    questions,
    retrying,
    running_engine,
    start_callers,
)
from tests.support.prodengine import ProdEngine

GRAPHS = Path(__file__).resolve().parent / "graphs"
SECRET = new_secret()
ROUTE = "/batch-bridge/webhooks/openai"
COPIES = 3
"""Copies of one delivery posted to each worker at once: several pass the store's check."""


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator()) as server:
        yield server


@pytest.fixture(scope="module")
def engine(
    tmp_path_factory: pytest.TempPathFactory, emulator: EmulatorServer, fault_dir: Path
) -> Iterator[ProdEngine]:
    env = engine_env(
        emulator,
        fault_dir,
        OPENAI_WEBHOOK_SECRET=SECRET,
        LANGGRAPH_HTTP=json.dumps({"app": "batch_bridge.http:app"}),
    )
    spec = str(GRAPHS / "webhooks.py")
    graphs = {name: f"{spec}:{name}" for name in ("pg_hook", "pg_hook_agent")}
    with running_engine(tmp_path_factory, graphs, env) as engine:
        yield engine


def polls(fault_dir: Path) -> list[tuple[int, float]]:
    """(worker pid, time) of every poll of the bridge's provider."""
    path = fault_dir / "polls.log"
    lines = path.read_text().split("\n") if path.exists() else []
    return [(int(pid), float(at)) for pid, at in (line.split() for line in lines if line)]


async def ended_batch(emulator: EmulatorServer, known: set[str]) -> str:
    """The id of the one new batch of the bridge, once the emulator has finished it (read off
    the list route, which is not a poll)."""

    async def check() -> str | None:
        async with httpx.AsyncClient() as http:
            listed = (await http.get(f"{emulator.base_url}/batches?limit=100")).json()["data"]
        fresh = [b for b in listed if b["id"] not in known]
        done = [b for b in fresh if b["status"] == "completed" and b["output_file_id"]]
        return done[0]["id"] if len(fresh) == 1 and done else None

    return await until(check, timeout=60, every=0.1)


def event(batch_id: str) -> tuple[bytes, dict[str, str]]:
    body = {"id": "evt_pg", "object": "event", "created_at": int(time.time())}
    raw = json.dumps(body | {"type": "batch.completed", "data": {"id": batch_id}}).encode()
    return raw, sign_webhook(SECRET, raw)


async def tick_runs(engine: ProdEngine) -> list[dict[str, Any]]:
    thread = bridge_thread_id("pg_hook")
    return list(await retrying(engine, lambda c: c.runs.list(thread, limit=100)))


async def wake_once(
    engine: ProdEngine, emulator: EmulatorServer, fault_dir: Path, post: Any
) -> float:
    """Callers submit a batch; once it ended, `post(batch_id, polled_by)` delivers its
    webhook. Checks the bridge woke exactly once and returns the seconds from webhook to
    fetch."""
    known = {b for b, _ in emulator.emulator.retrievals}
    texts = questions("hook", 3)
    threads = await start_callers(engine, "pg_hook_agent", [{"question": t} for t in texts])
    batch_id = await ended_batch(emulator, known)
    await until(lambda: _rested(engine), timeout=30, every=0.2)
    (polled_by, _), *_ = polls(fault_dir)[-1:]
    runs_before = {r["run_id"] for r in await tick_runs(engine)}
    sent_at = time.time()
    await post(batch_id, polled_by)
    await assert_exactly_once(engine, emulator, texts, threads)
    fetched = [at for b, at in list(emulator.emulator.retrievals) if b == batch_id]
    after = [at for at in fetched if at >= sent_at]
    assert len(fetched) - len(after) == 1  # the poll at submit
    assert len(after) == 2  # the poll that finds it done, and `release` checking its status
    assert len([at for _, at in polls(fault_dir) if at >= sent_at]) == 1  # one poll call
    new_runs = [r for r in await tick_runs(engine) if r["run_id"] not in runs_before]
    started = [r for r in new_runs if r["status"] != "pending"]
    assert len(started) == 1, new_runs
    return after[0] - sent_at


async def _rested(engine: ProdEngine) -> bool:
    """The tick that submitted and polled the batch has ended: nothing runs on the bridge."""
    runs = await tick_runs(engine)
    return bool(runs) and all(r["status"] != "running" for r in runs)


async def test_a_webhook_to_the_other_worker_wakes_the_bridge_once(
    engine: ProdEngine, emulator: EmulatorServer, fault_dir: Path
) -> None:
    answers: list[httpx.Response] = []

    async def post(batch_id: str, polled_by: int) -> None:
        other = next(u for u, pid in zip(engine.urls, engine.pids, strict=True) if pid != polled_by)
        body, headers = event(batch_id)
        async with httpx.AsyncClient(timeout=30) as http:
            answers.append(await http.post(other + ROUTE, content=body, headers=headers))

    fetched_in = await wake_once(engine, emulator, fault_dir, post)
    (answer,) = answers
    assert answer.status_code == 200 and answer.json()["outcome"] == "accepted", answer.text
    print(f"postgres: fetched {fetched_in:.3f}s after the webhook reached the other worker")
    assert fetched_in < 5.0


async def test_copies_of_one_delivery_posted_to_both_workers_at_once_wake_the_bridge_once(
    engine: ProdEngine, emulator: EmulatorServer, fault_dir: Path
) -> None:
    answers: list[httpx.Response] = []

    async def post(batch_id: str, polled_by: int) -> None:
        body, headers = event(batch_id)
        async with httpx.AsyncClient(timeout=30) as http:
            answers.extend(
                await asyncio.gather(
                    *(
                        http.post(url + ROUTE, content=body, headers=headers)
                        for url in engine.urls * COPIES
                    )
                )
            )

    fetched_in = await wake_once(engine, emulator, fault_dir, post)
    outcomes = sorted((a.status_code, a.json()["outcome"]) for a in answers)
    copies = 2 * COPIES - 1
    assert outcomes == [(200, "accepted")] + [(409, "replayed")] * copies, [a.text for a in answers]
    print(f"postgres: fetched {fetched_in:.3f}s after the webhook reached both workers")
