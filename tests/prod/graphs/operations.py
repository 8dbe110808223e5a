"""Bridges for the operations tests on the production engine: the status routes, cost,
dedupe and callers that stop waiting, on the real OpenAIBatch against the emulator.

Loaded beside `faults.py`, whose delivery kill point (`deliver_after`) then holds in the
same worker process for these bridges too.
"""

from __future__ import annotations

from typing import TypedDict

from langgraph.graph import START, StateGraph

from batch_bridge import Bridge
from batch_bridge.providers.openai import OpenAIBatch, wrap_openai

MODEL = "gpt-4o-mini"


def _bridge(name: str, in_progress_s: str, **options: bool) -> Bridge:
    provider = OpenAIBatch(
        retry_backoff_s=0.5,
        metadata={"test_bridge": name, "emulator_in_progress_s": in_progress_s},
    )
    return Bridge(
        submit=provider.submit,
        poll=provider.poll,
        cancel=provider.cancel,
        release=provider.release,
        max_batch_age=1,
        poll_interval=1,
        safety_cron="* * * * * */5",
        name=name,
        **options,
    )


ops_bridge = _bridge("ops_bridge", in_progress_s="6")
ops_dedupe = _bridge("ops_dedupe", in_progress_s="0.5", dedupe=True)


class State(TypedDict, total=False):
    question: str
    bridge: str
    answer: str


async def ask(state: State) -> State:
    llm = wrap_openai(batcher=state["bridge"])
    completion = await llm.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": state["question"]}]
    )
    return {"answer": completion.choices[0].message.content or ""}


ops_agent = StateGraph(State).add_node(ask).add_edge(START, "ask").compile()
