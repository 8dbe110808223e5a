"""A tick: one run of the bridge graph, taking passes until nothing is due soon.

A tick moves data one way: ledger (queued) -> batches (submit) -> results (poll) -> resumed
callers. Every step is recorded in the store before and after it touches the provider or a
caller, so a tick killed at any line is finished by the next one without submitting or
resuming anything twice. Items never enter the bridge's checkpoint: a tick costs the same
whatever the history, and the checkpoint only holds a small summary that Studio shows.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from langgraph.store.base import BaseStore

from batch_bridge import _callers, _client, _trust
from batch_bridge._config import (
    BURST_LINGER_S,
    FAILED_TICK_RETRY_S,
    MAX_PASSES_PER_RUN,
    NEXT_PASS_WITHIN_S,
    QUEUED_ON_IDLE_RECHECK_S,
    Reliability,
)
from batch_bridge._prices import DEFAULT_TABLE, PriceTable
from batch_bridge._store import ITEMS, Ledger
from batch_bridge._usage import summary as usage_summary
from batch_bridge.bridge.batches import RECENT_FINISHED, Batches
from batch_bridge.bridge.calls import Clock, Provider
from batch_bridge.bridge.cancel import Cancels
from batch_bridge.bridge.deliver import Deliverer
from batch_bridge.bridge.intake import CallerCheck, Intake, QueueView
from batch_bridge.bridge.passes import Passes
from batch_bridge.bridge.state import BridgeState
from batch_bridge.bridge.upkeep import Upkeep
from batch_bridge.types import FlushPolicy

log = logging.getLogger("batch_bridge")

TOTALS = (
    "batches_submitted",
    "items_submitted",
    "items_deduplicated",
    "items_completed",
    "items_failed",
    "items_delivered",
    "items_withdrawn",
    "results_dropped",
    "records_quarantined",
    "items_fallen_back",
    "late_rows_dropped",
)
"""Counters the bridge's state sums over every tick."""


