"""A webhook-woken bridge for the production engine: it polls once at submit, then only
every 10 minutes (no safety cron), so any quicker answer came from a webhook. Each poll
appends the polling worker's pid to `$BB_FAULT_DIR/polls.log`, so a test can post the
webhook to the other worker."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from batch_bridge import Bridge
from batch_bridge.providers.openai import OpenAIBatch, wrap_openai

POLL_LOG = Path(os.environ.get("BB_FAULT_DIR", "/nonexistent")) / "polls.log"
provider = OpenAIBatch(
    retry_backoff_s=0.5, metadata={"test_bridge": "pg_hook", "emulator_in_progress_s": "2"}
)


async def poll(handle: Any) -> Any:
    with POLL_LOG.open("a") as log:
        log.write(f"{os.getpid()} {time.time()}\n")
    return await provider.poll(handle)


pg_hook = Bridge(
    submit=provider.submit,
    poll=poll,
    release=provider.release,
    name="pg_hook",
    max_batch_age=1,
    webhooks=True,
    first_poll=0,
    safety_poll=600,
    safety_cron=None,
)


class State(TypedDict, total=False):
    question: str
    answer: str


async def ask(state: State) -> State:
    llm = wrap_openai(batcher="pg_hook")
    completion = await llm.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": state["question"]}]
    )
    return {"answer": completion.choices[0].message.content or ""}


pg_hook_agent = StateGraph(State).add_node(ask).add_edge(START, "ask").compile()
