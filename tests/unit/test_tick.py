"""A tick and delivery over injected parts: an in-memory store, a fake platform client, a
clock the test moves, and a fake provider. No server and no monkeypatching."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.store.memory import InMemoryStore

from batch_bridge._config import DeliveryPolicy, Reliability
from batch_bridge._marker import TICK_MARKER
from batch_bridge._store import ITEMS, META, QUARANTINE, ItemRecord, Ledger, digest
from batch_bridge._trust import unsigned
from batch_bridge.bridge.calls import Provider
from batch_bridge.bridge.deliver import Deliverer
from batch_bridge.bridge.tick import Tick
from batch_bridge.types import FlushPolicy

from .fakes import Clock, FakeClient, FakeProvider, conflict, unprocessable


def queued(thread_id: str, item: Any, created_at: float, interrupt: str = "") -> ItemRecord:
    return ItemRecord(
        thread_id=thread_id,
        interrupt_id=f"i-{thread_id}{interrupt}",
        assistant_id="agent",
        graph_id="agent",
        resume_url=None,
        item=item,
        digest=digest(item),
        created_at=created_at,
    )


def make_tick(
    store: InMemoryStore, client: FakeClient, clock: Clock, provider: FakeProvider, **policy: Any
) -> Tick:
    return Tick(
        "bridge",
        Provider(provider.submit, provider.poll, provider.cancel, release=provider.release),
        FlushPolicy(**{"max_batch_size": 10, "max_batch_age_s": 5.0, **policy}),
        Reliability(),
        store=store,
        client=client,
        client_for=client.client_for,
        clock=clock,
    )


async def statuses(ledger: Ledger) -> dict[str, str]:
    return {s.key: s.value["status"] for s in await ledger.search(ITEMS)}


async def test_a_tick_batches_what_callers_wait_on_and_resumes_each_once():
    store, client, clock, provider = InMemoryStore(), FakeClient(), Clock(), FakeProvider()
    ledger = Ledger(store, "bridge")
    records = [queued(f"t{i}", {"q": i}, clock.now - 10) for i in range(3)]
    await ledger.put_items(records)
    for record in records:
        client.threads.waiting(record)

    state = await make_tick(store, client, clock, provider).run({}, "run-1")

    assert provider.submitted == [[{"q": 0}, {"q": 1}, {"q": 2}]]
    assert provider.released == ["handle-1"]
    resumed = {thread: answers for thread, _, answers in client.runs.resumes}
    assert resumed["t1"] == {
        "int-i-t1": {"kind": "batch_bridge.result", "ok": True, "value": "done {'q': 1}"}
        | {"item_key": "t1:i-t1"}
    }
    assert len(client.runs.resumes) == 3
    assert set((await statuses(ledger)).values()) == {"delivered"}
    assert state["items_submitted"] == 3 and state["items_delivered"] == 3
    assert state["in_flight"] == [] and state["pending"] == 0
    assert client.crons.created == ["* * * * *"]


async def test_a_batch_keeps_arrival_order_across_caller_threads():
    store, client, clock, provider = InMemoryStore(), FakeClient(), Clock(), FakeProvider()
    ledger = Ledger(store, "bridge")
    records = [queued("ab"[i % 2], i, clock.now - 10 + i, str(i)) for i in range(4)]
    await ledger.put_items(records)
    for record in records:
        client.threads.waiting(record)

    await make_tick(store, client, clock, provider).run({}, "run-1")

    assert provider.submitted == [[0, 1, 2, 3]]
    assert len(client.runs.resumes) == 2  # one resume run per caller thread
    assert set((await statuses(ledger)).values()) == {"delivered"}


async def test_a_young_partial_batch_waits_and_the_tick_says_when_to_look_again():
    store, client, clock, provider = InMemoryStore(), FakeClient(), Clock(), FakeProvider()
    ledger = Ledger(store, "bridge")
    record = queued("t1", "x", clock.now - 1)
    await ledger.put_items([record])
    client.threads.waiting(record)

    state = await make_tick(store, client, clock, provider).run({}, "run-1")

    assert provider.submitted == []
    assert state["pending"] == 1 and state["next_tick_in_s"] == 4.0
    assert client.runs.scheduled == [4.0]
    marker = unsigned((await store.aget(ledger.ns(META), TICK_MARKER)).value)
    assert marker["state"] == "scheduled"

    clock.now += 4
    state = await make_tick(store, client, clock, provider).run(state, "run-2")
    assert provider.submitted == [["x"]]
    assert state["items_delivered"] == 1


async def test_a_forced_flush_also_sends_the_items_it_deferred_for_a_busy_thread():
    """`flush=True` means now: an item whose thread was still saving its interrupt goes out
    as soon as the thread rests, not when the flush rule would send it."""
    store, client, clock, provider = InMemoryStore(), FakeClient(), Clock(), FakeProvider()
    ledger = Ledger(store, "bridge")
    ready, saving = queued("t1", "a", clock.now - 1), queued("t2", "b", clock.now - 1)
    await ledger.put_items([ready, saving])
    client.threads.waiting(ready)
    client.threads.threads["t2"] = {"thread_id": "t2", "status": "busy", "interrupts": {}}

    state = await make_tick(store, client, clock, provider).run({"flush": True}, "run-1")
    assert provider.submitted == [["a"]] and state["flush"] is True  # b: later, still forced

    client.threads.waiting(saving)
    clock.now += 1  # far younger than the batch age of 5 s
    state = await make_tick(store, client, clock, provider).run(state, "run-1")
    assert provider.submitted == [["a"], ["b"]] and state["flush"] is False
    assert set((await statuses(ledger)).values()) == {"delivered"}


async def test_an_item_its_thread_does_not_wait_on_is_never_submitted():
    store, client, clock, provider = InMemoryStore(), FakeClient(), Clock(), FakeProvider()
    ledger = Ledger(store, "bridge")
    forged, other = queued("t1", "a", clock.now - 10), queued("t2", "b", clock.now - 10)
    await ledger.put_items([forged, other])
    client.threads.waiting(forged, item="something else")  # same ref, another item

    state = await make_tick(store, client, clock, provider).run({}, "run-1")

    assert provider.submitted == []
    assert await statuses(ledger) == {}
    assert len(await ledger.search(QUARANTINE)) == 1  # the forged one; t2 is gone: withdrawn
    assert state["records_quarantined"] == 1 and state["items_withdrawn"] == 1


async def test_a_raised_poll_error_is_polled_again_within_the_horizon():
    store, client, clock = InMemoryStore(), FakeClient(), Clock()
    provider = FakeProvider(answers=[TimeoutError("slow"), None])
    ledger = Ledger(store, "bridge")
    record = queued("t1", "x", clock.now - 10)
    await ledger.put_items([record])
    client.threads.waiting(record)

    state = await make_tick(store, client, clock, provider, poll_interval_s=60).run({}, "r1")

    (header,) = await ledger.headers()
    assert header.poll_error_since == clock.now and header.next_poll_at == clock.now + 60
    assert "did not answer in time" in state["last_error"]
    clock.now += 60
    await make_tick(store, client, clock, provider, poll_interval_s=60).run(state, "r2")
    (header,) = await ledger.headers()
    assert header.poll_error_since is None  # answered: the error streak is over
    clock.now += 60
    await make_tick(store, client, clock, provider, poll_interval_s=60).run(state, "r3")
    assert provider.polled == ["handle-1"] * 3 and provider.cancelled == []
    assert await statuses(ledger) == {record.key: "delivered"}


def deliverer(store: InMemoryStore, client: FakeClient, clock: Clock) -> Deliverer:
    policy = DeliveryPolicy(backoff_s=2.0)
    return Deliverer(Ledger(store, "bridge"), policy, client.client_for, clock)


def with_result(record: ItemRecord, **kw: Any) -> ItemRecord:
    record.status, record.batch_id = "result", "bb_1"
    record.result = {"kind": "batch_bridge.result", "ok": True, "value": 42}
    record.result_at = record.created_at
    for name, value in kw.items():
        setattr(record, name, value)
    return record


async def test_delivery_resumes_a_waiting_thread_once_and_counts_the_try_first():
    store, client, clock = InMemoryStore(), FakeClient(), Clock()
    record = with_result(queued("t1", "x", clock.now))
    answer = {**(record.result or {}), "item_key": record.key}
    client.threads.waiting(record)
    deliver = deliverer(store, client, clock)

    await deliver.run([record])

    assert client.runs.resumes == [("t1", "agent", {"int-i-t1": answer})]
    assert deliver.delivered == 1 and record.status == "delivered" and record.attempts == 1
    assert record.result is None  # a delivered record keeps no payload


async def test_a_tried_item_its_thread_no_longer_waits_on_was_delivered():
    """After a crash between the resume and its confirmation: the try was counted first."""
    store, client, clock = InMemoryStore(), FakeClient(), Clock()
    record = with_result(queued("t1", "x", clock.now), attempts=1)
    client.threads.threads["t1"] = {"thread_id": "t1", "status": "idle", "interrupts": {}}
    deliver = deliverer(store, client, clock)

    await deliver.run([record])

    assert client.runs.resumes == [] and record.status == "delivered"


async def test_a_tried_item_on_a_busy_thread_waits_for_the_earlier_resume_run():
    """A tick killed after its resume went out: the run it created is still queued, so the
    thread is busy and its interrupt still pending. The next tick must not resume again."""
    store, client, clock = InMemoryStore(), FakeClient(), Clock()
    record = with_result(queued("t1", "x", clock.now), attempts=1)
    client.threads.waiting(record, status="busy")
    deliver = deliverer(store, client, clock)

    await deliver.run([record])
    assert client.runs.resumes == [] and record.status == "result"
    assert record.next_attempt_at == clock.now + 1.0

    client.threads.threads["t1"].update(status="idle", interrupts={})  # the earlier run ran
    clock.now += 1
    await deliver.run([record])
    assert client.runs.resumes == [] and record.status == "delivered"


async def test_a_tried_item_whose_resume_never_ran_is_resumed_once_the_thread_rests():
    store, client, clock = InMemoryStore(), FakeClient(), Clock()
    record = with_result(queued("t1", "x", clock.now), attempts=1)
    client.threads.waiting(record)  # interrupted, still waiting: the earlier try never ran
    deliver = deliverer(store, client, clock)

    await deliver.run([record])

    assert [thread for thread, _, _ in client.runs.resumes] == ["t1"]
    assert record.status == "delivered" and record.attempts == 2


class Killed(BaseException):
    """A worker dying at a line: nothing after it runs, no handler catches it."""


async def test_a_page_killed_after_its_resumes_is_settled_as_tried_by_the_next_tick():
    """The try is one `tries` record per page, not a rewrite of each item. A tick killed
    after the resumes went out, before any outcome was written, leaves that record; the
    next tick counts its items as tried: never resumed again, delivered, not dropped."""
    store, client, clock = InMemoryStore(), FakeClient(), Clock()
    ledger = Ledger(store, "bridge")
    sent, busy = (with_result(queued(t, t, clock.now)) for t in ("sent", "busy"))
    await ledger.put_items([sent, busy])
    client.threads.waiting(sent)
    client.threads.waiting(busy)
    writes = ledger.put_items

    async def killed(*args: Any, **kwargs: Any) -> None:
        raise Killed

    ledger.put_items = killed  # type: ignore[method-assign]
    first = Deliverer(ledger, DeliveryPolicy(backoff_s=2.0), client.client_for, clock)
    with pytest.raises(Killed):
        await first.run(await ledger.items("result"))
    assert [t for t, _, _ in client.runs.resumes] == ["sent", "busy"]
    assert [r.attempts for r in await ledger.items("result")] == [0, 0]  # nothing settled
    assert len(await ledger.tries()) == 1

    ledger.put_items = writes  # type: ignore[method-assign]
    client.threads.threads["sent"].update(status="idle")  # its resume run ran
    client.threads.waiting(busy, status="busy")  # its resume run is still queued
    second = deliverer(store, client, clock)
    await second.run(await Ledger(store, "bridge").items("result"))

    assert len(client.runs.resumes) == 2  # none sent twice
    assert await statuses(ledger) == {sent.key: "delivered", busy.key: "result"}
    assert second.delivered == 1 and second.dropped == 0
    assert await ledger.tries() == {}
    (waiting,) = await ledger.items("result")
    assert waiting.attempts == 1  # settled into the record: the next look waits for the run


async def test_a_delivered_page_leaves_no_tries_record():
    store, client, clock = InMemoryStore(), FakeClient(), Clock()
    records = [with_result(queued(f"t{i}", i, clock.now)) for i in range(3)]
    for record in records:
        client.threads.waiting(record)
    deliver = deliverer(store, client, clock)

    await deliver.run(records)

    assert deliver.delivered == 3 and await Ledger(store, "bridge").tries() == {}


async def test_delivery_settles_gone_busy_foreign_and_refused_threads():
    store, client, clock = InMemoryStore(), FakeClient(), Clock()
    gone = with_result(queued("gone", "a", clock.now))
    busy = with_result(queued("busy", "b", clock.now))
    foreign = with_result(queued("foreign", "c", clock.now))
    client.threads.threads["busy"] = {"thread_id": "busy", "status": "busy", "interrupts": {}}
    client.threads.waiting(foreign, item="another item")
    deliver = deliverer(store, client, clock)

    await deliver.run([gone, busy, foreign])

    assert client.runs.resumes == []
    assert (gone.status, foreign.status, busy.status) == ("dropped", "undeliverable", "result")
    assert deliver.dropped == 1 and deliver.undeliverable == 1
    assert busy.next_attempt_at == clock.now + 1.0
    assert "digest mismatch" in (foreign.last_error or "")

    refused = with_result(queued("refused", "d", clock.now))
    client.threads.waiting(refused)
    client.runs.refuse = RuntimeError("caller deployment down")
    await deliver.run([refused])
    assert refused.status == "result" and refused.failures == 1
    assert refused.next_attempt_at == clock.now + 2.0  # the policy's first backoff

    client.runs.refuse = conflict()
    clock.now += 2
    await deliver.run([refused])
    assert refused.status == "result" and refused.attempts == 1  # 409: the thread is busy
    assert refused.next_attempt_at == clock.now + 1.0


async def test_delivery_reads_whole_threads_from_a_server_that_cannot_select_fields():
    store, client, clock = InMemoryStore(), FakeClient(), Clock()
    record = with_result(queued("t1", "x", clock.now))
    client.threads.waiting(record)
    search = client.threads.search

    async def old_server(**kwargs: Any) -> list[dict[str, Any]]:
        if kwargs.get("select"):
            raise unprocessable()
        return await search(**kwargs)

    client.threads.search = old_server  # type: ignore[method-assign]
    deliver = deliverer(store, client, clock)
    await deliver.run([record])
    assert deliver.delivered == 1 and [t for t, _, _ in client.runs.resumes] == ["t1"]


async def test_delivery_defers_when_caller_threads_cannot_be_read():
    store, client, clock = InMemoryStore(), FakeClient(), Clock()
    record = with_result(queued("t1", "x", clock.now))
    client.threads.waiting(record)
    client.threads.fail = RuntimeError("503")
    deliver = deliverer(store, client, clock)

    await deliver.run([record])

    assert record.status == "result" and record.failures == 1 and client.runs.resumes == []
    clock.now += 7 * 3600  # past the delivery horizon
    await deliver.run([record])
    assert record.status == "undeliverable"
