"""The status data over an in-memory store and a tick driven by hand: live counts from the
ledger, history from the bridge's state, never a payload; the routes over the same parts."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from langgraph.store.memory import InMemoryStore

from batch_bridge._store import ITEMS, Ledger
from batch_bridge._usage import ModelUsage
from batch_bridge._usage import summary as usage_summary
from batch_bridge.bridge.batches import RECENT_FINISHED
from batch_bridge.http import STATUS_PREFIX, bridge_status, status_app
from batch_bridge.http._status import count_records
from batch_bridge.providers._handles import handle_summary

from .fakes import Clock, FakeClient, FakeProvider
from .test_tick import make_tick, queued


class CountingStore(InMemoryStore):
    """Counts searches: each is a pass over the namespace, whatever its offset."""

    searches = 0

    async def asearch(self, *args: Any, **kwargs: Any) -> Any:
        self.searches += 1
        return await super().asearch(*args, **kwargs)


@pytest.mark.parametrize("n", [0, 1, 2, 999, 1000, 1001, 2000, 2999, 4000, 7001])
async def test_count_records_finds_the_exact_size_in_a_few_searches(n: int) -> None:
    store = CountingStore()
    ns = ("batch_bridge", "b", ITEMS)
    for i in range(2 * n):
        store.put(ns, f"k{i}", {"status": "queued" if i % 2 else "done"})
    assert await count_records(store, ns) == 2 * n
    store.searches = 0
    assert await count_records(store, ns, {"status": "queued"}) == n
    assert store.searches <= 8
    for hint in (n, n + 1, max(0, n - 1), 3 * n + 5):
        store.searches = 0
        assert await count_records(store, ns, {"status": "queued"}, hint=hint) == n
        assert store.searches <= 9
    store.searches = 0
    assert await count_records(store, ns, {"status": "queued"}, hint=n or None) == n
    assert store.searches == 1


async def test_pending_items_and_the_age_of_the_oldest_without_payloads() -> None:
    store, clock = InMemoryStore(), Clock()
    ledger = Ledger(store, "bridge")
    secret = "a payload the page must never show"
    records = [queued(f"t{i}", {"q": secret}, clock.now - 30 + i) for i in range(12)]
    await ledger.put_items(records)

    status = await bridge_status(store, "bridge", None, now=clock.now)

    assert status["pending"] == {"count": 12, "oldest_at": clock.now - 30, "oldest_age_s": 30.0}
    assert status["in_flight"] == [] and status["in_flight_count"] == 0
    assert status["ticks"] == 0 and status["finished"] == [] and status["usage"] == {}
    assert secret not in json.dumps(status)


async def test_batches_in_flight_then_finished_match_the_ledger_and_the_state() -> None:
    store, client, clock = InMemoryStore(), FakeClient(), Clock()
    provider = FakeProvider(answers=[None])  # the first poll: still running
    ledger = Ledger(store, "bridge")
    records = [queued(f"t{i}", {"q": i}, clock.now - 10) for i in range(3)]
    await ledger.put_items(records)
    for record in records:
        client.threads.waiting(record)
    tick = make_tick(store, client, clock, provider, max_batch_size=2)

    state = await tick.run({}, "run-1")
    clock.now += 4
    status = await bridge_status(store, "bridge", state, now=clock.now)

    headers = {h.batch_id: h for h in await ledger.headers()}
    assert status["in_flight_count"] == len(headers) == 1
    shown = status["in_flight"][0]
    header = headers[shown["batch_id"]]
    assert shown["status"] == header.status == "submitted"
    assert shown["size"] == shown["total"] == header.size == 2
    assert shown["provider_ids"] == ["handle-1"] and shown["done"] is None
    assert shown["age_s"] == pytest.approx(clock.now - header.created_at)
    assert shown["next_poll_in_s"] == max(0.0, round(header.next_poll_at - clock.now, 3))
    assert len(status["finished"]) == 1  # the second batch came back at its first poll
    assert status["finished"][0]["provider_ids"] == ["handle-2"]
    assert status["totals"]["items_submitted"] == 3

    clock.now = header.next_poll_at
    state = await make_tick(store, client, clock, provider).run(state, "run-2")
    status = await bridge_status(store, "bridge", state, now=clock.now)

    assert status["in_flight"] == []
    newest = status["finished"][0]
    assert newest["batch_id"] == header.batch_id and newest["outcome"] == "completed"
    assert (newest["ok"], newest["failed"], newest["size"]) == (2, 0, 2)
    assert newest["duration_s"] == pytest.approx(clock.now - header.created_at)
    assert status["totals"]["items_delivered"] == 3


async def test_the_state_keeps_only_the_last_finished_batches_newest_first() -> None:
    store, client, clock, provider = InMemoryStore(), FakeClient(), Clock(), FakeProvider()
    ledger = Ledger(store, "bridge")
    state: dict[str, Any] = {}
    for round_ in range(RECENT_FINISHED + 3):
        record = queued(f"t{round_}", {"q": round_}, clock.now - 10)
        await ledger.put_items([record])
        client.threads.waiting(record)
        state = dict(await make_tick(store, client, clock, provider).run(state, f"run-{round_}"))
        clock.now += 1
    assert len(state["finished"]) == RECENT_FINISHED
    ids = [f["provider_ids"][0] for f in state["finished"]]
    assert ids[0] == f"handle-{RECENT_FINISHED + 3}" and ids[-1] == "handle-4"


async def test_a_failed_batch_shows_its_outcome_and_the_last_error() -> None:
    store, client, clock = InMemoryStore(), FakeClient(), Clock()
    provider = FakeProvider(answers=[[RuntimeError("the provider lost it")]])
    ledger = Ledger(store, "bridge")
    record = queued("t0", {"q": 0}, clock.now - 10)
    await ledger.put_items([record])
    client.threads.waiting(record)
    state = await make_tick(store, client, clock, provider).run({}, "run-1")
    status = await bridge_status(store, "bridge", state, now=clock.now)

    finished = status["finished"][0]
    assert finished["outcome"] == "failed" and finished["failed"] == 1
    assert "the provider lost it" in finished["error"]


async def test_undeliverable_and_quarantined_records_show_counts_keys_and_reasons() -> None:
    store, clock = InMemoryStore(), Clock()
    ledger = Ledger(store, "bridge")
    gone = [queued(f"gone{i}", {"q": "secret"}, clock.now - 50) for i in range(7)]
    for i, record in enumerate(gone):
        record.status, record.batch_id = "undeliverable", "bb_1"
        record.result = {"ok": True, "value": "secret result"}
        record.last_error = f"thread gone {i}"
    await ledger.put_items(gone)
    for i in range(3):
        await ledger.quarantine(ITEMS, f"bad{i}", {"item": "secret"}, f"forged {i}")

    status = await bridge_status(store, "bridge", {}, now=clock.now)

    assert status["undeliverable"]["count"] == 7
    assert len(status["undeliverable"]["newest"]) == 5
    assert {u["key"] for u in status["undeliverable"]["newest"]} <= {r.key for r in gone}
    assert status["quarantined"]["count"] == 3
    assert [q["reason"] for q in status["quarantined"]["newest"]] == [
        "forged 2",
        "forged 1",
        "forged 0",
    ]
    assert "secret" not in json.dumps(status)


async def test_usage_per_model_is_shown_as_recorded_and_empty_without_data() -> None:
    usage = {
        "gpt-5-mini": {"input_tokens": 1200, "cost_usd": 0.0123, "saved_usd": 0.0123},
        "unknown-model": {"input_tokens": 5, "cost_usd": None, "note": "no price"},
        "broken": "not a mapping",
    }
    status = await bridge_status(InMemoryStore(), "bridge", {"usage": usage})
    assert status["usage"] == {
        "gpt-5-mini": usage["gpt-5-mini"],
        "unknown-model": usage["unknown-model"],
    }
    assert (await bridge_status(InMemoryStore(), "bridge", {"usage": None}))["usage"] == {}


async def test_usage_of_the_bridge_state_is_shown_per_model() -> None:
    def model(tokens: int, batch_usd: float | None, unpriced: int) -> ModelUsage:
        normal = None if batch_usd is None else 2 * batch_usd
        return ModelUsage(
            items=1,
            input_tokens=tokens,
            output_tokens=0,
            cache_read_tokens=0,
            cache_write_tokens=0,
            batch_usd=batch_usd,
            normal_usd=normal,
            saved_usd=batch_usd,
            unpriced_items=unpriced,
        )

    by_model = {"gpt-4o-mini": model(40, 0.001, 0), "mystery": model(5, None, 1)}
    summary = usage_summary("bridge", None, by_model)
    status = await bridge_status(InMemoryStore(), "bridge", {"usage": summary})
    assert set(status["usage"]) == {"gpt-4o-mini", "mystery"}
    assert status["usage"]["gpt-4o-mini"]["input_tokens"] == 40
    assert status["usage"]["mystery"]["batch_usd"] is None


def test_handle_summary_names_provider_ids_and_progress_never_params() -> None:
    handle = {
        "v": 1,
        "key": "bb_1",
        "n": 5,
        "pre": [[4, "too big", "size"]],
        "parts": [
            {"ids": [0, 1], "state": "done", "batch": "", "batches": ["batch_a"]},
            {
                "ids": [2, 3],
                "state": "running",
                "batch": "batch_b",
                "batches": ["batch_b"],
                "params": ["secret"],
            },
        ],
    }
    assert handle_summary(handle) == {
        "provider_ids": ["batch_a", "batch_b"],
        "done": 3,
        "total": 5,
    }
    assert handle_summary("msgbatch_1") == {"provider_ids": ["msgbatch_1"]}
    assert handle_summary({"id": "b1", "other": 1}) == {"provider_ids": ["b1"]}
    assert handle_summary(None) == {} and handle_summary(["x"]) == {}


async def test_the_routes_serve_the_page_and_the_same_data_as_json() -> None:
    store, clock = InMemoryStore(), Clock()
    await Ledger(store, "mine").put_items([queued("t0", {"q": 0}, clock.now - 5)])
    states = {"mine": {"ticks": 4, "last_error": "batch bb_1: HTTP 500"}}

    async def state(bridge: str) -> dict[str, Any] | None:
        return states.get(bridge)

    app = status_app(store=lambda: store, state=state)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
        page = await http.get(f"{STATUS_PREFIX}/")
        data = (await http.get(f"{STATUS_PREFIX}/status.json", params={"bridge": "mine"})).json()
        bad = await http.get(f"{STATUS_PREFIX}/status.json", params={"bridge": "a.b"})

    assert page.status_code == 200 and "status.json" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert data["kind"] == "batch_bridge.status" and data["bridge"] == "mine"
    assert data["pending"]["count"] == 1 and data["ticks"] == 4
    assert data["last_error"] == "batch bb_1: HTTP 500"
    assert bad.status_code == 400 and "a.b" in bad.json()["error"]


async def test_the_command_renders_every_section_of_the_same_data() -> None:
    from rich.console import Console

    from batch_bridge.cli.status import render_status

    store, clock = InMemoryStore(), Clock()
    await Ledger(store, "bridge").put_items([queued("t0", {"q": 0}, clock.now - 90)])
    state = {
        "ticks": 2,
        "finished": [
            {
                "batch_id": "bb_done",
                "outcome": "failed",
                "ok": 0,
                "failed": 2,
                "size": 2,
                "duration_s": 12.5,
                "finished_at": clock.now - 3,
                "provider_ids": ["batch_x"],
                "error": "expired",
            }
        ],
        "usage": {"gpt-5-mini": {"input_tokens": 10, "cost_usd": 0.5}},
        "refused_origins": [
            {
                "url": "http://caller.example:8123",
                "reason": "callback URL not on BATCH_BRIDGE_CALLBACK_URLS",
                "count": 4,
                "last_at": clock.now - 30,
            }
        ],
    }
    data = await bridge_status(store, "bridge", state, now=clock.now)
    assert data["refused"] == state["refused_origins"]
    console = Console(record=True, width=200)
    render_status(data, console)
    text = console.export_text()
    assert "pending 1 (oldest 1 min 30 s)" in text
    shown_values = ("bb_done", "batch_x", "failed", "12.5 s", "expired", "gpt-5-mini", "0.5000")
    for shown in (*shown_values, "http://caller.example:8123", "CALLBACK_URLS"):
        assert shown in text
    render_status({**data, "usage": {}}, console)
    assert "per model: no data" in console.export_text()
