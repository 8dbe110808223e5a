"""The tick marker: the one store record both sides speak, so callers wake the bridge only
when no tick is sure to read the queue.

A tick marks "running" before it reads the queue, and before it ends it either schedules the
next tick ("scheduled") or marks "idle" and reads the queue once more. The caller side reads
the marker (`needs_wake`); the bridge writes it. Neither imports the other.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from batch_bridge import _trust

TICK_MARKER = "tick"
"""The marker's key in the bridge's `meta` namespace."""
OVERDUE_GRACE_S = 30.0
"""A scheduled tick this late is presumed lost: callers wake the bridge themselves."""
STALE_RUNNING_S = 360.0
"""A tick marked running for this long is presumed dead (its run was killed)."""

MarkerState = Literal["running", "scheduled", "idle"]


def tick_marker(state: MarkerState, next_at: float | None = None) -> dict[str, Any]:
    """The signed store value, so a forged marker cannot talk callers out of a wake-up."""
    return _trust.sign({"state": state, "next_at": next_at, "at": time.time()})


def needs_wake(marker: dict[str, Any] | None, now: float, deadline_at: float | None = None) -> bool:
    """Whether a caller that has just queued an item must wake the bridge.

    A caller that queued its item and then saw "running" or "scheduled" is covered, and only
    callers that find the bridge idle (or a marker gone stale) pay for a wake-up run; such a
    caller leaves a run pending and marks "scheduled" itself, so a burst of callers on an
    idle bridge costs one wake-up, not one each. An item whose deadline (`deadline_at`)
    comes before the scheduled tick wakes it too (see `wake_early`).
    """
    if marker is not None and not _trust.verify(marker):
        marker = None
    state = marker.get("state") if marker else None
    if state == "scheduled":
        next_at = float((marker or {}).get("next_at") or 0)
        return now > next_at + OVERDUE_GRACE_S or wake_early(marker, deadline_at)
    if state == "running":
        return now > float((marker or {}).get("at") or 0) + STALE_RUNNING_S
    return True


def wake_early(marker: dict[str, Any] | None, deadline_at: float | None) -> bool:
    """Whether the tick the marker says is scheduled comes after this item's deadline."""
    if deadline_at is None or not marker or marker.get("state") != "scheduled":
        return False
    if not _trust.verify(marker):
        return False
    return deadline_at < float(marker.get("next_at") or 0)


HINT_SOON_S = 2.0
"""A tick due this soon (or a run queued to start this soon) will read a fresh hint."""


def hint_needs_tick(marker: dict[str, Any] | None, pending_at: list[float], now: float) -> bool:
    """Whether a webhook that has just made a batch due must start a tick.

    Not when a tick is scheduled to run within `HINT_SOON_S`, nor when a run waits on the
    bridge thread that starts that soon (`pending_at`: when each pending run may start; a
    delayed safety-poll run starts much later and does not count). A running tick may have
    read the batches already, so without a run queued behind it one is started.
    """
    if marker is not None and not _trust.verify(marker):
        marker = None
    if marker is not None and marker.get("state") == "scheduled":
        next_at = float(marker.get("next_at") or 0)
        if now - OVERDUE_GRACE_S <= next_at <= now + HINT_SOON_S:
            return False
    return not any(at <= now + HINT_SOON_S for at in pending_at)
