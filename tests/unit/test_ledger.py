"""The ledger's records and rules, without a server: parsing, storability, put-if-absent."""

from __future__ import annotations

import asyncio

import pytest
from langgraph.store.base.batch import AsyncBatchedBaseStore
from langgraph.store.memory import InMemoryStore

from batch_bridge import ConfigError, _client
from batch_bridge._config import Reliability
from batch_bridge._store import (
    ALIASES,
    BATCHES,
    HANDLES,
    ITEMS,
    QUARANTINE,
    BatchHeader,
    ItemRecord,
    Ledger,
    RecordError,
    alias_value,
    check_storable,
    digest,
)
from batch_bridge._trust import sign, unsigned
from batch_bridge._wait import _enqueue_steps, _plan
from batch_bridge.bridge.calls import accepts_idempotency_key
from batch_bridge.bridge.upkeep import Upkeep


def record(**kw) -> ItemRecord:
    base = {
        "thread_id": "t1",
        "interrupt_id": "i1",
        "assistant_id": "a",
        "graph_id": "agent",
        "resume_url": None,
        "item": {"q": 1},
        "digest": digest({"q": 1}),
        "created_at": 1.0,
    }
    return ItemRecord(**{**base, **kw})


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (float("nan"), "$"),
        ({"a": [1, float("inf")]}, "$.a[1]"),
        ({"a": "x\x00y"}, "$.a"),
        ({"big": 2**64}, "$.big"),
        ([-(2**63) - 1], "$[0]"),
        ({"o": object()}, "$.o"),
    ],
)
def test_unstorable_values_are_named_by_path(value, where):
    with pytest.raises(ValueError, match=r"at " + where.replace("$", r"\$").replace("[", r"\[")):
        check_storable(value, "item")


def test_storable_edges_pass():
    check_storable({"a": [2**63 - 1, -(2**63), 1.5, True, None, "é"]}, "item")


def test_digest_ignores_key_order():
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1}) != digest({"a": 2, "b": 1})


def test_records_round_trip_and_refuse_what_the_bridge_never_writes():
    r = record(status="result", batch_id="bb_1", result={"kind": "x", "ok": True, "value": 1})
    assert ItemRecord.from_value(r.key, r.to_value()) == r
    good = unsigned(r.to_value())
    bad = [
        ("t1:i1", {**good, "status": "delivering-now"}),
        ("t1:i1", {k: v for k, v in good.items() if k != "created_at"}),
        ("t1:i1", {**good, "thread_id": 5}),
        ("other:key", good),
        ("t1:i1", {**good, "result": None}),
        ("t1:i1", {**good, "kind": "something"}),
    ]
    for key, value in bad:  # well signed, badly shaped
        with pytest.raises(RecordError):
            ItemRecord.from_value(key, sign(value))
    for forged in (good, {**r.to_value(), "result": {"ok": True, "value": "forged"}}, "x"):
        with pytest.raises(RecordError, match=r"signature|not a record"):
            ItemRecord.from_value("t1:i1", forged)
    header = BatchHeader(batch_id="bb_1", status="submitted", size=3, created_at=1.0)
    assert BatchHeader.from_value("bb_1", header.to_value()) == header
    with pytest.raises(RecordError):
        BatchHeader.from_value("bb_2", header.to_value())


async def test_malformed_records_are_quarantined_not_fatal():
    ledger = Ledger(InMemoryStore(), "bridge")
    good = record(thread_id="t2")
    await ledger.put_items([good])
    malformed = sign({"kind": "batch_bridge.item", "status": "queued"})
    await ledger.store.aput(ledger.ns(ITEMS), "t3:i3", malformed)
    await ledger.store.aput(ledger.ns(ITEMS), "t4:i4", unsigned(record(thread_id="t4").to_value()))
    queued = await ledger.items("queued")
    assert [r.key for r in queued] == [good.key]
    assert ledger.quarantined == 2
    kept = {
        q.value["key"]: q.value["reason"] for q in await ledger.store.asearch(ledger.ns(QUARANTINE))
    }
    assert "missing field" in kept["t3:i3"] and "signature" in kept["t4:i4"]
    assert await ledger.store.aget(ledger.ns(ITEMS), "t3:i3") is None


def run_steps(new: ItemRecord, store: dict) -> str:
    """Drive the enqueue protocol against a dict, as the async and sync callers do."""
    steps = _enqueue_steps(new, "bridge")
    answer = None
    try:
        while True:
            step = steps.send(answer)
            if step[0] == "get":
                answer = [store.get(key) for key in step[1]]
            else:
                for ns, key, value in step[1]:
                    store[(ns, key)] = value
                answer = None
    except StopIteration as done:
        return done.value


def test_put_if_absent_rule():
    new = record()
    for status in ("queued", "batched", "result", "delivered"):
        extra = {"batch_id": "bb"} if status != "queued" else {}
        if status == "result":
            extra["result"] = {"ok": True}
        assert _plan(record(status=status, **extra).to_value(), new.key, new) is None
    changed = record(item={"q": 2}, digest=digest({"q": 2}))
    assert _plan(record().to_value(), new.key, changed) is changed  # still queued: refresh
    with pytest.raises(ConfigError, match="same item"):
        _plan(record(status="batched", batch_id="bb").to_value(), new.key, changed)
    lost = record(status="undeliverable", batch_id="bb", result={"ok": True}, attempts=3)
    armed = _plan(lost.to_value(), new.key, new)
    assert armed is not None and armed.status == "result" and armed.attempts == 0


