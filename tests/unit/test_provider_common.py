"""The rules the provider adapters share (providers/_rows), and the clean-up of result
files and batches once their results were returned, against the emulator over HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from batch_bridge.providers import _rows as _common
from batch_bridge.providers.anthropic import AnthropicBatch
from batch_bridge.providers.openai import OpenAIBatch
from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.types import Pending
from tests.unit.adapter_helpers import chat, finish


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(in_progress_s=0.05), port=0) as running:
        yield running


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


async def test_large_result_files_are_decoded_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[int] = []
    decode = _common.FileRows.of

    def watched(data: bytes) -> _common.FileRows:
        threads.append(threading.get_ident())
        return decode(data)

    monkeypatch.setattr(_common.FileRows, "of", watched)
    small = jsonl([{"custom_id": "a-0", "n": 1}, {"custom_id": "a-0", "n": 2}])
    padding = "x" * 1000
    large = jsonl([{"custom_id": f"a-{i}", "pad": padding} for i in range(1100)])
    assert len(large) > _common.OFF_LOOP_BYTES > len(small)

    assert await _common.decode_rows(small) == {"a-0": {"custom_id": "a-0", "n": 1}}
    rows = await _common.decode_rows(large)

    assert len(rows) == 1100
    assert threads[0] == threading.get_ident() != threads[1]


def test_file_rows_are_decoded_when_read_and_the_first_row_of_an_id_wins() -> None:
    data = jsonl([{"custom_id": "a-0", "n": 1}, {"custom_id": "a-1", "n": 2}])
    data += b"\n  \n" + jsonl([{"custom_id": "a-0", "n": 3}])

    rows = _common.FileRows.of(data)

    assert list(rows) == ["a-0", "a-1"] and len(rows) == 2
    assert rows["a-0"] == {"custom_id": "a-0", "n": 1}
    assert rows["a-0"] is not rows["a-0"]  # decoded anew on each read, never held
    assert rows.get("a-2") is None
    both = _common.FirstOf([rows, {"a-0": {"n": 9}, "a-2": {"n": 4}}])
    assert dict(both) == {
        "a-0": {"custom_id": "a-0", "n": 1},
        "a-1": {"custom_id": "a-1", "n": 2},
        "a-2": {"n": 4},
    }


async def test_the_bridge_reads_results_as_it_goes_while_users_get_a_list(
    server: EmulatorServer,
) -> None:
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="emulator", max_retries=0)
    adapter = OpenAIBatch(client)
    handle = await adapter.submit([chat("one"), chat("two")])
    listed = await finish(adapter, handle)
    reading = _common.results_as_read.set(True)
    try:
        while isinstance(read := await adapter.poll(handle), Pending) or read is None:
            handle = read.handle if isinstance(read, Pending) else handle
    finally:
        _common.results_as_read.reset(reading)

    assert isinstance(listed, list) and not isinstance(read, list)
    assert isinstance(read, _common.Results) and len(read) == 2
    assert [r["choices"][0]["message"]["content"] for r in listed] == [
        r["choices"][0]["message"]["content"] for r in read
    ]
    assert read[-1] == listed[-1] and read[0:1] == listed[0:1]


def test_file_rows_arrive_in_any_chunks_and_large_files_wait_on_disk() -> None:
    padding = "x" * 1000
    data = jsonl([{"custom_id": f"a-{i}", "pad": padding} for i in range(1100)])
    data = data.rstrip(b"\n")  # a last line without its newline
    assert len(data) > _common.SPOOL_BYTES
    rows = _common.FileRows()
    for start in range(0, len(data), 777):  # chunks that cut lines anywhere
        rows.feed(data[start : start + 777])
    rows.end()

    assert len(rows) == 1100 and rows.size == len(data)
    assert rows["a-1099"] == {"custom_id": "a-1099", "pad": padding}
    assert rows["a-0"] == _common.FileRows.of(data)["a-0"]
    assert rows._file.on_disk  # not in memory


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_result_download_cut_mid_body_is_polled_again(
    server: EmulatorServer, provider: str
) -> None:
    adapter: Any
    if provider == "openai":
        client: Any = openai.AsyncOpenAI(base_url=server.base_url, api_key="e", max_retries=0)
        adapter, route = OpenAIBatch(client), "GET /v1/files/{file_id}/content"
        items = [chat("one"), chat("two")]
    else:
        client = anthropic.AsyncAnthropic(
            base_url=server.anthropic_base_url, api_key="e", max_retries=0
        )
        adapter, route = AnthropicBatch(client), "GET /v1/messages/batches/{batch_id}/results"
        items = [
            {
                "model": "claude-haiku-4-5",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": t}],
            }
            for t in ("one", "two")
        ]
    handle = await adapter.submit(items)
    server.emulator.add_fault(route, status=0)  # headers, then the connection drops

    results = await finish(adapter, handle)

    assert server.emulator._faults.left() == 0  # the cut download happened, and was retried
    assert len(results) == 2 and not any(isinstance(r, BaseException) for r in results)


def test_row_cache_is_bounded_by_bytes_and_drops_the_least_recently_used() -> None:
    cache = _common.RowCache(max_bytes=100)
    cache.put("a", {"a-0": {}}, 40)
    cache.put("b", {"b-0": {}}, 40)
    assert cache.get("a") == {"a-0": {}}
    cache.put("c", {"c-0": {}}, 40)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == ({"a-0": {}}, None, {"c-0": {}})
    assert cache.bytes == 80
    cache.put("huge", {}, 101)
    assert cache.get("huge") is None and len(cache) == 2
    cache.pop("a")
    cache.pop("a")
    assert cache.bytes == 40


async def test_late_deletes_wait_for_the_grace_and_yield_to_a_replayed_poll() -> None:
    deleted: list[str] = []
    flaky = {"f2": 1}

    async def delete(resource: str) -> bool:
        if flaky.get(resource):
            flaky[resource] -= 1
            return False
        deleted.append(resource)
        return True

    later = _common.LateDeletes(grace_s=3600)
    later.add("k", ["f1"])
    await later.run(delete)
    assert deleted == []

    now = _common.LateDeletes(grace_s=0)
    now.add("replayed", ["f0"])
    now.keep("replayed")
    now.add("k", ["f1", "f2"])
    await now.run(delete)
    assert deleted == ["f1"]
    await now.run(delete)
    assert deleted == ["f1", "f2"]

    never = _common.LateDeletes(grace_s=None)
    never.add("k", ["f3"])
    await never.run(delete)
    assert deleted == ["f1", "f2"]


async def test_openai_files_are_all_deleted_once_results_were_returned(
    server: EmulatorServer,
) -> None:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="t", max_retries=0) as c:
        adapter = OpenAIBatch(c, delete_results_after_s=0)
        first = await finish(adapter, await adapter.submit([chat("a [[fail]]"), chat("b")]))
        assert len(first) == 2
        assert server.emulator.stats()["files"] == 2  # the output and the error file
        await finish(adapter, await adapter.submit([chat("c")]))
        left = {f.filename for f in (await c.files.list()).data}
        assert len(left) == 1 and left.pop().endswith("_output.jsonl")


async def test_openai_keeps_result_files_while_the_same_handle_is_polled_again(
    server: EmulatorServer,
) -> None:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="t", max_retries=0) as c:
        adapter = OpenAIBatch(c, delete_results_after_s=0)
        handle = await adapter.submit([chat("a")])
        results = await finish(adapter, handle)
        again = await finish(adapter, handle)
        assert again == results


async def test_anthropic_batches_are_deleted_once_results_were_returned(
    server: EmulatorServer,
) -> None:
    ask = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    async with anthropic.AsyncAnthropic(
        base_url=server.anthropic_base_url, api_key="t", max_retries=0
    ) as c:
        adapter = AnthropicBatch(c, delete_results_after_s=0)
        await finish(adapter, await adapter.submit([ask]))
        assert server.emulator.stats()["anthropic"]["batches"] == 1
        await finish(adapter, await adapter.submit([ask]))
        listed = [b.id async for b in c.messages.batches.list()]
        assert len(listed) == 1
    figures = server.emulator.stats()["anthropic"]
    assert (figures["batches"], figures["requests"]) == (1, 1)  # the batches still stored


async def test_anthropic_env_points_a_default_client_at_the_emulator(
    anthropic_env: EmulatorServer,
) -> None:
    async with anthropic.AsyncAnthropic() as c:
        message = await c.messages.create(
            model="m", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert message.content[0].type == "text"
    assert anthropic_env.emulator.stats()["anthropic"]["requests"] >= 1


def test_kept_request_lines_take_their_own_size_not_orjson_buffers() -> None:
    """orjson 3.13 returns each line in a 4 kB buffer: 50,000 kept lines were 195 MB."""
    import tracemalloc

    from batch_bridge.providers._packing import Request, build_request

    item = {"url": "/v1/chat/completions", "body": {"model": "m", "messages": [{"x": 1}]}}
    tracemalloc.start()
    try:
        requests = [build_request(i, f"bb-{i}", item) for i in range(2_000)]
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    lines = sum(len(r.line) for r in requests if isinstance(r, Request))
    assert lines > 2_000 * 50
    assert held < 3 * lines + 2_000 * 200  # the lines, the Request objects and the list
