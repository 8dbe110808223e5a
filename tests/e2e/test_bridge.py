"""The core loop on a real `langgraph dev`: callers interrupt, the bridge batches and resumes."""

from __future__ import annotations

import time

import pytest
from langgraph_sdk import get_client

from batch_bridge import PlatformError, bridge_thread_id, delete_crons, ensure_cron, result
from batch_bridge._store import digest
from tests.e2e.helpers import bridge_state, finished, interrupted, start, until


def results_of(threads):
    return [t["values"]["result"] for t in threads]


async def error_of(client, thread_id):
    runs = await client.runs.list(thread_id, limit=10)
    errored = [r for r in runs if r["status"] == "error"]
    assert errored, runs
    joined = await client.runs.join(thread_id, errored[0]["run_id"])
    return joined["__error__"]


async def test_many_concurrent_callers_each_get_their_own_result(dev_server):
    client = get_client(url=dev_server.url)
    n = 40
    started = time.monotonic()
    threads = await start(client, "agent", [{"item": f"question {i}"} for i in range(n)])
    done = await finished(client, threads)
    wall = time.monotonic() - started
    assert [t["status"] for t in done] == ["idle"] * n, dev_server.log()[-3000:]
    results = results_of(done)
    assert [r["echo"] for r in results] == [f"question {i}" for i in range(n)]
    batches = {r["batch_id"] for r in results}
    assert len(batches) < n
    assert all(r["batch_size"] <= 10 for r in results)
    print(f"\n{n} callers, {len(batches)} batches, {wall:.1f}s wall")


async def test_size_flush_makes_full_batches(dev_server):
    client = get_client(url=dev_server.url)
    threads = await start(
        client, "agent", [{"item": f"s{i}", "bridge": "bridge_size"} for i in range(6)]
    )
    done = await finished(client, threads)
    results = results_of(done)
    assert [r["echo"] for r in results] == [f"s{i}" for i in range(6)]
    assert {r["batch_size"] for r in results} == {3}
    assert len({r["batch_id"] for r in results}) == 2


async def test_a_queue_too_large_to_read_each_pass_still_flushes_by_size(dev_server):
    """Without the store's count probe these items would never flush (no age rule)."""
    client = get_client(url=dev_server.url)
    threads = await start(
        client, "agent", [{"item": f"z{i}", "bridge": "bridge_big_size"} for i in range(8)]
    )
    done = await finished(client, threads)
    results = results_of(done)
    assert [r["echo"] for r in results] == [f"z{i}" for i in range(8)]
    assert {r["batch_size"] for r in results} == {4}
    assert len({r["batch_id"] for r in results}) == 2


async def test_a_queue_too_large_to_read_each_pass_flushes_late_arrivals_by_age(dev_server):
    """Items queued after the bridge's last read go with the oldest one it saw."""
    client = get_client(url=dev_server.url)
    first = await start(client, "agent", [{"item": "y0", "bridge": "bridge_big_age"}])
    await interrupted(client, first)

    async def seen():
        return (await bridge_state(client, "bridge_big_age")).get("pending", 0) >= 1

    await until(seen)
    later = await start(
        client, "agent", [{"item": f"y{i}", "bridge": "bridge_big_age"} for i in range(1, 4)]
    )
    done = await finished(client, first + later)
    results = results_of(done)
    assert [r["echo"] for r in results] == [f"y{i}" for i in range(4)]
    assert {r["batch_size"] for r in results} == {4}


async def test_age_flush_sends_a_partial_batch_once_old_enough(dev_server):
    client = get_client(url=dev_server.url)
    started = time.time()
    threads = await start(
        client, "agent", [{"item": f"a{i}", "bridge": "bridge_age"} for i in range(4)]
    )
    done = await finished(client, threads)
    results = results_of(done)
    assert [r["echo"] for r in results] == [f"a{i}" for i in range(4)]
    assert len({r["batch_id"] for r in results}) == 1
    assert results[0]["batch_size"] == 4
    assert time.time() - started >= 3


