"""Names that callers and the bridge must agree on (store namespaces, thread ids, env vars)."""

from __future__ import annotations

import time
import uuid
from typing import Any

NAMESPACE_ROOT = "batch_bridge"
TICK_MARKER = "tick"
OVERDUE_GRACE_S = 30.0
"""A scheduled tick this late is presumed lost: callers wake the bridge themselves."""
STALE_RUNNING_S = 360.0
"""A tick marked running for this long is presumed dead (its run was killed)."""

WAIT_KIND = "batch_bridge.wait"
RESULT_KIND = "batch_bridge.result"

BRIDGE_URL_ENV = "BATCH_BRIDGE_URL"
"""Where callers on another deployment find the bridge."""
CALLBACK_URL_ENV = "BATCH_BRIDGE_CALLBACK_URL"
"""Where a bridge on another deployment resumes this deployment's callers."""
SERVER_URL_ENV = "LANGGRAPH_API_URL"
"""Set by the LangGraph server to its own URL; the default callback URL."""

PAGE_SIZE = 1000


def tick_marker(state: str, next_at: float | None = None) -> dict[str, Any]:
    """The store record that tells callers whether a tick will read the queue (see needs_wake);
    signed, so a forged one cannot talk callers out of waking the bridge."""
    from batch_bridge._trust import sign

    return sign({"state": state, "next_at": next_at, "at": time.time()})


def bridge_thread_id(bridge: str) -> str:
    """One deterministic thread per bridge: the platform then serialises its ticks."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"batch-bridge:{bridge}"))


def check_bridge_name(name: str) -> str:
    from batch_bridge.errors import ConfigError

    if not isinstance(name, str) or not name or "." in name:
        raise ConfigError(
            f"Bridge name {name!r} is not usable: it must be a non-empty string without '.' "
            "(it names the graph in langgraph.json and a store namespace)."
        )
    return name
