"""Caller graphs: every way a node can wait on a bridge."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import START, StateGraph
from langgraph.types import Send

from batch_bridge import Batcher, wait


class State(TypedDict, total=False):
    item: Any
    items: list[Any]
    bridge: str
    result: Any
    results: Annotated[list[Any], operator.add]


async def ask(state: State) -> State:
    return {"result": await wait(state["item"], batcher=state.get("bridge", "bridge"))}


agent = StateGraph(State).add_node(ask).add_edge(START, "ask").compile()


async def left(state: State) -> State:
    return {"results": [await wait(state["items"][0], batcher=state.get("bridge", "bridge"))]}


async def right(state: State) -> State:
    return {"results": [await wait(state["items"][1], batcher=state.get("bridge", "bridge"))]}


parallel = (
    StateGraph(State)
    .add_node(left)
    .add_node(right)
    .add_edge(START, "left")
    .add_edge(START, "right")
    .compile()
)


def fan_out(state: State) -> list[Send]:
    return [
        Send("worker", {"item": i, "bridge": state.get("bridge", "bridge")}) for i in state["items"]
    ]


async def worker(state: State) -> State:
    return {"results": [await wait(state["item"], batcher=state["bridge"])]}


fanout = (
    StateGraph(State).add_node(worker).add_conditional_edges(START, fan_out, ["worker"]).compile()
)


async def two_steps(state: State) -> State:
    bridge = state.get("bridge", "bridge")
    first = await wait(state["items"][0], batcher=bridge)
    second = await wait(state["items"][1], batcher=bridge)
    return {"results": [first, second]}


sequential = StateGraph(State).add_node(two_steps).add_edge(START, "two_steps").compile()

sync_batcher = Batcher(lambda items: None, lambda batch_id: None, name="bridge_sync")


def sync_ask(state: State) -> State:
    return {"result": sync_batcher.submit(state["item"])}


sync_agent = StateGraph(State).add_node(sync_ask).add_edge(START, "sync_ask").compile()


async def async_ask(state: State) -> State:
    return {"result": await sync_batcher.asubmit(state["item"])}


async_batcher_agent = StateGraph(State).add_node(async_ask).add_edge(START, "async_ask").compile()


async def bad_item(state: State) -> State:
    return {"result": await wait({"not json": object()}, batcher="bridge")}


bad = StateGraph(State).add_node(bad_item).add_edge(START, "bad_item").compile()
