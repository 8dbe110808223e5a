"""Provider webhooks over the real `openai` SDK verification: a verified event makes its
batch due and wakes the bridge once; a forged, replayed or stray one changes nothing."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from langgraph.store.memory import InMemoryStore

from batch_bridge import _hints
from batch_bridge._config import PollSchedule
from batch_bridge._marker import hint_needs_tick, tick_marker
from batch_bridge._store import BatchHeader, Ledger
from batch_bridge.http import status_app
from batch_bridge.http._webhooks import receive_webhook, webhook_counts
from batch_bridge.testing._webhooks import new_secret, sign_webhook

from .fakes import Clock, FakeClient, FakeProvider
from .test_tick import make_tick, queued

SECRET = new_secret()


class Wakes:
    def __init__(self) -> None:
        self.bridges: list[str] = []

    async def __call__(self, store: Any, bridge: str) -> bool:
        self.bridges.append(bridge)
        return True


def event(batch_id: str, kind: str = "batch.completed") -> bytes:
    body = {"id": "evt_1", "object": "event", "created_at": int(time.time()), "type": kind}
    return json.dumps(body | {"data": {"id": batch_id}}).encode()


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> InMemoryStore:
    monkeypatch.setenv("OPENAI_WEBHOOK_SECRET", SECRET)
    return InMemoryStore()


async def held_batch(store: InMemoryStore, provider_id: str = "batch_abc") -> Ledger:
    ledger = Ledger(store, "bridge")
    header = BatchHeader(batch_id="bb_1", status="submitted", size=1, created_at=1.0)
    header.handle, header.next_poll_at = provider_id, time.time() + 900
    await ledger.put_header(header)
    await ledger.index("bb_1", [provider_id])
    return ledger


async def deliver(store: InMemoryStore, wakes: Wakes, body: bytes, **sign: Any) -> Any:
    headers = sign_webhook(sign.pop("secret", SECRET), body, **sign)
    return await receive_webhook("openai", body, headers, store=store, wake=wakes)


async def test_a_verified_event_makes_its_batch_due_and_wakes_its_bridge(store):
    ledger, wakes = await held_batch(store), Wakes()
    status, answer = await deliver(store, wakes, event("batch_abc"))
    assert (status, answer["outcome"], answer["batch_id"]) == (200, "accepted", "bb_1")
    assert wakes.bridges == ["bridge"]
    (header,) = await ledger.headers()
    assert header.next_poll_at <= time.time() and ledger.hinted == {"bb_1"}
    assert (await webhook_counts(store))["openai"]["accepted"] == 1


@pytest.mark.parametrize(
    ("tamper", "status", "outcome"),
    [
        ({"secret": new_secret()}, 401, "bad_signature"),
        ({"timestamp": int(time.time()) - 600}, 401, "bad_signature"),
        ({"batch": "batch_unknown"}, 404, "unknown_batch"),
    ],
)
async def test_a_forged_stale_or_stray_event_changes_nothing(store, tamper, status, outcome):
    ledger, wakes = await held_batch(store), Wakes()
    body = event(tamper.pop("batch", "batch_abc"))
    got, answer = await deliver(store, wakes, body, **tamper)
    assert (got, answer["outcome"]) == (status, outcome)
    assert wakes.bridges == [] and not await store.asearch(ledger.ns(_hints.HINTS))
    (header,) = await ledger.headers()
    assert header.next_poll_at > time.time() + 800
    assert (await webhook_counts(store))["openai"][outcome] == 1


async def test_a_replayed_webhook_id_is_refused(store):
    ledger, wakes = await held_batch(store), Wakes()
    body = event("batch_abc")
    headers = sign_webhook(SECRET, body)
    first = await receive_webhook("openai", body, headers, store=store, wake=wakes)
    await store.adelete(ledger.ns(_hints.HINTS), "bb_1")
    again = await receive_webhook("openai", body, headers, store=store, wake=wakes)
    assert (first[0], again[0], again[1]["outcome"]) == (200, 409, "replayed")
    assert wakes.bridges == ["bridge"] and not await store.asearch(ledger.ns(_hints.HINTS))


async def test_other_events_are_acknowledged_and_ignored(store):
    await held_batch(store)
    status, answer = await deliver(store, Wakes(), event("resp_1", "response.completed"))
    assert (status, answer["outcome"]) == (200, "ignored")


async def test_without_a_secret_the_route_refuses(store, monkeypatch):
    monkeypatch.delenv("OPENAI_WEBHOOK_SECRET")
    await held_batch(store)
    status, answer = await deliver(store, Wakes(), event("batch_abc"))
    assert (status, answer["outcome"]) == (404, "not_configured")


async def test_the_route_is_on_the_status_app_and_counted_in_status_json(store):
    await held_batch(store)
    wakes = Wakes()

    async def no_state(bridge: str) -> None:
        return None

    app = status_app(store=lambda: store, state=no_state, wake=wakes)
    body = event("batch_abc")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://bridge"
    ) as http:
        posted = await http.post(
            "/batch-bridge/webhooks/openai", content=body, headers=sign_webhook(SECRET, body)
        )
        forged = await http.post(
            "/batch-bridge/webhooks/openai", content=body, headers=sign_webhook("x" * 8, body)
        )
        other = await http.post("/batch-bridge/webhooks/nowhere", content=body)
        status = (await http.get("/batch-bridge/status.json")).json()
    assert (posted.status_code, forged.status_code, other.status_code) == (200, 401, 404)
    assert status["webhooks"]["openai"]["accepted"] == 1
    assert status["webhooks"]["openai"]["bad_signature"] == 1


@pytest.mark.parametrize(
    ("marker", "pending", "needed"),
    [
        (None, [], True),
        (("idle", None), [], True),
        (("scheduled", 1001.0), [], False),  # a tick is about to read it
        (("scheduled", 1900.0), [1900.0], True),  # the safety poll: far off
        (("running", None), [], True),  # it may have read the batches already
        (("running", None), [999.0], False),  # a run queued behind it will read it
        ({"state": "scheduled", "next_at": 1001.0}, [], True),  # unsigned: not believed
    ],
)
def test_a_hint_starts_a_tick_only_when_none_will_read_it(marker, pending, needed):
    if isinstance(marker, tuple):  # signed here: the test's own key is set per test
        marker = tick_marker(*marker)
    assert hint_needs_tick(marker, pending, 1000.0) is needed


async def test_a_hinted_batch_still_running_is_polled_again_within_the_backoff():
    store, client, clock = InMemoryStore(), FakeClient(), Clock()
    provider = FakeProvider(answers=[None, None])  # the output file is late
    ledger = Ledger(store, "bridge")
    record = queued("t1", "x", clock.now - 10)
    await ledger.put_items([record])
    client.threads.waiting(record)
    hooked = PollSchedule(safety_s=900)
    state = await make_tick(store, client, clock, provider, polling=hooked).run({}, "r1")
    (header,) = await ledger.headers()
    clock.now = header.next_poll_at + 1
    hint = _hints.hint_value(clock.now, "batch.completed")
    await store.aput(ledger.ns(_hints.HINTS), header.batch_id, hint)
    state = await make_tick(store, client, clock, provider, polling=hooked).run(state, "r2")
    (header,) = await ledger.headers()
    assert header.next_poll_at == clock.now + 30 and len(provider.polled) == 1
    clock.now += 30
    await make_tick(store, client, clock, provider, polling=hooked).run(state, "r3")
    (header,) = await ledger.headers()
    assert header.next_poll_at == clock.now + 900  # unhinted again: the safety poll


async def test_the_poll_a_hint_triggers_clears_it_and_the_batch_leaves_the_index():
    store, client, clock = InMemoryStore(), FakeClient(), Clock()
    provider = FakeProvider(answers=[None])
    ledger = Ledger(store, "bridge")
    record = queued("t1", "x", clock.now - 10)
    await ledger.put_items([record])
    client.threads.waiting(record)
    hooked = PollSchedule(safety_s=900)
    state = await make_tick(store, client, clock, provider, polling=hooked).run({}, "r1")
    (header,) = await ledger.headers()
    assert [i.key for i in await store.asearch(_hints.INDEX)] == ["handle-1"]
    clock.now = header.next_poll_at
    state = await make_tick(store, client, clock, provider, polling=hooked).run(state, "r2")
    (header,) = await ledger.headers()
    assert header.next_poll_at == clock.now + 900 and provider.polled == ["handle-1"]
    clock.now += 3
    hint = _hints.hint_value(clock.now, "batch.completed")
    await store.aput(ledger.ns(_hints.HINTS), header.batch_id, hint)
    await make_tick(store, client, clock, provider, polling=hooked).run(state, "r3")
    assert provider.polled == ["handle-1"] * 2 and client.runs.resumes
    assert not await ledger.headers() and not await store.asearch(_hints.INDEX)
    assert not await store.asearch(ledger.ns(_hints.HINTS))
