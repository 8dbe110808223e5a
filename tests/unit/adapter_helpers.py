"""Helpers for the adapter tests: drive a handle the way the bridge does."""

from __future__ import annotations

import time
from typing import Any

from batch_bridge.types import Pending


def chat(text: str) -> dict[str, Any]:
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    return {"url": "/v1/chat/completions", "body": body}


async def finish(adapter: Any, handle: Any) -> list[Any]:
    """Poll until the results, swapping in each `Pending` handle."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        outcome = await adapter.poll(handle)
        if isinstance(outcome, Pending):
            handle = outcome.handle
        elif isinstance(outcome, list):
            return outcome
    raise AssertionError(f"not done: {handle}")
