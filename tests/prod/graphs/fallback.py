"""A bridge whose batches never finish and a caller with `max_wait`, for the crash test of
the deadline fallback: the worker running the fallback call SIGKILLs itself while the call
is in flight (the emulator holds normal calls, `hang_sync_s`), once (`$BB_FAULT_DIR`)."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path
from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from batch_bridge import Bridge
from batch_bridge.providers.openai import OpenAIBatch, wrap_openai

FAULT_DIR = Path(os.environ.get("BB_FAULT_DIR", "/nonexistent"))
provider = OpenAIBatch(metadata={"emulator_in_progress_s": "1000000000"})


def fires(point: str) -> bool:
    """Claim the one firing of `point` (an atomic rename: only one process gets it)."""
    claimed = FAULT_DIR / f".{point}.{os.getpid()}.{uuid.uuid4().hex}"
    try:
        (FAULT_DIR / point).rename(claimed)
    except FileNotFoundError:
        return False
    with (FAULT_DIR / "fired.log").open("a") as log:
        log.write(f"{point} {os.getpid()}\n")
    return True


async def fallback(item: Any) -> Any:
    """The adapter's fallback; with the fault armed, the worker dies mid-call."""
    call = asyncio.ensure_future(provider.fallback(item))
    await asyncio.sleep(0.5)  # the request is out; the emulator holds its answer
    if fires("fallback_mid"):
        os.kill(os.getpid(), signal.SIGKILL)
    return await call


fb_bridge = Bridge(
    submit=provider.submit,
    poll=provider.poll,
    cancel=provider.cancel,
    fallback=fallback,
    max_batch_age=0.5,
    poll_interval=1,
    provider_timeout=20,
    safety_cron="* * * * * */5",
    name="fb_bridge",
)


class State(TypedDict, total=False):
    question: str
    answer: str


async def ask(state: State) -> State:
    client = wrap_openai(batcher="fb_bridge", max_wait=2)
    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": state["question"]}]
    )
    return {"answer": completion.choices[0].message.content or ""}


fb_agent = StateGraph(State).add_node(ask).add_edge(START, "ask").compile()
