"""Polling helpers for end-to-end tests: wait on conditions, never on fixed sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langgraph_sdk.client import LangGraphClient


async def until(
    check: Callable[[], Awaitable[Any]], timeout: float = 60, every: float = 0.25
) -> Any:
    """Poll `check` until it returns something truthy; fail with the last value on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met in {timeout}s; last value: {last!r}")


async def start(client: LangGraphClient, graph: str, inputs: Sequence[dict[str, Any]]) -> list[str]:
    """One thread and one run per input, all at once; returns the thread ids."""

    async def one(payload: dict[str, Any]) -> str:
        thread = await client.threads.create()
        await client.runs.create(thread["thread_id"], graph, input=payload)
        return str(thread["thread_id"])

    return list(await asyncio.gather(*(one(p) for p in inputs)))


async def finished(
    client: LangGraphClient, thread_ids: Sequence[str], timeout: float = 90
) -> list[dict[str, Any]]:
    """Wait until every thread is idle or errored (not interrupted, not busy); return them."""

    async def check() -> list[dict[str, Any]] | None:
        threads = await asyncio.gather(*(client.threads.get(t) for t in thread_ids))
        done = all(t["status"] in ("idle", "error") for t in threads)
        return list(threads) if done else None

    return await until(check, timeout=timeout)


async def interrupted(
    client: LangGraphClient, thread_ids: Sequence[str], timeout: float = 30
) -> None:
    async def check() -> bool:
        threads = await asyncio.gather(*(client.threads.get(t) for t in thread_ids))
        return all(t["status"] == "interrupted" for t in threads)

    await until(check, timeout=timeout)


async def bridge_state(client: LangGraphClient, bridge: str) -> dict[str, Any]:
    from langgraph_sdk.errors import NotFoundError

    from batch_bridge import bridge_thread_id

    try:
        state = await client.threads.get_state(bridge_thread_id(bridge))
    except NotFoundError:
        return {}
    return dict(state["values"] or {})
