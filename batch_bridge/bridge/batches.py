"""A batch's life cycle: form, submit, poll, finish (record and hand results on), release,
give up.

Every step is recorded in the store before and after it touches the provider, so a tick
killed at any line is finished by the next one without submitting anything twice:

    forming -> submitting -> submitted -> (deleted once every item has its result)
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from batch_bridge._config import Reliability
from batch_bridge._packed import unpacked
from batch_bridge._prices import DEFAULT_TABLE, PriceTable
from batch_bridge._results import Envelope, batch_failed, cancelled, interpret_poll
from batch_bridge._store import BatchHeader, ItemRecord, Ledger, check_storable
from batch_bridge.bridge import dedupe
from batch_bridge.bridge.calls import (
    Clock,
    Provider,
    call_with_timeout,
    describe,
    takes_any_sequence,
)
from batch_bridge.bridge.finish import Finish, HandOn
from batch_bridge.errors import ConfigError, ProviderError
from batch_bridge.providers._handles import provider_ids
from batch_bridge.providers._rows import results_as_read
from batch_bridge.types import FlushPolicy, Pending

log = logging.getLogger("batch_bridge")

Step = Callable[[], Awaitable[None]]

RECENT_FINISHED = 20
"""Finished batches the bridge's state keeps for the status page (newest first)."""


def deadline_of(record: ItemRecord, default_s: float | None) -> float | None:
    """The item's own deadline (`max_wait`), or the bridge's default from its arrival."""
    if record.deadline_at is not None:
        return record.deadline_at
    return None if default_s is None else record.created_at + default_s


def earliest(records: Sequence[ItemRecord], default_s: float | None) -> float | None:
    found = [d for r in records if (d := deadline_of(r, default_s)) is not None]
    return min(found) if found else None


