"""Cancellation both ways on a real `langgraph dev` and the emulator over HTTP: callers that
stop waiting are never billed, and `batch-bridge cancel` stops a batch in flight."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from batch_bridge import UnknownBatchError, cancel_batch
from batch_bridge.testing import Emulator, EmulatorServer
from tests.conftest import E2E_GRAPHS, DevServer, start_dev_server
from tests.e2e.helpers import bridge_state, finished, start, until

BRIDGE = "cancel_hold"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(in_progress_s=600.0)) as server:
        yield server


@pytest.fixture(scope="module")
def server(
    emulator: EmulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevServer]:
    spec = str(E2E_GRAPHS / "cancel_graphs.py")
    graphs = {BRIDGE: f"{spec}:{BRIDGE}", "cancel_agent": f"{spec}:agent"}
    env = {"OPENAI_BASE_URL": emulator.base_url, "OPENAI_API_KEY": "emulator"}
    dev = start_dev_server(tmp_path_factory.mktemp("cancel"), graphs, env=env)
    yield dev
    dev.stop()


async def stats(emulator: EmulatorServer) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{emulator.url}/_emulator/stats")
        return dict(response.json())


async def recorded(client: Any, thread_id: str) -> bool:
    """The caller's item is in the bridge's ledger (its `wait()` got that far)."""
    found = await client.store.search_items(("batch_bridge", BRIDGE, "items"), limit=100)
    return any(i["value"].get("thread_id") == thread_id for i in found["items"])


async def withdrawn(client: Any, at_least: int) -> bool:
    state = await bridge_state(client, BRIDGE)
    return state.get("items_withdrawn", 0) >= at_least and state.get("pending") == 0


async def test_a_caller_thread_deleted_before_flush_is_never_submitted(server, emulator):
    client = get_client(url=server.url)
    before = (await stats(emulator))["requests"]
    seen = (await bridge_state(client, BRIDGE)).get("items_withdrawn", 0)
    (thread,) = await start(client, "cancel_agent", [{"text": "deleted before flush"}])
    await until(lambda: recorded(client, thread))
    await client.threads.delete(thread)

    await until(lambda: withdrawn(client, seen + 1), timeout=60)
    assert (await stats(emulator))["requests"] == before


async def test_a_cancelled_run_is_never_submitted(server, emulator):
    client = get_client(url=server.url)
    before = (await stats(emulator))["requests"]
    seen = (await bridge_state(client, BRIDGE)).get("items_withdrawn", 0)
    (thread,) = await start(client, "cancel_agent", [{"text": "run cancelled", "linger_s": 30}])
    await until(lambda: recorded(client, thread))
    (run,) = await client.runs.list(thread, limit=1)
    # "interrupt" (the default) keeps the interrupt pending: the thread still waits and may
    # be resumed, so its item is sent. "rollback" deletes the run's checkpoints with it.
    await client.runs.cancel(thread, run["run_id"], wait=True, action="rollback")

    await until(lambda: withdrawn(client, seen + 1), timeout=60)
    assert (await stats(emulator))["requests"] == before
    assert not (await client.threads.get(thread)).get("interrupts")


async def cli_cancel(server: DevServer, batch_id: str) -> tuple[int, str]:
    command = Path(sys.executable).parent / "batch-bridge"
    process = await asyncio.create_subprocess_exec(
        str(command),
        "cancel",
        "--url",
        server.url,
        "--bridge",
        BRIDGE,
        "--batch",
        batch_id,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def test_batch_bridge_cancel_resumes_unfinished_callers_with_batch_cancelled_error(
    server, emulator
):
    client = get_client(url=server.url)
    texts = [f"held question {i}" for i in range(8)]
    threads = await start(client, "cancel_agent", [{"text": t} for t in texts])

    async def out() -> list[str] | None:
        flights = (await bridge_state(client, BRIDGE)).get("in_flight") or []
        mine = [f for f in flights if f["status"] == "submitted"]
        return [f["batch_id"] for f in mine] if sum(f["size"] for f in mine) == 8 else None

    batch_ids = await until(out, timeout=60)
    for batch_id in batch_ids:
        code, said = await cli_cancel(server, batch_id)
        assert code == 0 and f"cancelling batch {batch_id}" in said, said

    done = await finished(client, threads, timeout=120)
    answered = [t for t in done if t["status"] == "idle"]
    failed = [t for t in done if t["status"] == "error"]
    assert answered and failed, [t["status"] for t in done]
    for text, thread in zip(texts, done, strict=True):
        if thread["status"] == "idle":
            assert thread["values"]["answer"] == f"Echo: {text}"
    for thread in failed:
        runs = await client.runs.list(thread["thread_id"], limit=10)
        run = next(r for r in runs if r["status"] == "error")
        error = (await client.runs.join(thread["thread_id"], run["run_id"]))["__error__"]
        assert error["error"] == "BatchCancelledError", error
        assert any(b in error["message"] for b in batch_ids), error
    assert (await stats(emulator))["batches_cancelled"] >= 1

    with pytest.raises(UnknownBatchError, match=batch_ids[0]):
        await cancel_batch(client, batch_ids[0], bridge=BRIDGE)  # finished by now
    code, said = await cli_cancel(server, "bb_no_such_batch")
    assert code == 1 and "holds no batch 'bb_no_such_batch'" in said, said
