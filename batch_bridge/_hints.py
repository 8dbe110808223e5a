"""Provider hints: a webhook saying a provider batch ended makes its bridge batch due.

Three kinds of store record, all signed, so a client with store access cannot forge one:

- the index, deployment-wide: provider batch id -> (bridge, bridge batch id), written when
  a batch is submitted or the adapter resubmits part of it, deleted when it finishes;
- a hint, in the bridge's `hints` namespace: "poll batch B now", left by the webhook route
  and cleared by the poll that reads it (a hint that lands during a poll stays for the next);
- the webhook ids already taken, and counts of what the route accepted and refused.

A hint only moves a poll earlier: the bridge still polls on its own schedule, so a lost
webhook costs latency, never an answer.
"""

from __future__ import annotations

from typing import Any

from batch_bridge import _trust

HOOKS_ROOT = "batch_bridge_webhooks"
"""The deployment-wide namespace root (bridge namespaces live under `batch_bridge`)."""
INDEX = (HOOKS_ROOT, "index")
COUNTS = (HOOKS_ROOT, "counts")
HINTS = "hints"
INDEX_KIND = "batch_bridge.provider_batch"
HINT_KIND = "batch_bridge.hint"
ORPHAN_HINT_AGE_S = 60.0
"""A hint this old whose batch is gone (it finished as the webhook came) is deleted."""
SEEN_TTL_MIN = 30.0
"""Webhook ids are remembered this long (minutes); the SDK refuses any older than 5."""


def seen_namespace(provider: str) -> tuple[str, ...]:
    return (HOOKS_ROOT, "seen", provider)


def index_value(bridge: str, batch_id: str) -> dict[str, Any]:
    return _trust.sign({"kind": INDEX_KIND, "bridge": bridge, "batch_id": batch_id})


def parse_index(value: Any) -> tuple[str, str] | None:
    """(bridge, batch id) of an index record; None for anything unsigned or malformed."""
    if not isinstance(value, dict) or not _trust.verify(value):
        return None
    body = _trust.unsigned(value)
    bridge, batch_id = body.get("bridge"), body.get("batch_id")
    if body.get("kind") != INDEX_KIND or not isinstance(bridge, str):
        return None
    return (bridge, batch_id) if isinstance(batch_id, str) else None


def hint_value(at: float, event: str) -> dict[str, Any]:
    return _trust.sign({"kind": HINT_KIND, "at": at, "event": event})


def parse_hint(value: Any) -> float | None:
    """When a hint was left; None for anything unsigned or malformed."""
    if not isinstance(value, dict) or not _trust.verify(value):
        return None
    body = _trust.unsigned(value)
    at = body.get("at")
    if body.get("kind") != HINT_KIND or isinstance(at, bool) or not isinstance(at, int | float):
        return None
    return float(at)
