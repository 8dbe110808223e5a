"""`dedupe=True` over injected parts: identical items of one flush cost one provider request,
each caller gets its own copy once, however often a killed tick's form, submit or finish
runs again."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.store.base import PutOp
from langgraph.store.memory import InMemoryStore

from batch_bridge import Bridge
from batch_bridge._config import Reliability
from batch_bridge._results import interpret_poll
from batch_bridge._store import ITEMS, MEMBERS, Ledger
from batch_bridge._usage import usage_namespace
from batch_bridge.bridge.calls import Provider
from batch_bridge.bridge.dedupe import group, kept, leaders, slots_of
from batch_bridge.bridge.tick import Tick
from batch_bridge.types import FlushPolicy

from .fakes import Clock, FakeClient, FakeProvider
from .test_tick import queued

ITEMS_IN = [{"q": "same"}, {"q": "other"}, {"q": "same"}, {"q": "same"}]
THREADS = ["a", "b", "c", "d"]


class Killed(BaseException):
    """The worker dies here: not an error the tick catches and retries."""


def tick(
    store: InMemoryStore, client: FakeClient, clock: Clock, provider: Any, dedupe: bool = True
) -> Tick:
    keyed = isinstance(provider, KeyedProvider)
    return Tick(
        "bridge",
        Provider(provider.submit, provider.poll, provider.cancel, keyed, provider.release),
        FlushPolicy(max_batch_size=10, max_batch_age_s=5.0, dedupe=dedupe),
        Reliability(),
        store=store,
        client=client,
        client_for=client.client_for,
        clock=clock,
    )


async def setup(
    store: InMemoryStore | None = None, provider: Any = None
) -> tuple[InMemoryStore, FakeClient, Clock, Any]:
    store, client, clock = store or InMemoryStore(), FakeClient(), Clock()
    pairs = enumerate(zip(THREADS, ITEMS_IN, strict=True))
    records = [queued(t, item, clock.now - 10 + i) for i, (t, item) in pairs]
    await Ledger(store, "bridge").put_items(records)
    for record in records:
        client.threads.waiting(record)
    return store, client, clock, provider or FakeProvider()


def answers(client: FakeClient) -> dict[str, Any]:
    """Each caller thread's resumed value; fails if a thread was resumed twice."""
    threads = [thread for thread, _, _ in client.runs.resumes]
    assert sorted(threads) == THREADS
    return {
        thread: next(iter(resume.values()))["value"] for thread, _, resume in client.runs.resumes
    }


EXPECTED = {t: f"done {item}" for t, item in zip(THREADS, ITEMS_IN, strict=True)}


async def test_identical_items_go_to_the_provider_once_and_every_caller_gets_the_answer():
    store, client, clock, provider = await setup()

    state = await tick(store, client, clock, provider).run({}, "run-1")

    assert provider.submitted == [[{"q": "same"}, {"q": "other"}]]
    assert answers(client) == EXPECTED
    assert state["items_submitted"] == 2 and state["items_deduplicated"] == 2
    assert state["items_completed"] == 4 and state["items_delivered"] == 4


async def test_without_dedupe_every_item_is_a_request():
    store, client, clock, provider = await setup()

    state = await tick(store, client, clock, provider, dedupe=False).run({}, "run-1")

    assert provider.submitted == [ITEMS_IN]
    assert answers(client) == EXPECTED
    assert state["items_submitted"] == 4 and state["items_deduplicated"] == 0


async def test_the_provider_bills_the_shared_request_once():
    store, client, clock, _ = await setup()
    chat = {
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "usage": {"prompt_tokens": 1000, "completion_tokens": 100},
    }
    provider = FakeProvider(answers=[[chat, "no usage"]])

    state = await tick(store, client, clock, provider).run({}, "run-1")

    assert state["usage"]["items"] == 1  # the leader's; its riders were not billed
    assert [len(await store.asearch(usage_namespace("bridge", t))) for t in THREADS] == [
        1,
        0,
        0,
        0,
    ]
    values = [next(iter(r.values()))["value"] for _, _, r in client.runs.resumes]
    assert values.count(chat) == 3


async def test_a_finish_run_twice_resumes_each_caller_once():
    store, client, clock, provider = await setup()
    provider.answers = [None]  # still running at the first poll
    state = await tick(store, client, clock, provider).run({}, "run-1")
    (header,) = await Ledger(store, "bridge").headers()

    async def killed(records: Any) -> None:
        raise Killed("mid-delivery")

    interrupted = tick(store, client, clock, FakeProvider())
    interrupted.batches.hand_on = killed
    envelopes = interpret_poll(["done first", "done second"], 2, header.batch_id)
    assert isinstance(envelopes, list)
    with pytest.raises(Killed):
        await interrupted.batches.finish(header, envelopes)
    clock.now += 60
    state = await tick(store, client, clock, provider).run(state, "run-2")  # finishes again

    assert answers(client) == {t: "done first" if t != "b" else "done second" for t in THREADS}
    assert len(provider.submitted) == 1
    assert state["items_delivered"] == 4  # recorded by the killed run, delivered by this one


