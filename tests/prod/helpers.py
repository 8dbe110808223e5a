"""Helpers of the production-engine tests: clients that survive killed workers, counters."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from batch_bridge.testing import EmulatorServer
from tests.conftest import start_prod_engine
from tests.e2e.helpers import until
from tests.support.prodengine import ProdEngine


def engine_env(emulator: EmulatorServer, fault_dir: Path, **extra: str) -> dict[str, str]:
    """The workers' environment: the emulator answers as OpenAI, kill points live in
    `fault_dir`."""
    return {
        "OPENAI_BASE_URL": emulator.base_url,
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "BB_FAULT_DIR": str(fault_dir),
        **extra,
    }


@contextlib.contextmanager
def running_engine(
    tmp_path_factory: pytest.TempPathFactory, graphs: dict[str, str], env: dict[str, str]
) -> Iterator[ProdEngine]:
    """A module's engine: two workers on PostgreSQL + Redis, stopped when the module ends."""
    engine = start_prod_engine(tmp_path_factory.mktemp("engine"), graphs, env=env)
    try:
        yield engine
    finally:
        engine.stop()


def live_client(engine: ProdEngine) -> LangGraphClient:
    for url, pid in zip(engine.urls, engine.pids, strict=True):
        if pid is not None:
            return get_client(url=url)
    raise AssertionError("no worker is running")


def arm(fault_dir: Path, point: str, times: int = 1) -> None:
    (fault_dir / point).write_text(str(times))


def fired(fault_dir: Path) -> Counter[str]:
    log = fault_dir / "fired.log"
    lines = log.read_text().split() if log.exists() else []
    return Counter(lines[0::2])


def submissions(emulator: EmulatorServer) -> Counter[str]:
    """How many provider batches that passed validation held each user message."""
    return emulator.emulator.accepted_by(lambda body: body["messages"][-1]["content"])


async def retrying(engine: ProdEngine, call: Any) -> Any:
    """An API call made through whichever worker is alive, again if that one dies meanwhile."""
    for _ in range(20):
        try:
            return await call(live_client(engine))
        except Exception:
            await asyncio.sleep(0.5)
    return await call(live_client(engine))


async def start_callers(engine: ProdEngine, graph: str, inputs: list[dict[str, Any]]) -> list[str]:
    client = live_client(engine)

    async def one(payload: dict[str, Any]) -> str:
        thread = await client.threads.create()
        await client.runs.create(thread["thread_id"], graph, input=payload)
        return str(thread["thread_id"])

    return list(await asyncio.gather(*(one(p) for p in inputs)))


async def settled(engine: ProdEngine, threads: list[str], timeout: float = 240) -> list[dict]:
    async def check() -> list[dict] | None:
        async def get(client: LangGraphClient) -> list[dict]:
            return list(await asyncio.gather(*(client.threads.get(t) for t in threads)))

        states = await retrying(engine, get)
        # The PostgreSQL runtime now and then leaves a thread whose run ended in several
        # interrupts `idle`, not `interrupted`: it still waits while any is pending.
        if all(s["status"] in ("idle", "error") and not s.get("interrupts") for s in states):
            return states
        return None

    return await until(check, timeout=timeout, every=0.5)


async def runs_per_thread(engine: ProdEngine, threads: list[str]) -> list[int]:
    async def count(client: LangGraphClient) -> list[int]:
        lists = await asyncio.gather(*(client.runs.list(t, limit=20) for t in threads))
        return [len(runs) for runs in lists]

    return list(await retrying(engine, count))


def questions(tag: str, n: int) -> list[str]:
    run = uuid.uuid4().hex[:6]
    return [f"{tag} {run} q{i}" for i in range(n)]


async def assert_exactly_once(
    engine: ProdEngine, emulator: EmulatorServer, texts: list[str], threads: list[str]
) -> None:
    """Each caller answered with its own echo, resumed by one run, its item submitted once."""
    states = await settled(engine, threads)
    answers = [s["values"].get("answer") for s in states]
    assert answers == [f"Echo: {t}" for t in texts], [s["status"] for s in states]
    assert await runs_per_thread(engine, threads) == [2] * len(threads)
    counts = submissions(emulator)
    assert {t: counts[t] for t in texts} == dict.fromkeys(texts, 1)


async def restarted(reviver: list[int], timeout: float = 120) -> list[int]:
    """The reviver's log once it holds a restart: a kill can land after the last caller
    settled, and the restart is then still under way."""

    async def seen() -> list[int]:
        return reviver

    return await until(seen, timeout=timeout)
