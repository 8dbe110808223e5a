"""Bridges for OpenAI-compatible services, each against an emulator behaving like one.

GROQ_BASE_URL and AZURE_OPENAI_BASE_URL point at emulators started with those profiles;
the callers use a wrapped `AsyncOpenAI` as for OpenAI itself.
"""

from __future__ import annotations

import os
from typing import Any, TypedDict

import openai
from langgraph.graph import START, StateGraph

from batch_bridge import Bridge
from batch_bridge.providers.openai import AZURE_OPENAI, GROQ, OpenAIBatch, wrap_openai

FAST = {"max_batch_age": 1, "poll_interval": 1}


def _bridge(name: str, base_url: str, **options: Any) -> Bridge:
    client = openai.AsyncOpenAI(base_url=os.environ[base_url], api_key="emulator")
    provider = OpenAIBatch(client, retry_backoff_s=0, **options)
    return Bridge(submit=provider.submit, poll=provider.poll, name=name, **FAST)


groq = _bridge("groq", "GROQ_BASE_URL", profile=GROQ, completion_window="7d")
# An Azure global-batch deployment; its batches run on past their window.
azure = _bridge(
    "azure",
    "AZURE_OPENAI_BASE_URL",
    profile=AZURE_OPENAI,
    metadata={"emulator_in_progress_s": "2", "emulator_expire_after_s": "0.5"},
)


class State(TypedDict, total=False):
    text: str
    bridge: str
    endpoint: str
    answer: Any


async def ask(state: State) -> State:
    client = wrap_openai(batcher=state["bridge"])
    if state.get("endpoint") == "embeddings":
        embedded = await client.embeddings.create(model="deployment", input=state["text"])
        return {"answer": len(embedded.data[0].embedding)}
    completion = await client.chat.completions.create(
        model="gpt-4o-mini-global-batch", messages=[{"role": "user", "content": state["text"]}]
    )
    return {"answer": completion.choices[0].message.content}


agent = StateGraph(State).add_node(ask).add_edge(START, "ask").compile()
