"""The status data: one JSON-safe snapshot of a bridge, for the page, its JSON and the CLI.

Live counts come from the store, the rest (finished batches, totals, usage) from the
bridge's state. It stays cheap whatever the queue: counts are size probes (searches of one
record at a growing offset), and only the few records shown are parsed. Nothing here
writes: a record that does not verify is skipped, never quarantined, and no payload or
result is ever part of the answer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from langgraph.store.base import BaseStore, Item

from batch_bridge._constants import STORE_PAGE
from batch_bridge._records import (
    BATCHES,
    HANDLE_KIND,
    HANDLES,
    ITEMS,
    QUARANTINE,
    BatchHeader,
    ItemRecord,
    RecordError,
    namespace,
    verified,
)
from batch_bridge.providers._handles import handle_summary

__all__ = ["STATUS_KIND", "bridge_status", "count_records"]

STATUS_KIND = "batch_bridge.status"
NEWEST_SHOWN = 5
"""Undeliverable and quarantined records listed by key (never by payload)."""
IN_FLIGHT_SHOWN = 50
"""In-flight batches listed in detail; the count covers them all."""
TOTALS = (
    "batches_submitted",
    "items_submitted",
    "items_completed",
    "items_failed",
    "items_delivered",
    "records_quarantined",
)


async def count_records(
    store: BaseStore, ns: tuple[str, ...], filter: dict[str, Any] | None = None
) -> int:
    """How many records match, found by probing offsets (doubling, then halving) with
    searches of one record each: about 2·log2(n) round trips, no page of payloads read."""

    async def exists(index: int) -> bool:
        return bool(await store.asearch(ns, filter=filter, limit=1, offset=index))

    if not await exists(0):
        return 0
    low, high = 0, 1  # low exists; find a high that does not
    while await exists(high):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if await exists(middle) else (low, middle)
    return low + 1


async def _ends(
    store: BaseStore, ns: tuple[str, ...], filter: dict[str, Any] | None, total: int, n: int
) -> list[Item]:
    """The first and the last `n` records of a search: the oldest and the newest whatever
    the store's order (insertion order in memory, most recently updated first on
    PostgreSQL)."""
    found = {i.key: i for i in await store.asearch(ns, filter=filter, limit=n)}
    if total > n:
        tail = await store.asearch(ns, filter=filter, limit=n, offset=max(n, total - n))
        found.update((i.key, i) for i in tail)
    return list(found.values())


async def _newest(
    store: BaseStore, ns: tuple[str, ...], filter: dict[str, Any] | None, total: int
) -> list[Item]:
    """Records to pick the newest few from: all of them up to a page (a record rewritten
    keeps its place in memory), else both ends of the search."""
    if total <= STORE_PAGE:
        return list(await store.asearch(ns, filter=filter, limit=STORE_PAGE))
    return await _ends(store, ns, filter, total, NEWEST_SHOWN)


def _item(stored: Item) -> ItemRecord | None:
    try:
        return ItemRecord.from_value(stored.key, stored.value)
    except RecordError:
        return None


async def _pending(store: BaseStore, bridge: str, now: float) -> dict[str, Any]:
    ns = namespace(bridge, ITEMS)
    queued = {"status": "queued"}
    total = await count_records(store, ns, queued)
    records = [r for i in await _ends(store, ns, queued, total, 1) if (r := _item(i))]
    oldest = min((r.created_at for r in records), default=None)
    return {
        "count": total,
        "oldest_at": oldest,
        "oldest_age_s": None if oldest is None else round(now - oldest, 3),
    }


async def _undeliverable(store: BaseStore, bridge: str) -> dict[str, Any]:
    ns = namespace(bridge, ITEMS)
    which = {"status": "undeliverable"}
    total = await count_records(store, ns, which)
    records = [r for i in await _newest(store, ns, which, total) if (r := _item(i))]
    records.sort(key=lambda r: r.updated_at, reverse=True)
    newest = [
        {"key": r.key, "reason": r.last_error, "at": r.updated_at} for r in records[:NEWEST_SHOWN]
    ]
    return {"count": total, "newest": newest}


async def _quarantined(store: BaseStore, bridge: str) -> dict[str, Any]:
    ns = namespace(bridge, QUARANTINE)
    total = await count_records(store, ns)
    kept = [i.value for i in await _newest(store, ns, None, total)]
    shown = [
        {
            "key": str(v.get("key")),
            "namespace": str(v.get("namespace")),
            "reason": str(v.get("reason"))[:500],
            "at": v.get("at") if isinstance(v.get("at"), int | float) else None,
        }
        for v in kept
        if isinstance(v, Mapping)
    ]
    shown.sort(key=lambda r: r["at"] or 0.0, reverse=True)
    return {"count": total, "newest": shown[:NEWEST_SHOWN]}


async def _headers(store: BaseStore, bridge: str) -> list[BatchHeader]:
    ns = namespace(bridge, BATCHES)
    headers: list[BatchHeader] = []
    offset = 0
    while True:
        page = await store.asearch(ns, limit=STORE_PAGE, offset=offset)
        offset += len(page)
        for stored in page:
            try:
                headers.append(BatchHeader.from_value(stored.key, stored.value))
            except RecordError:
                continue
        if len(page) < STORE_PAGE:
            return sorted(headers, key=lambda h: h.created_at)


async def _provider_side(store: BaseStore, bridge: str, header: BatchHeader) -> dict[str, Any]:
    """Provider ids and progress from the batch's stored handle, if it verifies."""
    if header.handle_digest is None:
        return {}
    stored = await store.aget(namespace(bridge, HANDLES), header.batch_id)
    if stored is None:
        return {}
    try:
        body = verified(stored.value)
    except RecordError:
        return {}
    return handle_summary(body.get("handle")) if body.get("kind") == HANDLE_KIND else {}


