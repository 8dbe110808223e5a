"""Graphs for the benchmarks: an instant echo provider, so the figures measure the bridge."""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from batch_bridge import Bridge, wait

_batches: dict[str, list[Any]] = {}


def submit(items: list[Any]) -> str:
    batch_id = f"b{len(_batches)}"
    _batches[batch_id] = items
    return batch_id


def poll(batch_id: str) -> list[Any]:
    return [{"echo": item} for item in _batches.pop(batch_id)]


bridge = Bridge(submit=submit, poll=poll, max_batch_size=5000, max_batch_age=1, poll_interval=1)


class State(TypedDict, total=False):
    item: str
    result: Any


async def ask(state: State) -> State:
    return {"result": await wait(state["item"], batcher="bridge")}


agent = StateGraph(State).add_node(ask).add_edge(START, "ask").compile()
