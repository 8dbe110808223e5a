"""Intake: queued items become batches, by the flush rule (`flush.py`) and the owner check.

Only items about to cost money are checked against their caller's thread. An item whose
thread is gone or no longer waits on it (deleted, its run cancelled or failed, or a record
replayed after its item was done) is withdrawn: deleted and counted, never billed. A record
its thread waits on for another item (digest mismatch) is quarantined.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from batch_bridge import _callers
from batch_bridge._notice import REFUSED_URL
from batch_bridge._packed import unpack, unpacked
from batch_bridge._store import ALIASES, ITEMS, ItemRecord, Ledger
from batch_bridge.bridge import dedupe
from batch_bridge.bridge.batches import Batches, deadline_of, earliest
from batch_bridge.bridge.calls import bounded
from batch_bridge.bridge.flush import plan_flush
from batch_bridge.errors import ConfigError

log = logging.getLogger("batch_bridge")

OwnerCheck = Callable[[list[ItemRecord]], Awaitable[tuple[list[ItemRecord], list[ItemRecord]]]]
"""Splits records into those whose caller waits on them and those to look at again later;
it quarantines the rest."""


@dataclass(frozen=True, slots=True)
class QueueView:
    """What the tick last saw of its queue: how many items, and when the oldest arrived."""

    count: int = 0
    oldest_at: float | None = None


class CallerCheck:
    """The owner check over the platform: reads each record's caller thread."""

    def __init__(self, ledger: Ledger, client_for: _callers.ClientFor) -> None:
        self.ledger = ledger
        self.client_for = client_for
        self.withdrawn = 0

    async def __call__(self, queued: list[ItemRecord]) -> tuple[list[ItemRecord], list[ItemRecord]]:
        """The queued items whose caller thread waits on them, and those to look at again.

        A busy thread may still be saving its interrupt: later.
        """
        ready: list[ItemRecord] = []
        later: list[ItemRecord] = []
        gone: list[ItemRecord] = []
        in_order: dict[str | None, list[ItemRecord]] = defaultdict(list)
        for record in queued:  # batches keep arrival order, whatever the threads
            in_order[record.resume_url].append(record)
        for url, by_thread in _callers.by_caller(queued).items():
            records = in_order[url]
            try:
                client = self.client_for(url)
            except ConfigError as exc:
                self.ledger.note_refused(url, REFUSED_URL, len(records))
                for record in records:
                    await self.reject(record, str(exc))
                continue
            try:
                verdicts = await self._verdicts(client, by_thread)
            except Exception as exc:
                log.warning("could not read caller threads at %s: %r; later", url, exc)
                later += records
                continue
            for record in records:
                seen = verdicts[id(record)]
                if seen.seen == "waits":
                    ready.append(record)
                elif seen.status == "busy":
                    later.append(record)
                elif seen.seen == "other_item":
                    await self.reject(
                        record, f"caller thread {record.thread_id!r} waits on it for another item"
                    )
                else:
                    gone.append(record)
        await self.withdraw(gone)
        return ready, later

    @staticmethod
    async def _verdicts(client: Any, by_thread: _callers.Threads) -> dict[int, _callers.Verdict]:
        """Each record's verdict (by the record's identity), the threads read a page at a
        time: only what the check needs is kept, not 500 threads of a hundred interrupts
        each (48 MB in the 50,000-request benchmark)."""
        verdicts: dict[int, _callers.Verdict] = {}
        shared: dict[tuple[str, str | None], _callers.Verdict] = {}
        for page in _callers.pages(by_thread):
            threads = await _callers.read_threads(client, list(page))
            for thread_id, records in page.items():
                found = _callers.verdicts(records, threads.get(thread_id))
                for record, full in zip(records, found, strict=True):
                    plain = _callers.Verdict(full.seen, None, full.status)
                    verdicts[id(record)] = shared.setdefault((full.seen, full.status), plain)
        return verdicts

    async def withdraw(self, records: list[ItemRecord]) -> None:
        """Forget items nobody waits on any more, before they cost anything."""
        if not records:
            return
        log.info("%d item(s) withdrawn: their callers no longer wait", len(records))
        await self.ledger.delete(ALIASES, [r.alias for r in records if r.alias])
        await self.ledger.delete(ITEMS, [r.key for r in records])
        self.withdrawn += len(records)

    async def reject(self, record: ItemRecord, reason: str) -> None:
        """Never act on a record: move it aside and count it."""
        await self.ledger.quarantine(ITEMS, record.key, record.to_value(), reason)