async def test_custom_rule_holds_items_until_it_says_flush(dev_server):
    client = get_client(url=dev_server.url)
    held = await start(
        client, "agent", [{"item": f"c{i}", "bridge": "bridge_custom"} for i in range(3)]
    )
    await interrupted(client, held)

    async def ticked_with_three_pending():
        state = await bridge_state(client, "bridge_custom")
        return state.get("pending") == 3 and state.get("ticks", 0) >= 2

    await until(ticked_with_three_pending)
    waiting = await client.threads.get_state(held[0])
    (question,) = waiting["interrupts"]
    assert question["value"] == {
        "kind": "batch_bridge.wait",
        "batcher": "bridge_custom",
        "digest": digest("c0"),
        "ref": f"{held[0]}:{question['id']}",
    }  # the item itself is in the ledger only: a large request is not stored twice
    assert all(t["status"] == "interrupted" for t in [await client.threads.get(h) for h in held])
    release = await start(client, "agent", [{"item": "go", "bridge": "bridge_custom"}])
    done = await finished(client, held + release)
    results = results_of(done)
    assert [r["echo"] for r in results] == ["c0", "c1", "c2", "go"]
    assert len({r["batch_id"] for r in results}) == 1


async def test_cron_flushes_what_no_rule_would(dev_server):
    client = get_client(url=dev_server.url)
    threads = await start(
        client, "agent", [{"item": f"k{i}", "bridge": "bridge_cron"} for i in range(3)]
    )
    await interrupted(client, threads)

    async def three_pending():
        return (await bridge_state(client, "bridge_cron")).get("pending") == 3

    await until(three_pending)
    cron_id = await ensure_cron(client, bridge="bridge_cron", schedule="* * * * * */2", flush=True)
    try:
        again = await ensure_cron(
            client, bridge="bridge_cron", schedule="* * * * * */2", flush=True
        )
        assert again == cron_id
        done = await finished(client, threads, timeout=60)
    finally:
        crons = await client.crons.search(thread_id=bridge_thread_id("bridge_cron"), limit=100)
        assert [c["schedule"] for c in crons].count("* * * * * */2") == 1
        await delete_crons(client, bridge="bridge_cron")
    results = results_of(done)
    assert [r["echo"] for r in results] == ["k0", "k1", "k2"]
    assert len({r["batch_id"] for r in results}) == 1


async def test_a_failed_item_raises_in_its_own_caller_only(dev_server):
    client = get_client(url=dev_server.url)
    inputs = [
        {"item": "fine 1"},
        {"item": {"fail": "prompt too long: 9000 tokens"}},
        {"item": "fine 2"},
    ]
    threads = await start(client, "agent", inputs)
    done = await finished(client, threads)
    assert [t["status"] for t in done] == ["idle", "error", "idle"]
    assert done[0]["values"]["result"]["echo"] == "fine 1"
    assert done[2]["values"]["result"]["echo"] == "fine 2"
    error = await error_of(client, threads[1])
    assert error["error"] == "BatchItemError"
    assert "prompt too long: 9000 tokens" in error["message"]


async def test_a_failed_batch_fails_every_caller_in_it(dev_server):
    client = get_client(url=dev_server.url)
    inputs = [{"item": {"n": i, "fail_batch": i == 1}, "bridge": "bridge_size"} for i in range(3)]
    threads = await start(client, "agent", inputs)
    done = await finished(client, threads)
    assert [t["status"] for t in done] == ["error"] * 3
    for thread_id in threads:
        error = await error_of(client, thread_id)
        assert error["error"] == "BatchFailedError"
        assert "provider rejected batch" in error["message"]


async def test_a_batch_that_cannot_be_submitted_is_retried_then_failed_to_its_callers(dev_server):
    client = get_client(url=dev_server.url)
    inputs = [
        {"item": {"n": i, "reject_submit": i == 0}, "bridge": "bridge_size"} for i in range(3)
    ]
    threads = await start(client, "agent", inputs)
    done = await finished(client, threads)
    assert [t["status"] for t in done] == ["error"] * 3
    error = await error_of(client, threads[2])
    assert error["error"] == "BatchFailedError"
    assert "could not be submitted after 3 attempt(s)" in error["message"]
    assert "provider unreachable" in error["message"]


async def test_a_result_list_of_the_wrong_length_is_a_clear_batch_failure(dev_server):
    client = get_client(url=dev_server.url)
    inputs = [{"item": {"n": i, "wrong_length": True}, "bridge": "bridge_size"} for i in range(3)]
    threads = await start(client, "agent", inputs)
    await finished(client, threads)
    error = await error_of(client, threads[0])
    assert error["error"] == "BatchFailedError"
    assert "returned 4 results for 3 items" in error["message"]


