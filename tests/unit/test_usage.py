"""Cost recorded with each result, per caller thread and per bridge, over injected parts:
exactly once however often a killed tick's `finish` runs again."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from langgraph.store.base import PutOp
from langgraph.store.memory import InMemoryStore

from batch_bridge import Bridge
from batch_bridge._config import Reliability
from batch_bridge._prices import DEFAULT_TABLE, load_prices
from batch_bridge._results import interpret_poll
from batch_bridge._store import ITEMS, Ledger
from batch_bridge._usage import (
    USAGE,
    USAGE_BATCHES,
    add_costs,
    add_records,
    summary,
    usage_namespace,
)
from batch_bridge.bridge.calls import Provider
from batch_bridge.bridge.state import BridgeState
from batch_bridge.bridge.tick import Tick
from batch_bridge.types import FlushPolicy

from .fakes import Clock, FakeClient, FakeProvider
from .test_tick import queued


def chat(model: str, prompt: int, completion: int) -> dict[str, Any]:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    return {"object": "chat.completion", "model": model, "usage": usage}


ANSWERS = [
    chat("gpt-4o-mini-2024-07-18", 1000, 100),
    chat("gpt-4o-mini", 2000, 300),
    chat("my-own-model", 50, 5),
    "a result with no usage",
]
THREADS = ["a", "a", "b", "b"]


class Killed(BaseException):
    """The worker dies here: not an error the tick catches and retries."""


def tick(store: InMemoryStore, client: FakeClient, clock: Clock, provider: FakeProvider) -> Tick:
    return Tick(
        "bridge",
        Provider(provider.submit, provider.poll, provider.cancel, release=provider.release),
        FlushPolicy(max_batch_size=10, max_batch_age_s=5.0),
        Reliability(),
        store=store,
        client=client,
        client_for=client.client_for,
        clock=clock,
        prices=load_prices({"cheap-model": {"input": 1.0, "output": 1.0}}),
    )


async def setup(
    answers: int = 1, store: InMemoryStore | None = None
) -> tuple[InMemoryStore, FakeClient, Clock, FakeProvider]:
    store, client, clock = store or InMemoryStore(), FakeClient(), Clock()
    provider = FakeProvider(answers=[list(ANSWERS) for _ in range(answers)])
    records = [queued(t, i, clock.now - 10, str(i)) for i, t in enumerate(THREADS)]
    await Ledger(store, "bridge").put_items(records)
    for record in records:
        client.threads.waiting(record)
    return store, client, clock, provider


def expected(thread: str | None) -> dict[str, Any]:
    by_model: dict[str, Any] = {}
    costs = [
        DEFAULT_TABLE.cost(a) for a, t in zip(ANSWERS, THREADS, strict=True) if thread in (None, t)
    ]
    add_costs(by_model, [c for c in costs if c is not None])
    return dict(summary("bridge", thread, by_model))


async def thread_usage(store: InMemoryStore, thread: str) -> dict[str, Any]:
    by_model: dict[str, Any] = {}
    add_records(by_model, [s.value for s in await store.asearch(usage_namespace("bridge", thread))])
    return dict(summary("bridge", thread, by_model))


async def assert_counted_once(store: InMemoryStore, state: dict[str, Any]) -> None:
    assert await thread_usage(store, "a") == expected("a")
    assert await thread_usage(store, "b") == expected("b")
    assert state["usage"] == expected(None)
    assert await store.asearch(Ledger(store, "bridge").ns(USAGE_BATCHES)) == []  # folded


async def test_each_result_records_its_cost_per_thread_and_in_the_bridge_totals():
    store, client, clock, provider = await setup()

    state = await tick(store, client, clock, provider).run({}, "run-1")

    await assert_counted_once(store, dict(state))
    totals = state["usage"]
    mini = totals["by_model"]["gpt-4o-mini"]
    assert (mini["items"], mini["input_tokens"], mini["output_tokens"]) == (1, 2000, 300)
    assert mini["normal_usd"] == pytest.approx((2000 * 0.15 + 300 * 0.60) / 1e6)
    assert mini["batch_usd"] == pytest.approx(mini["normal_usd"] / 2)
    assert totals["unpriced_models"] == ["my-own-model"]
    assert totals["items"] == 3  # the string result has no usage, so no cost
    items = {s.key: s.value for s in await store.asearch(Ledger(store, "bridge").ns(ITEMS))}
    assert items["a:i-a0"]["usage"]["model"] == "gpt-4o-mini-2024-07-18"
    assert items["b:i-b3"]["usage"] is None


async def submitted(
    store: InMemoryStore | None = None,
) -> tuple[InMemoryStore, FakeClient, Clock, FakeProvider, BridgeState]:
    """A bridge whose batch is out: its first poll said "still running"."""
    store, client, clock, provider = await setup(store=store)
    provider.answers = [None, list(ANSWERS)]
    state = await tick(store, client, clock, provider).run({}, "run-1")
    assert [h.status for h in await Ledger(store, "bridge").headers()] == ["submitted"]
    return store, client, clock, provider, state


async def finish_killed(
    store: InMemoryStore, client: FakeClient, clock: Clock, hand_on: Any = None
) -> None:
    """`finish` as a killed worker runs it: the process dies in it, nothing catches that."""
    (header,) = await Ledger(store, "bridge").headers()
    interrupted = tick(store, client, clock, FakeProvider())
    if hand_on is not None:
        interrupted.batches.hand_on = hand_on
    envelopes = interpret_poll(list(ANSWERS), len(ANSWERS), header.batch_id)
    assert isinstance(envelopes, list)
    with pytest.raises(Killed):
        await interrupted.batches.finish(header, envelopes)


async def test_a_finish_killed_after_recording_results_counts_nothing_twice():
    store, client, clock, provider, state = await submitted()

    async def killed(records: Any) -> None:
        raise Killed("mid-delivery")

    await finish_killed(store, client, clock, killed)
    clock.now += 60
    state = await tick(store, client, clock, provider).run(state, "run-2")  # finishes again

    assert provider.polled == ["handle-1"] * 2
    await assert_counted_once(store, dict(state))
    clock.now += 60
    state = await tick(store, client, clock, provider).run(state, "run-3")
    assert state["usage"] == expected(None)  # later ticks keep the same totals


class KilledOnce(InMemoryStore):
    """Dies once, in the middle of the first write of results: usage records and the first
    item's result are written, the other items' are not."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    async def abatch(self, ops: Any) -> Any:
        ops = list(ops)
        results = [
            op
            for op in ops
            if isinstance(op, PutOp)
            and op.namespace[-1] == ITEMS
            and (op.value or {}).get("status") == "result"
        ]
        if self.armed and results:
            self.armed = False
            await super().abatch([op for op in ops if op not in results[1:]])
            raise Killed("while recording results")
        return await super().abatch(ops)


