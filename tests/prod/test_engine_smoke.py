"""Smoke tests of the production-like engine: two langgraph-api workers on one PostgreSQL.

What the crash tests built on it rely on: both workers see the same threads and store, and a
run whose worker is SIGKILLed is picked up by the other worker, which runs the node again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from langgraph_sdk import get_client

from tests.e2e.helpers import until
from tests.prod.helpers import running_engine
from tests.support.prodengine import ProdEngine

GRAPHS = Path(__file__).resolve().parent / "graphs" / "smoke.py"


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("smoke")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, smoke_dir: Path) -> Iterator[ProdEngine]:
    graphs = {"echo": f"{GRAPHS}:echo", "held": f"{GRAPHS}:held"}
    began = time.monotonic()
    with running_engine(tmp_path_factory, graphs, {"PROD_SMOKE_DIR": str(smoke_dir)}) as engine:
        print(f"engine up in {time.monotonic() - began:.2f}s: {engine.timings}")
        yield engine


async def test_a_run_on_one_worker_is_visible_on_the_other(engine: ProdEngine) -> None:
    first, second = get_client(url=engine.urls[0]), get_client(url=engine.urls[1])
    thread = await first.threads.create()
    await first.runs.wait(thread["thread_id"], "echo", input={"text": "hello"})
    state = await second.threads.get_state(thread["thread_id"])
    assert state["values"] == {"text": "hello", "answer": "echo hello"}
    assert (await second.threads.get(thread["thread_id"]))["status"] == "idle"


async def test_the_store_is_shared(engine: ProdEngine) -> None:
    first, second = get_client(url=engine.urls[0]), get_client(url=engine.urls[1])
    await first.store.put_item(["smoke", "shared"], "k1", {"n": 1})
    item = await second.store.get_item(["smoke", "shared"], "k1")
    assert item is not None and item["value"] == {"n": 1}
    found = await second.store.search_items(["smoke"])
    assert [i["key"] for i in found["items"]] == ["k1"]


async def test_a_killed_workers_run_is_rerun_by_the_other_worker(
    engine: ProdEngine, smoke_dir: Path
) -> None:
    client = get_client(url=engine.url)
    thread = await client.threads.create()
    thread_id = thread["thread_id"]
    run = await client.runs.create(thread_id, "held", input={"text": "crash"})
    pids = smoke_dir / f"{thread_id}.pids"

    def attempts() -> list[int]:
        return [int(p) for p in pids.read_text().split()] if pids.exists() else []

    async def attempt(n: int) -> list[int] | None:
        return attempts() if len(attempts()) >= n else None

    (victim_pid,) = await until(lambda: attempt(1), timeout=30)
    victim = engine.pids.index(victim_pid)
    survivor = 1 - victim
    engine.kill(victim)
    killed_at = time.monotonic()

    other = get_client(url=engine.urls[survivor])
    rerun = await until(lambda: attempt(2), timeout=90)
    print(f"re-run {time.monotonic() - killed_at:.1f}s after the SIGKILL")
    assert rerun == [victim_pid, engine.pids[survivor]]

    (smoke_dir / f"{thread_id}.release").touch()

    async def succeeded() -> bool:
        return (await other.runs.get(thread_id, run["run_id"]))["status"] == "success"

    await until(succeeded, timeout=30)
    state = await other.threads.get_state(thread_id)
    assert state["values"]["answer"] == "released crash"
    assert state["values"]["attempts"] == 2

    engine.restart(victim)
    assert engine.pids[victim] not in (None, victim_pid)
    restarted = get_client(url=engine.urls[victim])
    assert (await restarted.threads.get(thread_id))["status"] == "idle"
