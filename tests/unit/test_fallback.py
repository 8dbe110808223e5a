"""Deadlines with fallback to the provider's normal API, over injected parts: an in-memory
store, a fake platform client, a clock the test moves, and a fake provider."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from langgraph.store.memory import InMemoryStore

from batch_bridge import Bridge, FallbackAnswer
from batch_bridge._config import Reliability
from batch_bridge._marker import needs_wake, tick_marker, wake_early
from batch_bridge._store import BATCHES, ItemRecord, Ledger
from batch_bridge._usage import USAGE, ModelUsage, UsageSummary, add_records, summary
from batch_bridge.bridge.calls import Provider
from batch_bridge.bridge.tick import Tick
from batch_bridge.errors import BatchItemError, ProviderError
from batch_bridge.http import bridge_status
from batch_bridge.providers.anthropic import AnthropicBatch, wrap_anthropic
from batch_bridge.providers.openai import BatchedAsyncOpenAI, OpenAIBatch
from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.types import FlushPolicy, max_wait_seconds

from .adapter_helpers import chat
from .fakes import Clock, FakeClient, FakeProvider
from .test_tick import queued, statuses


class NeverDone(FakeProvider):
    """A provider whose batches run until `finish` is set: then every row is answered."""

    finish: bool = False

    def poll(self, handle: str) -> Any:
        self.polled.append(handle)
        if not self.finish:
            return None
        items = self.submitted[int(handle.split("-")[1]) - 1]
        return [answer(item, "batch") for item in items]


def answer(item: Any, how: str) -> dict[str, Any]:
    """A ChatCompletion-shaped answer the price table can cost (gpt-4o-mini)."""
    return {
        "model": "gpt-4o-mini",
        "content": f"{how}: {item['q']}",
        "usage": {"prompt_tokens": 1000, "completion_tokens": 1000},
    }


class Normal:
    """A fallback function: scripted failures first, then answers (flex unless told)."""

    def __init__(self, *fail: BaseException, billed: str = "batch") -> None:
        self.fail = list(fail)
        self.calls: list[Any] = []
        self.billed = billed

    async def __call__(self, item: Any) -> FallbackAnswer:
        self.calls.append(item)
        if self.fail:
            raise self.fail.pop(0)
        route = "flex" if self.billed == "batch" else "standard"
        return FallbackAnswer(answer(item, route), billed=self.billed, route=route)  # type: ignore[arg-type]


def make(
    store: InMemoryStore,
    client: FakeClient,
    clock: Clock,
    provider: FakeProvider,
    fallback: Any,
    **policy: Any,
) -> Tick:
    return Tick(
        "bridge",
        Provider(provider.submit, provider.poll, provider.cancel, fallback=fallback),
        FlushPolicy(**{"max_batch_size": 10, "max_batch_age_s": 5.0, **policy}),
        Reliability(),
        store=store,
        client=client,
        client_for=client.client_for,
        clock=clock,
    )


async def waiting(ledger: Ledger, client: FakeClient, *records: ItemRecord) -> None:
    await ledger.put_items(records)
    for record in records:
        client.threads.waiting(record)


def resumed(client: FakeClient) -> dict[str, dict[str, Any]]:
    return {t: next(iter(a.values())) for t, _, a in client.runs.resumes}


async def test_an_item_past_its_deadline_in_a_running_batch_falls_back_and_the_batch_is_cancelled():
    store, client, clock, provider = InMemoryStore(), FakeClient(), Clock(), NeverDone()
    ledger, normal = Ledger(store, "bridge"), Normal()
    record = queued("t1", {"q": 1}, clock.now - 10)
    record.deadline_at = clock.now + 30
    await waiting(ledger, client, record)

    state = await make(store, client, clock, provider, normal).run({}, "run-1")
    assert provider.submitted == [[{"q": 1}]] and client.runs.resumes == []
    header = (await ledger.headers())[0]
    assert header.deadline_at == record.deadline_at  # the tick wakes by it
    assert state["next_tick_in_s"] is not None and state["next_tick_in_s"] <= 30

    clock.now += 31
    state = await make(store, client, clock, provider, normal).run(state, "run-2")
    got = resumed(client)["t1"]
    assert got["value"]["content"] == "flex: 1"
    assert got["fallback"] == {"route": "flex", "billed": "batch"}
    assert normal.calls == [{"q": 1}]
    assert provider.cancelled == ["handle-1"]  # every item fell back: stopped at the provider
    assert state["items_fallen_back"] == 1
    assert (await statuses(ledger)) == {"t1:i-t1": "delivered"}
    [cost] = [s.value for s in await ledger.search(USAGE)]
    assert cost["fallback"] == "flex"
    assert cost["batch_usd"] == pytest.approx(cost["normal_usd"] / 2)  # flex: batch price
    assert state["usage"]["fallback_items"] == 1


async def test_a_late_row_is_dropped_and_counted_and_the_others_still_get_theirs():
    store, client, clock, provider = InMemoryStore(), FakeClient(), Clock(), NeverDone()
    ledger, normal = Ledger(store, "bridge"), Normal(billed="standard")
    hurried, patient = queued("t1", {"q": 1}, clock.now - 10), queued("t2", {"q": 2}, clock.now)
    hurried.deadline_at = clock.now + 30
    await waiting(ledger, client, hurried, patient)
    state = await make(store, client, clock, provider, normal).run({}, "run-1")

    clock.now += 31
    state = await make(store, client, clock, provider, normal).run(state, "run-2")
    assert provider.cancelled == []  # t2 still waits on the batch
    assert resumed(client)["t1"]["value"]["content"] == "standard: 1"
    assert (await ledger.headers())[0].deadline_at is None

    provider.finish = True
    clock.now += 60
    state = await make(store, client, clock, provider, normal).run(state, "run-3")
    assert resumed(client)["t2"]["value"]["content"] == "batch: 2"
    assert len(client.runs.resumes) == 2  # t1 was not resumed a second time
    assert state["late_rows_dropped"] == 1 and state["items_fallen_back"] == 1
    costs = {t: await thread_usage(ledger, t) for t in ("t1", "t2")}
    assert costs["t1"]["batch_usd"] == costs["t1"]["normal_usd"]  # standard: no saving
    assert costs["t2"]["batch_usd"] == pytest.approx(costs["t2"]["normal_usd"] / 2)
    assert costs["t1"]["items"] == costs["t2"]["items"] == 1  # t1's late row is not counted


async def test_a_queued_item_past_its_deadline_falls_back_without_being_submitted():
    store, client, clock, provider = InMemoryStore(), FakeClient(), Clock(), NeverDone()
    ledger, normal = Ledger(store, "bridge"), Normal()
    record = queued("t1", {"q": 1}, clock.now)
    await waiting(ledger, client, record)
    tick = make(store, client, clock, provider, normal, max_batch_age_s=100.0, max_wait_s=10.0)
    state = await tick.run({}, "run-1")
    assert state["pending"] == 1 and state["next_tick_in_s"] == 10.0  # woken by the deadline

    clock.now += 11
    tick = make(store, client, clock, provider, normal, max_batch_age_s=100.0, max_wait_s=10.0)
    state = await tick.run(state, "run-2")
    assert provider.submitted == []
    assert resumed(client)["t1"]["fallback"]["route"] == "flex"
    assert state["pending"] == 0


async def test_a_batch_not_yet_submitted_whose_items_all_fell_back_is_never_submitted():
    class Refusing(NeverDone):
        def submit(self, items: list[Any]) -> str:
            raise ProviderError("busy", retryable=True)

    store, client, clock, provider = InMemoryStore(), FakeClient(), Clock(), Refusing()
    ledger, normal = Ledger(store, "bridge"), Normal()
    record = queued("t1", {"q": 1}, clock.now - 10)
    record.deadline_at = clock.now + 1
    await waiting(ledger, client, record)
    state = await make(store, client, clock, provider, normal).run({}, "run-1")
    assert (await ledger.headers())[0].status == "submitting"  # backing off

    clock.now += 2
    await make(store, client, clock, provider, normal).run(state, "run-2")
    assert await ledger.search(BATCHES) == []
    assert provider.submitted == [] and provider.cancelled == []
    assert resumed(client)["t1"]["value"]["content"] == "flex: 1"


class Crash(BaseException):
    """A worker killed mid-call: nothing after it runs."""


async def test_the_call_is_recorded_first_so_a_tick_killed_mid_call_calls_again_and_resumes_once():
    store, client, clock, provider = InMemoryStore(), FakeClient(), Clock(), NeverDone()
    ledger, normal = Ledger(store, "bridge"), Normal(Crash())
    record = queued("t1", {"q": 1}, clock.now - 10)
    record.deadline_at = clock.now + 1
    await waiting(ledger, client, record)
    state = await make(store, client, clock, provider, normal).run({}, "run-1")

    clock.now += 2
    with pytest.raises(Crash):
        await make(store, client, clock, provider, normal).run(state, "run-2")
    [left] = (await ledger.get_items(["t1:i-t1"])).values()
    assert left.status == "fallback" and left.fallback_calls == 1
    assert left.fallback_at == clock.now and client.runs.resumes == []
    shown = await bridge_status(store, "bridge", state)
    assert shown["falling_back"] == 1 and shown["totals"]["items_fallen_back"] == 0

    clock.now += 1
    state = await make(store, client, clock, provider, normal).run(state, "run-3")
    assert len(normal.calls) == 2  # called again: no idempotency key on a normal call
    assert len(client.runs.resumes) == 1 and state["items_fallen_back"] == 1
    assert (await bridge_status(store, "bridge", state))["totals"]["items_fallen_back"] == 1
    await make(store, client, clock, provider, normal).run(state, "run-4")
    assert len(client.runs.resumes) == 1


async def test_a_transient_failure_is_tried_again_and_a_permanent_one_fails_the_caller_once():
    store, client, clock, provider = InMemoryStore(), FakeClient(), Clock(), NeverDone()
    ledger = Ledger(store, "bridge")
    normal = Normal(ProviderError("overloaded", retryable=True), ProviderError("no such model"))
    record = queued("t1", {"q": 1}, clock.now - 10)
    record.deadline_at = clock.now + 1
    await waiting(ledger, client, record)
    state = await make(store, client, clock, provider, normal).run({}, "run-1")

    clock.now += 2
    state = await make(store, client, clock, provider, normal).run(state, "run-2")
    [left] = (await ledger.get_items(["t1:i-t1"])).values()
    assert left.status == "fallback" and "overloaded" in (left.last_error or "")
    assert client.runs.resumes == [] and (state["next_tick_in_s"] or state["continue_in_s"])

    clock.now += 10
    state = await make(store, client, clock, provider, normal).run(state, "run-3")
    got = resumed(client)["t1"]
    assert got["ok"] is False and got["error"]["type"] == "BatchItemError"
    assert "no such model" in got["error"]["message"]
    assert len(normal.calls) == 2 and len(client.runs.resumes) == 1


async def test_a_row_error_returned_by_the_fallback_reaches_its_caller_once():
    """A fallback may return an exception, as a poll returns one per failed row (Gemini's
    does for a request refused for good): the caller gets it, once, and nothing retries."""
    store, client, clock, provider = InMemoryStore(), FakeClient(), Clock(), NeverDone()
    ledger = Ledger(store, "bridge")
    calls: list[Any] = []

    async def refuses(item: Any) -> BatchItemError:
        calls.append(item)
        return BatchItemError("the model refused this request", code="400")

    record = queued("t1", {"q": 1}, clock.now - 10)
    record.deadline_at = clock.now + 1
    await waiting(ledger, client, record)
    state = await make(store, client, clock, provider, refuses).run({}, "run-1")
    clock.now += 2
    state = await make(store, client, clock, provider, refuses).run(state, "run-2")
    clock.now += 30
    await make(store, client, clock, provider, refuses).run(state, "run-3")
    got = resumed(client)["t1"]
    assert got["ok"] is False and got["error"] == {
        "type": "BatchItemError",
        "message": "the model refused this request",
        "code": "400",
    }
    assert len(calls) == 1 and len(client.runs.resumes) == 1


async def test_a_deadline_without_a_fallback_function_fails_the_caller_clearly():
    store, client, clock, provider = InMemoryStore(), FakeClient(), Clock(), NeverDone()
    ledger = Ledger(store, "bridge")
    record = queued("t1", {"q": 1}, clock.now - 10)
    record.deadline_at = clock.now + 1
    await waiting(ledger, client, record)
    state = await make(store, client, clock, provider, None).run({}, "run-1")
    clock.now += 2
    await make(store, client, clock, provider, None).run(state, "run-2")
    got = resumed(client)["t1"]
    assert got["error"]["code"] == "no_fallback" and "fallback=" in got["error"]["message"]


def test_max_wait_takes_seconds_or_a_timedelta_and_names_itself_when_wrong():
    assert max_wait_seconds(timedelta(minutes=2)) == 120.0
    assert max_wait_seconds(1.5) == 1.5 and max_wait_seconds(None) is None
    with pytest.raises(ValueError, match="max_wait must be positive"):
        max_wait_seconds(0)
    with pytest.raises(ValueError, match="max_wait must not be negative"):
        max_wait_seconds(timedelta(seconds=-1))
    with pytest.raises(TypeError, match="max_wait must be seconds"):
        max_wait_seconds("10")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fallback must be a callable"):
        Bridge(submit=print, poll=print, fallback="flex")  # type: ignore[arg-type]
    bridge = Bridge(submit=print, poll=print, max_wait=timedelta(seconds=90))
    assert bridge.policy.max_wait_s == 90.0


def test_script_mode_falls_back_when_the_batch_never_answers():
    provider = NeverDone()
    bridge = Bridge(
        submit=provider.submit,
        poll=provider.poll,
        max_batch_age=0,
        poll_interval=0.05,
        fallback=lambda item: {"answer": item * 2},
        name="script_fallback",
    )
    assert bridge.submit(21, max_wait=0.2) == {"answer": 42}
    assert bridge.submit(5, max_wait=timedelta(milliseconds=200)) == {"answer": 10}


# -- the adapters' fallback, with the real SDKs over HTTP to the emulator ----------------------


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(), port=0) as running:
        yield running


async def test_openai_fallback_takes_the_flex_tier_and_the_standard_one_when_flex_refuses(
    emulator: EmulatorServer,
):
    client = openai.AsyncOpenAI(base_url=emulator.base_url, api_key="test", max_retries=0)
    adapter = OpenAIBatch(client)
    flex = await adapter.fallback(chat("hello"))
    assert (flex.route, flex.billed) == ("flex", "batch")
    assert flex.value["service_tier"] == "flex"
    assert flex.value["choices"][0]["message"]["content"] == "Echo: hello"

    emulator.emulator.add_fault("POST /v1/chat/completions", status=429, times=1)
    standard = await adapter.fallback(chat("again"))
    assert (standard.route, standard.billed) == ("standard", "standard")
    assert standard.value["service_tier"] == "default"
    assert emulator.emulator.stats()["calls"]["POST /v1/chat/completions"] == 3

    embedded = await adapter.fallback(
        {"url": "/v1/embeddings", "body": {"model": "e", "input": "x"}}
    )
    assert embedded.route == "standard" and embedded.value["data"]

    with pytest.raises(ProviderError) as refused:
        await adapter.fallback({"url": "/v1/chat/completions", "body": {"model": "m"}})
    assert refused.value.retryable is False and refused.value.status_code == 400
    emulator.emulator.add_fault("POST /v1/chat/completions", status=503, times=2)
    with pytest.raises(ProviderError) as busy:
        await adapter.fallback(chat("later"))
    assert busy.value.retryable is True


async def test_anthropic_fallback_calls_messages_create_at_the_standard_price(
    emulator: EmulatorServer,
):
    client = anthropic.AsyncAnthropic(
        base_url=emulator.anthropic_base_url, api_key="test", max_retries=0
    )
    params = {"model": "claude-sonnet-4-5", "max_tokens": 50}
    answer = await AnthropicBatch(client).fallback(
        params | {"messages": [{"role": "user", "content": "hi"}]}
    )
    assert (answer.route, answer.billed) == ("standard", "standard")
    assert answer.value["type"] == "message" and answer.value["usage"]["input_tokens"] > 0


async def test_the_drop_in_clients_pass_their_deadline_to_wait():
    seen: list[Any] = []

    async def fake_wait(item: Any, *, batcher: str, max_wait: float | None = None) -> Any:
        seen.append(max_wait)
        return answer({"q": 0}, "flex") | {"object": "chat.completion", "choices": []}

    oa = BatchedAsyncOpenAI(
        openai.AsyncOpenAI(api_key="x"), max_wait=timedelta(seconds=45), _wait=fake_wait
    )
    await oa.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert seen == [45.0]
    with pytest.raises(TypeError, match="max_wait must be seconds"):
        wrap_anthropic(max_wait="soon")  # type: ignore[arg-type]


def test_the_reliability_page_example_runs_and_answers_through_flex():
    page = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text()
    section = page[page.index("## Deadlines and fallback") :]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "flex Echo: hello"


def test_a_caller_whose_deadline_comes_before_the_scheduled_tick_wakes_the_bridge():
    now = 1_000.0
    scheduled = tick_marker("scheduled", now + 30)
    assert not needs_wake(scheduled, now) and not needs_wake(scheduled, now, now + 60)
    assert needs_wake(scheduled, now, now + 5) and wake_early(scheduled, now + 5)
    assert not wake_early(tick_marker("running"), now + 5)
    assert not wake_early(scheduled, None)


async def test_an_item_whose_every_call_was_cut_short_fails_after_three_instead_of_looping():
    store, client, clock, provider = InMemoryStore(), FakeClient(), Clock(), NeverDone()
    ledger, normal = Ledger(store, "bridge"), Normal(Crash(), Crash(), Crash())
    record = queued("t1", {"q": 1}, clock.now - 10)
    record.deadline_at = clock.now + 1
    await waiting(ledger, client, record)
    state = await make(store, client, clock, provider, normal).run({}, "run-1")
    for attempt in range(3):
        clock.now += 5
        with pytest.raises(Crash):
            await make(store, client, clock, provider, normal).run(state, f"run-{attempt}")
    clock.now += 5
    await make(store, client, clock, provider, normal).run(state, "run-last")
    assert len(normal.calls) == 3
    got = resumed(client)["t1"]
    assert got["ok"] is False and "3 normal-API calls were cut short" in got["error"]["message"]


async def test_a_batch_submitted_after_some_items_fell_back_sends_only_the_others():
    class RefusingOnce(NeverDone):
        refused = False

        def submit(self, items: list[Any]) -> str:
            if not self.refused:
                self.refused = True
                raise ProviderError("busy", retryable=True)
            return super().submit(items)

    store, client, clock, provider = InMemoryStore(), FakeClient(), Clock(), RefusingOnce()
    ledger, normal = Ledger(store, "bridge"), Normal()
    hurried, patient = queued("t1", {"q": 1}, clock.now - 10), queued("t2", {"q": 2}, clock.now)
    hurried.deadline_at = clock.now + 1
    await waiting(ledger, client, hurried, patient)
    state = await make(store, client, clock, provider, normal).run({}, "run-1")
    clock.now += 10
    await make(store, client, clock, provider, normal).run(state, "run-2")
    assert provider.submitted == [[{"q": 2}]]
    assert resumed(client)["t1"]["value"]["content"] == "flex: 1"
    assert (await ledger.members((await ledger.headers())[0].batch_id)) == ["t2:i-t2"]


async def thread_usage(ledger: Ledger, thread_id: str) -> UsageSummary:
    """A thread's usage as `batch_bridge.usage` sums it: its batch shares and own records."""
    by_model: dict[str, ModelUsage] = {}
    stored = await ledger.search(USAGE)
    add_records(by_model, [s.value for s in stored if s.value["thread_id"] == thread_id])
    return summary("bridge", thread_id, by_model)