async def test_a_finish_killed_midway_through_recording_results_counts_nothing_twice():
    killed = KilledOnce()
    store, client, clock, provider, state = await submitted(killed)
    killed.armed = True

    await finish_killed(store, client, clock)
    statuses = [s.value["status"] for s in await store.asearch(Ledger(store, "bridge").ns(ITEMS))]
    assert sorted(statuses) == ["batched", "batched", "batched", "result"]
    clock.now += 60
    state = await tick(store, client, clock, provider).run(state, "run-2")

    assert provider.submitted == [list(range(4))]
    await assert_counted_once(store, dict(state))


async def test_usage_records_outlive_delivered_items_and_are_purged_after_their_retention():
    store, client, clock, provider = await setup()
    clock.now = time.time()  # records are stamped with the wall clock; the purge compares
    state = await tick(store, client, clock, provider).run({}, "run-1")
    ledger = Ledger(store, "bridge")

    clock.now += 2 * 3600  # delivered records are purged after an hour
    state = await tick(store, client, clock, provider).run(state, "run-2")
    assert await store.asearch(ledger.ns(ITEMS)) == []
    assert await thread_usage(store, "a") == expected("a")
    assert state["usage"] == expected(None)

    clock.now += 31 * 86400
    state = await tick(store, client, clock, provider).run(state, "run-3")
    assert await store.asearch(ledger.ns(USAGE)) == []
    assert state["usage"] == expected(None)  # the bridge's totals stay


def test_script_mode_records_the_same():
    answers = {i: chat("gpt-4o-mini", 10 * (i + 1), i) for i in range(3)}
    bridge = Bridge(
        submit=lambda items: list(items),
        poll=lambda handle: [answers[i] for i in handle],
        max_batch_size=3,
        max_batch_age=0.05,
        poll_interval=0.05,
        name="local_usage",
        prices={"gpt-4o-mini": {"input": 1.0, "output": 2.0}},
    )
    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(bridge.submit, range(3))) == list(answers.values())
    totals = bridge.usage()
    entry = totals["by_model"]["gpt-4o-mini"]
    assert (entry["items"], entry["input_tokens"], entry["output_tokens"]) == (3, 60, 3)
    assert totals["normal_usd"] == pytest.approx((60 * 1.0 + 3 * 2.0) / 1e6)
    assert totals["saved_usd"] == pytest.approx(totals["normal_usd"] / 2)
    assert totals["thread_id"] == "local"
