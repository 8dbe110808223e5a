"""Calling the user's provider functions: sync or async alike, bounded in time and number."""

from __future__ import annotations

import asyncio
import inspect
import logging
import typing
from collections import abc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from batch_bridge.types import FallbackFunc, PollFunc, SubmitFunc

log = logging.getLogger("batch_bridge")

CancelFunc = Callable[[Any], Any]
"""`cancel(handle)` or `release(handle)`, sync or async."""


@dataclass(frozen=True, slots=True)
class Provider:
    """The user's functions, as the bridge calls them."""

    submit: SubmitFunc
    poll: PollFunc
    cancel: CancelFunc | None = None
    keyed: bool = False
    """`submit` takes the bridge's batch id as its idempotency key."""
    release: CancelFunc | None = None
    """Called with a batch's handle once its results are recorded: delete provider files."""
    fallback: FallbackFunc | None = None
    """Answers one item through the provider's normal API once its deadline passed."""


async def call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Sync or async user functions alike; sync ones run off the event loop."""
    if inspect.iscoroutinefunction(func):
        return await func(*args, **kwargs)
    result = await asyncio.to_thread(func, *args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


async def call_with_timeout(
    timeout_s: float, func: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    """A provider call that cannot hold the tick: abandoned after `timeout_s` (a sync
    function's thread runs on, but the tick no longer waits for it)."""
    return await asyncio.wait_for(call(func, *args, **kwargs), timeout=timeout_s)


def accepts_idempotency_key(submit: Callable[..., Any]) -> bool:
    """Whether `submit(items, idempotency_key=...)` works: then a retried submit is exactly
    once; a plain `submit(items)` is at least once when a worker dies mid-call."""
    try:
        params = inspect.signature(submit).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.name == "idempotency_key" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params
    )


def takes_any_sequence(submit: Callable[..., Any]) -> bool:
    """Whether `submit` declares its items a `Sequence` (the adapters do): it is then given
    a read-only sequence that parses each item as it is read, not a list of them all."""
    try:
        params = list(inspect.signature(submit, eval_str=True).parameters.values())
    except Exception:  # an annotation that does not evaluate: a list, as always
        return False
    if not params:
        return False
    hint = params[0].annotation
    return hint is abc.Sequence or typing.get_origin(hint) is abc.Sequence


def describe(exc: BaseException) -> str:
    """A provider error in one line, for logs and the bridge's state."""
    if isinstance(exc, TimeoutError):
        return "the provider did not answer in time (timeout)"
    return f"{type(exc).__name__}: {exc}"


async def guarded(gate: asyncio.Semaphore, job: Callable[[], Awaitable[Any]]) -> None:
    """Run one job when `gate` lets it; a failing job is logged, never raised."""
    async with gate:
        try:
            await job()
        except Exception:
            log.exception("bridge step failed; it is retried on a later tick")


async def bounded(jobs: Sequence[Callable[[], Awaitable[Any]]], limit: int) -> None:
    """Run jobs with at most `limit` at once; one failing job never stops the others."""
    gate = asyncio.Semaphore(limit)
    await asyncio.gather(*(guarded(gate, j) for j in jobs))


Clock = Callable[[], float]
"""Seconds since the epoch (`time.time`); injected so a test can move time."""
