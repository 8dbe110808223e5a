"""The bridge graph: one thread per bridge; each run is a tick.

A tick moves data one way: queue -> batches (submit) -> results (poll) -> resumed callers.
Items live in the store, never in the bridge's checkpoint, so a tick costs the same whatever
the queue length; the checkpoint only holds a small summary that Studio shows.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypedDict

from langgraph.config import get_config, get_store
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore, Item
from langgraph_sdk.errors import NotFoundError

from batch_bridge import _client
from batch_bridge._constants import (
    CONCURRENCY,
    MAX_DELIVERY_ATTEMPTS,
    MAX_SUBMIT_ATTEMPTS,
    OVERDUE_GRACE_S,
    PAGE_SIZE,
    STALE_RUNNING_S,
    SUBMIT_BACKOFF_S,
    TICK_MARKER,
    batches_namespace,
    meta_namespace,
    queue_namespace,
    tick_marker,
)
from batch_bridge._flush import next_check_in, plan_flush
from batch_bridge._results import batch_failed, interpret_poll
from batch_bridge.errors import ProviderError
from batch_bridge.types import FlushPolicy, Pending, PollFunc, SubmitFunc

log = logging.getLogger("batch_bridge")


class TickInput(TypedDict, total=False):
    flush: bool
    """Submit every pending item now, whatever the flush rule says (a cron can ask this)."""


class BridgeState(TypedDict, total=False):
    """The bridge's summary, readable with `client.threads.get_state` and shown in Studio."""

    flush: bool
    pending: int
    oldest_pending_age_s: float | None
    in_flight: list[dict[str, Any]]
    last_flushed_at: float
    next_tick_in_s: float | None
    batches_submitted: int
    items_submitted: int
    items_completed: int
    items_failed: int
    ticks: int


async def call(func: Callable[..., Any], *args: Any) -> Any:
    """Sync or async user functions alike; sync ones run off the event loop."""
    if inspect.iscoroutinefunction(func):
        return await func(*args)
    result = await asyncio.to_thread(func, *args)
    if inspect.isawaitable(result):
        result = await result
    return result


async def search_all(store: BaseStore, namespace: tuple[str, ...]) -> list[Item]:
    items: list[Item] = []
    while True:
        page = await store.asearch(namespace, limit=PAGE_SIZE, offset=len(items))
        items.extend(page)
        if len(page) < PAGE_SIZE:
            return items


