"""The bridge graph: one thread per bridge; each run is a tick.

A tick moves data one way: ledger (queued) -> batches (submit) -> results (poll) -> resumed
callers. Every step is recorded in the store before and after it touches the provider or a
caller, so a tick killed at any line is finished by the next one without submitting or
resuming anything twice. Items never enter the bridge's checkpoint: a tick costs the same
whatever the history, and the checkpoint only holds a small summary that Studio shows.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypedDict

from langgraph.config import get_config, get_store
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from batch_bridge import _client, _trust
from batch_bridge._constants import (
    OVERDUE_GRACE_S,
    STALE_RUNNING_S,
    TICK_MARKER,
    tick_marker,
)
from batch_bridge._deliver import Deliverer, DeliveryPolicy, bounded, guarded, waiting_calls
from batch_bridge._flush import next_check_in, plan_flush
from batch_bridge._results import batch_failed, interpret_poll
from batch_bridge._store import (
    ALIASES,
    ITEMS,
    META,
    BatchHeader,
    ItemRecord,
    Ledger,
    check_storable,
)
from batch_bridge.errors import ConfigError, ProviderError
from batch_bridge.types import FlushPolicy, Pending, PollFunc, SubmitFunc

log = logging.getLogger("batch_bridge")

CancelFunc = Callable[[Any], Any]
CRON_RECHECK_S = 600.0
THREAD_PAGE = 100
ORPHAN_SWEEP_S = 60.0
FOLLOW_EVERY_S = 1.0
REFLUSH_EVERY_S = 5.0
IN_TICK_WAIT_S = 2.0
"""Work due within this many seconds is taken by the running tick's next pass, not a new run."""
MAX_PASSES = 20
"""Passes per run (each a superstep; LangGraph's default recursion limit is 25)."""
LINGER_S = 0.25
"""After a pass that submitted or delivered, the run looks again this soon before it ends."""


@dataclass(frozen=True, slots=True)
class QueueView:
    """What the tick last saw of its queue: how many items, and when the oldest arrived."""

    count: int = 0
    oldest_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reliability:
    """How long the bridge keeps trying before it gives up, and on what."""

    provider_timeout_s: float = 600.0
    """Every submit, poll and cancel call is abandoned after this long (and retried)."""
    max_submit_attempts: int = 3
    submit_backoff_s: float = 2.0
    poll_error_horizon_s: float = 3600.0
    """Raised poll errors count as transient this long; then the batch fails and is cancelled."""
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    retention_s: float = 3600.0
    """Delivered records are kept this long (so late replays of a node still find them)."""
    safety_cron: str | None = "* * * * *"
    """A platform cron on the bridge thread, created by the first tick: the tick that runs
    even when every scheduled run was lost. None disables it."""
    concurrency: int = 20


class TickInput(TypedDict, total=False):
    flush: bool
    """Submit every pending item now, whatever the flush rule says (a cron can ask this)."""


class BridgeState(TypedDict, total=False):
    """The bridge's summary, readable with `client.threads.get_state` and shown in Studio.

    Counts only, never payloads: callers' items and results stay in the store.
    """

    flush: bool
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
    items_completed: int
    items_failed: int
    items_delivered: int
    records_quarantined: int
    last_error: str | None
    """The latest provider error a tick met (a configuration error shows here at once)."""
    record_key: str
    """Where the record-signing key comes from: "configured" (BATCH_BRIDGE_SECRET),
    "derived" (from the deployment's own connection settings) or "local file" (dev)."""
    ticks: int
    continue_in_s: float | None
    """Seconds until the running tick takes its next pass itself (work due that soon)."""
    run_id: str
    run_passes: int


