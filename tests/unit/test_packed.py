"""A flush keeps each queued item as its JSON and parses it back one at a time: written back
exactly, handed to the adapters as a sequence, to user functions as a list as always."""

from __future__ import annotations

import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from langgraph.store.base import Item
from langgraph.store.memory import InMemoryStore

from batch_bridge._packed import Packed, pack, unpack, unpacked
from batch_bridge._store import ITEMS, Ledger
from batch_bridge._views import Mapped
from batch_bridge.bridge.calls import takes_any_sequence

from .fakes import Clock, FakeClient, FakeProvider
from .test_tick import make_tick, queued


def chat(n: int) -> dict[str, Any]:
    content = f"question {n} with ünïcode and a float {n / 7}"
    return {"url": "/v1/chat/completions", "body": {"messages": [{"content": content}]}}


def test_an_item_reads_back_exactly_and_what_orjson_cannot_write_stays_as_it_is():
    items = [chat(3), [1, 2.5, None, True, "x"], {"n": 2**63 - 1, "nested": {"a": [{}]}}]
    for item in items:
        packed = pack(item)
        assert isinstance(packed, Packed)
        assert unpack(packed) == item
    huge = {"n": 2**70}
    assert pack(huge) is huge
    assert pack("text") == "text" and unpack(5) == 5


def test_unpacked_parses_on_each_read_and_slices_to_a_list():
    view = unpacked([pack(chat(n)) for n in range(5)] + ["plain"])

    assert len(view) == 6
    assert view[1] == chat(1) and view[-1] == "plain"
    assert view[1] is not view[1]  # a fresh copy each time: nothing parsed is kept
    assert view[1:3] == [chat(1), chat(2)]
    assert list(view) == [*(chat(n) for n in range(5)), "plain"]


def test_only_a_submit_that_declares_a_sequence_is_given_one():
    def as_list(items: list[Any]) -> None: ...
    def as_sequence(items: Sequence[Any], *, idempotency_key: str) -> None: ...
    def unannotated(items): ...  # type: ignore[no-untyped-def]
    def unresolvable(items: NoSuchType) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self, items: Sequence[Any]) -> None: ...

    assert takes_any_sequence(Unhashable())
    assert takes_any_sequence(as_sequence)
    assert not takes_any_sequence(as_list)
    assert not takes_any_sequence(unannotated)
    assert not takes_any_sequence(unresolvable)


@dataclass
class SequenceProvider(FakeProvider):
    """Declares a sequence, as the provider adapters do; keeps what it was given."""

    given: list[Any] = field(default_factory=list)

    def submit(self, items: Sequence[Any]) -> str:  # type: ignore[override]
        self.given.append(items)
        return super().submit(list(items))


async def flushed(provider: FakeProvider) -> tuple[list[Any], InMemoryStore]:
    store, client, clock = InMemoryStore(), FakeClient(), Clock()
    records = [queued(f"t{n}", chat(n), clock.now - 10) for n in range(4)]
    await Ledger(store, "bridge").put_items(records)
    for record in records:
        client.threads.waiting(record)
    await make_tick(store, client, clock, provider, max_batch_age_s=60.0).run(
        {"flush": True}, "run-1"
    )
    return [r.item for r in records], store


async def test_an_adapter_is_given_a_sequence_and_a_user_function_a_list_of_the_same_items():
    adapter, user = SequenceProvider(answers=[None]), FakeProvider(answers=[None])

    items, store = await flushed(adapter)
    _, _ = await flushed(user)

    (given,) = adapter.given
    assert isinstance(given, Mapped) and list(given) == items
    assert adapter.submitted == user.submitted == [items]
    stored = {s.value["thread_id"]: s.value for s in await Ledger(store, "bridge").search(ITEMS)}
    claimed = [stored[f"t{n}"] for n in range(4)]
    assert [v["status"] for v in claimed] == ["batched"] * 4
    assert [v["item"] for v in claimed] == items  # the claim wrote each item back exactly


class FreshStore(InMemoryStore):
    """Hands out a freshly parsed value on each read, as a database does."""

    async def abatch(self, ops: Any) -> Any:
        found = await super().abatch(ops)
        return [[fresh(i) for i in r] if isinstance(r, list) else fresh(r) for r in found]


def fresh(stored: Any) -> Any:
    if not isinstance(stored, Item):
        return stored
    value = orjson.loads(orjson.dumps(stored.value))
    return Item(
        value=value,
        key=stored.key,
        namespace=stored.namespace,
        created_at=stored.created_at,
        updated_at=stored.updated_at,
    )


async def test_a_queue_read_for_a_flush_holds_a_fraction_of_the_parsed_items():
    ledger = Ledger(FreshStore(), "bridge")
    await ledger.put_items([queued(f"t{n}", chat(n), 0.0) for n in range(1_000)])

    async def held(packed: bool) -> int:
        tracemalloc.start()
        try:
            records = await ledger.items("queued", packed=packed)
            assert len(records) == 1_000
            return tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()

    assert await held(True) < 0.75 * await held(False)
