"""Confirmed, exactly-once delivery of results to the threads that wait on them.

Before every resume the bridge reads the caller's thread: it resumes only an interrupt that
is still pending there and whose value carries the item's digest, so neither a replayed
tick nor a stale or foreign record pushes a result twice or into the wrong thread. The try
is counted in the ledger *before* the resume is sent; after a crash, a thread that no longer
waits on an item that was tried means the resume went through. Refused resumes (busy
thread, 5xx, caller deployment down) back off exponentially up to a horizon of hours; then,
or when the thread is gone, the item is `undeliverable`: recorded and counted, never dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langgraph_sdk.errors import ConflictError, NotFoundError

from batch_bridge import _client
from batch_bridge._store import ItemRecord, Ledger
from batch_bridge.errors import ConfigError

log = logging.getLogger("batch_bridge")

BUSY_RETRY_S = 1.0
THREAD_PAGE = 100
"""Caller threads read with one search, and their tries recorded with one write."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryPolicy:
    horizon_s: float = 6 * 3600.0
    """How long refused resumes are retried before the item is undeliverable."""
    backoff_s: float = 1.0
    """First wait after a refused resume; doubles each time."""
    backoff_cap_s: float = 300.0
    concurrency: int = 20


async def guarded(gate: asyncio.Semaphore, job: Callable[[], Awaitable[Any]]) -> None:
    """Run one job when `gate` lets it; a failing job is logged, never raised."""
    async with gate:
        try:
            await job()
        except Exception:
            log.exception("bridge step failed; it is retried on a later tick")


async def bounded(jobs: Sequence[Callable[[], Awaitable[Any]]], limit: int) -> None:
    """Run jobs with at most `limit` at once; one failing job never stops the others."""
    gate = asyncio.Semaphore(limit)
    await asyncio.gather(*(guarded(gate, j) for j in jobs))


def waiting_calls(thread: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    """Record key (the `ref` a waiting call carries) -> (pending interrupt id, item digest).

    Matching by ref rather than by interrupt id covers a caller whose run was retried after
    a crash: its interrupt id changed, but its call found and kept the same record.
    """
    waiting: dict[str, tuple[str, str | None]] = {}
    for interrupts in (thread.get("interrupts") or {}).values():
        for pending in interrupts or []:
            value = pending.get("value")
            if isinstance(value, dict) and isinstance(value.get("ref"), str):
                waiting[value["ref"]] = (pending["id"], value.get("digest"))
    return waiting


class Deliverer:
    """Resumes the callers of one tick's due results, one resume run per caller thread."""

    def __init__(self, ledger: Ledger, policy: DeliveryPolicy) -> None:
        self.ledger = ledger
        self.policy = policy
        self.now = time.time()
        self.delivered = 0
        self.undeliverable = 0

    async def run(self, records: list[ItemRecord]) -> None:
        """Deliver in pages of caller threads: one search reads a page of threads, one write
        records every try of the page before its resumes go out, one write confirms them,
        so the store work per item stays flat however many results wait."""
        self.now = time.time()  # a batch that ended mid-tick is due now, not at the tick's start
        groups: dict[str | None, dict[str, list[ItemRecord]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for record in records:
            if record.next_attempt_at <= self.now:
                groups[record.resume_url][record.thread_id].append(record)
        for url, by_thread in groups.items():
            ids = list(by_thread)
            for start in range(0, len(ids), THREAD_PAGE):
                page = {t: by_thread[t] for t in ids[start : start + THREAD_PAGE]}
                try:
                    await self._page(url, page)
                except Exception:
                    log.exception("delivery of a page of results failed; retried next tick")

    async def _page(self, url: str | None, page: dict[str, list[ItemRecord]]) -> None:
        try:
            client = _client.callback_client(url)
        except ConfigError as exc:
            await self._give_up([r for rs in page.values() for r in rs], str(exc))
            return
        try:
            found = await client.threads.search(ids=list(page), limit=len(page))
        except Exception as exc:
            await self._refused(
                [r for rs in page.values() for r in rs], f"could not read caller threads: {exc!r}"
            )
            return
        threads = {t["thread_id"]: dict(t) for t in found}
        ready: dict[str, list[tuple[str, ItemRecord]]] = {}
        for thread_id, records in page.items():
            thread = threads.get(thread_id)
            if thread is None:
                await self._give_up(records, f"caller thread {thread_id!r} no longer exists")
                continue
            matched = await self._match(thread_id, thread, records)
            if matched:
                ready[thread_id] = matched
        if not ready:
            return
        tried = [record for matched in ready.values() for _, record in matched]
        for record in tried:
            record.attempts += 1
            record.next_attempt_at = self.now + self._backoff(record.failures + 1)
        await self.ledger.put_items(tried)  # every try counted before any resume is sent
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

    async def _match(
        self, thread_id: str, thread: dict[str, Any], records: list[ItemRecord]
    ) -> list[tuple[str, ItemRecord]]:
        """The records this thread waits on now, with their interrupt ids; settles the rest."""
        waiting = waiting_calls(thread)
        ready: list[tuple[str, ItemRecord]] = []
        later: list[ItemRecord] = []
        for record in records:
            if record.key in waiting:
                interrupt_id, digest = waiting[record.key]
                if digest == record.digest:
                    ready.append((interrupt_id, record))
                else:
                    await self._give_up(
                        [record],
                        f"thread {thread_id!r} waits on {record.key!r} for another item "
                        "(digest mismatch); not resuming it",
                    )
            elif thread.get("status") == "busy":
                later.append(record)
            elif record.attempts > 0:
                await self._confirm([record])
            else:
                await self._give_up(
                    [record],
                    f"thread {thread_id!r} no longer waits on {record.key!r} "
                    f"(status {thread.get('status')!r})",
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
            await self._give_up(records, f"caller thread {thread_id!r} no longer exists")
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
            record.next_attempt_at = self.now + BUSY_RETRY_S
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
