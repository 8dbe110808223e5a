"""The deadline fallback on the production engine (PostgreSQL + Redis + two workers): the
worker making the normal-API call is SIGKILLed while the call is in flight. The call was
recorded first, so another worker calls again and the caller is resumed exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from batch_bridge.testing import Emulator, EmulatorServer
from tests.prod.helpers import (
    arm,
    engine_env,
    fired,
    questions,
    restarted,
    running_engine,
    runs_per_thread,
    settled,
    start_callers,
)
from tests.support.prodengine import ProdEngine

GRAPHS = Path(__file__).resolve().parent / "graphs" / "fallback.py"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(hang_sync_s=2.0)) as server:
        yield server


@pytest.fixture(scope="module")
def engine(
    tmp_path_factory: pytest.TempPathFactory, emulator: EmulatorServer, fault_dir: Path
) -> Iterator[ProdEngine]:
    graphs = {name: f"{GRAPHS}:{name}" for name in ("fb_bridge", "fb_agent")}
    with running_engine(tmp_path_factory, graphs, engine_env(emulator, fault_dir)) as engine:
        yield engine


async def test_a_worker_killed_mid_fallback_call_resumes_the_caller_exactly_once(
    engine: ProdEngine, emulator: EmulatorServer, fault_dir: Path, reviver: list[int]
) -> None:
    arm(fault_dir, "fallback_mid")
    texts = questions("fallback", 3)
    threads = await start_callers(engine, "fb_agent", [{"question": t} for t in texts])
    states = await settled(engine, threads, timeout=90)
    assert [s["values"].get("answer") for s in states] == [f"Echo: {t}" for t in texts]
    assert await runs_per_thread(engine, threads) == [2] * len(threads)  # resumed once each
    assert fired(fault_dir)["fallback_mid"] == 1 and await restarted(reviver)
    calls = emulator.emulator.stats()["calls"]["POST /v1/chat/completions"]
    assert len(texts) < calls <= 2 * len(texts)  # the killed tick's calls were made again
