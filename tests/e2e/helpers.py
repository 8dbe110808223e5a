"""Polling helpers for end-to-end tests: wait on conditions, never on fixed sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from batch_bridge.testing import EmulatorServer
from batch_bridge.testing.devserver import DevServer


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


async def error_of(client: LangGraphClient, thread_id: str) -> dict[str, Any]:
    runs = await client.runs.list(thread_id, limit=10)
    run = next(r for r in runs if r["status"] == "error")
    error: dict[str, Any] = (await client.runs.join(thread_id, run["run_id"]))["__error__"]
    return error


def summary(message: dict[str, Any]) -> dict[str, Any]:
    """What must match between a batched and an unbatched thread (message ids may not)."""
    content = message["content"]
    if isinstance(content, list):
        content = " ".join(b["text"] for b in content if b.get("type") == "text")
    return {
        "type": message["type"],
        "content": content,
        "tool_calls": [(c["name"], c["args"], c["id"]) for c in message.get("tool_calls") or []],
        "tool_call_id": message.get("tool_call_id"),
        "name": message.get("name"),
    }


def emulator_env(emulator: EmulatorServer) -> dict[str, str]:
    """What points the OpenAI, Anthropic and Gemini SDKs of a deployment at the emulator."""
    return {
        "OPENAI_BASE_URL": emulator.base_url,
        "OPENAI_API_KEY": "emulator",
        "ANTHROPIC_BASE_URL": emulator.anthropic_base_url,
        "ANTHROPIC_API_KEY": "emulator",
        "GOOGLE_GEMINI_BASE_URL": emulator.gemini_base_url,
        "GEMINI_API_KEY": "emulator",
    }


async def agent_messages(
    server: DevServer, graph: str, texts: list[str]
) -> list[list[dict[str, Any]]]:
    """Run an agent graph once per text, all at once; each thread's messages once idle."""
    client = get_client(url=server.url)
    inputs = [{"messages": [{"role": "user", "content": text}]} for text in texts]
    done = await finished(client, await start(client, graph, inputs), timeout=120)
    assert [t["status"] for t in done] == ["idle"] * len(texts), server.log()[-3000:]
    return [t["values"]["messages"] for t in done]