async def _in_flight(store: BaseStore, bridge: str, now: float) -> tuple[int, list[Any]]:
    headers = await _headers(store, bridge)
    shown = []
    for header in headers[:IN_FLIGHT_SHOWN]:
        due = header.next_poll_at if header.status == "submitted" else header.not_before
        side = await _provider_side(store, bridge, header)
        shown.append(
            {
                "batch_id": header.batch_id,
                "status": header.status,
                "size": header.size,
                "provider_ids": side.get("provider_ids", []),
                "done": side.get("done"),
                "total": side.get("total", header.size),
                "age_s": round(now - header.created_at, 3),
                "submitted_at": header.submitted_at,
                "next_poll_in_s": (
                    round(max(0.0, due - now), 3) if header.status != "forming" else None
                ),
                "submit_attempts": header.submit_attempts,
                "last_error": header.last_error,
            }
        )
    return len(headers), shown


def _usage(value: Any) -> dict[str, dict[str, Any]]:
    """Per-model figures as recorded, scalars only; `{}` when the bridge records none."""
    if not isinstance(value, Mapping):
        return {}
    usage = {}
    for model, fields in value.items():
        if isinstance(fields, Mapping):
            usage[str(model)] = {
                str(k): v
                for k, v in fields.items()
                if v is None
                or isinstance(v, str | bool | int)
                or (isinstance(v, float) and math.isfinite(v))
            }
    return usage


async def bridge_status(
    store: BaseStore,
    bridge: str,
    state: Mapping[str, Any] | None,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """A bridge's status: live counts from `store`, history and totals from its `state`
    (the bridge thread's values; None before its first tick). JSON-safe, never payloads."""
    now = time.time() if now is None else now
    state = state or {}
    in_flight_count, in_flight = await _in_flight(store, bridge, now)
    delivering = await count_records(store, namespace(bridge, ITEMS), {"status": "result"})
    return {
        "kind": STATUS_KIND,
        "bridge": bridge,
        "generated_at": now,
        "ticks": int(state.get("ticks") or 0),
        "next_tick_in_s": state.get("next_tick_in_s"),
        "pending": await _pending(store, bridge, now),
        "in_flight_count": in_flight_count,
        "in_flight": in_flight,
        "delivering": delivering,
        "finished": list(state.get("finished") or []),
        "undeliverable": await _undeliverable(store, bridge),
        "quarantined": await _quarantined(store, bridge),
        "last_error": state.get("last_error"),
        "totals": {key: int(state.get(key) or 0) for key in TOTALS},
        "usage": _usage(state.get("usage")),
    }
