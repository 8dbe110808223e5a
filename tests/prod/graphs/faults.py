"""A bridge and callers for crash tests: real OpenAIBatch against the emulator, with kill points.

A fault is a file in `$BB_FAULT_DIR` named after its point; it holds how many times it fires.
The process that claims a firing (an atomic rename, so two workers never both claim one)
SIGKILLs itself at that line, or raises when the point's name ends in `_raise`, exactly as a
crashing worker would. Points: `caller_after_wait`, `submit_before`, `submit_after`, `poll`,
`poll_raise`, `poll_hang` (never answers), `cancel_after` (the provider took an operator's
cancel, the bridge has not recorded it), `flush_forming` (a batch's header and members are
written, its items not yet marked), `deliver_after` (after a resume run was created, before it
was recorded).
"""

from __future__ import annotations

import asyncio
import operator
import os
import signal
import uuid
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.errors import GraphInterrupt
from langgraph.graph import START, StateGraph
from langgraph.types import Send

from batch_bridge import Bridge, _client
from batch_bridge._store import Ledger
from batch_bridge.providers.openai import OpenAIBatch, wrap_openai

FAULT_DIR = Path(os.environ.get("BB_FAULT_DIR", "/nonexistent"))
MODEL = "gpt-4o-mini"


def fires(point: str) -> bool:
    """Claim one firing of `point`; True when this process must fail there now."""
    path = FAULT_DIR / point
    claimed = path.with_name(f".{point}.{os.getpid()}.{uuid.uuid4().hex}")
    try:
        path.rename(claimed)
    except FileNotFoundError:
        return False
    left = int(claimed.read_text() or "1") - 1
    if left > 0:
        claimed.with_name(f".{point}.next").write_text(str(left))
        claimed.with_name(f".{point}.next").rename(path)
    claimed.unlink()
    with (FAULT_DIR / "fired.log").open("a") as log:
        log.write(f"{point} {os.getpid()}\n")
    return True


def fail_at(point: str) -> None:
    if fires(point):
        os.kill(os.getpid(), signal.SIGKILL)


provider = OpenAIBatch(retry_backoff_s=0.5, max_attempts=3)
slow_provider = OpenAIBatch(retry_backoff_s=0.5, metadata={"emulator_in_progress_s": "60"})


def with_kill_points(adapter: OpenAIBatch) -> tuple[Any, Any]:
    """The adapter's submit and poll, with kill points around the provider calls."""

    async def submit(items: list[Any], *, idempotency_key: str | None = None) -> Any:
        fail_at("submit_before")
        handle = await adapter.submit(items, idempotency_key=idempotency_key)
        fail_at("submit_after")
        return handle

    async def poll(handle: Any) -> Any:
        fail_at("poll")
        if fires("poll_raise"):
            raise RuntimeError("injected poll failure")
        if fires("poll_hang"):
            holding = FAULT_DIR / "poll_hang.holding"  # the test sees the call is still out
            holding.touch()
            try:
                await asyncio.sleep(3600)
            finally:
                holding.unlink()
        return await adapter.poll(handle)

    return submit, poll


submit, poll = with_kill_points(provider)
slow_submit, slow_poll = with_kill_points(slow_provider)


_resume = _client.resume


async def resume(client: Any, thread_id: str, assistant_id: str, answers: dict[str, Any]) -> None:
    await _resume(client, thread_id, assistant_id, answers)
    fail_at("deliver_after")


_client.resume = resume  # the kill point inside delivery

_put_members = Ledger.put_members


async def put_members(
    self: Ledger, batch_id: str, keys: list[str], slots: list[int] | None = None
) -> None:
    await _put_members(self, batch_id, keys, slots)
    fail_at("flush_forming")


Ledger.put_members = put_members  # type: ignore[method-assign]  # the kill point inside a flush

bridge = Bridge(
    submit=submit,
    poll=poll,
    cancel=provider.cancel,
    max_batch_size=int(os.environ.get("BB_MAX_BATCH_SIZE", "100")),
    max_batch_age=float(os.environ.get("BB_MAX_BATCH_AGE_S", "1")),
    poll_interval=float(os.environ.get("BB_POLL_INTERVAL_S", "1")),
    provider_timeout=float(os.environ.get("BB_PROVIDER_TIMEOUT_S", "20")),
    delivery_horizon=float(os.environ.get("BB_DELIVERY_HORIZON_S", "600")),
    safety_cron="* * * * * */5",
)

llm = wrap_openai(batcher="bridge")


