"""A deduplicating bridge (`dedupe=True`) on the OpenAI emulator, and an agent that asks it
one question through the real OpenAI SDK and keeps the answer and its completion id."""

from __future__ import annotations

from typing import TypedDict

from langgraph.graph import START, StateGraph

from batch_bridge import Bridge
from batch_bridge.providers.openai import OpenAIBatch, wrap_openai

_openai = OpenAIBatch(retry_backoff_s=0, metadata={"test_bridge": "dedupe_oa"})
dedupe_oa = Bridge(
    submit=_openai.submit,
    poll=_openai.poll,
    release=_openai.release,
    name="dedupe_oa",
    max_batch_age=4,
    poll_interval=1,
    dedupe=True,
)


class State(TypedDict, total=False):
    question: str
    answer: str
    completion_id: str


async def ask(state: State) -> State:
    completion = await wrap_openai(batcher="dedupe_oa").chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": state["question"]}]
    )
    return {"answer": completion.choices[0].message.content or "", "completion_id": completion.id}


agent = StateGraph(State).add_node(ask).add_edge(START, "ask").compile()
