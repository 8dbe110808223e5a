"""Confirmed, exactly-once delivery of results to the threads that wait on them.

Before every resume the bridge reads the caller's thread: it resumes only an interrupt that
is still pending there and whose value carries the item's digest, so neither a replayed
tick nor a stale or foreign record pushes a result twice or into the wrong thread. The try
is recorded in the ledger *before* the resume is sent (one `tries` record per page, settled
into each item's `attempts` once its outcome is written); after a crash, a thread that no
longer waits on an item that was tried means the resume went through. Refused resumes (busy
thread, 5xx, caller deployment down) back off exponentially up to a horizon of hours; then
the item is `undeliverable`: recorded and counted. A caller that no longer waits (thread
deleted, run cancelled) is not retried: its result is `dropped` and counted at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from langgraph_sdk.errors import ConflictError, NotFoundError

from batch_bridge import _callers, _client
from batch_bridge._config import BUSY_THREAD_RETRY_S, DeliveryPolicy
from batch_bridge._store import TRIES, ItemRecord, Ledger
from batch_bridge.bridge.calls import Clock
from batch_bridge.errors import ConfigError

log = logging.getLogger("batch_bridge")


class Deliverer:
    """Resumes the callers of one tick's due results, one resume run per caller thread."""

    def __init__(
        self,
        ledger: Ledger,
        policy: DeliveryPolicy,
        client_for: _callers.ClientFor,
        clock: Clock,
    ) -> None:
        self.ledger = ledger
        self.policy = policy
        self.client_for = client_for
        self.clock = clock
        self.now = clock()
        self.delivered = 0
        self.undeliverable = 0
        self.dropped = 0
        self.tried_before: set[str] | None = None
        """Keys a killed tick's unsettled pages tried: read once per tick."""

    async def run(self, records: list[ItemRecord]) -> None:
        """Deliver in pages of caller threads: one search reads a page of threads, one
        record notes the page's tries before its resumes go out, one write per item settles
        them, so the store work per item stays flat however many results wait."""
        self.now = self.clock()  # a batch that ended mid-tick is due now, not at tick start
        if self.tried_before is None:
            self.tried_before = await self._settle_old_tries()
        for record in records:
            if record.key in self.tried_before:
                record.attempts = max(record.attempts, 1)
        due = [r for r in records if r.next_attempt_at <= self.now]
        for url, by_thread in _callers.by_caller(due).items():
            for page in _callers.pages(by_thread):
                try:
                    await self._page(url, page)
                except Exception:
                    log.exception("delivery of a page of results failed; retried next tick")

    async def _page(self, url: str | None, page: _callers.Threads) -> None:
        try:
            client = self.client_for(url)
        except ConfigError as exc:
            await self._give_up([r for rs in page.values() for r in rs], str(exc))
            return
        try:
            threads = await _callers.read_threads(client, list(page))
        except Exception as exc:
            await self._refused(
                [r for rs in page.values() for r in rs], f"could not read caller threads: {exc!r}"
            )
            return
        ready: dict[str, list[tuple[str, ItemRecord]]] = {}
        for thread_id, records in page.items():
            thread = threads.get(thread_id)
            if thread is None:
                await self._drop(records, f"caller thread {thread_id!r} no longer exists")
                continue
            matched = await self._match(thread_id, thread, records)
            if matched:
                ready[thread_id] = matched
        if not ready:
            return
        tried = [record for matched in ready.values() for _, record in matched]
        page_id = uuid.uuid4().hex
        await self.ledger.put_tries(page_id, [r.key for r in tried])  # before any resume
        for record in tried:  # written with each item's outcome
            record.attempts += 1
            record.next_attempt_at = self.now + self._backoff(record.failures + 1)
        gate = asyncio.Semaphore(self.policy.concurrency)

        async def resume(thread_id: str, matched: list[tuple[str, ItemRecord]]) -> bool:
            async with gate:
                return await self._resume(client, thread_id, matched)

        outcomes = await asyncio.gather(*(resume(t, m) for t, m in ready.items()))
        await self._confirm(
            [
                r
                for ok, matched in zip(outcomes, ready.values(), strict=True)
                if ok
                for _, r in matched
            ]
        )
        await self.ledger.delete(TRIES, [page_id])  # every try's outcome is written

    async def _settle_old_tries(self) -> set[str]:
        """Write the tries of pages a killed tick left unsettled into their items'
        `attempts`, then drop those pages: their resumes may have gone through."""
        pages = await self.ledger.tries()
        keys = {key for page in pages.values() for key in page}
        if not pages:
            return keys
        found = await self.ledger.get_items(sorted(keys))
        unsettled = [r for r in found.values() if r.status == "result" and r.attempts == 0]
        for record in unsettled:
            record.attempts = 1
        await self.ledger.put_items(unsettled)
        await self.ledger.delete(TRIES, list(pages))
        return keys

    async def _match(
        self, thread_id: str, thread: dict[str, Any], records: list[ItemRecord]
    ) -> list[tuple[str, ItemRecord]]:
        """The records this thread waits on now, with their interrupt ids; settles the rest."""
        ready: list[tuple[str, ItemRecord]] = []
        later: list[ItemRecord] = []
        for record, seen in zip(records, _callers.verdicts(records, thread), strict=True):
            if seen.seen == "waits" and record.attempts > 0 and seen.status == "busy":
                # An earlier try's resume run may be the one queued on this thread (its
                # interrupt shows as pending until that run executes): look again once the
                # thread is at rest, never send a second resume on the platform's 409 alone.
                later.append(record)
            elif seen.seen == "waits" and seen.interrupt_id is not None:
                ready.append((seen.interrupt_id, record))
            elif seen.seen == "other_item":
                await self._give_up(
                    [record],
                    f"thread {thread_id!r} waits on {record.key!r} for another item "
                    "(digest mismatch); not resuming it",
                )
            elif seen.seen == "busy":
                later.append(record)
            elif record.attempts > 0:
                await self._confirm([record])
            else:
                await self._drop(
                    [record],
                    f"thread {thread_id!r} no longer waits on {record.key!r} "
                    f"(status {seen.status!r})",
                )
        if later:
            await self._busy(later)
        return ready

    async def _resume(
        self, client: Any, thread_id: str, ready: list[tuple[str, ItemRecord]]
    ) -> bool:
        """Send one resume run; True when the platform took it (confirmed by the caller)."""
        records = [record for _, record in ready]
        answers = {i: {**(r.result or {}), "item_key": r.key} for i, r in ready}
        try:
            await _client.resume(client, thread_id, records[0].assistant_id, answers)
        except ConflictError:
            for record in records:
                record.attempts -= 1
            await self._busy(records)
            return False
        except NotFoundError:
            await self._drop(records, f"caller thread {thread_id!r} no longer exists")
            return False
        except Exception as exc:
            await self._refused(records, f"resume refused: {exc!r}")
            return False
        return True

    def _backoff(self, failures: int) -> float:
        exponent = max(0, failures - 1)
        return float(min(self.policy.backoff_cap_s, self.policy.backoff_s * 2**exponent))

    def _expired(self, record: ItemRecord) -> bool:
        return self.now - (record.result_at or record.created_at) >= self.policy.horizon_s

    async def _confirm(self, records: list[ItemRecord]) -> None:
        if not records:
            return
        for record in records:
            record.status = "delivered"
            record.result = None
            record.item = None
            record.last_error = None
        await self.ledger.put_items(records)
        self.delivered += len(records)

    async def _busy(self, records: list[ItemRecord]) -> None:
        """A busy thread is normal (its run is still going): look again soon."""
        expired = [r for r in records if self._expired(r)]
        if expired:
            await self._give_up(expired, "caller thread stayed busy past the delivery horizon")
        rest = [r for r in records if not self._expired(r)]
        for record in rest:
            record.next_attempt_at = self.now + BUSY_THREAD_RETRY_S
        if rest:
            await self.ledger.put_items(rest)

    async def _refused(self, records: list[ItemRecord], reason: str) -> None:
        log.warning("delivery to %s deferred: %s", records[0].thread_id, reason)
        expired = [r for r in records if self._expired(r)]
        if expired:
            await self._give_up(expired, f"{reason}; gave up after the delivery horizon")
        rest = [r for r in records if not self._expired(r)]
        for record in rest:
            record.failures += 1
            record.last_error = reason
            record.next_attempt_at = self.now + self._backoff(record.failures)
        if rest:
            await self.ledger.put_items(rest)

    async def _give_up(self, records: list[ItemRecord], reason: str) -> None:
        log.error("%d result(s) undeliverable: %s", len(records), reason)
        for record in records:
            record.status = "undeliverable"
            record.last_error = reason
        await self.ledger.put_items(records)
        self.undeliverable += len(records)

    async def _drop(self, records: list[ItemRecord], reason: str) -> None:
        """The caller stopped waiting (thread deleted, run cancelled): no use retrying."""
        log.info("%d result(s) dropped: %s", len(records), reason)
        for record in records:
            record.status = "dropped"
            record.item = None
            record.last_error = reason
        await self.ledger.put_items(records)
        self.dropped += len(records)
