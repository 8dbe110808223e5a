"""An example agent: ordinary OpenAI code, one line changed to go through the bridge."""

from __future__ import annotations

import os
from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from batch_bridge.providers.openai import wrap_openai

MODEL = os.environ.get("BATCH_BRIDGE_DEMO_MODEL", "gpt-4o-mini")
client = wrap_openai(batcher="bridge")  # was: client = AsyncOpenAI()


class State(TypedDict, total=False):
    question: str
    answer: str
    usage: dict[str, Any]


async def answer(state: State) -> State:
    completion = await client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Answer in one short sentence."},
            {"role": "user", "content": state["question"]},
        ],
    )
    usage = completion.usage.model_dump() if completion.usage else {}
    return {"answer": completion.choices[0].message.content or "", "usage": usage}


graph = StateGraph(State).add_node(answer).add_edge(START, "answer").compile()