class Tick:
    """One run of the bridge, built per run over the store, platform client and clock it
    is given (the graph passes the server's; a test passes fakes)."""

    def __init__(
        self,
        bridge: str,
        provider: Provider,
        policy: FlushPolicy,
        reliability: Reliability,
        queue: QueueView | None = None,
        *,
        store: BaseStore,
        client: Any,
        client_for: _callers.ClientFor,
        clock: Clock,
        prices: PriceTable = DEFAULT_TABLE,
    ) -> None:
        self.bridge = bridge
        self.client = client
        self.clock = clock
        self.now = clock()
        self.ledger = Ledger(store, bridge)
        self.deliverer = Deliverer(self.ledger, reliability.delivery, client_for, clock)
        self.batches = Batches(
            self.ledger, provider, policy, reliability, self.deliverer.run, clock, prices
        )
        self.callers = CallerCheck(self.ledger, client_for)
        self.intake = Intake(self.batches, self.callers, queue)
        self.passes = Passes(self.batches, self.intake, self.deliverer)
        self.upkeep = Upkeep(self.ledger, client, reliability)

    async def run(self, state: BridgeState, run_id: str) -> BridgeState:
        pause = state.get("continue_in_s")
        if pause and state.get("run_id") == run_id:
            await asyncio.sleep(pause)
            self.now = self.clock()
        try:
            await self.upkeep.ensure_cron(self.now)
        except Exception:
            log.exception("could not create the bridge's safety cron; will try next tick")
        try:
            await self.upkeep.publish()
        except Exception:
            log.exception("could not publish the bridge's trust notice; will try next tick")
        await self.upkeep.mark("running")
        try:
            return await self._work(state, run_id)
        except BaseException:
            await self.upkeep.mark("idle")
            try:
                await _client.schedule_tick(self.client, self.bridge, FAILED_TICK_RETRY_S)
            except Exception:
                log.exception("could not schedule the tick after a failed one")
            raise

    async def _work(self, state: BridgeState, run_id: str) -> BridgeState:
        """One pass over the ledger, and what comes next.

        The platform schedules runs in whole seconds and behind its run queue, so work due
        within `NEXT_PASS_WITHIN_S` (a batch about to be old enough, a poll due in a second)
        is taken by this run's next pass (the graph loops; each pass is checkpointed, so
        Studio shows progress) rather than by a new run; at most `MAX_PASSES_PER_RUN`.
        """
        passes = state.get("run_passes", 0) + 1 if state.get("run_id") == run_id else 1
        await self.upkeep.sweep_orphans(self.now)  # first: the store is at rest between ticks
        asked = list(state.get("cancel") or [])
        cancels = await Cancels(self.batches).run(asked) if asked else None
        last_flushed = state.get("last_flushed_at") or self.now
        last_flushed, delay, soon = await self.passes.take(bool(state.get("flush")), last_flushed)
        self.now = self.passes.now
        if soon is None and (self.batches.counts["items_submitted"] or self.deliverer.delivered):
            # Mid-burst: more callers are likely on their way. A run that ends now would be
            # restarted behind their runs in the platform's first-in-first-out queue.
            soon = BURST_LINGER_S
        again = (
            soon is not None
            and soon <= NEXT_PASS_WITHIN_S
            and passes < MAX_PASSES_PER_RUN
            and not await _client.run_waiting(self.client, self.bridge)
        )
        await self.upkeep.purge(self.now)
        await self.upkeep.purge_usage(self.now)
        summary = await self._summary(state)
        if again:
            delay = None  # the next pass of this run, not a new run
        else:
            delay = await self._schedule(delay)
        summary["last_flushed_at"] = last_flushed
        summary["next_tick_in_s"] = delay
        summary["continue_in_s"] = soon if again else None
        summary["run_id"] = run_id
        summary["run_passes"] = passes
        if cancels is not None:
            summary["last_cancel"] = {"run_id": run_id, "outcomes": dict(cancels)}
        return summary

    async def _schedule(self, delay: float | None) -> float | None:
        """Queue the next run, or mark the bridge idle; returns the delay scheduled."""
        if delay is None:
            await self.upkeep.mark("idle")
            if await self.ledger.store.asearch(
                self.ledger.ns(ITEMS), filter={"status": "queued"}, limit=1
            ):
                delay = QUEUED_ON_IDLE_RECHECK_S
        if delay is None:
            return None
        delay = float(max(1, math.ceil(delay)))
        await _client.schedule_tick(self.client, self.bridge, delay)
        await self.upkeep.mark("scheduled", self.clock() + delay)
        return delay

    async def _summary(self, state: BridgeState) -> BridgeState:
        """Counts for the bridge's state (never payloads); totals add this tick's counters."""
        in_flight = await self.ledger.headers()
        undeliverable = len(await self.ledger.search(ITEMS, {"status": "undeliverable"}))
        oldest = self.intake.queue.oldest_at
        summary: BridgeState = {
            "flush": self.intake.force_left,
            "cancel": [],
            "pending": self.intake.queue.count,
            "oldest_pending_at": oldest,
            "oldest_pending_age_s": None if oldest is None else round(self.now - oldest, 3),
            "in_flight": [
                {
                    "batch_id": h.batch_id,
                    "status": h.status,
                    "size": h.size,
                    "age_s": round(self.now - h.created_at, 3),
                    **({"last_error": h.last_error} if h.last_error else {}),
                }
                for h in in_flight[:50]
            ],
            "delivering": self.passes.undelivered,
            "undeliverable": undeliverable,
            "record_key": _trust.key_source(),
            "last_error": self.batches.last_error or state.get("last_error"),
            "ticks": state.get("ticks", 0) + 1,
            "usage": usage_summary(
                self.bridge, None, await self.upkeep.fold_usage({h.batch_id for h in in_flight})
            ),
            "finished": [*reversed(self.batches.finished), *state.get("finished", [])][
                :RECENT_FINISHED
            ],
        }
        summary["refused_origins"] = refused_origins(
            state.get("refused_origins") or [], self.ledger.refused, self.now
        )
        counts = dict(self.batches.counts)
        counts["items_delivered"] = self.deliverer.delivered
        counts["items_withdrawn"] = self.callers.withdrawn
        counts["results_dropped"] = self.deliverer.dropped
        counts["records_quarantined"] = self.ledger.quarantined
        previous: dict[str, Any] = dict(state)
        for key in TOTALS:
            summary[key] = int(previous.get(key) or 0) + counts.get(key, 0)  # type: ignore[literal-required]
        return summary


REFUSED_SHOWN = 20
"""Refused origins the state keeps, the most recent first."""


def refused_origins(
    previous: list[dict[str, Any]], tally: dict[tuple[str | None, str], int], now: float
) -> list[dict[str, Any]]:
    """The state's list of callers refused for their configuration: where, why, how many."""
    merged = {(e.get("url"), str(e.get("reason"))): dict(e) for e in previous}
    for (url, reason), count in tally.items():
        entry = merged.setdefault((url, reason), {"url": url, "reason": reason, "count": 0})
        entry["count"] = int(entry.get("count") or 0) + count
        entry["last_at"] = now
    newest = sorted(merged.values(), key=lambda e: -float(e.get("last_at") or 0))
    return newest[:REFUSED_SHOWN]
