"""The ledger: the bridge's namespaces in a platform store, read and written in pages.

Everything the bridge knows lives here, so that any worker can pick up where a killed one
stopped. The records themselves (their shapes, signatures and state machines) are in
`_records`; their names are re-exported here for the modules that read the ledger.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from langgraph.store.base import BaseStore, GetOp, Item, PutOp

from batch_bridge import _hints, _trust
from batch_bridge._constants import STORE_PAGE
from batch_bridge._notice import REFUSED_KEY
from batch_bridge._packed import pack
from batch_bridge._records import (
    ALIAS_KIND,
    ALIASES,
    BATCH_KIND,
    BATCHES,
    HANDLE_KIND,
    HANDLES,
    ITEM_KIND,
    ITEMS,
    MEMBERS,
    MEMBERS_KIND,
    META,
    QUARANTINE,
    TRIES,
    BatchHeader,
    BatchStatus,
    ItemRecord,
    ItemStatus,
    RecordError,
    SignatureError,
    alias_value,
    check_storable,
    digest,
    handle_digest,
    item_key,
    members_value,
    namespace,
    parse_alias,
    parse_members,
    parse_membership,
    parse_tries,
    tries_value,
    verified,
)
from batch_bridge._usage import (
    USAGE_BATCHES,
    USAGE_KIND,
    ModelUsage,
    batch_of_usage_key,
    item_usage,
    thread_share,
    usage_namespace,
)

__all__ = [
    "ALIASES",
    "ALIAS_KIND",
    "BATCHES",
    "BATCH_KIND",
    "HANDLES",
    "HANDLE_KIND",
    "ITEMS",
    "ITEM_KIND",
    "MEMBERS",
    "MEMBERS_KIND",
    "META",
    "QUARANTINE",
    "TRIES",
    "BatchHeader",
    "BatchStatus",
    "ItemRecord",
    "ItemStatus",
    "Ledger",
    "RecordError",
    "SignatureError",
    "alias_value",
    "check_storable",
    "digest",
    "handle_digest",
    "item_key",
    "members_value",
    "namespace",
    "parse_alias",
    "parse_members",
    "parse_membership",
]

log = logging.getLogger("batch_bridge")


class Ledger:
    """The bridge's view of its namespaces in a platform store (in-process, from a node)."""

    def __init__(self, store: BaseStore, bridge: str) -> None:
        self.store = store
        self.bridge = bridge
        self.quarantined = 0
        self.refused: dict[tuple[str | None, str], int] = {}
        """Items refused for a caller's configuration, by (callback URL, reason): counts only."""
        self.hinted: set[str] = set()
        """Batches a provider webhook made due, as `headers` last found them."""

    def ns(self, part: str) -> tuple[str, ...]:
        return namespace(self.bridge, part)

    async def search(self, part: str, filter: dict[str, Any] | None = None) -> list[Item]:
        """Every record of a namespace (optionally filtered), read in pages before use, so
        that rewriting records while working never shifts a page. Order is the store's own
        (insertion order in memory, most recently updated first on PostgreSQL)."""
        found: dict[tuple[tuple[str, ...], str], Item] = {}
        async for page in self._pages(part, filter):
            for stored in page:  # a record written meanwhile shifts pages: keep one copy
                found.setdefault((tuple(stored.namespace), stored.key), stored)
        return list(found.values())

    async def _pages(
        self, part: str, filter: dict[str, Any] | None
    ) -> AsyncIterator[Sequence[Item]]:
        offset = 0
        while True:
            page = await self.store.asearch(
                self.ns(part), filter=filter, limit=STORE_PAGE, offset=offset
            )
            offset += len(page)
            yield page
            if len(page) < STORE_PAGE:
                return

    async def items(self, status: ItemStatus, *, packed: bool = False) -> list[ItemRecord]:
        """The records of one status, each page parsed as it is read: the stored values
        (twice the size of the records) are never all held at once. `packed`: each item
        is kept as its JSON (`_packed`), for a flush that may read tens of thousands."""
        records: list[ItemRecord] = []
        seen: set[str] = set()
        async for page in self._pages(ITEMS, {"status": status}):
            for stored in page:
                if stored.key in seen:
                    continue
                seen.add(stored.key)
                record = await self.parse_item(stored.key, stored.value)
                if record is not None and record.status == status:
                    if packed:
                        record.item = pack(record.item)
                    records.append(record)
        return records

    async def queued_at_least(self, n: int) -> bool:
        """Whether `n` or more items are queued, without reading them (the store counts)."""
        found = await self.store.asearch(
            self.ns(ITEMS), filter={"status": "queued"}, limit=1, offset=max(0, n - 1)
        )
        return bool(found)

    async def get_items(self, keys: Sequence[str]) -> dict[str, ItemRecord]:
        """Many records in one store round trip per page; malformed ones are quarantined."""
        found: dict[str, ItemRecord] = {}
        for start in range(0, len(keys), STORE_PAGE):
            chunk = keys[start : start + STORE_PAGE]
            results = await self.store.abatch([GetOp(self.ns(ITEMS), k) for k in chunk])
            for key, stored in zip(chunk, results, strict=True):
                if isinstance(stored, Item):
                    record = await self.parse_item(key, stored.value)
                    if record is not None:
                        found[key] = record
        return found

    async def put_items(self, records: Iterable[ItemRecord], *, usage: bool = False) -> None:
        """Write records, a page per round trip. With `usage` (an item answered on its own,
        by the normal API), each record's usage record (keyed like the item, in its thread's
        namespace) goes first, in the same pages: a re-run overwrites it, so nothing is
        counted twice."""
        records = list(records)
        now = time.time()
        step = STORE_PAGE // 2 if usage else STORE_PAGE
        for start in range(0, len(records), step):  # values built a page at a time
            ops, items = [], []
            for record in records[start : start + step]:
                record.updated_at = now
                value = record.to_value()
                items.append(PutOp(self.ns(ITEMS), record.key, value, index=False))
                if usage and record.usage is not None:
                    spent = item_usage(record.usage, record.thread_id, record.batch_id, now)
                    ns = usage_namespace(self.bridge, record.thread_id)
                    ops.append(PutOp(ns, record.key, spent, index=False))
            await self.store.abatch(ops + items)

    async def put_thread_usage(
        self, batch_id: str, shares: dict[str, dict[str, ModelUsage]]
    ) -> None:
        """Each caller thread's usage record for one batch (see `_usage`), a page per round
        trip; a re-run writes the same sums over the same members again."""
        now, threads = time.time(), list(shares.items())
        for start in range(0, len(threads), STORE_PAGE):
            await self.store.abatch(
                [
                    PutOp(
                        usage_namespace(self.bridge, thread_id),
                        batch_id,
                        thread_share(by_model, thread_id, batch_id, now),
                        index=False,
                    )
                    for thread_id, by_model in threads[start : start + STORE_PAGE]
                ]
            )

    async def put_tries(self, page_id: str, keys: list[str]) -> None:
        """One record for a page of resumes about to be sent, instead of a rewrite of each
        item's record: deleted once each item's outcome is written."""
        await self.store.aput(self.ns(TRIES), page_id, tries_value(keys), index=False)

    async def tries(self) -> dict[str, list[str]]:
        """Pages of resumes a killed tick left unsettled, by page id."""
        found: dict[str, list[str]] = {}
        for stored in await self.search(TRIES):
            try:
                found[stored.key] = parse_tries(stored.value)
            except RecordError as exc:
                await self.quarantine(TRIES, stored.key, stored.value, str(exc))
        return found

    async def put_batch_usage(self, key: str, by_model: dict[str, ModelUsage]) -> None:
        """A batch's (or a page of it's) per-model usage, written once: a re-run of
        `finish` after a crash sees fewer unfinished items, and must not replace the sums
        over all of them."""
        if await self.store.aget(self.ns(USAGE_BATCHES), key) is not None:
            return
        batch_id = batch_of_usage_key(key)
        value = {"kind": USAGE_KIND, "batch_id": batch_id, "by_model": by_model}
        await self.store.aput(self.ns(USAGE_BATCHES), key, value, index=False)

    async def parse_item(self, key: str, value: Any) -> ItemRecord | None:
        try:
            return ItemRecord.from_value(key, value)
        except RecordError as exc:
            if isinstance(exc, SignatureError):
                url = value.get("resume_url") if isinstance(value, dict) else None
                self.note_refused(url if isinstance(url, str) else None, REFUSED_KEY)
            await self.quarantine(ITEMS, key, value, str(exc))
            return None

    def note_refused(self, url: str | None, reason: str, count: int = 1) -> None:
        """Count items refused for where they came from (the URL as the record gives it,
        unverified when the signature failed: shown, never called)."""
        where = (url[:200] if url else None, reason)
        self.refused[where] = self.refused.get(where, 0) + count

    async def headers(self) -> list[BatchHeader]:
        """Every batch header; a batch a webhook hinted at is due from the hint's time."""
        headers = []
        for stored in await self.search(BATCHES):
            try:
                headers.append(BatchHeader.from_value(stored.key, stored.value))
            except RecordError as exc:
                await self.quarantine(BATCHES, stored.key, stored.value, str(exc))
        hints = await self.search(_hints.HINTS)
        if hints:
            await self._apply_hints(headers, hints)
        return headers

    async def _apply_hints(self, headers: list[BatchHeader], hints: list[Item]) -> None:
        by_id = {h.batch_id: h for h in headers}
        self.hinted = set()
        now = time.time()
        for stored in hints:
            at, header = _hints.parse_hint(stored.value), by_id.get(stored.key)
            if header is not None and at is not None:
                header.next_poll_at = min(header.next_poll_at, at)
                self.hinted.add(header.batch_id)
            elif at is None or now - at > _hints.ORPHAN_HINT_AGE_S:
                await self.store.adelete(self.ns(_hints.HINTS), stored.key)

    async def clear_hint(self, batch_id: str, polled_from: float) -> None:
        """Drop a batch's hint once a poll that started after it has answered."""
        if batch_id not in self.hinted:
            return
        stored = await self.store.aget(self.ns(_hints.HINTS), batch_id)
        at = None if stored is None else _hints.parse_hint(stored.value)
        if stored is not None and (at is None or at <= polled_from):
            await self.store.adelete(self.ns(_hints.HINTS), batch_id)
            self.hinted.discard(batch_id)

    async def index(self, batch_id: str, provider_ids: Sequence[str]) -> None:
        """Let webhooks find this batch by the provider's ids (deployment-wide)."""
        value = _hints.index_value(self.bridge, batch_id)
        for provider_id in provider_ids:
            await self.store.aput(_hints.INDEX, provider_id, value, index=False)

    async def unindex(self, provider_ids: Sequence[str]) -> None:
        for provider_id in provider_ids:
            await self.store.adelete(_hints.INDEX, provider_id)

    async def put_header(self, header: BatchHeader) -> None:
        """Write the header, and before it the handle when it changed since last written."""
        if header.handle is not None:
            digest = handle_digest(header.handle)
            if digest != header.handle_digest:
                value = _trust.sign({"kind": HANDLE_KIND, "handle": header.handle})
                await self.store.aput(self.ns(HANDLES), header.batch_id, value, index=False)
                header.handle_digest = digest
        await self.store.aput(self.ns(BATCHES), header.batch_id, header.to_value(), index=False)

    async def load_handle(self, header: BatchHeader) -> None:
        """Read the handle of a header loaded from the store, before a provider call."""
        if header.handle is not None or header.handle_digest is None:
            return
        stored = await self.store.aget(self.ns(HANDLES), header.batch_id)
        if stored is None:
            return
        try:
            body = verified(stored.value)
            if body.get("kind") != HANDLE_KIND or "handle" not in body:
                raise RecordError("not a batch handle")
        except RecordError as exc:
            await self.quarantine(HANDLES, header.batch_id, stored.value, str(exc))
            return
        header.handle = body["handle"]

    async def delete(self, part: str, keys: Sequence[str]) -> None:
        """Delete many records, a page per store round trip."""
        for start in range(0, len(keys), STORE_PAGE):
            page = keys[start : start + STORE_PAGE]
            await self.store.abatch([PutOp(self.ns(part), key, None) for key in page])

    async def delete_batch(self, batch_id: str) -> None:
        await self.store.adelete(self.ns(BATCHES), batch_id)
        await self.store.adelete(self.ns(MEMBERS), batch_id)
        await self.store.adelete(self.ns(HANDLES), batch_id)
        await self.store.adelete(self.ns(_hints.HINTS), batch_id)

    async def put_members(
        self, batch_id: str, keys: list[str], slots: list[int] | None = None
    ) -> None:
        value = members_value(keys, slots)
        await self.store.aput(self.ns(MEMBERS), batch_id, value, index=False)

    async def members(self, batch_id: str) -> list[str] | None:
        found = await self.membership(batch_id)
        return None if found is None else found[0]

    async def membership(self, batch_id: str) -> tuple[list[str], list[int] | None] | None:
        """A batch's member keys and their slots (None: one provider request per key)."""
        stored = await self.store.aget(self.ns(MEMBERS), batch_id)
        if stored is None:
            return None
        try:
            return parse_membership(stored.value)
        except RecordError as exc:
            await self.quarantine(MEMBERS, batch_id, stored.value, str(exc))
            return None

    async def quarantine(self, part: str, key: str, value: Any, reason: str) -> None:
        """Move a record the bridge cannot trust out of its way, keeping it for inspection."""
        log.error("quarantined %s record %r: %s", part, key, reason)
        self.quarantined += 1
        try:
            kept = json.loads(json.dumps(value, default=repr))
            check_storable(kept, "record")
        except (TypeError, ValueError):
            kept = repr(value)[:10_000]
        await self.store.aput(
            self.ns(QUARANTINE),
            f"{part}:{key}",
            {"namespace": part, "key": key, "reason": reason, "value": kept, "at": time.time()},
            index=False,
        )
        await self.store.adelete(self.ns(part), key)
