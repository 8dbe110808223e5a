"""Deadlines: an item whose batch has not answered by its `max_wait` is answered through the
provider's normal API instead (`Bridge(fallback=)`, the adapters' `fallback`).

Exactly once for the caller: the record moves to `fallback` (with when and how many calls)
*before* the call, and the answer goes the usual way, `result` -> delivery. Ticks of one
bridge are serial, so a record still in `fallback` at a later pass means an earlier call
died mid-way (or failed transiently): it is called again. Neither OpenAI nor Anthropic takes
an idempotency key on a normal call, so a worker killed mid-call may pay for two calls; the
caller is still resumed once.

A batch whose members all fell back is cancelled at the provider (the cancel path of
`Batches`; nobody waits on it, so nobody gets `BatchCancelledError`); one not yet submitted
never is. Rows that arrive later are dropped and counted (`Batches.finish`).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from batch_bridge._results import failed, ok
from batch_bridge._store import BatchHeader, ItemRecord
from batch_bridge._usage import ModelUsage, add_costs
from batch_bridge.bridge.batches import Batches, deadline_of, earliest
from batch_bridge.bridge.calls import bounded, call_with_timeout, describe
from batch_bridge.errors import BatchItemError, ProviderError
from batch_bridge.types import FallbackAnswer

log = logging.getLogger("batch_bridge")

MAX_FALLBACK_CALLS = 3
"""Normal-API calls per item (transient failures and calls cut short by a crash) before
its caller gets the last error."""
FALLBACK_RETRY_S = 2.0
"""First wait after a transient failure; doubles with each call."""
FALLBACK_USAGE_PREFIX = "fallback:"
"""Usage aggregates of fallback items are keyed like this plus the item key (written once)."""


def _as_item_error(error: BaseException) -> BatchItemError:
    if isinstance(error, BatchItemError):
        return error
    return BatchItemError(f"{type(error).__name__}: {error}", code=getattr(error, "code", None))


def transient(exc: BaseException) -> bool:
    """A timeout or a `ProviderError` marked retryable: a later call may succeed."""
    return isinstance(exc, TimeoutError) or (isinstance(exc, ProviderError) and exc.retryable)


class Fallbacks:
    """One pass's deadlines: which items fall back, the calls, and their batches' fate."""

    def __init__(self, batches: Batches) -> None:
        self.batches = batches
        self.ledger = batches.ledger
        self.counts = batches.counts
        self.next_at: float | None = None
        """When a record left in `fallback` (a transient failure) is due again."""
        self._answered: list[ItemRecord] = []

    async def run(self, queued_due: list[ItemRecord]) -> None:
        """Record every item due now as `fallback`, settle their batches, then call."""
        now = self.batches.clock()
        self._answered = []
        waiting = await self.ledger.items("fallback")
        todo = [r for r in waiting if r.next_attempt_at <= now]
        spent = [r for r in todo if r.fallback_calls >= MAX_FALLBACK_CALLS]
        for record in spent:  # every call so far was cut short: a worker died in each
            cut = f"{record.fallback_calls} normal-API calls were cut short (worker died)"
            await self._failed(record, BatchItemError(cut, code="fallback_cut_short"))
        todo = [r for r in todo if r not in spent]
        later = [r.next_attempt_at for r in waiting if r.next_attempt_at > now]
        due_headers = [
            h
            for h in await self.ledger.headers()
            if h.deadline_at is not None and h.deadline_at <= now
        ]
        fresh = list(queued_due)
        left: dict[str, list[ItemRecord]] = {}
        for header in due_headers:
            due, rest = await self._split(header, now)
            fresh += due
            left[header.batch_id] = rest
        for record in fresh:
            record.status, record.fallback_at = "fallback", now
        await self.ledger.put_items(fresh)  # durable before any batch changes or any call
        for header in due_headers:
            await self._settle(header, left[header.batch_id])
        todo += fresh
        for record in todo:
            record.fallback_calls += 1
        await self.ledger.put_items(todo)  # each call counted before it is made
        calls = [partial(self._answer, r) for r in todo]
        await bounded(calls, self.batches.rel.concurrency)
        if self._answered:
            await self.batches.hand_on(self._answered)
        later += [r.next_attempt_at for r in todo if r.status == "fallback"]
        self.next_at = min(later) if later else None

    async def _split(
        self, header: BatchHeader, now: float
    ) -> tuple[list[ItemRecord], list[ItemRecord]]:
        """The members of `header` due now, and those still waiting on it."""
        keys = await self.ledger.members(header.batch_id) or []
        records = await self.ledger.get_items(keys)
        mine = [
            r for r in records.values() if r.status == "batched" and r.batch_id == header.batch_id
        ]
        default = self.batches.policy.max_wait_s
        due = [r for r in mine if (d := deadline_of(r, default)) is not None and d <= now]
        return due, [r for r in mine if r not in due]

    async def _settle(self, header: BatchHeader, rest: list[ItemRecord]) -> None:
        """Keep the batch for the members still waiting, or stop it: never submitted if it
        was not yet, cancelled at the provider if it was."""
        header.deadline_at = earliest(rest, self.batches.policy.max_wait_s)
        if rest:
            await self.ledger.put_header(header)
            return
        if header.status != "submitted":
            log.info("batch %s dropped before submit: its items fell back", header.batch_id)
            await self.ledger.delete_batch(header.batch_id)
            return
        if header.cancel_requested_at is None and self.batches.provider.cancel is not None:
            log.info("batch %s cancelled: every item fell back", header.batch_id)
            header.cancel_requested_at = self.batches.clock()
            await self.ledger.put_header(header)  # durable before the provider call
            await self.ledger.load_handle(header)
            await self.batches.send_cancel(header)
            return
        await self.ledger.put_header(header)

    async def _answer(self, record: ItemRecord) -> None:
        """Call the normal API for one item; record its answer (or last error) as its result."""
        fallback = self.batches.provider.fallback
        try:
            if fallback is None:
                raise BatchItemError(
                    "The item waited past its max_wait, but the bridge has no fallback= "
                    "function to call the provider's normal API with.",
                    code="no_fallback",
                )
            answer = await call_with_timeout(
                self.batches.rel.provider_timeout_s, fallback, record.item
            )
        except Exception as exc:
            await self._failed(record, exc)
            return
        if not isinstance(answer, FallbackAnswer):
            answer = FallbackAnswer(answer)
        if isinstance(answer.value, BaseException):  # a row error, as a poll returns one
            await self._failed(record, _as_item_error(answer.value))
            return
        envelope = ok(answer.value)
        envelope["fallback"] = {"route": answer.route, "billed": answer.billed}
        record.usage = self._cost(envelope, answer) if envelope.get("ok") else None
        if record.usage is not None:
            by_model: dict[str, ModelUsage] = {}
            add_costs(by_model, [record.usage])
            await self.ledger.put_batch_usage(FALLBACK_USAGE_PREFIX + record.key, by_model)
        self.counts["items_fallen_back"] += 1
        await self._result(record, envelope)

    def _cost(self, envelope: dict[str, Any], answer: FallbackAnswer) -> dict[str, Any] | None:
        """The price paid: batch prices when billed so (flex), else the normal price."""
        cost = self.batches.prices.cost(envelope.get("value"))
        if cost is None:
            return None
        if answer.billed != "batch":
            cost["batch_usd"] = cost["normal_usd"]
        cost["fallback"] = answer.route
        return cost

    async def _failed(self, record: ItemRecord, exc: Exception) -> None:
        reason = describe(exc)
        if transient(exc) and record.fallback_calls < MAX_FALLBACK_CALLS:
            log.warning("fallback call for %s failed: %s; trying again", record.key, reason)
            record.last_error = reason
            record.next_attempt_at = self.batches.clock() + FALLBACK_RETRY_S * 2 ** (
                record.fallback_calls - 1
            )
            await self.ledger.put_items([record])
            return
        log.warning("fallback call for %s failed for good: %s", record.key, reason)
        error = exc if isinstance(exc, BatchItemError) else None
        envelope = failed(
            error
            or BatchItemError(
                f"The item's deadline passed and the provider's normal API failed it: {reason}",
                code="fallback_failed",
            )
        )
        envelope["fallback"] = {"route": "failed", "billed": "standard"}
        self.counts["items_fallen_back"] += 1
        self.counts["items_failed"] += 1
        await self._result(record, envelope)

    async def _result(self, record: ItemRecord, envelope: dict[str, Any]) -> None:
        record.status, record.result, record.item = "result", envelope, None
        record.result_at = record.next_attempt_at = self.batches.clock()
        record.last_error = None
        await self.ledger.put_items([record], usage=True)
        self._answered.append(record)