class State(TypedDict, total=False):
    question: str
    questions: list[str]
    answer: str
    answers: Annotated[list[str], operator.add]


async def _ask(question: str) -> str:
    try:
        completion = await llm.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": question}]
        )
    except GraphInterrupt:
        fail_at("caller_after_wait")
        raise
    return completion.choices[0].message.content or ""


async def ask(state: State) -> State:
    return {"answer": await _ask(state["question"])}


agent = StateGraph(State).add_node(ask).add_edge(START, "ask").compile()


def fan_out(state: State) -> list[Send]:
    return [Send("worker", {"question": q}) for q in state["questions"]]


async def worker(state: State) -> State:
    return {"answers": [await _ask(state["question"])]}


fanout = (
    StateGraph(State).add_node(worker).add_conditional_edges(START, fan_out, ["worker"]).compile()
)


small_bridge = Bridge(
    submit=submit,
    poll=poll,
    cancel=provider.cancel,
    max_batch_size=3,
    max_batch_age=1,
    poll_interval=1,
    provider_timeout=25,
    safety_cron="* * * * * */5",
    name="small_bridge",
)
strict_bridge = Bridge(
    submit=slow_submit,
    poll=slow_poll,
    cancel=slow_provider.cancel,
    max_batch_size=100,
    max_batch_age=1,
    poll_interval=1,
    poll_error_horizon=4,
    safety_cron="* * * * * */5",
    name="strict_bridge",
)
small_llm = wrap_openai(batcher="small_bridge")


async def small_worker(state: State) -> State:
    completion = await small_llm.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": state["question"]}]
    )
    return {"answers": [completion.choices[0].message.content or ""]}


async def small_ask(state: State) -> State:
    return {"answers": (await small_worker(state))["answers"]}


small_agent = StateGraph(State).add_node(small_ask).add_edge(START, "small_ask").compile()
strict_llm = wrap_openai(batcher="strict_bridge")


async def strict_ask(state: State) -> State:
    completion = await strict_llm.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": state["question"]}]
    )
    return {"answer": completion.choices[0].message.content or ""}


strict_agent = StateGraph(State).add_node(strict_ask).add_edge(START, "strict_ask").compile()


def small_fan_out(state: State) -> list[Send]:
    return [Send("small_worker", {"question": q}) for q in state["questions"]]


small_fanout = (
    StateGraph(State)
    .add_node(small_worker)
    .add_conditional_edges(START, small_fan_out, ["small_worker"])
    .compile()
)


async def unstorable(state: State) -> State:
    from batch_bridge import wait

    bad: dict[str, Any] = {"nan": {"x": float("nan")}, "big": {"x": 2**70}, "nul": {"x": "a\0b"}}
    return {"answer": await wait(bad[state["question"]], batcher="bridge")}


bad_item = StateGraph(State).add_node(unstorable).add_edge(START, "unstorable").compile()


def _says_go(items: list[Any], last_flushed: Any) -> bool:
    return any(i["body"]["messages"][-1]["content"].startswith("go") for i in items)


held_bridge = Bridge(
    submit=submit,
    poll=poll,
    cancel=provider.cancel,
    max_batch_size=1000,
    max_batch_age=None,
    should_flush=_says_go,
    poll_interval=1,
    safety_cron="* * * * * */5",
    name="held_bridge",
)
held_llm = wrap_openai(batcher="held_bridge")


async def held_ask(state: State) -> State:
    completion = await held_llm.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": state["question"]}]
    )
    return {"answer": completion.choices[0].message.content or ""}


held_agent = StateGraph(State).add_node(held_ask).add_edge(START, "held_ask").compile()


hold_provider = OpenAIBatch(retry_backoff_s=0.5, metadata={"emulator_in_progress_s": "600"})
hold_submit, hold_poll = with_kill_points(hold_provider)


async def hold_cancel(handle: Any) -> Any:
    cancelled = await hold_provider.cancel(handle)
    fail_at("cancel_after")
    return cancelled


hold_bridge = Bridge(
    submit=hold_submit,
    poll=hold_poll,
    cancel=hold_cancel,
    max_batch_age=1,
    poll_interval=1,
    safety_cron="* * * * * */5",
    name="hold_bridge",
)
hold_llm = wrap_openai(batcher="hold_bridge")


async def hold_ask(state: State) -> State:
    completion = await hold_llm.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": state["question"]}]
    )
    return {"answer": completion.choices[0].message.content or ""}


hold_agent = StateGraph(State).add_node(hold_ask).add_edge(START, "hold_ask").compile()
