"""The status data: one JSON-safe snapshot of a bridge, for the page, its JSON and the CLI.

Live counts come from the store, the rest (finished batches, totals, usage) from the
bridge's state. It stays cheap whatever the queue: counts are page probes (`count_records`:
a few store searches, never a read of the whole queue), and only the few records shown are
parsed. Nothing here
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
from batch_bridge.bridge.tick import TOTALS
from batch_bridge.providers._handles import handle_summary

__all__ = ["STATUS_KIND", "bridge_status", "count_records"]

STATUS_KIND = "batch_bridge.status"
NEWEST_SHOWN = 5
"""Undeliverable and quarantined records listed by key (never by payload)."""
IN_FLIGHT_SHOWN = 50
"""In-flight batches listed in detail; the count covers them all."""


async def count_records(
    store: BaseStore,
    ns: tuple[str, ...],
    filter: dict[str, Any] | None = None,
    *,
    hint: int | None = None,
) -> int:
    """How many records match, from searches of a page each, never all of them.

    A store search costs one pass over the namespace whatever its offset, so the number of
    searches is what counts. A page that comes back short gives the count at once: with a
    right `hint` (the tick's last count) one search of two records; else pages at doubling
    offsets, then halving between the last full page and the first empty one (about
    2·log2(n / page) searches: eight for 10,000 records).
    """
    page = STORE_PAGE

    async def seen(offset: int, limit: int = page) -> int:
        return len(await store.asearch(ns, filter=filter, limit=limit, offset=offset))

    if hint is not None and hint > 0 and await seen(hint - 1, 2) == 1:
        return hint
    low, offset, step = 0, 0, page  # low: records known to exist
    while (found := await seen(offset)) == page:
        low, offset, step = offset + page, offset + step, step * 2
    if found:
        return offset + found
    high = offset  # no record at `high`: the count is in [low, high]
    while low < high:
        middle = max(low, (low + high) // 2 - page // 2)
        found = await seen(middle)
        if 0 < found < page:
            return middle + found
        low, high = (middle + page, high) if found == page else (low, middle)
    return low


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
    store: BaseStore, ns: tuple[str, ...], filter: dict[str, Any] | None
) -> tuple[int, list[Item]]:
    """The count, and records to pick the newest few from: all of them up to a page (one
    search; a rewritten record keeps its place in memory), else both ends of the search."""
    first: list[Item] = list(await store.asearch(ns, filter=filter, limit=STORE_PAGE))
    if len(first) < STORE_PAGE:
        return len(first), first
    total = await count_records(store, ns, filter)
    return total, await _ends(store, ns, filter, total, NEWEST_SHOWN)


def _item(stored: Item) -> ItemRecord | None:
    try:
        return ItemRecord.from_value(stored.key, stored.value)
    except RecordError:
        return None


async def _pending(store: BaseStore, bridge: str, now: float, hint: int | None) -> dict[str, Any]:
    ns = namespace(bridge, ITEMS)
    queued = {"status": "queued"}
    total = await count_records(store, ns, queued, hint=hint)
    records = [r for i in await _ends(store, ns, queued, total, 1) if (r := _item(i))]
    oldest = min((r.created_at for r in records), default=None)
    return {
        "count": total,
        "oldest_at": oldest,
        "oldest_age_s": None if oldest is None else round(now - oldest, 3),
    }


async def _ended(store: BaseStore, bridge: str, status: str) -> dict[str, Any]:
    """Records that ended without a delivery (undeliverable, or dropped because the caller
    stopped waiting): counted from the records themselves, so a tick killed before it saved
    its counters still shows them."""
    ns = namespace(bridge, ITEMS)
    which = {"status": status}
    total, found = await _newest(store, ns, which)
    records = [r for i in found if (r := _item(i))]
    records.sort(key=lambda r: r.updated_at, reverse=True)
    newest = [
        {"key": r.key, "reason": r.last_error, "at": r.updated_at} for r in records[:NEWEST_SHOWN]
    ]
    return {"count": total, "newest": newest}


async def _quarantined(store: BaseStore, bridge: str) -> dict[str, Any]:
    ns = namespace(bridge, QUARANTINE)
    total, found = await _newest(store, ns, None)
    kept = [i.value for i in found]
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


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _usage(value: Any) -> dict[str, dict[str, Any]]:
    """Per-model figures as recorded, scalars only; `{}` when the bridge records none."""
    if isinstance(value, Mapping) and isinstance(value.get("by_model"), Mapping):
        value = value["by_model"]  # the bridge state's `UsageSummary`
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
        "pending": await _pending(store, bridge, now, _int(state.get("pending"))),
        "in_flight_count": in_flight_count,
        "in_flight": in_flight,
        "delivering": delivering,
        "falling_back": await count_records(
            store, namespace(bridge, ITEMS), {"status": "fallback"}
        ),
        "finished": list(state.get("finished") or []),
        "undeliverable": await _ended(store, bridge, "undeliverable"),
        "dropped": await _ended(store, bridge, "dropped"),
        "quarantined": await _quarantined(store, bridge),
        "refused": list(state.get("refused_origins") or []),
        "last_error": state.get("last_error"),
        "totals": {key: int(state.get(key) or 0) for key in TOTALS},
        "usage": _usage(state.get("usage")),
    }