class Batches:
    """The life cycle of one bridge's batches, over its ledger; counts what it did."""

    def __init__(
        self,
        ledger: Ledger,
        provider: Provider,
        policy: FlushPolicy,
        reliability: Reliability,
        hand_on: HandOn,
        clock: Clock,
        prices: PriceTable = DEFAULT_TABLE,
    ) -> None:
        self.ledger = ledger
        self.prices = prices
        self.provider = provider
        self.policy = policy
        self.rel = reliability
        self.hand_on = hand_on
        self.clock = clock
        self.counts: dict[str, int] = defaultdict(int)
        self.last_error: str | None = None
        self.finished: deque[dict[str, Any]] = deque(maxlen=RECENT_FINISHED)
        """What this tick finished, oldest first: outcome, counts and duration, no payloads."""
        self._finish = Finish(ledger, prices, self.counts, clock)
        self._takes_sequence = takes_any_sequence(provider.submit)

    def due(self, header: BatchHeader, now: float) -> Step | None:
        """The provider call this batch is waiting for, if it is due at `now`."""
        if header.status == "submitting" and header.not_before <= now:
            return partial(self.submit, header)
        if header.status == "submitted" and header.next_poll_at <= now:
            return partial(self.poll, header)
        return None

    @staticmethod
    def due_at(header: BatchHeader) -> float:
        due = header.next_poll_at if header.status == "submitted" else header.not_before
        return due if header.deadline_at is None else min(due, header.deadline_at)

    # -- forming ---------------------------------------------------------------------------

    async def open(self, records: list[ItemRecord]) -> BatchHeader:
        """Form a new batch of queued records: its header and member list are durable
        before any record is claimed, so a killed tick leaves a batch `form` can finish.
        Deduplicating, identical items share a slot (one provider request)."""
        slots = dedupe.slots_of(records) if self.policy.dedupe else None
        header = BatchHeader(
            batch_id=f"bb_{uuid.uuid4().hex[:16]}",
            status="forming",
            size=len(records) if slots is None else len(set(slots)),
            created_at=self.clock(),
        )
        await self.ledger.put_header(header)
        await self.ledger.put_members(header.batch_id, [r.key for r in records], slots)
        await self._claim(header, records)
        return header

    async def form(self, header: BatchHeader) -> None:
        """Finish a batch whose forming a killed tick left half done, then submit it."""
        keys = await self.ledger.members(header.batch_id)
        if keys is None:
            await self.ledger.delete_batch(header.batch_id)
            return
        records = await self.ledger.get_items(keys)
        mine = [r for r in records.values() if r.batch_id == header.batch_id]
        header.deadline_at = earliest(mine, self.policy.max_wait_s)
        await self._claim(header, [r for r in records.values() if r.status == "queued"])
        await self.submit(header)

    async def _claim(self, header: BatchHeader, records: list[ItemRecord]) -> None:
        """Mark records as the batch's; each keeps its deadline, the header the earliest."""
        for record in records:
            record.status, record.batch_id = "batched", header.batch_id
            record.deadline_at = deadline_of(record, self.policy.max_wait_s)
        found = [d for d in (header.deadline_at, earliest(records, None)) if d is not None]
        header.deadline_at = min(found) if found else None
        await self.ledger.put_items(records)
        header.status = "submitting"
        await self.ledger.put_header(header)

    async def _members(
        self, header: BatchHeader
    ) -> tuple[list[str], list[int] | None, dict[str, ItemRecord]]:
        keys, slots = await self.ledger.membership(header.batch_id) or ([], None)
        records = await self.ledger.get_items(keys)
        return keys, slots, records

    # -- the provider ----------------------------------------------------------------------

    async def submit(
        self, header: BatchHeader, claimed: dict[str, ItemRecord] | None = None
    ) -> None:
        """Send a batch to the provider. `claimed`: the records `open` just claimed, so a
        fresh batch is not read back; a batch submitted again is read from the store."""
        if claimed is None:
            keys, slots, records = await self._members(header)
        else:
            keys, slots = await self.ledger.membership(header.batch_id) or ([], None)
            records = claimed
        keep = [
            k in records
            and records[k].batch_id == header.batch_id
            and records[k].status == "batched"  # not those that fell back meanwhile
            for k in keys
        ]
        mine = [k for k, ok in zip(keys, keep, strict=True) if ok]
        if not mine:
            await self.ledger.delete_batch(header.batch_id)
            return
        if len(mine) != len(keys):
            slots = None if slots is None else dedupe.kept(slots, keep)
            await self.ledger.put_members(header.batch_id, mine, slots)
        sent = mine if slots is None else [mine[i] for i in dedupe.leaders(slots)]
        header.size = len(sent)
        header.submit_attempts += 1
        header.last_error = None
        await self.ledger.put_header(header)  # the intent, durable before the provider call
        payloads: Sequence[Any] = unpacked([records[k].item for k in sent])
        if not self._takes_sequence:
            payloads = list(payloads)
        kwargs = {"idempotency_key": header.batch_id} if self.provider.keyed else {}
        try:
            handle = await call_with_timeout(
                self.rel.provider_timeout_s, self.provider.submit, payloads, **kwargs
            )
        except Exception as exc:
            await self._submit_failed(header, sent, exc)
            return
        try:
            check_storable(handle, "the handle submit returned")
        except ValueError as exc:
            header.handle = handle
            await self.give_up(header, str(exc))
            return
        header.status, header.handle = "submitted", handle
        header.submitted_at = self.clock()
        header.polls = 0
        header.next_poll_at = header.submitted_at + self.policy.first_poll_in()
        await self.ledger.put_header(header)
        await self.ledger.index(header.batch_id, provider_ids(handle))
        self.counts["batches_submitted"] += 1
        self.counts["items_submitted"] += len(sent)
        self.counts["items_deduplicated"] += len(mine) - len(sent)

    async def _submit_failed(self, header: BatchHeader, keys: list[str], exc: Exception) -> None:
        reason = describe(exc)
        log.warning(
            "submit of batch %s failed (attempt %d): %s",
            header.batch_id,
            header.submit_attempts,
            reason,
        )
        retryable = not isinstance(exc, ConfigError) and (
            not isinstance(exc, ProviderError) or exc.retryable
        )
        self.last_error = f"batch {header.batch_id}: {reason}"
        if retryable and header.submit_attempts < self.rel.max_submit_attempts:
            header.status = "submitting"
            backoff = self.rel.submit_backoff_s * 2**header.submit_attempts
            header.not_before = self.clock() + backoff
            header.last_error = reason
            await self.ledger.put_header(header)
            return
        message = (
            f"Batch {header.batch_id!r} could not be submitted after "
            f"{header.submit_attempts} attempt(s): {reason}"
        )
        await self.finish(header, batch_failed(message, len(keys)))

    async def poll(self, header: BatchHeader) -> None:
        polled_from, hinted = self.clock(), header.batch_id in self.ledger.hinted
        await self.ledger.load_handle(header)
        if header.cancel_requested_at is not None and not header.cancel_sent:
            await self.send_cancel(header)
        reading = results_as_read.set(True)
        try:
            result = await call_with_timeout(
                self.rel.provider_timeout_s, self.provider.poll, header.handle
            )
        except Exception as exc:
            await self._poll_failed(header, exc)
            return
        finally:
            results_as_read.reset(reading)
        outcome = interpret_poll(result, header.size, header.batch_id)
        del result  # the envelopes hold what is needed, and let go of it page by page
        if outcome is None or isinstance(outcome, Pending):
            new_ids: list[str] = []
            if isinstance(outcome, Pending):
                try:
                    check_storable(outcome.handle, "the handle poll returned")
                except ValueError as exc:
                    await self.give_up(header, describe(exc))
                    return
                old = set(provider_ids(header.handle))
                new_ids = [i for i in provider_ids(outcome.handle) if i not in old]
                header.handle = outcome.handle
            header.poll_error_since = None
            header.last_error = None
            self._next_poll(header, resubmitted=bool(new_ids), hinted=hinted)
            await self.ledger.put_header(header)
            await self.ledger.index(header.batch_id, new_ids)
            await self.ledger.clear_hint(header.batch_id, polled_from)
            return
        await self.finish(header, outcome)

    async def _poll_failed(self, header: BatchHeader, exc: Exception) -> None:
        """Raised errors are transient for a while: the provider batch may still be running."""
        reason = describe(exc)
        now = self.clock()
        since = header.poll_error_since or now
        if now - since >= self.rel.poll_error_horizon_s:
            await self.give_up(header, f"polling failed for {now - since:.0f}s, last: {reason}")
            return
        log.warning("poll of batch %s failed: %s; polling again", header.batch_id, reason)
        self.last_error = f"batch {header.batch_id}: {reason}"
        header.poll_error_since = since
        header.last_error = reason
        self._next_poll(header)
        await self.ledger.put_header(header)
        await self.ledger.clear_hint(header.batch_id, now)  # else it is due again at once

    def _next_poll(
        self, header: BatchHeader, resubmitted: bool = False, hinted: bool = False
    ) -> None:
        """After a poll: the fixed interval, the backoff's next gap, or (backing off) the
        first poll of a provider batch the adapter just resubmitted. A batch a webhook said
        had ended but that still runs (an output file not there yet) is polled again within
        `poll_backoff`, not after the safety poll."""
        polling, now = self.policy.polling, self.clock()
        if resubmitted and polling is not None:
            header.polls = 0
            header.next_poll_at = now + polling.first_s
            return
        header.polls += 1
        header.next_poll_at = now + self.policy.poll_gap(header.polls)
        if hinted and polling is not None:
            header.next_poll_at = min(header.next_poll_at, now + polling.start_s)

    async def give_up(self, header: BatchHeader, reason: str) -> None:
        """Fail a batch for good, and stop it at the provider so it is not billed on."""
        await self.ledger.load_handle(header)
        if self.provider.cancel is not None:
            try:
                await call_with_timeout(
                    self.rel.provider_timeout_s, self.provider.cancel, header.handle
                )
            except Exception as exc:
                log.warning("cancel of batch %s failed: %s", header.batch_id, describe(exc))
        message = f"Batch {header.batch_id!r} was given up: {reason}"
        await self.finish(header, batch_failed(message, header.size))

    async def send_cancel(self, header: BatchHeader) -> None:
        """Ask the provider to stop a batch an operator cancelled (recorded before): polled
        on until it ends, so its finished rows still reach their callers. `cancel` may return
        the handle to poll from then on (the adapters mark it, so they resubmit nothing).
        A failed call is asked again at the next poll, unless trying again cannot help."""
        handle = None
        try:
            if self.provider.cancel is None:  # redeployed without one since the request
                raise ConfigError("the bridge has no cancel function any more")
            handle = await call_with_timeout(
                self.rel.provider_timeout_s, self.provider.cancel, header.handle
            )
            if handle is not None:
                check_storable(handle, "the handle cancel returned")
        except Exception as exc:
            final = isinstance(exc, ConfigError | ValueError)
            again = "not asked again" if final else "asked again"
            log.warning("cancel of batch %s failed: %s; %s", header.batch_id, describe(exc), again)
            self.last_error = f"batch {header.batch_id}: cancel: {describe(exc)}"
            if not final:
                return
            handle = None
        header.handle = header.handle if handle is None else handle
        header.cancel_sent = True
        header.next_poll_at = self.clock()
        await self.ledger.put_header(header)

    # -- the end ---------------------------------------------------------------------------

    async def finish(self, header: BatchHeader, envelopes: Sequence[Envelope]) -> None:
        """Record each member's result and cost, hand them on, then drop the batch.

        Handed on now, not after slower batches of this tick, and before the provider's
        files are released: the callers wait, the clean-up does not. A crash before the
        batch is dropped only means a second look: its items are no longer `batched`.
        A list of `envelopes` is taken over (emptied), so each result is let go once
        handed on; an adapter's results are made from their rows as each page reads them."""
        if header.cancel_requested_at is not None:
            envelopes = cancelled(header.batch_id, envelopes)
        held: Sequence[Envelope | None] = envelopes
        if isinstance(envelopes, list):
            held = [*envelopes]
            envelopes.clear()
        self.finished.append(await self._finish.run(header, held, self.hand_on))
        await self.release(header)
        await self.ledger.unindex(provider_ids(header.handle))
        await self.ledger.delete_batch(header.batch_id)

    async def release(self, header: BatchHeader) -> None:
        """Best effort: the results are recorded, so the provider's copies can go. Before
        the batch record is dropped, so a crash in between only means a second call."""
        if self.provider.release is None or header.handle is None:
            return
        try:
            await call_with_timeout(
                self.rel.provider_timeout_s, self.provider.release, header.handle
            )
        except Exception as exc:
            log.warning("release of batch %s failed: %s", header.batch_id, describe(exc))
