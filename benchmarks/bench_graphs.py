"""Graphs for the benchmarks.

`bridge` / `agent`: an instant in-process echo provider, so figures measure the bridge alone.
`emu_bridge` / `emu_agent`: the real `OpenAIBatch` adapter against the offline emulator
(`OPENAI_BASE_URL`), one `chat.completions.create` per caller; `emu_fanout`: one per item of
`items`, all in parallel (`Send`), so one thread can carry many requests.
`floor`: the platform's own cost of the same shape: one interrupt, resumed by the driver.
`fanout` / `floor_fanout`: the same with one `wait` / `interrupt` per item of `items`, in
parallel (`Send`).
"""

from __future__ import annotations

import logging
import operator
import os
import time
from collections.abc import Sequence
from typing import Annotated, Any, TypedDict

from langgraph.graph import START, StateGraph
from langgraph.types import Send, interrupt

from batch_bridge import Bridge, wait
from batch_bridge.providers.openai import OpenAIBatch, wrap_openai
from batch_bridge.testing import FakeProvider

AGE_S = float(os.environ.get("BENCH_MAX_BATCH_AGE_S", "1"))
POLL_S = float(os.environ.get("BENCH_POLL_INTERVAL_S", "1"))
SIZE = int(os.environ.get("BENCH_MAX_BATCH_SIZE", "50000"))
_fake = FakeProvider()  # answers {"echo": item} at once; `langgraph dev` is one process

bridge = Bridge(
    submit=_fake.submit,
    poll=_fake.poll,
    max_batch_size=50_000,
    max_batch_age=AGE_S,
    poll_interval=POLL_S,
)
_provider = OpenAIBatch(retry_backoff_s=0.2)
log = logging.getLogger("batch_bridge.bench")


async def timed_submit(items: Sequence[Any], *, idempotency_key: str | None = None) -> Any:
    """The adapter's submit, its duration logged for bench_scale.py to read."""
    started = time.perf_counter()
    handle = await _provider.submit(items, idempotency_key=idempotency_key)
    log.warning("bench submit items=%d s=%.3f", len(items), time.perf_counter() - started)
    return handle


async def timed_poll(handle: Any) -> Any:
    started = time.perf_counter()
    result = await _provider.poll(handle)
    if isinstance(result, Sequence):  # the bridge's results, each row decoded when read
        log.warning("bench results items=%d s=%.3f", len(result), time.perf_counter() - started)
    return result


emu_bridge = Bridge(
    submit=timed_submit,
    poll=timed_poll,
    cancel=_provider.cancel,
    release=_provider.release,
    max_batch_size=SIZE,
    max_batch_age=AGE_S,
    poll_interval=POLL_S,
    name="emu_bridge",
)
_llm = wrap_openai(batcher="emu_bridge")


class State(TypedDict, total=False):
    item: str
    result: Any
    items: list[str]
    results: Annotated[list[Any], operator.add]


async def ask(state: State) -> State:
    return {"result": await wait(state["item"], batcher="bridge")}


async def ask_model(state: State) -> State:
    completion = await _llm.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": state["item"]}]
    )
    return {"result": completion.choices[0].message.content}


def fan_out(state: State) -> list[Send]:
    return [Send("ask_one", {"item": item}) for item in state["items"]]


async def ask_one(state: State) -> State:
    return {"results": [(await ask_model(state))["result"]]}


def fan_out_waits(state: State) -> list[Send]:
    return [Send("wait_one", {"item": item}) for item in state["items"]]


async def wait_one(state: State) -> State:
    return {"results": [await wait(state["item"], batcher="bridge")]}


def fan_out_pauses(state: State) -> list[Send]:
    return [Send("pause_one", {"item": item}) for item in state["items"]]


async def pause_one(state: State) -> State:
    return {"results": [interrupt({"item": state["item"]})]}


async def pause(state: State) -> State:
    return {"result": interrupt({"item": state["item"]})}


agent = StateGraph(State).add_node(ask).add_edge(START, "ask").compile()
emu_agent = StateGraph(State).add_node(ask_model).add_edge(START, "ask_model").compile()
emu_fanout = (
    StateGraph(State).add_node(ask_one).add_conditional_edges(START, fan_out, ["ask_one"]).compile()
)
fanout = (
    StateGraph(State)
    .add_node(wait_one)
    .add_conditional_edges(START, fan_out_waits, ["wait_one"])
    .compile()
)
floor_fanout = (
    StateGraph(State)
    .add_node(pause_one)
    .add_conditional_edges(START, fan_out_pauses, ["pause_one"])
    .compile()
)
floor = StateGraph(State).add_node(pause).add_edge(START, "pause").compile()
