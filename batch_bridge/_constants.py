"""Names that callers and the bridge must agree on (store namespaces, thread ids, env vars)."""

from __future__ import annotations

import uuid

from batch_bridge.errors import ConfigError

NAMESPACE_ROOT = "batch_bridge"

WAIT_KIND = "batch_bridge.wait"
RESULT_KIND = "batch_bridge.result"

BRIDGE_URL_ENV = "BATCH_BRIDGE_URL"
"""Where callers on another deployment find the bridge."""
CALLBACK_URL_ENV = "BATCH_BRIDGE_CALLBACK_URL"
"""Where a bridge on another deployment resumes this deployment's callers."""
SERVER_URL_ENV = "LANGGRAPH_API_URL"
"""Set by the LangGraph server to its own URL; the default callback URL."""

STORE_PAGE = 1000
"""Store records read or written per round trip."""


def bridge_thread_id(bridge: str) -> str:
    """One deterministic thread per bridge: the platform then serialises its ticks."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"batch-bridge:{bridge}"))


def check_bridge_name(name: str) -> str:
    if not isinstance(name, str) or not name or "." in name:
        raise ConfigError(
            f"Bridge name {name!r} is not usable: it must be a non-empty string without '.' "
            "(it names the graph in langgraph.json and a store namespace)."
        )
    return name