async def call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Sync or async user functions alike; sync ones run off the event loop."""
    if inspect.iscoroutinefunction(func):
        return await func(*args, **kwargs)
    result = await asyncio.to_thread(func, *args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


async def call_with_timeout(
    timeout_s: float, func: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    """A provider call that cannot hold the tick: abandoned after `timeout_s` (a sync
    function's thread runs on, but the tick no longer waits for it)."""
    return await asyncio.wait_for(call(func, *args, **kwargs), timeout=timeout_s)


def accepts_idempotency_key(submit: Callable[..., Any]) -> bool:
    """Whether `submit(items, idempotency_key=...)` works: then a retried submit is exactly
    once; a plain `submit(items)` is at least once when a worker dies mid-call."""
    try:
        params = inspect.signature(submit).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.name == "idempotency_key" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params
    )


def needs_wake(marker: dict[str, Any] | None, now: float) -> bool:
    """Whether a caller that has just queued an item must wake the bridge.

    A tick marks "running" before it reads the queue, and before it ends it either
    schedules the next tick ("scheduled") or marks "idle" and reads the queue once more.
    So a caller that queued its item and then saw "running" or "scheduled" is covered, and
    only callers that find the bridge idle (or a marker gone stale) pay for a wake-up run;
    such a caller leaves a run pending and marks "scheduled" itself, so a burst of callers
    on an idle bridge costs one wake-up, not one each.
    """
    if marker is not None and not _trust.verify(marker):
        marker = None
    state = marker.get("state") if marker else None
    if state == "scheduled":
        return now > float((marker or {}).get("next_at") or 0) + OVERDUE_GRACE_S
    if state == "running":
        return now > float((marker or {}).get("at") or 0) + STALE_RUNNING_S
    return True


@dataclass(frozen=True, slots=True)
class Provider:
    submit: SubmitFunc
    poll: PollFunc
    cancel: CancelFunc | None = None
    keyed: bool = False
    """`submit` takes the bridge's batch id as its idempotency key."""
    release: CancelFunc | None = None
    """Called with a batch's handle once its results are recorded: delete provider files."""


