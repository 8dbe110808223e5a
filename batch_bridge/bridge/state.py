"""The bridge graph's input and state: a small summary, never payloads."""

from __future__ import annotations

from typing import Any, TypedDict

from batch_bridge._usage import UsageSummary


class TickInput(TypedDict, total=False):
    flush: bool
    """Submit every pending item now, whatever the flush rule says (a cron can ask this)."""
    cancel: list[str]
    """Batch ids to cancel at the provider (`cancel_batch`); see `bridge/cancel.py`."""


class BridgeState(TypedDict, total=False):
    """The bridge's summary, readable with `client.threads.get_state` and shown in Studio.

    Counts only, never payloads: callers' items and results stay in the store.
    """

    flush: bool
    cancel: list[str]
    last_cancel: dict[str, Any] | None
    """`{"run_id", "outcomes": {batch_id: outcome}}` of the last run that asked to cancel."""
    pending: int
    """Queued items when the tick last read the queue (at least that many)."""
    oldest_pending_at: float | None
    oldest_pending_age_s: float | None
    in_flight: list[dict[str, Any]]
    delivering: int
    undeliverable: int
    last_flushed_at: float
    next_tick_in_s: float | None
    batches_submitted: int
    items_submitted: int
    """Requests sent to the provider (a deduplicating bridge sends identical items once)."""
    items_deduplicated: int
    """Items that rode on an identical item's request (`dedupe=True`): never billed."""
    items_completed: int
    items_failed: int
    items_delivered: int
    items_withdrawn: int
    """Queued items whose caller stopped waiting (thread deleted, run cancelled): never sent."""
    results_dropped: int
    """Results whose caller stopped waiting by the time they came back: not retried."""
    records_quarantined: int
    items_fallen_back: int
    """Items answered by the provider's normal API once their `max_wait` passed."""
    late_rows_dropped: int
    """Batch rows that came back after their item had fallen back: dropped (still billed)."""
    finished: list[dict[str, Any]]
    """The last finished batches, newest first (at most `RECENT_FINISHED`): outcome, item
    counts, duration and the provider's ids, for the status page."""
    refused_origins: list[dict[str, Any]]
    """Callers whose items were refused for their configuration, most recent first:
    `{"url", "reason", "count", "last_at"}` (`url` None for this deployment), never payloads."""
    last_error: str | None
    """The latest provider error a tick met (a configuration error shows here at once)."""
    record_key: str
    """Where the record-signing key comes from: "configured" (BATCH_BRIDGE_SECRET),
    "derived" (from the deployment's own connection settings) or "local file" (dev)."""
    ticks: int
    usage: UsageSummary
    """Tokens, batch cost, normal-API cost and savings of every result so far, per model;
    summed from durable per-batch records, so a killed tick neither loses nor repeats any."""
    continue_in_s: float | None
    """Seconds until the running tick takes its next pass itself (work due that soon)."""
    run_id: str
    run_passes: int
