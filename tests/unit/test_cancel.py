"""Cancellation both ways, over a tick's injected parts: callers that stop waiting are
never billed (or their results are dropped), and an operator's cancel of a batch."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.store.memory import InMemoryStore

from batch_bridge._records import BatchHeader
from batch_bridge._results import unwrap
from batch_bridge._store import ALIASES, ITEMS, Ledger, alias_value
from batch_bridge._wait import _plan
from batch_bridge.bridge.state import BridgeState
from batch_bridge.errors import BatchCancelledError, BatchFailedError

from .fakes import Clock, FakeClient, FakeProvider
from .test_tick import make_tick, queued, statuses


class Killed(BaseException):
    """A worker dying mid-call: nothing in the tick catches it."""


class DiesOnce(FakeProvider):
    """A provider whose first cancel is taken, then the worker dies before it returns."""

    def cancel(self, handle: str) -> None:
        super().cancel(handle)
        if len(self.cancelled) == 1:
            raise Killed


async def in_flight(
    store: InMemoryStore, client: FakeClient, clock: Clock, n: int, kind: type = FakeProvider
) -> Any:
    """`n` waiting callers whose batch went out and is still running."""
    provider = kind(answers=[None])
    records = [queued(f"t{i}", f"q{i}", clock.now - 10) for i in range(n)]
    await Ledger(store, "bridge").put_items(records)
    for record in records:
        client.threads.waiting(record)
    state = await make_tick(store, client, clock, provider).run({}, "run-1")
    (batch,) = state["in_flight"]
    return provider, state, batch["batch_id"]


def answers(client: FakeClient) -> dict[str, dict[str, Any]]:
    return {thread: next(iter(a.values())) for thread, _, a in client.runs.resumes}


async def test_items_whose_callers_stopped_waiting_are_withdrawn_before_submit():
    store, client, clock, provider = InMemoryStore(), FakeClient(), Clock(), FakeProvider()
    ledger = Ledger(store, "bridge")
    deleted, cancelled, waits = (queued(t, t, clock.now - 10) for t in ("gone", "idle", "ok"))
    cancelled.alias = "alias-idle"
    await ledger.put_items([deleted, cancelled, waits])
    await store.aput(ledger.ns(ALIASES), "alias-idle", alias_value(cancelled.key))
    client.threads.threads["idle"] = {"thread_id": "idle", "status": "idle", "interrupts": {}}
    client.threads.waiting(waits)

    state = await make_tick(store, client, clock, provider).run({}, "run-1")

    assert provider.submitted == [["ok"]]
    assert await statuses(ledger) == {waits.key: "delivered"}
    assert await store.aget(ledger.ns(ALIASES), "alias-idle") is None
    assert state["items_withdrawn"] == 2 and state["records_quarantined"] == 0
    assert state["pending"] == 0 and state["items_submitted"] == 1


async def test_results_whose_callers_stopped_waiting_are_dropped_and_counted_once():
    store, client, clock = InMemoryStore(), FakeClient(), Clock()
    provider, state, _ = await in_flight(store, client, clock, 2)
    del client.threads.threads["t0"]  # deleted while its batch ran
    client.threads.threads["t1"].update(status="idle", interrupts={})  # its run cancelled

    state = await make_tick(store, client, clock, provider).run(state, "run-2")
    clock.now += 60
    state = await make_tick(store, client, clock, provider).run(state, "run-3")

    assert client.runs.resumes == []
    assert state["results_dropped"] == 2 and state["undeliverable"] == 0
    assert set((await statuses(Ledger(store, "bridge"))).values()) == {"dropped"}


def test_a_dropped_result_is_armed_again_when_its_caller_waits_again():
    record = queued("t0", "q0", 1.0)
    record.status, record.batch_id, record.result = "dropped", "bb_1", {"ok": True}
    again = _plan(record.to_value(), record.key, queued("t0", "q0", 2.0))
    assert again is not None and again.status == "result"


async def test_a_cancelled_batch_delivers_finished_rows_and_names_itself_to_the_rest():
    store, client, clock = InMemoryStore(), FakeClient(), Clock()
    provider, state, batch_id = await in_flight(store, client, clock, 2)
    unfinished = BatchFailedError("the batch ended before this row", code="batch_cancelled")
    provider.answers = [["first answer", unfinished]]

    state = await make_tick(store, client, clock, provider).run(
        {**state, "cancel": [batch_id]}, "run-2"
    )

    assert provider.cancelled == ["handle-1"]
    assert state["last_cancel"] == {"run_id": "run-2", "outcomes": {batch_id: "cancelling"}}
    assert state["cancel"] == [] and state["in_flight"] == []
    got = answers(client)
    assert unwrap(got["t0"]) == "first answer"
    with pytest.raises(BatchCancelledError, match=f"Batch '{batch_id}' was cancelled"):
        unwrap(got["t1"])
    assert len(client.runs.resumes) == 2


async def test_an_unknown_or_finished_batch_is_reported_and_nothing_is_cancelled():
    store, client, clock, provider = InMemoryStore(), FakeClient(), Clock(), FakeProvider()
    state = await make_tick(store, client, clock, provider).run({"cancel": ["bb_nope"]}, "run-1")
    assert state["last_cancel"] == {"run_id": "run-1", "outcomes": {"bb_nope": "unknown"}}
    assert provider.cancelled == []


async def test_a_batch_not_yet_at_the_provider_is_cancelled_at_once():
    store, client, clock = InMemoryStore(), FakeClient(), Clock()
    ledger = Ledger(store, "bridge")
    records = [queued(f"t{i}", f"q{i}", clock.now) for i in range(2)]
    await ledger.put_items(records)
    for record in records:
        client.threads.waiting(record)
    header = BatchHeader(batch_id="bb_held", status="forming", size=2, created_at=clock.now)
    await ledger.put_header(header)
    await ledger.put_members(header.batch_id, [r.key for r in records])
    for record in records:
        record.status, record.batch_id = "batched", header.batch_id
    await ledger.put_items(records)
    provider = FakeProvider()

    state = await make_tick(store, client, clock, provider).run({"cancel": ["bb_held"]}, "r")

    assert state["last_cancel"]["outcomes"] == {"bb_held": "cancelled"}
    assert provider.submitted == [] and provider.cancelled == []
    for envelope in answers(client).values():
        with pytest.raises(BatchCancelledError, match="bb_held"):
            unwrap(envelope)


async def test_a_tick_killed_mid_cancel_asks_again_and_resumes_each_caller_once():
    store, client, clock = InMemoryStore(), FakeClient(), Clock()
    provider, state, batch_id = await in_flight(store, client, clock, 2, DiesOnce)
    asked: BridgeState = {**state, "cancel": [batch_id]}

    with pytest.raises(Killed):
        await make_tick(store, client, clock, provider).run(asked, "run-2")
    (header,) = await Ledger(store, "bridge").headers()
    assert header.cancel_requested_at is not None and not header.cancel_sent

    provider.answers = [["done", BatchFailedError("cancelled", code="batch_cancelled")]]
    state = await make_tick(store, client, clock, provider).run(asked, "run-3")  # retried run

    assert provider.cancelled == ["handle-1", "handle-1"]
    assert state["last_cancel"]["outcomes"] == {batch_id: "cancelling"}
    assert sorted(t for t, _, _ in client.runs.resumes) == ["t0", "t1"]
    assert set((await statuses(Ledger(store, "bridge"))).values()) == {"delivered"}
    assert await Ledger(store, "bridge").search(ITEMS, {"status": "result"}) == []


class RefusesOnce(FakeProvider):
    """A provider that cannot be reached for the first cancel."""

    def cancel(self, handle: str) -> None:
        super().cancel(handle)
        if len(self.cancelled) == 1:
            raise RuntimeError("provider unreachable")


async def test_a_cancel_the_provider_refused_is_asked_again_at_the_next_poll():
    store, client, clock = InMemoryStore(), FakeClient(), Clock()
    provider, state, batch_id = await in_flight(store, client, clock, 1, RefusesOnce)
    provider.answers = [None]

    state = await make_tick(store, client, clock, provider).run(
        {**state, "cancel": [batch_id]}, "run-2"
    )
    assert "provider unreachable" in (state["last_error"] or "")
    assert state["last_cancel"]["outcomes"] == {batch_id: "cancelling"}
    assert client.runs.resumes == []

    clock.now += 60
    provider.answers = [[BatchFailedError("cancelled", code="batch_cancelled")]]
    await make_tick(store, client, clock, provider).run(state, "run-3")

    assert provider.cancelled == ["handle-1", "handle-1"]
    with pytest.raises(BatchCancelledError, match=batch_id):
        unwrap(answers(client)["t0"])
