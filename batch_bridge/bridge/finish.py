"""The end of a batch: each member's result and cost recorded, then handed on, a page of
whole caller threads at a time.

A page is read, written and delivered before the next one is read, so a batch of 50,000
rows never has 50,000 records, store values and resumes alive at once, and a caller thread
is resumed once with all of its answers. A crash between pages only means a second look:
a re-run skips the members that already have their result, and each page's usage record
is written once, before any of its records. Each caller thread's share of the batch is
one record, written before the thread's results and summed over all its members of the
batch, those recorded by an earlier run included, so a re-run writes the same sums again.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from batch_bridge._prices import PriceTable
from batch_bridge._results import Envelope
from batch_bridge._store import BatchHeader, ItemRecord, Ledger
from batch_bridge._usage import ModelUsage, add_costs, batch_usage_key
from batch_bridge.bridge.calls import Clock
from batch_bridge.providers._handles import handle_summary

FINISH_PAGE = 2_000
"""Members a page aims at; a page ends with a whole thread, so one may hold more."""

HandOn = Callable[[list[ItemRecord]], Awaitable[None]]
"""Takes records that just got their result (status `result`): the bridge resumes their
callers, script mode settles their futures."""

Member = tuple[str, int]
"""A member's record key and its slot (its provider request) in the batch."""


def thread_pages(
    keys: list[str], slots: list[int] | None, size: int = FINISH_PAGE
) -> Iterator[list[Member]]:
    """Members in pages of whole caller threads (a key is `thread:interrupt`)."""
    by_thread: dict[str, list[Member]] = {}
    for index, key in enumerate(keys):
        slot = index if slots is None else slots[index]
        by_thread.setdefault(key.rpartition(":")[0], []).append((key, slot))
    page: list[Member] = []
    for members in by_thread.values():
        page += members
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


@dataclass
class Tally:
    """What the status page shows of a finished batch, counted as the pages go."""

    ok: int = 0
    failed: int = 0
    error: str | None = None

    def add(self, envelope: Envelope) -> None:
        if envelope.get("ok"):
            self.ok += 1
            return
        self.failed += 1
        error = envelope.get("error")
        if self.error is None and isinstance(error, dict):
            self.error = str(error.get("message") or error.get("type"))[:300]


class Finish:
    """Records a finished batch's results and hands them on, page by page."""

    page_size = FINISH_PAGE

    def __init__(
        self,
        ledger: Ledger,
        prices: PriceTable,
        counts: dict[str, int],
        clock: Clock,
    ) -> None:
        self.ledger = ledger
        self.prices = prices
        self.counts = counts
        self.clock = clock

    async def run(
        self, header: BatchHeader, envelopes: Sequence[Envelope | None], hand_on: HandOn
    ) -> dict[str, Any]:
        """Every page in turn; returns the batch as the status page lists it. A slot's
        envelope is let go once its last member is recorded (`envelopes` is the bridge's
        own list), so the results already handed on do not wait for the rest."""
        keys, slots = await self.ledger.membership(header.batch_id) or ([], None)
        left = Counter(range(len(keys)) if slots is None else slots)
        tally, leads = Tally(), set[int]()
        for number, page in enumerate(thread_pages(keys, slots, self.page_size)):
            records = await self.ledger.get_items([key for key, _ in page])
            done, costs = self._settle(header, page, records, envelopes, leads, tally)
            for _, slot in page:
                left[slot] -= 1
                if not left[slot] and slot < len(envelopes) and isinstance(envelopes, list):
                    envelopes[slot] = None
            by_model: dict[str, ModelUsage] = {}
            add_costs(by_model, costs)
            if by_model:
                key = batch_usage_key(header.batch_id, number)
                await self.ledger.put_batch_usage(key, by_model)
            shares = thread_shares(header, records, done)
            await self.ledger.put_thread_usage(header.batch_id, shares)
            await self.ledger.put_items(done)
            await hand_on(done)
        return finished_entry(header, tally, self.clock())

    def _settle(
        self,
        header: BatchHeader,
        page: list[Member],
        records: dict[str, ItemRecord],
        envelopes: Sequence[Envelope | None],
        leads: set[int],
        tally: Tally,
    ) -> tuple[list[ItemRecord], list[dict[str, Any]]]:
        """A page's records that take their result now, and the costs of its billed slots
        (the provider billed a slot once, whichever member leads it). A member answered
        meanwhile by the normal API (fallback) only has its late row's cost counted."""
        done: list[ItemRecord] = []
        costs: list[dict[str, Any]] = []
        for key, slot in page:
            envelope = envelopes[slot] if slot < len(envelopes) else None
            rider = slot in leads
            leads.add(slot)
            if envelope is not None and not rider:
                tally.add(envelope)
            record = records.get(key)
            if envelope is None or record is None:
                continue
            billed = envelope.get("ok") and not rider
            cost = self.prices.cost(envelope.get("value")) if billed else None
            if record.status != "batched" or record.batch_id != header.batch_id:
                if record.fallback_at is not None and record.batch_id == header.batch_id:
                    self.counts["late_rows_dropped"] += 1
                    costs += [cost] if cost else []
                continue
            record.status, record.result = "result", copy.deepcopy(envelope) if rider else envelope
            record.item = None  # answered: the request is not needed again, nor written again
            record.result_at = record.next_attempt_at = self.clock()
            record.usage = cost
            costs += [cost] if cost else []
            done.append(record)
            self.counts["items_completed" if envelope.get("ok") else "items_failed"] += 1
        return done, costs


def thread_shares(
    header: BatchHeader, records: dict[str, ItemRecord], done: list[ItemRecord]
) -> dict[str, dict[str, ModelUsage]]:
    """Per-model usage of each thread with results recorded now, over all its members of
    the batch that have theirs (a page holds whole threads). Items answered by the normal
    API have records of their own."""
    now = {r.thread_id for r in done if r.usage is not None}
    shares: dict[str, dict[str, ModelUsage]] = {}
    for record in records.values():
        if (
            record.thread_id in now
            and record.batch_id == header.batch_id
            and record.usage is not None
            and record.fallback_at is None
        ):
            add_costs(shares.setdefault(record.thread_id, {}), [record.usage])
    return shares


def finished_entry(header: BatchHeader, tally: Tally, now: float) -> dict[str, Any]:
    """A finished batch as the status page shows it: outcome, counts, duration, first error."""
    entry: dict[str, Any] = {
        "batch_id": header.batch_id,
        "outcome": "failed" if tally.failed and not tally.ok else "completed",
        "size": header.size,
        "ok": tally.ok,
        "failed": tally.failed,
        "created_at": header.created_at,
        "submitted_at": header.submitted_at,
        "finished_at": now,
        "duration_s": round(now - header.created_at, 3),
    }
    if tally.error is not None:
        entry["error"] = tally.error
    return entry | handle_summary(header.handle)
