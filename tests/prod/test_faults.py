"""Crash tests on the production engine: two langgraph-api workers on one PostgreSQL + Redis.

Workers are SIGKILLed at chosen lines (see `graphs/faults.py`) and restarted, the provider
misbehaves through the emulator's faults, records are forged or malformed. After each, every
item must have been submitted to the provider once, every caller resumed once with its own
answer (or a named error), and nothing lost.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batch_bridge import UnknownBatchError, bridge_thread_id, cancel_batch
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

GRAPHS = Path(__file__).resolve().parent / "graphs" / "faults.py"
NAMES = [
    "bridge",
    "small_bridge",
    "strict_bridge",
    "agent",
    "fanout",
    "small_fanout",
    "small_agent",
    "strict_agent",
    "bad_item",
    "hold_bridge",
    "hold_agent",
]


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(in_progress_s=1.0)) as server:
        yield server


@pytest.fixture(scope="module")
def engine(
    tmp_path_factory: pytest.TempPathFactory, emulator: EmulatorServer, fault_dir: Path
) -> Iterator[ProdEngine]:
    graphs = {n: f"{GRAPHS}:{n}" for n in NAMES}
    with running_engine(tmp_path_factory, graphs, engine_env(emulator, fault_dir)) as engine:
        yield engine


@pytest.mark.parametrize(
    "point", ["flush_forming", "submit_before", "submit_after", "poll", "deliver_after"]
)
async def test_a_bridge_worker_killed_at_any_step_loses_and_repeats_nothing(
    engine: ProdEngine, emulator: EmulatorServer, fault_dir: Path, reviver: list[int], point: str
) -> None:
    arm(fault_dir, point)
    texts = questions(point, 30)
    threads = await start_callers(engine, "agent", [{"question": t} for t in texts])
    await assert_exactly_once(engine, emulator, texts, threads)
    assert fired(fault_dir)[point] >= 1
    assert await restarted(reviver)


async def test_a_tick_that_crashes_again_and_again_recovers_by_itself(
    engine: ProdEngine, emulator: EmulatorServer, fault_dir: Path, reviver: list[int]
) -> None:
    before = fired(fault_dir)
    arm(fault_dir, "poll", 3)
    arm(fault_dir, "poll_raise", 3)
    texts = questions("crash loop", 20)
    threads = await start_callers(engine, "agent", [{"question": t} for t in texts])
    await assert_exactly_once(engine, emulator, texts, threads)
    after = fired(fault_dir)
    assert after["poll"] - before["poll"] == 3 and after["poll_raise"] - before["poll_raise"] == 3


async def test_a_caller_worker_killed_after_wait_recorded_enqueues_once(
    engine: ProdEngine, emulator: EmulatorServer, fault_dir: Path, reviver: list[int]
) -> None:
    before = fired(fault_dir)["caller_after_wait"]
    arm(fault_dir, "caller_after_wait", 2)
    texts = questions("caller crash", 10)
    threads = await start_callers(engine, "agent", [{"question": t} for t in texts])
    await assert_exactly_once(engine, emulator, texts, threads)
    assert fired(fault_dir)["caller_after_wait"] - before == 2


async def test_parallel_waits_split_across_batches_are_submitted_once(
    engine: ProdEngine, emulator: EmulatorServer
) -> None:
    texts = questions("fan", 9)
    (thread,) = await start_callers(engine, "small_fanout", [{"questions": texts}])
    (state,) = await settled(engine, [thread])
    answers = sorted(state["values"].get("answers") or [])
    assert answers == sorted(f"Echo: {t}" for t in texts), state["status"]
    counts = submissions(emulator)
    assert {t: counts[t] for t in texts} == dict.fromkeys(texts, 1)


async def test_a_lost_reply_to_batch_creation_does_not_create_a_second_batch(
    engine: ProdEngine, emulator: EmulatorServer
) -> None:
    emulator.emulator.add_fault("POST /v1/batches", status=500, after=True, times=2)
    emulator.emulator.add_fault("GET /v1/batches/{batch_id}", status=503, times=3)
    emulator.emulator.add_fault("GET /v1/batches/{batch_id}", status=429, retry_after_s=0.5)
    texts = questions("lost reply", 12)
    threads = await start_callers(engine, "agent", [{"question": t} for t in texts])
    await assert_exactly_once(engine, emulator, texts, threads)


async def test_malformed_and_unstorable_records_never_stop_the_bridge(
    engine: ProdEngine, emulator: EmulatorServer
) -> None:
    client = live_client(engine)
    items = ("batch_bridge", "bridge", "items")
    await client.store.put_item(items, "junk:1", {"kind": "batch_bridge.item", "status": "queued"})
    await client.store.put_item(items, "junk:2", {"status": "result", "result": 5})
    await client.store.put_item(
        ("batch_bridge", "bridge", "batches"), "bb_junk", {"kind": "batch_bridge.batch"}
    )
    texts = questions("beside junk", 8)
    threads = await start_callers(engine, "agent", [{"question": t} for t in texts])
    bad = await start_callers(engine, "bad_item", [{"question": q} for q in ("nan", "big", "nul")])
    await assert_exactly_once(engine, emulator, texts, threads)
    for thread_id, needle in zip(bad, ("NaN", "64 bits", "NUL"), strict=True):
        (run,) = await client.runs.list(thread_id)
        assert run["status"] == "error"
        joined = await client.runs.join(thread_id, run["run_id"])
        assert needle in joined["__error__"]["message"]

    async def quarantined() -> int:
        state = await client.threads.get_state(bridge_thread_id("bridge"))
        return int((state["values"] or {}).get("records_quarantined", 0))

    assert await until(quarantined) >= 2
    assert await client.store.get_item(items, "junk:1") is None


async def test_a_hanging_poll_delays_no_other_batch_and_is_retried(
    engine: ProdEngine, emulator: EmulatorServer, fault_dir: Path
) -> None:
    client = live_client(engine)
    holding = fault_dir / "poll_hang.holding"
    arm(fault_dir, "poll_hang")  # the first poll of some batch never answers (provider_timeout)
    texts = questions("hang", 6)  # batches of at most three on small_bridge
    threads = await start_callers(engine, "small_agent", [{"question": t} for t in texts])

    async def statuses(ids: list[str]) -> Counter[str]:
        return Counter(s["status"] for s in await asyncio.gather(*map(client.threads.get, ids)))

    async def others_done_while_it_hangs() -> bool:
        seen = await statuses(threads)
        return holding.exists() and seen["idle"] >= 1 and seen["interrupted"] >= 1

    await until(others_done_while_it_hangs, timeout=60, every=0.2)
    later = questions("hang later", 3)  # arrive while that poll still hangs
    later_threads = await start_callers(engine, "small_agent", [{"question": t} for t in later])

    async def later_done_while_it_hangs() -> bool:
        return holding.exists() and (await statuses(later_threads))["idle"] == len(later)

    await until(later_done_while_it_hangs, timeout=60, every=0.2)
    states = await settled(engine, threads + later_threads)
    assert not holding.exists()  # the hung call was abandoned, and its batch polled again
    assert [s["values"]["answers"] for s in states] == [[f"Echo: {t}"] for t in texts + later]
    counts = submissions(emulator)
    assert {t: counts[t] for t in texts + later} == dict.fromkeys(texts + later, 1)


async def test_a_batch_whose_polls_keep_failing_is_given_up_and_cancelled(
    engine: ProdEngine, emulator: EmulatorServer, fault_dir: Path
) -> None:
    cancelled = emulator.emulator.stats()["batches_cancelled"]
    arm(fault_dir, "poll_raise", 1000)
    try:
        texts = questions("given up", 4)
        threads = await start_callers(engine, "strict_agent", [{"question": t} for t in texts])
        states = await settled(engine, threads)
    finally:
        (fault_dir / "poll_raise").unlink(missing_ok=True)
    client = live_client(engine)
    for state in states:
        assert state["status"] == "error"
        (run, _) = await client.runs.list(state["thread_id"])  # newest first: the resume
        joined = await client.runs.join(state["thread_id"], run["run_id"])
        error = joined["__error__"]
        assert error["error"] == "BatchFailedError" and "given up" in error["message"]
        assert "injected poll failure" in error["message"]
    assert emulator.emulator.stats()["batches_cancelled"] > cancelled  # stopped, not billed on


async def test_a_worker_killed_mid_cancel_resumes_each_caller_once(
    engine: ProdEngine, emulator: EmulatorServer, fault_dir: Path, reviver: list[int]
) -> None:
    """An operator cancels a batch in flight; the worker dies after the provider took the
    cancel, before the bridge recorded it. Finished rows still answer their callers, the
    others get BatchCancelledError; each caller is resumed once, each item sent once."""
    texts = questions("cancelled", 8)
    threads = await start_callers(engine, "hold_agent", [{"question": t} for t in texts])

    async def out() -> list[str] | None:
        state = await retrying(
            engine, lambda c: c.threads.get_state(bridge_thread_id("hold_bridge"))
        )
        flights = [
            f for f in (state["values"] or {}).get("in_flight", []) if f["status"] == "submitted"
        ]
        return [f["batch_id"] for f in flights] if sum(f["size"] for f in flights) == 8 else None

    async def cancel(client: Any, batch_id: str) -> str:
        try:
            return await cancel_batch(client, batch_id, bridge="hold_bridge")
        except UnknownBatchError:
            return "finished"  # a retried request after the killed run's retry finished it

    batch_ids = await until(out, timeout=120)
    arm(fault_dir, "cancel_after")
    for batch_id in batch_ids:
        assert await retrying(engine, lambda c, b=batch_id: cancel(c, b)) in (
            "cancelling",
            "finished",
        )

    states = await settled(engine, threads)
    assert fired(fault_dir)["cancel_after"] == 1 and await restarted(reviver)
    statuses = [s["status"] for s in states]
    assert "idle" in statuses and "error" in statuses, statuses
    for text, state in zip(texts, states, strict=True):
        if state["status"] == "idle":
            assert state["values"]["answer"] == f"Echo: {text}"
            continue

        async def error(client: Any, thread_id: str = state["thread_id"]) -> dict[str, Any]:
            runs = await client.runs.list(thread_id, limit=10)
            run = next(r for r in runs if r["status"] == "error")
            return dict((await client.runs.join(thread_id, run["run_id"]))["__error__"])

        failure = await retrying(engine, error)
        assert failure["error"] == "BatchCancelledError", failure
        assert any(b in failure["message"] for b in batch_ids), failure
    assert await runs_per_thread(engine, threads) == [2] * len(threads)
    counts = submissions(emulator)
    assert {t: counts[t] for t in texts} == dict.fromkeys(texts, 1)
