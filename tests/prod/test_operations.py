"""Running it in production, on the production engine: two langgraph-api workers on one
PostgreSQL + Redis, the stock custom-route app (`LANGGRAPH_HTTP`) and the emulator.

The status JSON must read the same records whichever worker serves it, cost must be summed
per thread from durable records, dedupe must send each distinct request once, and a caller
that stops waiting after its item was submitted must never be resumed, even when a worker
is SIGKILLed while the bridge delivers that batch's results.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from batch_bridge import bridge_thread_id, usage
from batch_bridge.testing import Emulator, EmulatorServer
from tests.e2e.helpers import until
from tests.prod.helpers import (
    arm,
    assert_exactly_once,
    engine_env,
    fired,
    live_client,
    questions,
    restarted,
    retrying,
    running_engine,
    runs_per_thread,
    settled,
    start_callers,
    submissions,
)
from tests.support.prodengine import ProdEngine

GRAPHS = Path(__file__).resolve().parent / "graphs"
NAMES = ["ops_bridge", "ops_dedupe", "ops_agent"]


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(in_progress_s=0.5)) as server:
        yield server


@pytest.fixture(scope="module")
def engine(
    tmp_path_factory: pytest.TempPathFactory, emulator: EmulatorServer, fault_dir: Path
) -> Iterator[ProdEngine]:
    env = engine_env(
        emulator, fault_dir, LANGGRAPH_HTTP=json.dumps({"app": "batch_bridge.http:app"})
    )
    graphs = {n: f"{GRAPHS / 'operations.py'}:{n}" for n in NAMES}
    graphs["bridge"] = f"{GRAPHS / 'faults.py'}:bridge"  # loads the delivery kill point
    with running_engine(tmp_path_factory, graphs, env) as engine:
        yield engine


async def status_on(url: str, bridge: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.get(f"{url}/batch-bridge/status.json", params={"bridge": bridge})
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


async def headers(engine: ProdEngine, bridge: str) -> dict[str, int]:
    found = await retrying(
        engine,
        lambda c: c.store.search_items(("batch_bridge", bridge, "batches"), limit=100),
    )
    return {i["value"]["batch_id"]: i["value"]["size"] for i in found["items"]}


async def bridge_values(engine: ProdEngine, bridge: str) -> dict[str, Any]:
    state = await retrying(engine, lambda c: c.threads.get_state(bridge_thread_id(bridge)))
    return dict(state["values"] or {})


async def test_both_workers_serve_the_records_status_and_each_threads_cost(
    engine: ProdEngine, emulator: EmulatorServer
) -> None:
    texts = questions("status", 6)
    threads = await start_callers(
        engine, "ops_agent", [{"question": t, "bridge": "ops_bridge"} for t in texts]
    )

    async def in_flight() -> list[dict[str, Any]] | None:
        shown = (await status_on(engine.urls[0], "ops_bridge"))["in_flight"]
        ready = all(b["status"] == "submitted" for b in shown)
        return shown if ready and sum(b["size"] for b in shown) == len(texts) else None

    shown = await until(in_flight, timeout=60)
    other = (await status_on(engine.urls[1], "ops_bridge"))["in_flight"]
    stored = await headers(engine, "ops_bridge")
    assert {b["batch_id"]: b["size"] for b in shown} == stored
    assert {b["batch_id"] for b in other} == set(stored)
    assert all(b["provider_ids"] and b["total"] == b["size"] for b in shown)

    await assert_exactly_once(engine, emulator, texts, threads)
    client = live_client(engine)
    reports = [await usage(client, t, bridge="ops_bridge") for t in threads]
    for report in reports:
        assert report["items"] == 1 and report["saved_usd"] > 0
        assert report["batch_usd"] == pytest.approx(report["normal_usd"] / 2)

    async def totals() -> dict[str, Any] | None:
        status = await status_on(engine.urls[1], "ops_bridge")
        done = status["totals"]["items_delivered"] == len(texts)
        return status if done and not status["in_flight"] else None

    status = await until(totals, timeout=60)
    assert {f["batch_id"] for f in status["finished"]} >= set(stored)
    bridge_total = await usage(client, bridge="ops_bridge")
    assert bridge_total["items"] == len(texts)
    assert bridge_total["batch_usd"] == pytest.approx(sum(r["batch_usd"] for r in reports))


async def test_identical_requests_go_to_the_provider_once_on_the_production_engine(
    engine: ProdEngine, emulator: EmulatorServer
) -> None:
    texts = questions("dedupe", 3)
    asked = [t for t in texts for _ in range(3)]
    threads = await start_callers(
        engine, "ops_agent", [{"question": t, "bridge": "ops_dedupe"} for t in asked]
    )
    states = await settled(engine, threads)
    assert [s["values"].get("answer") for s in states] == [f"Echo: {t}" for t in asked]
    assert await runs_per_thread(engine, threads) == [2] * len(threads)
    counts = submissions(emulator)
    assert {t: counts[t] for t in texts} == dict.fromkeys(texts, 1)
    values = await bridge_values(engine, "ops_dedupe")
    assert values["items_deduplicated"] >= 2 * len(texts)


async def test_a_caller_gone_after_submit_is_never_resumed_through_a_killed_delivery(
    engine: ProdEngine, emulator: EmulatorServer, fault_dir: Path, reviver: list[int]
) -> None:
    """One caller's thread is deleted while its batch runs at the provider; a worker dies
    while the bridge delivers that batch. The others are resumed once each, the deleted
    thread's result is dropped and counted, and each item was sent once."""
    texts = questions("gone", 5)
    threads = await start_callers(
        engine, "ops_agent", [{"question": t, "bridge": "ops_bridge"} for t in texts]
    )

    async def submitted() -> bool:
        shown = (await status_on(engine.urls[0], "ops_bridge"))["in_flight"]
        live = [b for b in shown if b["status"] == "submitted"]
        return sum(b["size"] for b in live) == len(texts)

    await until(submitted, timeout=60)
    await retrying(engine, lambda c: c.threads.delete(threads[0]))
    arm(fault_dir, "deliver_after")

    await assert_exactly_once(engine, emulator, texts[1:], threads[1:])
    assert fired(fault_dir)["deliver_after"] == 1 and await restarted(reviver)
    assert submissions(emulator)[texts[0]] == 1

    async def shown() -> dict[str, Any] | None:
        status = await status_on(engine.urls[1], "ops_bridge")
        return status if status["dropped"]["count"] >= 1 else None

    status = await until(shown, timeout=60)  # from the records: a killed tick's counts are lost
    gone = [d for d in status["dropped"]["newest"] if d["key"].startswith(threads[0])]
    assert len(gone) == 1 and gone[0]["reason"], status["dropped"]