async def everyone_waits(
    queued: list[ItemRecord],
) -> tuple[list[ItemRecord], list[ItemRecord]]:
    """The owner check of script mode: every caller is a future of this process."""
    return queued, []


class Intake:
    """Reads the queue, applies the flush rule and opens batches; remembers what it saw."""

    def __init__(
        self, batches: Batches, owners: OwnerCheck, queue: QueueView | None = None
    ) -> None:
        self.batches = batches
        self.ledger = batches.ledger
        self.policy = batches.policy
        self.owners = owners
        self.queue = queue or QueueView()
        self.deferred = 0
        """Items of the last flush whose caller thread was busy: looked at again soon."""
        self.force_left = False
        """A forced flush deferred some of its items: the next look forces again, so "flush
        now" also sends those whose thread was still saving its interrupt."""
        self.due: list[ItemRecord] = []
        """Queued items whose deadline passed (and whose caller waits): they fall back."""
        self.next_deadline: float | None = None
        """The earliest deadline among the queued items last read."""

    def take_due(self) -> list[ItemRecord]:
        due, self.due = self.due, []
        return due

    async def _must_read_queue(self, force: bool, now: float) -> bool:
        """Whether this pass reads every queued record, or knows without it that no flush is due.

        A read costs O(queue) (every payload, every signature), so a tick that read a large
        queue on each pass while tens of thousands of callers enqueue would be quadratic.
        Above `read_queue_up_to` items the last look is enough: only the tick takes items out
        of the queue, so its count is a lower bound and its oldest item is at least as old
        as the real one. A custom rule needs every payload, so it always reads.
        """
        seen, policy = self.queue, self.policy
        if force or policy.should_flush is not None or seen.count <= policy.read_queue_up_to:
            return True
        age = policy.max_batch_age_s
        if age is not None and seen.oldest_at is not None and now >= seen.oldest_at + age:
            return True
        wait = policy.max_wait_s
        if wait is not None and seen.oldest_at is not None and now >= seen.oldest_at + wait:
            return True
        if self.next_deadline is not None and now >= self.next_deadline:
            return True
        return await self.ledger.queued_at_least(policy.max_batch_size)

    async def flush(self, force: bool, last_flushed_at: float, now: float) -> bool:
        """Turn queued items into batches and submit them (`self.queue` then counts what is
        left); returns whether it flushed."""
        if not await self._must_read_queue(force, now):
            return False
        queued = await self.ledger.items("queued", packed=True)
        queued.sort(key=lambda r: r.created_at)
        queued = await self._past_deadline(queued, now)
        chunks = plan_flush(
            queued,
            payloads=unpacked([r.item for r in queued]),
            oldest_at=queued[0].created_at if queued else None,
            last_flushed_at=last_flushed_at,
            now=now,
            policy=self.policy,
            force=force,
        )
        chosen = [r for chunk in chunks for r in chunk]
        ready, later = await self.owners(chosen) if chosen else ([], [])
        self.deferred = len(later)
        self.force_left = bool(later) and (force or self.force_left)
        size = self.policy.max_batch_size
        if self.policy.dedupe:
            chunks = dedupe.group(ready, size)
        else:
            chunks = [ready[i : i + size] for i in range(0, len(ready), size)]
        headers = [await self.batches.open(chunk) for chunk in chunks]
        submits = [
            partial(self.batches.submit, h, {r.key: r for r in chunk})
            for h, chunk in zip(headers, chunks, strict=True)
        ]
        await bounded(submits, self.batches.rel.concurrency)
        rejected = {r.key for r in chosen} - {r.key for r in ready + later}
        left = [r for r in queued if r.status == "queued" and r.key not in rejected]
        self.queue = QueueView(len(left), left[0].created_at if left else None)
        self.next_deadline = earliest(left, self.policy.max_wait_s)
        return bool(chunks)

    async def _past_deadline(self, queued: list[ItemRecord], now: float) -> list[ItemRecord]:
        """Set aside the items whose deadline passed (those whose caller still waits fall
        back); returns the rest, still to be batched."""
        wait = self.policy.max_wait_s
        past = [r for r in queued if (d := deadline_of(r, wait)) is not None and d <= now]
        if not past:
            return queued
        ready, _later = await self.owners(past)
        for record in ready:  # on to the normal API, one at a time
            record.item = unpack(record.item)
        taken = {r.key for r in self.due}
        self.due += [r for r in ready if r.key not in taken]
        gone = {r.key for r in past}
        return [r for r in queued if r.key not in gone]