def test_a_retried_run_with_a_new_interrupt_id_finds_the_first_record():
    store: dict = {}
    first = record(alias="same-call")
    assert run_steps(first, store) == first.key
    assert run_steps(first, store) == first.key and len(store) == 2  # a replay writes nothing
    retried = record(interrupt_id="i2", alias="same-call")
    assert run_steps(retried, store) == first.key  # the interrupt carries the first ref
    assert len(store) == 2
    other = record(interrupt_id="i3", alias="another-call")
    assert run_steps(other, store) == other.key and len(store) == 4


class BatchingStore(AsyncBatchedBaseStore):
    """The platform's kind of store: ops started together are drained as one batch."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = InMemoryStore()
        self.batches: list[list[str]] = []

    async def abatch(self, ops):
        ops = list(ops)
        self.batches.append([op.key for op in ops])
        return await self.inner.abatch(ops)


class YieldingStore(InMemoryStore):
    """A store without a batching queue whose writes interleave when run concurrently."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[str] = []

    async def abatch(self, ops):
        ops = list(ops)
        for _ in range(3 if ops[0].key == "alias" else 0):
            await asyncio.sleep(0)
        self.written += [op.key for op in ops]
        return self.batch(ops)


async def test_a_caller_never_makes_its_item_durable_before_its_alias(monkeypatch):
    """The platform's stores get both writes in one batch (one statement, atomic on
    PostgreSQL), alias first; any other store gets them one after the other."""
    entries = [(("bridge", "aliases"), "alias", {"v": 1}), (("bridge", "items"), "item", {"v": 2})]
    batching = BatchingStore()
    monkeypatch.setattr(_client, "get_store", lambda: batching)
    await _client.BridgeQueue("bridge", None).put_many(entries)
    assert batching.batches == [["alias", "item"]]
    plain = YieldingStore()
    monkeypatch.setattr(_client, "get_store", lambda: plain)
    await _client.BridgeQueue("bridge", None).put_many(entries)
    assert plain.written == ["alias", "item"]


def test_idempotency_key_is_detected_from_the_signature():
    def plain(items):
        return None

    def keyed(items, *, idempotency_key=None):
        return None

    def loose(items, **kwargs):
        return None

    assert not accepts_idempotency_key(plain)
    assert accepts_idempotency_key(keyed) and accepts_idempotency_key(loose)


async def test_handles_are_stored_apart_and_written_only_when_they_change():
    store = InMemoryStore()
    ledger = Ledger(store, "bridge")
    handle = {"parts": [{"ids": list(range(5000))}]}
    header = BatchHeader(batch_id="bb_1", status="submitted", size=5000, created_at=1.0)
    header.handle = handle
    await ledger.put_header(header)
    first = await store.aget(ledger.ns(HANDLES), "bb_1")
    header.next_poll_at = 5.0  # a poll that changed nothing but the schedule
    await ledger.put_header(header)
    assert (await store.aget(ledger.ns(HANDLES), "bb_1")).updated_at == first.updated_at
    stored_header = await store.aget(ledger.ns(BATCHES), "bb_1")
    assert "handle" not in stored_header.value and len(str(stored_header.value)) < 1000

    (loaded,) = await ledger.headers()
    assert loaded.handle is None
    await ledger.load_handle(loaded)
    assert loaded.handle == handle
    loaded.handle = {"parts": []}  # the provider moved on: written again
    await ledger.put_header(loaded)
    assert (await store.aget(ledger.ns(HANDLES), "bb_1")).value != first.value

    await store.aput(ledger.ns(HANDLES), "bb_1", {"kind": "batch_bridge.handle", "handle": {}})
    (forged,) = await ledger.headers()
    await ledger.load_handle(forged)
    assert forged.handle is None and ledger.quarantined == 1
    await ledger.delete_batch("bb_1")
    assert await store.aget(ledger.ns(HANDLES), "bb_1") is None


async def test_purge_forgets_only_delivered_records_past_retention():
    store = InMemoryStore()
    ledger = Ledger(store, "bridge")
    upkeep = Upkeep(ledger, client=None, reliability=Reliability(retention_s=60))
    now = 10_000.0
    cases = {
        "old": ("delivered", now - 3600),
        "fresh": ("delivered", now - 10),
        "queued": ("queued", now - 3600),
        "undeliverable": ("undeliverable", now - 3600),
    }
    for name, (status, updated_at) in cases.items():
        kept = record(thread_id=name, status=status, alias=f"alias-{name}")
        kept.updated_at = updated_at
        await store.aput(ledger.ns(ITEMS), kept.key, kept.to_value(), index=False)
        await store.aput(ledger.ns(ALIASES), kept.alias, alias_value(kept.key), index=False)

    await upkeep.purge(now)

    items = {stored.key.split(":")[0] for stored in await ledger.search(ITEMS)}
    aliases = {stored.key for stored in await ledger.search(ALIASES)}
    assert items == {"fresh", "queued", "undeliverable"}
    assert aliases == {"alias-fresh", "alias-queued", "alias-undeliverable"}
