"""A finished batch is recorded and handed on a page of whole caller threads at a time: each
caller is resumed once with all its answers, each page's cost is counted once, and a worker
killed between pages leaves nothing lost or doubled."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from langgraph.store.base import GetOp
from langgraph.store.memory import InMemoryStore

from batch_bridge._results import Envelope, interpret_poll
from batch_bridge._store import ITEMS, BatchHeader, ItemRecord, Ledger
from batch_bridge._usage import (
    USAGE,
    USAGE_BATCHES,
    ModelUsage,
    add_records,
    batch_of_usage_key,
    usage_namespace,
)
from batch_bridge.bridge.finish import thread_pages
from batch_bridge.bridge.tick import Tick

from .fakes import Clock, FakeClient, FakeProvider
from .test_tick import make_tick, queued

THREADS, PER_THREAD = 7, 3


class Killed(BaseException):
    """The worker dies here: not an error the tick catches."""


class BilledProvider(FakeProvider):
    """Answers every item with a priced completion naming the item."""

    def poll(self, handle: str) -> Any:
        self.polled.append(handle)
        if self.answers:
            return self.answers.pop(0)
        items = self.submitted[int(handle.split("-")[1]) - 1]
        return [
            {
                "object": "chat.completion",
                "model": "gpt-4o-mini",
                "usage": {"prompt_tokens": 1000, "completion_tokens": 100},
                "echo": item,
            }
            for item in items
        ]


async def setup() -> tuple[InMemoryStore, FakeClient, Clock]:
    store, client, clock = InMemoryStore(), FakeClient(), Clock()
    records = [
        queued(f"t{t}", {"q": f"{t}.{j}"}, clock.now - 10, f".{j}")
        for j in range(PER_THREAD)
        for t in range(THREADS)  # a thread's items arrive apart, as parallel waits do
    ]
    await Ledger(store, "bridge").put_items(records)
    for record in records:
        client.threads.waiting(record)
    return store, client, clock


def paged(store: InMemoryStore, client: FakeClient, clock: Clock, provider: Any) -> Tick:
    tick = make_tick(store, client, clock, provider, max_batch_size=100)
    tick.batches._finish.page_size = 5  # pages of two threads (six items)
    return tick


def test_pages_hold_whole_threads_and_every_member_once():
    keys = [f"t{t}:i{j}" for j in range(3) for t in range(5)]
    slots = list(range(len(keys)))[::-1]

    pages = list(thread_pages(keys, slots, 4))

    assert [len(page) for page in pages] == [6, 6, 3]
    for page in pages:
        threads = Counter(key.rpartition(":")[0] for key, _ in page)
        assert set(threads.values()) == {3}
    flat = [member for page in pages for member in page]
    assert sorted(flat) == sorted(zip(keys, slots, strict=True))


async def test_a_batch_over_many_pages_resumes_each_caller_once_with_all_its_answers():
    store, client, clock = await setup()
    provider = BilledProvider()

    state = await paged(store, client, clock, provider).run({}, "run-1")

    assert len(provider.submitted) == 1 and len(provider.submitted[0]) == THREADS * PER_THREAD
    threads = Counter(thread for thread, _, _ in client.runs.resumes)
    assert threads == {f"t{t}": 1 for t in range(THREADS)}
    for thread, _, resume in client.runs.resumes:
        echoed = sorted(v["value"]["echo"]["q"] for v in resume.values())
        assert echoed == [f"{thread[1:]}.{j}" for j in range(PER_THREAD)]
    assert state["items_delivered"] == THREADS * PER_THREAD
    assert state["usage"]["items"] == THREADS * PER_THREAD
    assert state["finished"][0]["ok"] == THREADS * PER_THREAD


async def test_a_worker_killed_between_pages_loses_nothing_and_counts_nothing_twice():
    store, client, clock = await setup()
    provider = BilledProvider(answers=[None])  # still running at the first poll
    state = await paged(store, client, clock, provider).run({}, "run-1")
    (header,) = await Ledger(store, "bridge").headers()
    pages = 0

    async def killed_on_the_second_page(done: list[ItemRecord]) -> None:
        nonlocal pages
        pages += 1
        if pages == 2:
            raise Killed("between pages")

    interrupted = paged(store, client, clock, provider)
    interrupted.batches.hand_on = killed_on_the_second_page
    envelopes = interpret_poll(provider.poll("handle-1"), header.size, header.batch_id)
    assert isinstance(envelopes, list)
    with pytest.raises(Killed):
        await interrupted.batches.finish(header, envelopes)
    clock.now += 60
    state = await paged(store, client, clock, provider).run(state, "run-2")

    threads = Counter(thread for thread, _, _ in client.runs.resumes)
    assert threads == {f"t{t}": 1 for t in range(THREADS)}
    assert len(provider.submitted) == 1
    assert state["usage"]["items"] == THREADS * PER_THREAD  # two pages' records, written once


async def submitted_and_answered() -> tuple[InMemoryStore, Tick, BatchHeader, list[Envelope]]:
    """A batch submitted by a first tick, and the envelopes its poll then answers."""
    store, client, clock = await setup()
    provider = BilledProvider(answers=[None])  # still running at the first poll
    tick = paged(store, client, clock, provider)
    await tick.run({}, "run-1")
    (header,) = await Ledger(store, "bridge").headers()
    envelopes = interpret_poll(provider.poll("handle-1"), header.size, header.batch_id)
    assert isinstance(envelopes, list)
    return store, tick, header, envelopes


async def test_each_page_usage_is_its_own_record_of_the_same_batch():
    store, tick, header, envelopes = await submitted_and_answered()
    tick.batches.hand_on = _ignore
    await tick.batches._finish.run(header, list(envelopes), _ignore)

    stored = await store.asearch(Ledger(store, "bridge").ns(USAGE_BATCHES))
    assert {batch_of_usage_key(s.key) for s in stored} == {header.batch_id}
    assert len(stored) == 4  # pages of 6, 6, 6 and 3 items
    items = sum(u["items"] for s in stored for u in s.value["by_model"].values())
    assert items == THREADS * PER_THREAD


async def test_a_thread_killed_halfway_through_its_results_has_one_usage_record_counted_once():
    store, tick, header, envelopes = await submitted_and_answered()
    ledger = tick.batches._finish.ledger
    write_all = ledger.put_items

    async def dies_after_two(records: list[ItemRecord], **kwargs: Any) -> None:
        await write_all(records[:2], **kwargs)  # t0's first two results, not its third
        raise Killed("halfway through a page's results")

    ledger.put_items = dies_after_two  # type: ignore[method-assign]
    with pytest.raises(Killed):
        await tick.batches._finish.run(header, list(envelopes), _ignore)
    ledger.put_items = write_all  # type: ignore[method-assign]
    recorded = await ledger.get_items([f"t0:i-t0.{j}" for j in range(PER_THREAD)])
    assert sorted(r.status for r in recorded.values()) == ["batched", "result", "result"]
    await tick.batches._finish.run(header, list(envelopes), _ignore)

    stored = await store.asearch(ledger.ns(USAGE))
    assert sorted(s.namespace[-1] for s in stored) == [f"t{t}" for t in range(THREADS)]
    assert {s.key for s in stored} == {header.batch_id}  # one record per thread and batch
    for thread in range(THREADS):
        by_model: dict[str, ModelUsage] = {}
        records = await store.asearch(usage_namespace("bridge", f"t{thread}"))
        add_records(by_model, [s.value for s in records])
        assert by_model["gpt-4o-mini"]["items"] == PER_THREAD


async def test_a_result_is_let_go_once_its_page_is_handed_on():
    _, tick, header, envelopes = await submitted_and_answered()
    held: list[Envelope | None] = list(envelopes)
    released: list[int] = []

    async def count(done: list[ItemRecord]) -> None:
        released.append(sum(e is None for e in held))

    await tick.batches._finish.run(header, held, count)

    assert released == [6, 12, 18, 21]


async def _ignore(done: list[ItemRecord]) -> None:
    return None


class CountingStore(InMemoryStore):
    """Counts item records read one by one (by key)."""

    item_reads = 0

    async def abatch(self, ops: Any) -> Any:
        ops = list(ops)
        self.item_reads += sum(isinstance(op, GetOp) and op.namespace[-1] == ITEMS for op in ops)
        return await super().abatch(ops)


async def test_a_fresh_batch_is_sent_from_the_records_it_claimed_not_read_back():
    store, client, clock = CountingStore(), FakeClient(), Clock()
    records = [queued(f"t{t}", {"q": t}, clock.now - 10) for t in range(THREADS)]
    await Ledger(store, "bridge").put_items(records)
    for record in records:
        client.threads.waiting(record)
    reads_at_submit: list[int] = []

    class Watching(BilledProvider):
        def submit(self, items: list[Any]) -> str:
            reads_at_submit.append(store.item_reads)
            return super().submit(items)

    await paged(store, client, clock, Watching()).run({}, "run-1")

    assert reads_at_submit == [0]
    assert len(client.runs.resumes) == THREADS
