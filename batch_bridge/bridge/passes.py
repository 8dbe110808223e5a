"""A pass: what is due, in what order. The bridge's tick and script mode both take passes.

One pass finishes batches a killed tick left forming (they claim their items before
anything reads the queue), then flushes and calls the provider for every batch that falls
due while calls are out, hands results on, and works out when to look again.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import NamedTuple, Protocol

from batch_bridge._config import CALLS_CHECK_EVERY_S, DEFERRED_RECHECK_S, QUEUE_RECHECK_EVERY_S
from batch_bridge._store import BatchHeader, ItemRecord
from batch_bridge.bridge.batches import Batches
from batch_bridge.bridge.calls import bounded, guarded
from batch_bridge.bridge.fallback import Fallbacks
from batch_bridge.bridge.flush import next_check_in
from batch_bridge.bridge.intake import Intake


class Delivery(Protocol):
    """Hands recorded results to their callers (`Deliverer`, or script mode's futures)."""

    delivered: int

    async def run(self, records: list[ItemRecord]) -> None: ...


class PassOutcome(NamedTuple):
    last_flushed_at: float
    delay: float | None
    """Seconds until the bridge should look again (None: nothing left to do)."""
    soon: float | None
    """Seconds until work is surely due (a poll, a delivery, a batch old enough; not a
    custom flush rule's re-check)."""


class Passes:
    """Takes passes over one bridge's ledger."""

    def __init__(self, batches: Batches, intake: Intake, delivery: Delivery) -> None:
        self.batches = batches
        self.intake = intake
        self.delivery = delivery
        self.ledger = batches.ledger
        self.clock = batches.clock
        self.now = self.clock()
        self.fallbacks = Fallbacks(batches)
        self.undelivered = 0
        """Results the last pass left waiting for a retry (busy or refusing callers)."""

    async def take(self, force: bool, last_flushed: float) -> PassOutcome:
        """One pass: finish forming batches, call the provider, flush, deliver."""
        self.now = self.clock()
        headers = await self.ledger.headers()
        forming = [partial(self.batches.form, h) for h in headers if h.status == "forming"]
        await bounded(forming, self.batches.rel.concurrency)
        await self.fallbacks.run(self.intake.take_due())  # before any due batch is submitted
        flushed_at = await self._drive(await self.ledger.headers(), force, last_flushed)
        last_flushed = flushed_at or last_flushed
        if self.intake.due:  # queued items the flush found past their deadline
            await self.fallbacks.run(self.intake.take_due())
        results = await self.ledger.items("result")
        await self.delivery.run(results)  # settles them in place: the rest wait for a retry
        self.undelivered = sum(r.status == "result" for r in results)

        due = [Batches.due_at(h) for h in await self.ledger.headers()]
        due += [r.next_attempt_at for r in results if r.status == "result"]
        deadlines = (self.fallbacks.next_at, self.intake.next_deadline)
        due += [t for t in deadlines if t is not None]
        now = self.clock()
        if self.intake.deferred:
            due.append(now + DEFERRED_RECHECK_S)
        queue, policy = self.intake.queue, self.batches.policy
        delay = next_check_in(
            has_pending=bool(queue.count),
            oldest_at=queue.oldest_at,
            due_times=due,
            now=now,
            policy=policy,
        )
        if queue.count and policy.max_batch_age_s is not None and queue.oldest_at is not None:
            due.append(queue.oldest_at + policy.max_batch_age_s)
        soon = max(0.0, min(due) - now) if due else None
        return PassOutcome(last_flushed, delay, soon)

    async def _drive(
        self, headers: list[BatchHeader], force: bool, last_flushed_at: float
    ) -> float | None:
        """Flush, and call the provider for every batch that falls due while calls are out.

        A provider call that hangs holds only its own batch: until the slowest call of this
        pass returns (at most `provider_timeout`), batches that fall due are polled and
        delivered as each ends, and new items are flushed. Returns when this pass last
        flushed.
        """
        gate = asyncio.Semaphore(self.batches.rel.concurrency)
        calls: dict[str, asyncio.Future[None]] = {}
        stop_starting_at = time.monotonic() + self.batches.rel.provider_timeout_s

        def start_due(headers: list[BatchHeader]) -> None:
            for header in headers:
                running = calls.get(header.batch_id)
                job = self.batches.due(header, self.clock())
                if job is not None and (running is None or running.done()):
                    calls[header.batch_id] = asyncio.ensure_future(guarded(gate, job))

        start_due(headers)
        flushed_at: float | None = None
        try:
            flushed = await self.intake.flush(force, last_flushed_at, self.now)
            flushed_at = self.now if flushed else None
            flush_checked = time.monotonic()
            if flushed:
                start_due(await self.ledger.headers())  # the provider may be done already
            while busy := [c for c in calls.values() if not c.done()]:
                await asyncio.wait(busy, timeout=CALLS_CHECK_EVERY_S)
                if time.monotonic() >= stop_starting_at:
                    continue
                self.now = self.clock()
                if time.monotonic() - flush_checked >= QUEUE_RECHECK_EVERY_S:
                    flushed = await self.intake.flush(
                        False, flushed_at or last_flushed_at, self.now
                    )
                    flushed_at = self.now if flushed else flushed_at
                    flush_checked = time.monotonic()
                start_due(await self.ledger.headers())
        finally:
            await asyncio.gather(*calls.values())
        return flushed_at
