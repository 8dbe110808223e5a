"""The flush rule, pure: which pending items become batches now, and when to look again."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from batch_bridge.types import FlushPolicy

T = TypeVar("T")


def plan_flush(
    pending: Sequence[T],
    *,
    payloads: Sequence[Any],
    oldest_at: float | None,
    last_flushed_at: float,
    now: float,
    policy: FlushPolicy,
    force: bool = False,
) -> list[list[T]]:
    """Split `pending` (arrival order) into the batches to submit now.

    Full batches of `max_batch_size` always go; the remainder goes too when forced, when the
    oldest item reached `max_batch_age_s`, or when the custom rule says so.
    """
    if not pending:
        return []
    size = policy.max_batch_size
    flush_all = force or (
        policy.max_batch_age_s is not None
        and oldest_at is not None
        and now - oldest_at >= policy.max_batch_age_s
    )
    if not flush_all and policy.should_flush is not None:
        last = datetime.fromtimestamp(
            last_flushed_at
        )  # naive local, as users compare with datetime.now()
        flush_all = bool(policy.should_flush(list(payloads), last))
    n = len(pending) if flush_all else (len(pending) // size) * size
    return [list(pending[i : min(i + size, n)]) for i in range(0, n, size)]


def next_check_in(
    *,
    has_pending: bool,
    oldest_at: float | None,
    due_times: Sequence[float],
    now: float,
    policy: FlushPolicy,
) -> float | None:
    """Seconds until the bridge should tick again, or None when it has nothing to do."""
    candidates = [t - now for t in due_times]
    if has_pending:
        candidates.append(policy.poll_interval_s)
        if policy.max_batch_age_s is not None and oldest_at is not None:
            candidates.append(oldest_at + policy.max_batch_age_s - now)
    if not candidates:
        return None
    return max(0.0, min(candidates))