async def test_parallel_and_fanout_waits_in_one_thread_each_get_their_own(dev_server):
    client = get_client(url=dev_server.url)
    before = (await bridge_state(client, "bridge")).get("items_submitted", 0)
    (par,) = await start(client, "parallel", [{"items": ["left", "right"]}])
    (fan,) = await start(client, "fanout", [{"items": [f"f{i}" for i in range(5)]}])
    (seq,) = await start(client, "sequential", [{"items": ["first", "second"]}])
    done = await finished(client, [par, fan, seq])
    assert [t["status"] for t in done] == ["idle"] * 3
    assert sorted(r["echo"] for r in done[0]["values"]["results"]) == ["left", "right"]
    assert sorted(r["echo"] for r in done[1]["values"]["results"]) == [f"f{i}" for i in range(5)]
    assert [r["echo"] for r in done[2]["values"]["results"]] == ["first", "second"]
    after = (await bridge_state(client, "bridge")).get("items_submitted", 0)
    assert after - before == 2 + 5 + 2, "a re-executed node enqueued its item twice"


async def test_batcher_submit_in_a_sync_node_and_asubmit_in_an_async_node(dev_server):
    client = get_client(url=dev_server.url)
    sync_threads = await start(client, "sync_agent", [{"item": f"sync {i}"} for i in range(5)])
    async_threads = await start(
        client, "async_batcher_agent", [{"item": f"async {i}"} for i in range(3)]
    )
    done = await finished(client, sync_threads + async_threads)
    assert [t["status"] for t in done] == ["idle"] * 8, dev_server.log()[-3000:]
    expected = [f"sync {i}" for i in range(5)] + [f"async {i}" for i in range(3)]
    assert [r["echo"] for r in results_of(done)] == expected


async def test_bad_input_is_a_clear_error_at_the_caller(dev_server):
    client = get_client(url=dev_server.url)
    no_bridge, bad = await start(client, "agent", [{"item": "x", "bridge": "nope"}]) + await start(
        client, "bad", [{}]
    )
    await finished(client, [no_bridge, bad])
    error = await error_of(client, no_bridge)
    assert error["error"] == "ConfigError"
    assert "No bridge graph named 'nope'" in error["message"]
    error = await error_of(client, bad)
    assert error["error"] == "TypeError"
    assert "JSON-serialisable" in error["message"]
    # the bridge still serves everyone else
    (ok,) = await start(client, "agent", [{"item": "after bad input"}])
    (thread,) = await finished(client, [ok])
    assert thread["values"]["result"]["echo"] == "after bad input"


async def test_bridge_state_is_a_small_readable_summary(dev_server):
    client = get_client(url=dev_server.url)
    (thread_id,) = await start(client, "agent", [{"item": "summary"}])
    await finished(client, [thread_id])
    state = await bridge_state(client, "bridge")
    assert state["items_completed"] >= 1
    assert set(state) >= {"pending", "in_flight", "batches_submitted", "items_failed", "ticks"}
    assert "summary" not in str(state), "items must not be kept in the bridge's checkpoint"


async def test_an_item_whose_thread_was_deleted_is_never_sent_and_is_counted(dev_server):
    client = get_client(url=dev_server.url)
    before = (await bridge_state(client, "bridge_age")).get("items_withdrawn", 0)
    (thread,) = await start(client, "agent", [{"item": "orphan", "bridge": "bridge_age"}])
    await interrupted(client, [thread])
    await client.threads.delete(thread)

    async def counted() -> bool:
        state = await bridge_state(client, "bridge_age")
        return state.get("items_withdrawn", 0) > before and state.get("pending") == 0

    await until(counted, timeout=60)


async def test_result_waits_for_the_answer_and_names_a_failure(dev_server):
    client = get_client(url=dev_server.url)
    ok, bad = await start(client, "agent", [{"item": "answer me"}, {"item": {"fail": "nope"}}])
    values = await result(client, ok, timeout_s=60)
    assert values["result"]["echo"] == "answer me"
    with pytest.raises(PlatformError, match="BatchItemError: nope"):
        await result(client, bad, timeout_s=60)
