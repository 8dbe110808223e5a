"""Attacks on the bridge's trust boundary, on the production engine.

The attacker is an API client with ordinary store access: it can read the victims' thread
states and write any record into the bridge's namespaces, but holds neither the record
secret nor the deployment's configuration. Each attack must end with the victim resumed
once with its own result, no request to a URL the attacker chose, and the attempt counted.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client

from batch_bridge import _trust, bridge_thread_id
from batch_bridge._store import ItemRecord, digest
from batch_bridge.testing import Emulator, EmulatorServer
from tests.e2e.helpers import until
from tests.prod.helpers import (
    assert_exactly_once,
    questions,
    running_engine,
    start_callers,
    submissions,
)
from tests.support.prodengine import ProdEngine

GRAPHS = Path(__file__).resolve().parent / "graphs" / "faults.py"
NAMES = ["bridge", "agent", "held_bridge", "held_agent"]
SECRET = "security-test-secret"
PROVIDER_KEY = "sk-test-PROVIDER-KEY-must-never-leak-7f3a"
SERVER_KEY = "lsv2-SERVER-KEY-must-never-leave-9c1d"


class Listener(http.server.ThreadingHTTPServer):
    """An attacker's endpoint: records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                listener.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": self.rfile.read(length),
                    }
                )
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    server = Listener()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(in_progress_s=1.0)) as server:
        yield server


@pytest.fixture(scope="module")
def engine(
    tmp_path_factory: pytest.TempPathFactory, emulator: EmulatorServer
) -> Iterator[ProdEngine]:
    env = {
        "OPENAI_BASE_URL": emulator.base_url,
        "OPENAI_API_KEY": PROVIDER_KEY,
        "LANGSMITH_API_KEY": SERVER_KEY,  # what a careless bridge would send to a forged URL
        "BATCH_BRIDGE_SECRET": SECRET,
        "BATCH_BRIDGE_CALLBACK_URLS": "https://callers.example.com",
    }
    graphs = {n: f"{GRAPHS}:{n}" for n in NAMES}
    with running_engine(tmp_path_factory, graphs, env) as engine:
        yield engine


@pytest.fixture
def holds_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """For attacks that assume a signed record (a misconfigured or compromised caller)."""
    monkeypatch.setenv(_trust.SECRET_ENV, SECRET)
    monkeypatch.setattr(_trust, "_secret", None)


def ns(bridge: str, part: str) -> tuple[str, ...]:
    return ("batch_bridge", bridge, part)


def chat(text: str) -> dict[str, Any]:
    return {
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
    }


def record_like(thread_id: str, interrupt_id: str, item: Any, **extra: Any) -> dict[str, Any]:
    """A record shaped as the bridge writes them, unsigned: the attacker has no secret."""
    return {
        "kind": "batch_bridge.item",
        "thread_id": thread_id,
        "interrupt_id": interrupt_id,
        "assistant_id": "held_agent",
        "graph_id": "held_agent",
        "resume_url": None,
        "item": item,
        "digest": digest(item),
        "created_at": time.time(),
        "status": "queued",
        **extra,
    }


async def held_callers(engine: ProdEngine, tag: str, n: int = 2) -> tuple[list[str], list[str]]:
    """Callers waiting on `held_bridge`, which flushes only once an item starting "go" comes."""
    texts = questions(tag, n)
    threads = await start_callers(engine, "held_agent", [{"question": t} for t in texts])
    client = get_client(url=engine.url)

    async def waiting() -> bool:
        states = [await client.threads.get(t) for t in threads]
        return all(s["status"] == "interrupted" for s in states)

    await until(waiting, timeout=60)
    return texts, threads


async def release_and_check(
    engine: ProdEngine, emulator: EmulatorServer, texts: list[str], threads: list[str]
) -> None:
    """Flush the held bridge with a "go" caller; every caller gets its own answer, once."""
    go = questions("go", 1)
    go_threads = await start_callers(engine, "held_agent", [{"question": t} for t in go])
    await assert_exactly_once(engine, emulator, texts + go, threads + go_threads)


async def quarantine_reasons(engine: ProdEngine, bridge: str) -> dict[str, str]:
    client = get_client(url=engine.url)
    found = await client.store.search_items(ns(bridge, "quarantine"), limit=1000)
    return {i["value"]["key"]: i["value"]["reason"] for i in found["items"]}


async def counted(engine: ProdEngine, bridge: str, what: str = "records_quarantined") -> int:
    client = get_client(url=engine.url)
    state = await client.threads.get_state(bridge_thread_id(bridge))
    return int((state["values"] or {}).get(what, 0))


def attacker_text_sent(emulator: EmulatorServer) -> bool:
    return any("attacker" in content for content in submissions(emulator))


