"""Graphs for the production-engine smoke tests.

`held` blocks until a release file appears, so a test can kill the worker running it. Each
attempt appends the worker's pid to `<PROD_SMOKE_DIR>/<thread_id>.pids`: the test learns which
worker to kill and sees the node start again on the other one.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, StateGraph


class State(TypedDict, total=False):
    text: str
    answer: str
    attempts: int


async def reply(state: State) -> State:
    return {"answer": f"echo {state['text']}"}


echo = StateGraph(State).add_node(reply).add_edge(START, "reply").compile()


async def hold(state: State, config: RunnableConfig) -> State:
    folder = Path(os.environ["PROD_SMOKE_DIR"])
    thread_id = config["configurable"]["thread_id"]
    pids = folder / f"{thread_id}.pids"
    with pids.open("a") as f:
        f.write(f"{os.getpid()}\n")
    release = folder / f"{thread_id}.release"
    while not release.exists():
        await asyncio.sleep(0.05)
    return {"answer": f"released {state['text']}", "attempts": len(pids.read_text().split())}


held = StateGraph(State).add_node(hold).add_edge(START, "hold").compile()
