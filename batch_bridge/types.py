"""Public records and callable shapes shared by the bridge, the batchers and providers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeAlias

from batch_bridge._config import (
    DEFAULT_MAX_BATCH_AGE_S,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_POLL_INTERVAL_S,
    DEFAULT_READ_QUEUE_UP_TO,
    PollSchedule,
)

__all__ = [
    "FallbackAnswer",
    "FallbackFunc",
    "Pending",
    "PollFunc",
    "PollResult",
    "ShouldFlushFunc",
    "SubmitFunc",
]


@dataclass(frozen=True, slots=True)
class Pending:
    """Returned by a poll function: the batch is still running under a new handle.

    A plain `None` means "still running, same handle". Provider adapters return `Pending`
    when they had to resubmit part of a batch (expiry, retry, token budget) and the bridge
    must poll the new handle from now on. For the bridge graph the handle must be
    JSON-serialisable (it is stored); script mode keeps it in memory.
    """

    handle: Any
    """The handle the next poll receives, replacing the one `submit` returned."""


PollResult: TypeAlias = "Pending | Sequence[Any] | BaseException | None"
"""None or Pending while running; results in submission order; or the batch's failure.

An exception inside the sequence fails only that item."""

SubmitFunc: TypeAlias = Callable[[list[Any]], Any | Awaitable[Any]]
"""Sends a list of items to the provider; returns the batch's *handle* (JSON-serialisable
for the bridge graph): whatever the provider needs to find the batch again. Not the
bridge's own batch id, which the bridge passes as `idempotency_key` when submit takes one."""

PollFunc: TypeAlias = Callable[[Any], "PollResult | Awaitable[PollResult]"]
"""Checks the batch a handle names; returns a `PollResult` (or raises for a whole-batch failure)."""

ShouldFlushFunc: TypeAlias = Callable[[list[Any], datetime], bool]
"""Custom flush rule: `should_flush(items, last_flushed)`, with items in arrival order."""


@dataclass(frozen=True, slots=True)
class FallbackAnswer:
    """What a fallback function may return to say which price it paid (a plain value is
    taken as paid at the normal API's standard price)."""

    value: Any
    """The provider's answer, shaped like a batch row's result (e.g. the ChatCompletion)."""
    billed: Literal["batch", "standard"] = "standard"
    """"batch": billed at batch prices (OpenAI's flex tier); "standard": normal prices."""
    route: str = "standard"
    """How it was answered (e.g. "flex", "standard"); shown in usage records."""


FallbackFunc: TypeAlias = Callable[[Any], Any]
"""`fallback(item)`, sync or async: the item's answer from the provider's normal API, in
the shape `poll` gives each row (or a `FallbackAnswer` around it); raises when it fails
(`ProviderError(retryable=True)` or a timeout is tried again on a later pass)."""


def max_wait_seconds(value: float | timedelta | None) -> float | None:
    """A `max_wait` as positive seconds (None: no deadline); names the argument at fault."""
    seconds = _seconds(value, "max_wait")
    if seconds is not None and seconds <= 0:
        raise ValueError(f"max_wait must be positive, got {value!r}")
    return seconds


def _seconds(value: float | timedelta | None, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{field} must be seconds (a number) or a timedelta, got {value!r}")
    if value < 0:
        raise ValueError(f"{field} must not be negative, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class FlushPolicy:
    """When pending items become a batch, and how often running batches are polled."""

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    """Flush as soon as this many items are pending (and never put more in one batch)."""
    max_batch_age_s: float | None = DEFAULT_MAX_BATCH_AGE_S
    """Flush everything once the oldest pending item has waited this long (seconds)."""
    should_flush: ShouldFlushFunc | None = None
    """Custom rule; flushes everything pending when it returns True."""
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    """Seconds between two checks of the queue, and between two polls of a running batch
    unless `polling` is set."""
    polling: PollSchedule | None = None
    """A backing-off poll schedule; None polls every `poll_interval_s`, at once after submit."""
    read_queue_up_to: int = DEFAULT_READ_QUEUE_UP_TO
    """Up to this many queued items every pass reads the whole queue; above, a pass reads
    it only when a flush may be due (reading is O(queue): every payload and signature)."""
    max_wait_s: float | None = None
    """An item's deadline when its caller gave none (`Bridge(max_wait=)`): past it, the
    bridge answers it through the provider's normal API (`Bridge(fallback=)`)."""
    dedupe: bool = False
    """Identical items (same digest) flushed together go to the provider once, and each
    caller gets its own copy of the result. Off by default: two callers sampling at
    temperature 1 may want different answers."""

    def first_poll_in(self) -> float:
        """Seconds from a (re)submission to the batch's first poll."""
        return 0.0 if self.polling is None else self.polling.first_s

    def poll_gap(self, polls: int) -> float:
        """Seconds from poll number `polls` of a batch (1 is the first) to the next."""
        return self.poll_interval_s if self.polling is None else self.polling.gap(polls)

    @classmethod
    def coerce(
        cls,
        *,
        max_batch_size: int | None,
        max_batch_age: float | timedelta | None,
        should_flush: ShouldFlushFunc | None,
        poll_interval: float | timedelta | None,
    ) -> FlushPolicy:
        """Normalise user keywords (numbers or timedeltas) and name the field at fault."""
        size = DEFAULT_MAX_BATCH_SIZE if max_batch_size is None else max_batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"max_batch_size must be a positive int, got {max_batch_size!r}")
        if should_flush is not None and not callable(should_flush):
            raise TypeError(f"should_flush_func must be callable, got {should_flush!r}")
        poll = _seconds(poll_interval, "poll_interval")
        if poll is not None and poll <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval!r}")
        return cls(
            max_batch_size=size,
            max_batch_age_s=_seconds(max_batch_age, "max_batch_age"),
            should_flush=should_flush,
            poll_interval_s=DEFAULT_POLL_INTERVAL_S if poll is None else poll,
        )