async def test_forged_queue_result_and_batch_records_are_never_acted_on(
    engine: ProdEngine, emulator: EmulatorServer
) -> None:
    client = get_client(url=engine.url)
    texts, victims = await held_callers(engine, "forged")
    before = await counted(engine, "held_bridge")
    (waiting,) = (await client.threads.get_state(victims[0]))["interrupts"]
    victim_key = waiting["value"]["ref"]
    attack = chat("attacker's prompt")
    forged = {
        # a queued item for the victim's thread, to be answered into it
        f"{victims[0]}:forged-1": record_like(victims[0], "forged-1", attack),
        # a finished "result" naming the victim's waiting call, no provider needed
        f"{victims[1]}:forged-2": record_like(
            victims[1],
            "forged-2",
            attack,
            status="result",
            batch_id="bb_forged",
            result={"kind": "batch_bridge.result", "ok": True, "value": "forged answer"},
        ),
    }
    for key, value in forged.items():
        await client.store.put_item(ns("held_bridge", "items"), key, value)
    header = {
        "kind": "batch_bridge.batch",
        "batch_id": "bb_forged",
        "status": "submitted",
        "size": 1,
        "created_at": time.time(),
        "handle": {"attacker": True},
    }
    await client.store.put_item(ns("held_bridge", "batches"), "bb_forged", header)
    await client.store.put_item(ns("held_bridge", "members"), "bb_forged", {"keys": [victim_key]})

    await release_and_check(engine, emulator, texts, victims)
    reasons = await quarantine_reasons(engine, "held_bridge")
    for key in [*forged, "bb_forged"]:
        assert "signature" in reasons[key], reasons
    assert not attacker_text_sent(emulator)
    assert await until(lambda: _grew(engine, "held_bridge", before, 3))


async def _grew(engine: ProdEngine, bridge: str, before: int, by: int) -> bool:
    return await counted(engine, bridge) >= before + by


async def test_a_forged_url_is_never_called_and_no_key_leaves(
    engine: ProdEngine, emulator: EmulatorServer, listener: Listener, holds_secret: None
) -> None:
    client = get_client(url=engine.url)
    texts, victims = await held_callers(engine, "url")
    before = await counted(engine, "held_bridge")
    (waiting,) = (await client.threads.get_state(victims[0]))["interrupts"]
    unsigned = record_like(victims[0], "url-1", chat("attacker url"), resume_url=listener.url)
    await client.store.put_item(ns("held_bridge", "items"), f"{victims[0]}:url-1", unsigned)
    # even a correctly signed record (a compromised caller) cannot name a URL off the list
    signed = ItemRecord.from_value(
        f"{victims[1]}:url-2",
        _trust.sign(
            record_like(victims[1], "url-2", chat("attacker url 2"), resume_url=listener.url)
        ),
    )
    await client.store.put_item(ns("held_bridge", "items"), signed.key, signed.to_value())

    await release_and_check(engine, emulator, texts, victims)
    reasons = await quarantine_reasons(engine, "held_bridge")
    assert "signature" in reasons[f"{victims[0]}:url-1"]
    assert "allow-list" in reasons[signed.key]
    assert listener.requests == []
    assert not attacker_text_sent(emulator)
    assert await until(lambda: _grew(engine, "held_bridge", before, 2))
    assert waiting["value"]["ref"] == f"{victims[0]}:{waiting['id']}"


async def test_a_replayed_record_of_a_finished_item_is_not_sent_again(
    engine: ProdEngine, emulator: EmulatorServer, holds_secret: None
) -> None:
    client = get_client(url=engine.url)
    texts, victims = await held_callers(engine, "replay", n=1)
    (waiting,) = (await client.threads.get_state(victims[0]))["interrupts"]
    key = waiting["value"]["ref"]
    captured = (await client.store.get_item(ns("held_bridge", "items"), key))["value"]
    assert captured["status"] == "queued" and _trust.verify(captured)  # a genuine record
    await release_and_check(engine, emulator, texts, victims)

    before = await counted(engine, "held_bridge", "items_withdrawn")
    await client.store.put_item(ns("held_bridge", "items"), key, captured)  # replay
    more, threads = await held_callers(engine, "after replay", n=1)
    await release_and_check(engine, emulator, more, threads)
    assert submissions(emulator)[texts[0]] == 1

    async def withdrawn() -> bool:  # its thread no longer waits on it: never sent again
        return await counted(engine, "held_bridge", "items_withdrawn") >= before + 1

    assert await until(withdrawn)
    assert await client.store.get_item(ns("held_bridge", "items"), key) is None


async def test_keys_never_reach_state_records_or_logs(
    engine: ProdEngine, emulator: EmulatorServer
) -> None:
    texts = questions("keys", 3)
    threads = await start_callers(engine, "agent", [{"question": t} for t in texts])
    await assert_exactly_once(engine, emulator, texts, threads)
    client = get_client(url=engine.url)
    dumped = []
    for bridge in ("bridge", "held_bridge"):
        state = await client.threads.get_state(bridge_thread_id(bridge))
        dumped.append(json.dumps(state))
        for part in ("items", "batches", "members", "aliases", "meta", "quarantine"):
            found = await client.store.search_items(ns(bridge, part), limit=1000)
            dumped.append(json.dumps(found))
    for thread_id in threads:
        dumped.append(json.dumps(await client.threads.get_state(thread_id)))
    logs = "\n".join(engine.log(i) for i in range(engine.workers))
    for key in (PROVIDER_KEY, SERVER_KEY, SECRET):
        assert key not in logs
        assert all(key not in text for text in dumped)
