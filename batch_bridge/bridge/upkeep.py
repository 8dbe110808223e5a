"""Upkeep: the tick marker, the trust notice, the safety cron, the orphan sweep, the purge of
old records and the bridge's running usage total.

None of it moves an item forward; each keeps the bridge from waiting on something lost
(a scheduled run, a batch record) or from growing without end.
"""

from __future__ import annotations

import logging
from typing import Any

from langgraph.store.base import PutOp

from batch_bridge import _operate
from batch_bridge._config import (
    ORPHAN_SWEEP_EVERY_S,
    PURGE_EVERY_S,
    SAFETY_CRON_RECHECK_S,
    USAGE_PURGE_EVERY_S,
    Reliability,
)
from batch_bridge._constants import STORE_PAGE
from batch_bridge._marker import TICK_MARKER, MarkerState, tick_marker
from batch_bridge._notice import NOTICE_KEY, current_notice
from batch_bridge._store import ALIASES, ITEMS, META, Ledger
from batch_bridge._usage import (
    USAGE,
    USAGE_BATCHES,
    USAGE_TOTALS,
    ModelUsage,
    batch_of_usage_key,
    fold,
)

log = logging.getLogger("batch_bridge")


class Upkeep:
    """One tick's upkeep of its bridge's store and platform thread."""

    def __init__(self, ledger: Ledger, client: Any, reliability: Reliability) -> None:
        self.ledger = ledger
        self.client = client
        self.rel = reliability

    async def mark(self, state: MarkerState, next_at: float | None = None) -> None:
        """Tell callers whether a tick will read the queue (see `_marker.needs_wake`)."""
        marker = tick_marker(state, next_at)
        await self.ledger.store.aput(self.ledger.ns(META), TICK_MARKER, marker, index=False)

    async def publish(self) -> None:
        """Keep the trust notice (`_notice`) equal to this deployment's settings: written when
        they changed, or when someone else wrote it; one store read otherwise."""
        notice = current_notice()
        stored = await self.ledger.store.aget(self.ledger.ns(META), NOTICE_KEY)
        if stored is None or stored.value != notice:
            await self._note(NOTICE_KEY, notice)

    async def _last(self, key: str) -> dict[str, Any]:
        stored = await self.ledger.store.aget(self.ledger.ns(META), key)
        return stored.value if stored is not None else {}

    async def _note(self, key: str, value: dict[str, Any]) -> None:
        await self.ledger.store.aput(self.ledger.ns(META), key, value, index=False)

    async def ensure_cron(self, now: float) -> None:
        """Create the safety cron on first use, and check now and then that it still exists."""
        schedule = self.rel.safety_cron
        if schedule is None:
            return
        seen = await self._last("cron")
        if seen.get("schedule") == schedule and now - seen.get("at", 0) < SAFETY_CRON_RECHECK_S:
            return
        await _operate.ensure_cron(
            self.client, bridge=self.ledger.bridge, schedule=schedule, multitask_strategy="reject"
        )
        await self._note("cron", {"schedule": schedule, "at": now})

    async def sweep_orphans(self, now: float) -> None:
        """Items marked for a batch that no longer exists go back to the queue.

        The bridge's own order of writes never leaves such items; a deleted or quarantined
        batch record does, and they would wait forever. Looked for once a minute.
        """
        last = await self._last("sweep")
        if last and now - float(last.get("at") or 0) < ORPHAN_SWEEP_EVERY_S:
            return
        known = {h.batch_id for h in await self.ledger.headers()}
        orphans = [r for r in await self.ledger.items("batched") if r.batch_id not in known]
        for record in orphans:
            record.status, record.batch_id = "queued", None
        if orphans:
            log.error("%d item(s) of vanished batches go back to the queue", len(orphans))
            await self.ledger.put_items(orphans)
        await self._note("sweep", {"at": now})

    async def purge(self, now: float) -> None:
        """Forget delivered and dropped items once no replay of their node can need the record.

        Looked for once a minute: the search reads every delivered record."""
        last = await self._last("purge")
        if last and now - float(last.get("at") or 0) < PURGE_EVERY_S:
            return
        await self._note("purge", {"at": now})
        cutoff = now - self.rel.retention_s
        # The store narrows the search (PostgreSQL compares the text of the number, exact
        # for epoch seconds); the check below decides.
        old = [
            (stored.key, stored.value.get("alias"))
            for status in ("delivered", "dropped")
            for stored in await self.ledger.search(
                ITEMS, {"status": status, "updated_at": {"$lt": cutoff}}
            )
            if (stored.value.get("updated_at") or 0) < cutoff
        ]
        aliases = [alias for _, alias in old if isinstance(alias, str)]
        await self.ledger.delete(ALIASES, aliases)
        await self.ledger.delete(ITEMS, [key for key, _ in old])

    async def purge_usage(self, now: float) -> None:
        """Forget per-item usage records past `usage_retention_s`; looked for once an hour."""
        last = await self._last("usage_purge")
        if last and now - float(last.get("at") or 0) < USAGE_PURGE_EVERY_S:
            return
        await self._note("usage_purge", {"at": now})
        cutoff = now - self.rel.usage_retention_s
        old = [
            PutOp(stored.namespace, stored.key, None)
            for stored in await self.ledger.search(USAGE, {"at": {"$lt": cutoff}})
            if (stored.value.get("at") or 0) < cutoff
        ]
        for start in range(0, len(old), STORE_PAGE):
            await self.ledger.store.abatch(old[start : start + STORE_PAGE])

    async def fold_usage(self, in_flight: set[str]) -> dict[str, ModelUsage]:
        """The bridge's per-model totals, after folding in the usage of finished batches.

        Only batches no longer in flight: a batch's aggregate is final once `finish` has
        dropped the batch (a `finish` re-run after a crash still relies on it)."""
        totals = await self._last(USAGE_TOTALS)
        done = {
            stored.key: stored.value
            for stored in await self.ledger.search(USAGE_BATCHES)
            if batch_of_usage_key(stored.key) not in in_flight
        }
        new = fold(totals, done)
        if done:
            await self._note(USAGE_TOTALS, new)
            await self.ledger.delete(USAGE_BATCHES, sorted(done))
        by_model: dict[str, ModelUsage] = new["by_model"]
        return by_model