class Tick:
    """One pass of the bridge; built per run, holding that run's store and counters."""

    def __init__(
        self,
        bridge: str,
        provider: Provider,
        policy: FlushPolicy,
        reliability: Reliability,
        queue: QueueView | None = None,
    ):
        self.bridge = bridge
        self.provider = provider
        self.policy = policy
        self.rel = reliability
        self.ledger = Ledger(get_store(), bridge)
        self.client = _client.client_for(None)
        self.now = time.time()
        self.counts: dict[str, int] = defaultdict(int)
        self.deliverer = Deliverer(self.ledger, reliability.delivery)
        self.deferred = 0
        self.queue = queue or QueueView()
        self.last_error: str | None = None

    # -- batches ---------------------------------------------------------------------------

    async def _members(self, header: BatchHeader) -> tuple[list[str], dict[str, ItemRecord]]:
        keys = await self.ledger.members(header.batch_id) or []
        records = await self.ledger.get_items(keys)
        return keys, records

    async def form(self, header: BatchHeader) -> None:
        """Finish a batch whose forming a killed tick left half done, then submit it."""
        keys = await self.ledger.members(header.batch_id)
        if keys is None:
            await self.ledger.delete_batch(header.batch_id)
            return
        records = await self.ledger.get_items(keys)
        claim = [r for r in records.values() if r.status == "queued"]
        for record in claim:
            record.status, record.batch_id = "batched", header.batch_id
        await self.ledger.put_items(claim)
        header.status = "submitting"
        await self.ledger.put_header(header)
        await self.submit(header)

    async def submit(self, header: BatchHeader) -> None:
        keys, records = await self._members(header)
        mine = [k for k in keys if k in records and records[k].batch_id == header.batch_id]
        if not mine:
            await self.ledger.delete_batch(header.batch_id)
            return
        if len(mine) != len(keys):
            await self.ledger.put_members(header.batch_id, mine)
            header.size = len(mine)
        header.submit_attempts += 1
        header.last_error = None
        await self.ledger.put_header(header)  # the intent, durable before the provider call
        payloads = [records[k].item for k in mine]
        kwargs = {"idempotency_key": header.batch_id} if self.provider.keyed else {}
        try:
            handle = await call_with_timeout(
                self.rel.provider_timeout_s, self.provider.submit, payloads, **kwargs
            )
        except Exception as exc:
            await self._submit_failed(header, mine, exc)
            return
        try:
            check_storable(handle, "the batch handle submit returned")
        except ValueError as exc:
            header.handle = handle
            await self._give_up(header, str(exc))
            return
        header.status, header.handle = "submitted", handle
        header.submitted_at = time.time()
        header.next_poll_at = header.submitted_at  # polled at once: a fast provider may be done
        await self.ledger.put_header(header)
        self.counts["batches_submitted"] += 1
        self.counts["items_submitted"] += len(mine)

    async def _submit_failed(self, header: BatchHeader, keys: list[str], exc: Exception) -> None:
        reason = _describe(exc)
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
            header.not_before = self.now + self.rel.submit_backoff_s * 2**header.submit_attempts
            header.last_error = reason
            await self.ledger.put_header(header)
            return
        message = (
            f"Batch {header.batch_id!r} could not be submitted after "
            f"{header.submit_attempts} attempt(s): {reason}"
        )
        await self.finish(header, batch_failed(message, len(keys)))

    async def poll(self, header: BatchHeader) -> None:
        await self.ledger.load_handle(header)
        try:
            result = await call_with_timeout(
                self.rel.provider_timeout_s, self.provider.poll, header.handle
            )
        except Exception as exc:
            await self._poll_failed(header, exc)
            return
        outcome = interpret_poll(result, header.size, header.batch_id)
        if outcome is None or isinstance(outcome, Pending):
            if isinstance(outcome, Pending):
                try:
                    check_storable(outcome.handle, "the batch handle poll returned")
                except ValueError as exc:
                    await self._give_up(header, _describe(exc))
                    return
                header.handle = outcome.handle
            header.poll_error_since = None
            header.last_error = None
            header.next_poll_at = time.time() + self.policy.poll_interval_s
            await self.ledger.put_header(header)
            return
        await self.finish(header, outcome)

    async def _poll_failed(self, header: BatchHeader, exc: Exception) -> None:
        """Raised errors are transient for a while: the provider batch may still be running."""
        reason = _describe(exc)
        since = header.poll_error_since or self.now
        if self.now - since >= self.rel.poll_error_horizon_s:
            await self._give_up(
                header, f"polling failed for {self.now - since:.0f}s, last: {reason}"
            )
            return
        log.warning("poll of batch %s failed: %s; polling again", header.batch_id, reason)
        self.last_error = f"batch {header.batch_id}: {reason}"
        header.poll_error_since = since
        header.last_error = reason
        header.next_poll_at = time.time() + self.policy.poll_interval_s
        await self.ledger.put_header(header)

    async def _give_up(self, header: BatchHeader, reason: str) -> None:
        """Fail a batch for good, and stop it at the provider so it is not billed on."""
        await self.ledger.load_handle(header)
        if self.provider.cancel is not None:
            try:
                await call_with_timeout(
                    self.rel.provider_timeout_s, self.provider.cancel, header.handle
                )
            except Exception as exc:
                log.warning("cancel of batch %s failed: %s", header.batch_id, _describe(exc))
        message = f"Batch {header.batch_id!r} was given up: {reason}"
        await self.finish(header, batch_failed(message, header.size))

    async def finish(self, header: BatchHeader, envelopes: list[dict[str, Any]]) -> None:
        """Record each member's result, deliver them, then drop the batch.

        Delivered now, not after slower batches of this tick, and before the provider's
        files are released: the callers wait, the clean-up does not. A crash before the
        batch is dropped only means a second look: its items are no longer `batched`."""
        keys, records = await self._members(header)
        done = []
        for key, envelope in zip(keys, envelopes, strict=False):
            record = records.get(key)
            if record is None or record.status != "batched" or record.batch_id != header.batch_id:
                continue
            record.status, record.result = "result", envelope
            record.result_at = record.next_attempt_at = time.time()
            done.append(record)
            self.counts["items_completed" if envelope.get("ok") else "items_failed"] += 1
        await self.ledger.put_items(done)
        await self.deliverer.run(done)
        await self._release(header)
        await self.ledger.delete_batch(header.batch_id)

    async def _release(self, header: BatchHeader) -> None:
        """Best effort: the results are recorded, so the provider's copies can go. Before
        the batch record is dropped, so a crash in between only means a second call."""
        if self.provider.release is None or header.handle is None:
            return
        try:
            await call_with_timeout(
                self.rel.provider_timeout_s, self.provider.release, header.handle
            )
        except Exception as exc:
            log.warning("release of batch %s failed: %s", header.batch_id, _describe(exc))

    async def _awaited(self, queued: list[ItemRecord]) -> tuple[list[ItemRecord], list[ItemRecord]]:
        """The queued items whose caller thread waits on them, and those to look at again.

        Only those are worth money: a record for a thread that does not wait on it (forged,
        replayed after its item was done, or left by a run that failed since) is quarantined
        before the provider sees it. A busy thread may still be saving its interrupt: later.
        """
        by_url: dict[str | None, list[ItemRecord]] = defaultdict(list)
        for record in queued:
            by_url[record.resume_url].append(record)
        ready: list[ItemRecord] = []
        later: list[ItemRecord] = []
        for url, records in by_url.items():
            try:
                client = _client.callback_client(url)
            except ConfigError as exc:
                for record in records:
                    await self.reject(record, str(exc))
                continue
            ids = sorted({r.thread_id for r in records})
            threads: dict[str, dict[str, Any]] = {}
            try:
                for start in range(0, len(ids), THREAD_PAGE):
                    page = ids[start : start + THREAD_PAGE]
                    for found in await client.threads.search(ids=page, limit=len(page)):
                        threads[found["thread_id"]] = dict(found)
            except Exception as exc:
                log.warning("could not read caller threads at %s: %r; later", url, exc)
                later += records
                continue
            for record in records:
                seen = threads.get(record.thread_id)
                waiting = waiting_calls(seen) if seen else {}
                if waiting.get(record.key, ("", None))[1] == record.digest:
                    ready.append(record)
                elif seen is not None and seen.get("status") == "busy":
                    later.append(record)
                else:
                    state = "gone" if seen is None else f"{seen.get('status')!r}"
                    await self.reject(
                        record, f"caller thread {record.thread_id!r} ({state}) does not wait on it"
                    )
        return ready, later

    async def reject(self, record: ItemRecord, reason: str) -> None:
        """Never act on a record: move it aside and count it."""
        await self.ledger.quarantine(ITEMS, record.key, record.to_value(), reason)

    async def _must_read_queue(self, force: bool) -> bool:
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
        if age is not None and seen.oldest_at is not None and self.now >= seen.oldest_at + age:
            return True
        return await self.ledger.queued_at_least(policy.max_batch_size)

    async def flush(self, force: bool, last_flushed_at: float) -> bool:
        """Turn queued items into batches (`self.queue` then counts what is left); returns
        whether it flushed."""
        if not await self._must_read_queue(force):
            return False
        queued = sorted(await self.ledger.items("queued"), key=lambda r: r.created_at)
        chunks = plan_flush(
            queued,
            payloads=[r.item for r in queued],
            oldest_at=queued[0].created_at if queued else None,
            last_flushed_at=last_flushed_at,
            now=self.now,
            policy=self.policy,
            force=force,
        )
        chosen = [r for chunk in chunks for r in chunk]
        # Only items about to cost money are checked against their caller's thread.
        ready, later = await self._awaited(chosen) if chosen else ([], [])
        self.deferred = len(later)
        size = self.policy.max_batch_size
        chunks = [ready[i : i + size] for i in range(0, len(ready), size)]
        headers = []
        for chunk in chunks:
            header = BatchHeader(
                batch_id=f"bb_{uuid.uuid4().hex[:16]}",
                status="forming",
                size=len(chunk),
                created_at=self.now,
            )
            await self.ledger.put_header(header)
            await self.ledger.put_members(header.batch_id, [r.key for r in chunk])
            for record in chunk:
                record.status, record.batch_id = "batched", header.batch_id
            await self.ledger.put_items(chunk)
            header.status = "submitting"
            await self.ledger.put_header(header)
            headers.append(header)
        await bounded([partial(self.submit, h) for h in headers], self.rel.concurrency)
        rejected = {r.key for r in chosen} - {r.key for r in ready + later}
        left = [r for r in queued if r.status == "queued" and r.key not in rejected]
        self.queue = QueueView(len(left), left[0].created_at if left else None)
        return bool(chunks)

    # -- the tick --------------------------------------------------------------------------

    async def _mark(self, state: str, next_at: float | None = None) -> None:
        marker = tick_marker(state, next_at)
        await self.ledger.store.aput(self.ledger.ns(META), TICK_MARKER, marker, index=False)

    async def _ensure_cron(self) -> None:
        """Create the safety cron on first use, and check now and then that it still exists."""
        schedule = self.rel.safety_cron
        if schedule is None:
            return
        stored = await self.ledger.store.aget(self.ledger.ns(META), "cron")
        seen = stored.value if stored is not None else {}
        if seen.get("schedule") == schedule and self.now - seen.get("at", 0) < CRON_RECHECK_S:
            return
        await _client.ensure_cron(
            self.client, bridge=self.bridge, schedule=schedule, multitask_strategy="reject"
        )
        await self.ledger.store.aput(
            self.ledger.ns(META), "cron", {"schedule": schedule, "at": self.now}, index=False
        )

    async def run(self, state: BridgeState, run_id: str) -> BridgeState:
        pause = state.get("continue_in_s")
        if pause and state.get("run_id") == run_id:
            await asyncio.sleep(pause)
            self.now = time.time()
        try:
            await self._ensure_cron()
        except Exception:
            log.exception("could not create the bridge's safety cron; will try next tick")
        await self._mark("running")
        try:
            return await self._work(state, run_id)
        except BaseException:
            await self._mark("idle")
            try:
                await _client.schedule_tick(self.client, self.bridge, 5.0)
            except Exception:
                log.exception("could not schedule the tick after a failed one")
            raise

    async def _work(self, state: BridgeState, run_id: str) -> BridgeState:
        """One pass over the ledger, and what comes next.

        The platform schedules runs in whole seconds and behind its run queue, so work due
        within `IN_TICK_WAIT_S` (a batch about to be old enough, a poll due in a second) is
        taken by this run's next pass (the graph loops; each pass is checkpointed, so Studio
        shows progress) rather than by a new run; at most `MAX_PASSES` passes per run.
        """
        passes = state.get("run_passes", 0) + 1 if state.get("run_id") == run_id else 1
        await self._sweep_orphans()  # first: the store is at rest between ticks
        last_flushed = state.get("last_flushed_at") or self.now
        last_flushed, delay, soon = await self._pass(bool(state.get("flush")), last_flushed)
        if soon is None and (self.counts["items_submitted"] or self.deliverer.delivered):
            # Mid-burst: more callers are likely on their way. A run that ends now would be
            # restarted behind their runs in the platform's first-in-first-out queue.
            soon = LINGER_S
        again = (
            soon is not None
            and soon <= IN_TICK_WAIT_S
            and passes < MAX_PASSES
            and not await _client.run_waiting(self.client, self.bridge)
        )
        await self._purge()
        in_flight = await self.ledger.headers()
        results = await self.ledger.items("result")
        undeliverable = len(await self.ledger.search(ITEMS, {"status": "undeliverable"}))
        oldest = self.queue.oldest_at
        if again:
            delay = None  # the next pass of this run, not a new run
        elif delay is None:
            await self._mark("idle")
            if await self.ledger.store.asearch(
                self.ledger.ns(ITEMS), filter={"status": "queued"}, limit=1
            ):
                delay = 1.0
        if delay is not None:
            delay = float(max(1, math.ceil(delay)))
            await _client.schedule_tick(self.client, self.bridge, delay)
            await self._mark("scheduled", time.time() + delay)
        summary: BridgeState = {
            "flush": False,
            "pending": self.queue.count,
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
            "delivering": len(results),
            "undeliverable": undeliverable,
            "last_flushed_at": last_flushed,
            "next_tick_in_s": delay,
            "record_key": _trust.key_source(),
            "last_error": self.last_error or state.get("last_error"),
            "ticks": state.get("ticks", 0) + 1,
            "continue_in_s": soon if again else None,
            "run_id": run_id,
            "run_passes": passes,
        }
        self.counts["items_delivered"] += self.deliverer.delivered
        self.counts["records_quarantined"] += self.ledger.quarantined
        previous: dict[str, Any] = dict(state)
        totals = (
            "batches_submitted",
            "items_submitted",
            "items_completed",
            "items_failed",
            "items_delivered",
            "records_quarantined",
        )
        for key in totals:
            summary[key] = int(previous.get(key) or 0) + self.counts[key]  # type: ignore[literal-required]
        return summary

    async def _pass(
        self, force: bool, last_flushed: float
    ) -> tuple[float, float | None, float | None]:
        """One pass: finish forming batches, call the provider, flush, deliver.

        Returns when the bridge last flushed, the seconds until the
        bridge should look again (None: nothing left to do), and until work is surely due
        (a poll, a delivery, a batch old enough; not a custom flush rule's re-check)."""
        headers = await self.ledger.headers()
        # A batch a killed tick left forming claims its items before anything reads the queue.
        forming = [partial(self.form, h) for h in headers if h.status == "forming"]
        await bounded(forming, self.rel.concurrency)
        flushed_at = await self._drive(headers, force, last_flushed)
        last_flushed = flushed_at or last_flushed
        await self.deliverer.run(await self.ledger.items("result"))

        due = [
            h.next_poll_at if h.status == "submitted" else h.not_before
            for h in await self.ledger.headers()
        ]
        due += [r.next_attempt_at for r in await self.ledger.items("result")]
        if self.deferred:
            due.append(time.time() + 1.0)
        oldest = self.queue.oldest_at
        now = time.time()
        delay = next_check_in(
            has_pending=bool(self.queue.count),
            oldest_at=oldest,
            due_times=due,
            now=now,
            policy=self.policy,
        )
        if self.queue.count and self.policy.max_batch_age_s is not None and oldest is not None:
            due.append(oldest + self.policy.max_batch_age_s)
        soon = max(0.0, min(due) - now) if due else None
        return last_flushed, delay, soon

    def _due(self, header: BatchHeader, now: float) -> Callable[[], Awaitable[None]] | None:
        if header.status == "submitting" and header.not_before <= now:
            return partial(self.submit, header)
        if header.status == "submitted" and header.next_poll_at <= now:
            return partial(self.poll, header)
        return None

    async def _drive(
        self, headers: list[BatchHeader], force: bool, last_flushed_at: float
    ) -> float | None:
        """Flush, and call the provider for every batch that falls due while calls are out.

        A provider call that hangs holds only its own batch: until the slowest call of this
        tick returns (at most `provider_timeout`), batches that fall due are polled and
        delivered as each ends, and new items are flushed. Returns when this tick last
        flushed.
        """
        gate = asyncio.Semaphore(self.rel.concurrency)
        calls: dict[str, asyncio.Future[None]] = {}
        stop_starting_at = time.monotonic() + self.rel.provider_timeout_s

        def start_due(headers: list[BatchHeader]) -> None:
            for header in headers:
                running = calls.get(header.batch_id)
                job = self._due(header, time.time())
                if job is not None and (running is None or running.done()):
                    calls[header.batch_id] = asyncio.ensure_future(guarded(gate, job))

        start_due(headers)
        flushed_at: float | None = None
        try:
            flushed = await self.flush(force, last_flushed_at)
            flushed_at = self.now if flushed else None
            flush_checked = time.monotonic()
            if flushed:
                start_due(await self.ledger.headers())  # the provider may be done already
            while busy := [c for c in calls.values() if not c.done()]:
                await asyncio.wait(busy, timeout=FOLLOW_EVERY_S)
                if time.monotonic() >= stop_starting_at:
                    continue
                self.now = time.time()
                if time.monotonic() - flush_checked >= REFLUSH_EVERY_S:
                    flushed = await self.flush(False, flushed_at or last_flushed_at)
                    flushed_at = self.now if flushed else flushed_at
                    flush_checked = time.monotonic()
                start_due(await self.ledger.headers())
        finally:
            await asyncio.gather(*calls.values())
        return flushed_at

    async def _sweep_orphans(self) -> None:
        """Items marked for a batch that no longer exists go back to the queue.

        The bridge's own order of writes never leaves such items; a deleted or quarantined
        batch record does, and they would wait forever. Looked for once a minute.
        """
        meta = self.ledger.ns(META)
        last = await self.ledger.store.aget(meta, "sweep")
        if last is not None and self.now - float(last.value.get("at") or 0) < ORPHAN_SWEEP_S:
            return
        known = {h.batch_id for h in await self.ledger.headers()}
        orphans = [r for r in await self.ledger.items("batched") if r.batch_id not in known]
        for record in orphans:
            record.status, record.batch_id = "queued", None
        if orphans:
            log.error("%d item(s) of vanished batches go back to the queue", len(orphans))
            await self.ledger.put_items(orphans)
        await self.ledger.store.aput(meta, "sweep", {"at": self.now}, index=False)

    async def _purge(self) -> None:
        """Forget delivered items once no replay of their node can need the record.

        Looked for once a minute: the search reads every delivered record."""
        meta = self.ledger.ns(META)
        last = await self.ledger.store.aget(meta, "purge")
        if last is not None and self.now - float(last.value.get("at") or 0) < ORPHAN_SWEEP_S:
            return
        await self.ledger.store.aput(meta, "purge", {"at": self.now}, index=False)
        cutoff = self.now - self.rel.retention_s
        # The store narrows the search (PostgreSQL compares the text of the number, exact
        # for epoch seconds); the check below decides.
        due = {"status": "delivered", "updated_at": {"$lt": cutoff}}
        old = [
            (stored.key, stored.value.get("alias"))
            for stored in await self.ledger.search(ITEMS, due)
            if (stored.value.get("updated_at") or 0) < cutoff
        ]
        aliases = [alias for _, alias in old if isinstance(alias, str)]
        await self.ledger.delete(ALIASES, aliases)
        await self.ledger.delete(ITEMS, [key for key, _ in old])


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "the provider did not answer in time (timeout)"
    return f"{type(exc).__name__}: {exc}"


def build_bridge_graph(
    provider: Provider, policy: FlushPolicy, reliability: Reliability, name: str
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The compiled graph that langgraph.json registers; its graph id names the bridge."""

    async def tick(state: BridgeState) -> BridgeState:
        config = get_config()
        bridge = config["configurable"].get("graph_id") or name
        run_id = str(
            config.get("run_id")
            or config["configurable"].get("run_id")
            or config.get("metadata", {}).get("run_id")
            or ""
        )
        seen = QueueView(int(state.get("pending") or 0), state.get("oldest_pending_at"))
        work = Tick(bridge, provider, policy, reliability, seen).run(state, run_id)
        return await _client.as_deployment(work)

    def next_pass(state: BridgeState) -> str:
        return "tick" if state.get("continue_in_s") is not None else END

    builder = StateGraph(BridgeState, input_schema=TickInput)
    builder.add_node("tick", tick)
    builder.add_edge(START, "tick")
    builder.add_conditional_edges("tick", next_pass, ["tick", END])
    return builder.compile(name=name)