async def _bounded(jobs: Sequence[Awaitable[Any]]) -> list[Any]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def run(job: Awaitable[Any]) -> Any:
        async with gate:
            return await job

    results = await asyncio.gather(*(run(j) for j in jobs), return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.error("bridge step failed; it will be retried next tick", exc_info=result)
    return results


def needs_wake(marker: dict[str, Any] | None, now: float) -> bool:
    """Whether a caller that has just queued an item must wake the bridge.

    A tick marks "running" before it reads the queue, and before it ends it either
    schedules the next tick ("scheduled") or marks "idle" and reads the queue once more.
    So a caller that queued its item and then saw "running" or "scheduled" is covered, and
    only callers that find the bridge idle (or a marker gone stale) pay for a wake-up run;
    such a caller leaves a run pending and marks "scheduled" itself, so a burst of callers
    on an idle bridge costs one wake-up, not one each.
    """
    state = marker.get("state") if marker else None
    if state == "scheduled":
        return now > (marker or {}).get("next_at", 0) + OVERDUE_GRACE_S
    if state == "running":
        return now > (marker or {}).get("at", 0) + STALE_RUNNING_S
    return True


class Tick:
    """One pass of the bridge; built per run, holding that run's store and counters."""

    def __init__(self, bridge: str, submit: SubmitFunc, poll: PollFunc, policy: FlushPolicy):
        self.bridge = bridge
        self.submit_func = submit
        self.poll_func = poll
        self.policy = policy
        self.store = get_store()
        self.client = _client.client_for(None)
        self.now = time.time()
        self.counts: dict[str, int] = defaultdict(int)

    async def _save(self, batch: dict[str, Any]) -> None:
        await self.store.aput(batches_namespace(self.bridge), batch["batch_id"], batch, index=False)

    async def submit(self, batch: dict[str, Any]) -> None:
        payloads = [r["item"] for r in batch["items"]]
        try:
            handle = await call(self.submit_func, payloads)
        except Exception as exc:
            batch["attempts"] += 1
            log.warning(
                "submit of batch %s failed (attempt %s): %r",
                batch["batch_id"],
                batch["attempts"],
                exc,
            )
            retryable = not isinstance(exc, ProviderError) or exc.retryable
            if retryable and batch["attempts"] < MAX_SUBMIT_ATTEMPTS:
                batch["not_before"] = self.now + SUBMIT_BACKOFF_S * 2 ** batch["attempts"]
                await self._save(batch)
                return
            message = (
                f"Batch {batch['batch_id']!r} could not be submitted after "
                f"{batch['attempts']} attempt(s): {type(exc).__name__}: {exc}"
            )
            await self.finish(batch, batch_failed(message, len(payloads)))
            return
        batch.update(
            status="submitted",
            handle=handle,
            submitted_at=time.time(),
            next_poll_at=time.time() + self.policy.poll_interval_s,
        )
        self.counts["batches_submitted"] += 1
        self.counts["items_submitted"] += len(payloads)
        await self._save(batch)

    async def poll(self, batch: dict[str, Any]) -> None:
        n = len(batch["items"])
        try:
            result = await call(self.poll_func, batch["handle"])
        except Exception as exc:
            if isinstance(exc, ProviderError) and exc.retryable:
                log.warning("poll of batch %s: %r; will poll again", batch["batch_id"], exc)
                result = None
            else:
                result = exc
        outcome = interpret_poll(result, n, batch["batch_id"])
        if outcome is None or isinstance(outcome, Pending):
            if isinstance(outcome, Pending):
                batch["handle"] = outcome.batch_id
            batch["next_poll_at"] = time.time() + self.policy.poll_interval_s
            await self._save(batch)
            return
        await self.finish(batch, outcome)

    async def finish(self, batch: dict[str, Any], envelopes: list[dict[str, Any]]) -> None:
        """Record results before delivering them, so a crash re-delivers instead of losing."""
        batch.update(status="delivering", results=envelopes, delivered=[False] * len(envelopes))
        for env in envelopes:
            self.counts["items_completed" if env["ok"] else "items_failed"] += 1
        await self._save(batch)
        await self.deliver(batch)

    async def deliver(self, batch: dict[str, Any]) -> None:
        retry = batch.get("delivery_attempts", 0) > 0
        groups: dict[tuple[str | None, str, str], list[int]] = defaultdict(list)
        for i, record in enumerate(batch["items"]):
            if not batch["delivered"][i]:
                groups[(record["resume_url"], record["thread_id"], record["assistant_id"])].append(
                    i
                )

        async def resume(target: tuple[str | None, str, str], indexes: list[int]) -> None:
            url, thread_id, assistant_id = target
            client = _client.client_for(url)
            answers = {batch["items"][i]["interrupt_id"]: batch["results"][i] for i in indexes}
            try:
                if retry:
                    waiting = await _client.pending_interrupt_ids(client, thread_id)
                    answers = {k: v for k, v in answers.items() if k in waiting}
                if answers:
                    await _client.resume(client, thread_id, assistant_id, answers)
            except NotFoundError:
                log.warning(
                    "caller thread %s is gone; dropping %d result(s)", thread_id, len(indexes)
                )
            except Exception as exc:
                log.warning("could not resume thread %s: %r; will retry", thread_id, exc)
                return
            for i in indexes:
                batch["delivered"][i] = True

        await _bounded([resume(t, ix) for t, ix in groups.items()])
        batch["delivery_attempts"] = batch.get("delivery_attempts", 0) + 1
        if all(batch["delivered"]) or batch["delivery_attempts"] >= MAX_DELIVERY_ATTEMPTS:
            await self.store.adelete(batches_namespace(self.bridge), batch["batch_id"])
        else:
            await self._save(batch)

    async def flush(self, force: bool, last_flushed_at: float) -> tuple[list[Item], bool]:
        """Turn pending items into batches; returns the items still pending and if it flushed."""
        queue = await search_all(self.store, queue_namespace(self.bridge))
        oldest = min((q.value["created_at"] for q in queue), default=None)
        chunks = plan_flush(
            queue,
            payloads=[q.value["item"] for q in queue],
            oldest_at=oldest,
            last_flushed_at=last_flushed_at,
            now=self.now,
            policy=self.policy,
            force=force,
        )
        batches = []
        for chunk in chunks:
            batch = {
                "kind": "batch_bridge.batch",
                "batch_id": f"bb_{uuid.uuid4().hex[:12]}",
                "status": "submitting",
                "items": [q.value for q in chunk],
                "created_at": self.now,
                "attempts": 0,
            }
            await self._save(batch)
            for q in chunk:
                await self.store.adelete(queue_namespace(self.bridge), q.key)
            batches.append(batch)
        await _bounded([self.submit(b) for b in batches])
        taken = {q.key for chunk in chunks for q in chunk}
        return [q for q in queue if q.key not in taken], bool(chunks)

    async def _mark(self, state: str, next_at: float | None = None) -> None:
        marker = tick_marker(state, next_at)
        await self.store.aput(meta_namespace(self.bridge), TICK_MARKER, marker, index=False)

    async def run(self, state: BridgeState) -> BridgeState:
        await self._mark("running")
        try:
            return await self._work(state)
        except BaseException:
            await self._mark("idle")
            raise

    async def _work(self, state: BridgeState) -> BridgeState:
        jobs = []
        for item in await search_all(self.store, batches_namespace(self.bridge)):
            batch = item.value
            status = batch["status"]
            if status == "submitting" and batch.get("not_before", 0) <= self.now:
                jobs.append(self.submit(batch))
            elif status == "submitted" and batch["next_poll_at"] <= self.now:
                jobs.append(self.poll(batch))
            elif status == "delivering":
                jobs.append(self.deliver(batch))
        await _bounded(jobs)

        last_flushed = state.get("last_flushed_at") or self.now
        remaining, flushed = await self.flush(bool(state.get("flush")), last_flushed)
        if flushed:
            last_flushed = self.now
        in_flight = [b.value for b in await search_all(self.store, batches_namespace(self.bridge))]
        oldest = min((q.value["created_at"] for q in remaining), default=None)
        due = [b.get("next_poll_at") or b.get("not_before") or self.now for b in in_flight]
        delay = next_check_in(
            has_pending=bool(remaining),
            oldest_at=oldest,
            due_times=due,
            now=time.time(),
            policy=self.policy,
        )
        if delay is None:
            await self._mark("idle")
            if await self.store.asearch(queue_namespace(self.bridge), limit=1):
                delay = 1.0
        if delay is not None:
            delay = float(max(1, math.ceil(delay)))
            await _client.schedule_tick(self.client, self.bridge, delay)
            await self._mark("scheduled", time.time() + delay)
        summary: BridgeState = {
            "flush": False,
            "pending": len(remaining),
            "oldest_pending_age_s": None if oldest is None else round(self.now - oldest, 3),
            "in_flight": [
                {
                    "batch_id": b["batch_id"],
                    "status": b["status"],
                    "size": len(b["items"]),
                    "age_s": round(self.now - b["created_at"], 3),
                }
                for b in in_flight
            ],
            "last_flushed_at": last_flushed,
            "next_tick_in_s": delay,
            "ticks": state.get("ticks", 0) + 1,
        }
        previous: dict[str, Any] = dict(state)
        totals = ("batches_submitted", "items_submitted", "items_completed", "items_failed")
        for key in totals:
            summary[key] = int(previous.get(key) or 0) + self.counts[key]  # type: ignore[literal-required]
        return summary


def build_bridge_graph(
    submit: SubmitFunc, poll: PollFunc, policy: FlushPolicy, name: str
) -> CompiledStateGraph:
    """The compiled graph that langgraph.json registers; its graph id names the bridge."""

    async def tick(state: BridgeState) -> BridgeState:
        bridge = get_config()["configurable"].get("graph_id") or name
        return await Tick(bridge, submit, poll, policy).run(state)

    builder = StateGraph(BridgeState, input_schema=TickInput)
    builder.add_node("tick", tick)
    builder.add_edge(START, "tick")
    builder.add_edge("tick", END)
    return builder.compile(name=name)