class KilledClaiming(InMemoryStore):
    """Dies once while claiming a new batch's items: the member list and the first item's
    claim are written, the other items are still queued."""

    armed = True

    async def abatch(self, ops: Any) -> Any:
        ops = list(ops)
        claims = [
            op
            for op in ops
            if isinstance(op, PutOp)
            and op.namespace[-1] == ITEMS
            and (op.value or {}).get("status") == "batched"
        ]
        if self.armed and claims:
            self.armed = False
            await super().abatch([op for op in ops if op not in claims[1:]])
            raise Killed("while claiming")
        return await super().abatch(ops)


async def test_a_flush_killed_while_forming_submits_once_with_every_rider():
    store, client, clock, provider = await setup(KilledClaiming())
    with pytest.raises(Killed):
        await tick(store, client, clock, provider).run({}, "run-1")
    assert provider.submitted == []
    assert len(await store.asearch(Ledger(store, "bridge").ns(MEMBERS))) == 1

    await tick(store, client, clock, provider).run({}, "run-2")

    assert provider.submitted == [[{"q": "same"}, {"q": "other"}]]
    assert answers(client) == EXPECTED


class KeyedProvider(FakeProvider):
    """Takes the bridge's idempotency key, and dies once right after the provider took the
    batch (before the bridge could record its handle)."""

    die = True

    def submit(self, items: list[Any], idempotency_key: str = "") -> str:  # type: ignore[override]
        for n, earlier in enumerate(self.submitted):
            if earlier[0] == idempotency_key:
                return f"handle-{n + 1}"
        self.submitted.append([idempotency_key, *items])
        if self.die:
            self.die = False
            raise Killed("after the provider took it")
        return f"handle-{len(self.submitted)}"

    def poll(self, handle: str) -> Any:
        items = self.submitted[int(handle.split("-")[1]) - 1][1:]
        return [f"done {item}" for item in items]


async def test_a_submit_killed_after_the_provider_took_it_is_submitted_once():
    store, client, clock, provider = await setup(provider=KeyedProvider())
    with pytest.raises(Killed):
        await tick(store, client, clock, provider).run({}, "run-1")

    await tick(store, client, clock, provider).run({}, "run-2")

    assert [batch[1:] for batch in provider.submitted] == [[{"q": "same"}, {"q": "other"}]]
    assert answers(client) == EXPECTED


def test_slots_group_identical_items_and_survive_dropped_keys():
    records = [queued(f"t{i}", item, float(i)) for i, item in enumerate("abaab")]
    assert slots_of(records) == [0, 1, 0, 0, 1]
    assert leaders([0, 1, 0, 0, 1]) == [0, 1]
    assert kept([0, 1, 0, 2, 1], [False, True, True, True, True]) == [0, 1, 2, 0]
    chunks = group(records, 1)
    assert [[r.item for r in chunk] for chunk in chunks] == [["a", "a", "a"], ["b", "b"]]


def test_dedupe_is_off_by_default_and_must_be_a_bool():
    def submit(items: list[Any]) -> str:
        return "h"

    def poll(handle: str) -> None:
        return None

    assert Bridge(submit=submit, poll=poll).policy.dedupe is False
    assert Bridge(submit=submit, poll=poll, dedupe=True).policy.dedupe is True
    with pytest.raises(TypeError, match="dedupe"):
        Bridge(submit=submit, poll=poll, dedupe="yes")  # type: ignore[arg-type]


def test_script_mode_answers_identical_items_once_each():
    submitted: list[list[Any]] = []

    def submit(items: list[Any]) -> int:
        submitted.append(list(items))
        return len(submitted) - 1

    def poll(handle: int) -> list[Any]:
        return [{"echo": item} for item in submitted[handle]]

    bridge = Bridge(
        submit=submit, poll=poll, max_batch_size=4, dedupe=True, name="dedupe_local", first_poll=0
    )
    futures = [bridge._local().submit(item) for item in ITEMS_IN]
    results = [f.result(timeout=30) for f in futures]
    bridge._local().close()

    assert submitted == [[{"q": "same"}, {"q": "other"}]]
    assert results == [{"echo": item} for item in ITEMS_IN]
    assert results[0] is not results[2]
