"""Pure parts of the core: flush rule, poll contract, envelopes, local batching, exports."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import batch_bridge
from batch_bridge import (
    Batcher,
    BatchFailedError,
    BatchItemError,
    Bridge,
    ConfigError,
    Pending,
    WaitOutsideGraphError,
    wait,
)
from batch_bridge._results import failed, interpret_poll, ok, unwrap
from batch_bridge.bridge.flush import next_check_in, plan_flush
from batch_bridge.testing import FakeProvider
from batch_bridge.types import FlushPolicy


def policy(**kw):
    base = {"max_batch_size": 3, "max_batch_age": 10.0, "should_flush": None, "poll_interval": 5.0}
    return FlushPolicy.coerce(**{**base, **kw})


@pytest.mark.parametrize(
    ("n", "age", "force", "expected"),
    [
        (0, 0, False, []),
        (2, 1, False, []),
        (3, 1, False, [3]),
        (7, 1, False, [3, 3]),
        (7, 11, False, [3, 3, 1]),
        (2, 1, True, [2]),
    ],
)
def test_plan_flush_table(n, age, force, expected):
    items = list(range(n))
    chunks = plan_flush(
        items,
        payloads=items,
        oldest_at=100.0 - age,
        last_flushed_at=0,
        now=100.0,
        policy=policy(),
        force=force,
    )
    assert [len(c) for c in chunks] == expected
    assert [x for c in chunks for x in c] == items[: sum(expected)]


def test_custom_rule_gets_items_and_a_naive_last_flushed():
    seen = {}

    def rule(items, last_flushed):
        seen["args"] = (items, datetime.now() - last_flushed)
        return "go" in items

    p = policy(should_flush=rule, max_batch_age=None, max_batch_size=100)
    assert (
        plan_flush(["a"], payloads=["a"], oldest_at=0, last_flushed_at=time.time(), now=1, policy=p)
        == []
    )
    assert plan_flush(
        ["a", "go"], payloads=["a", "go"], oldest_at=0, last_flushed_at=time.time(), now=1, policy=p
    ) == [["a", "go"]]
    assert seen["args"][0] == ["a", "go"] and isinstance(seen["args"][1], timedelta)


def test_next_check_in():
    p = policy()
    assert next_check_in(has_pending=False, oldest_at=None, due_times=[], now=0, policy=p) is None
    assert next_check_in(has_pending=True, oldest_at=0, due_times=[], now=8, policy=p) == 2
    assert next_check_in(has_pending=False, oldest_at=None, due_times=[3], now=1, policy=p) == 2


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"max_batch_age": "soon"}, "max_batch_age"),
        ({"poll_interval": -1}, "poll_interval"),
        ({"should_flush": 3}, "should_flush"),
    ],
)
def test_policy_names_the_bad_field(kw, message):
    with pytest.raises((TypeError, ValueError), match=message):
        policy(**kw)


def test_bridge_names_must_be_store_safe():
    with pytest.raises(ConfigError, match="without '\\.'"):
        Bridge(submit=lambda items: 1, poll=lambda b: None, name="my.bridge")


def test_poll_contract():
    assert interpret_poll(None, 2, "b") is None
    assert interpret_poll(Pending("h2"), 2, "b") == Pending("h2")
    assert [e["ok"] for e in interpret_poll([1, ValueError("no")], 2, "b")] == [True, False]
    for bad, text in [
        ([1], "1 results for 2"),
        ({"a": 1}, "returned dict"),
        (ValueError("boom"), "boom"),
    ]:
        envelopes = interpret_poll(bad, 2, "b")
        assert len(envelopes) == 2
        with pytest.raises(BatchFailedError, match=text):
            unwrap(envelopes[0])


def test_envelopes_round_trip_values_and_errors():
    assert unwrap(ok({"x": [1, 2]})) == {"x": [1, 2]}
    with pytest.raises(BatchItemError, match="ValueError: bad prompt") as info:
        unwrap(failed(ValueError("bad prompt")))
    assert type(info.value) is BatchItemError
    not_json = ok(object())
    with pytest.raises(BatchItemError, match="could not be sent back"):
        unwrap(not_json)


def test_an_envelope_holds_what_the_caller_will_get_from_json():
    """Plain JSON (an adapter's decoded row) is kept as is, not copied; anything else is
    what its JSON round trip gives."""
    row = {"choices": [{"message": {"content": "hi"}}], "usage": {"total_tokens": 3}}
    assert ok(row)["value"] is row
    assert ok({"pair": (1, 2), 7: "seven"})["value"] == {"pair": [1, 2], "7": "seven"}
    with pytest.raises(BatchItemError, match="NaN or infinity"):
        unwrap(ok({"score": float("nan")}))


async def test_wait_outside_a_graph_says_where_to_call_it():
    with pytest.raises(WaitOutsideGraphError, match="inside a node"):
        await wait("x")


def make_batcher(**kw):
    fake = FakeProvider(lambda i: ValueError(f"bad {i}") if i.startswith("bad") else f"done {i}")
    defaults = {"max_batch_size": 4, "max_batch_age": 0.3, "poll_interval": 0.05}
    return Batcher(fake.submit, fake.poll, **{**defaults, **kw}), fake


def test_batcher_submit_outside_a_graph_batches_concurrent_threads():
    batcher, fake = make_batcher()
    results: dict[int, str] = {}

    def call(i):
        results[i] = batcher.submit(f"item{i}")

    threads = [threading.Thread(target=call, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert results == {i: f"done item{i}" for i in range(10)}
    assert sorted(len(b) for b in fake.batches.values()) == [2, 4, 4]


async def test_batcher_asubmit_outside_a_graph_and_item_errors():
    batcher, fake = make_batcher()
    got = await asyncio.gather(
        batcher.asubmit("a"), batcher.asubmit("bad b"), return_exceptions=True
    )
    assert got[0] == "done a"
    assert isinstance(got[1], BatchItemError) and "bad b" in str(got[1])
    assert list(fake.batches.values()) == [["a", "bad b"]]


def test_batcher_is_registrable_as_a_graph():
    batcher, _ = make_batcher(name="my_custom_batcher")
    graph = batcher()
    assert graph is batcher()
    assert "tick" in graph.nodes


def test_exports_are_sorted_complete_and_documented():
    assert batch_bridge.__all__ == sorted(batch_bridge.__all__)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in batch_bridge.__all__:
        assert getattr(batch_bridge, name).__module__ == "batch_bridge" or name.islower()
        assert f"`{name}" in readme, f"{name} is exported but the README never names it"


@pytest.mark.parametrize(
    ("marker", "now", "wake"),
    [
        (None, 100.0, True),
        ({"state": "idle", "at": 90.0}, 100.0, True),
        ({"state": "scheduled", "next_at": 101.0, "at": 99.0}, 100.0, False),
        ({"state": "scheduled", "next_at": 10.0, "at": 5.0}, 100.0, True),
        ({"state": "running", "at": 99.0}, 100.0, False),
        ({"state": "running", "at": 99.0}, 99.0 + 601, True),
    ],
)
def test_callers_wake_the_bridge_only_when_no_tick_is_sure_to_read_the_queue(marker, now, wake):
    from batch_bridge._marker import needs_wake
    from batch_bridge._trust import sign

    assert needs_wake(None if marker is None else sign(marker), now) is wake
    if marker is not None and marker["state"] != "idle":
        assert needs_wake(marker, now) is True  # unsigned: a forged marker is ignored


async def test_wait_in_a_graph_without_a_server_says_what_is_missing():
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import START, StateGraph

    async def node(state: dict) -> dict:
        return {"result": await wait(state["item"])}

    graph = StateGraph(dict).add_node("node", node).add_edge(START, "node")
    compiled = graph.compile(checkpointer=InMemorySaver())
    with pytest.raises(ConfigError, match="no store"):
        await compiled.ainvoke({"item": "x"}, {"configurable": {"thread_id": "t"}})
