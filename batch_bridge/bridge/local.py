"""Script mode: the bridge in-process. `Bridge.submit` outside a graph runs its batch life cycle.

A daemon thread runs an event loop that takes the same passes as the bridge graph
(`bridge.passes`) over an in-memory store of this process: the same flush rule, submit
retries, timeouts, poll-error horizon, cancel and release. Callers block on (or await) a
future for their own result; results are handed to those futures instead of resumed
threads. Records never leave the process, so they are not signed, and items and handles
need not be JSON.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import itertools
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from langgraph.store.memory import InMemoryStore

from batch_bridge import _trust
from batch_bridge._config import Reliability
from batch_bridge._prices import DEFAULT_TABLE, PriceTable
from batch_bridge._results import unwrap
from batch_bridge._store import ITEMS, ItemRecord, Ledger, digest
from batch_bridge._usage import USAGE, ModelUsage, UsageSummary, add_records, summary
from batch_bridge.bridge.batches import Batches
from batch_bridge.bridge.calls import Provider, call
from batch_bridge.bridge.intake import Intake, everyone_waits
from batch_bridge.bridge.passes import Passes
from batch_bridge.bridge.upkeep import Upkeep
from batch_bridge.types import FlushPolicy, Pending

LOCAL_THREAD = "local"
"""The thread id of every script-mode record (the interrupt id is a fresh uuid)."""


class Handles:
    """The provider's handles, kept in this process; the ledger holds a token for each, so a
    handle need not be JSON (the seed's `Batcher` never required it)."""

    def __init__(self, provider: Provider) -> None:
        self.user = provider
        self.by_token: dict[str, Any] = {}
        self.count = itertools.count(1)

    def _token(self, handle: Any) -> str:
        token = f"handle-{next(self.count)}"
        self.by_token[token] = handle
        return token

    async def submit(self, items: list[Any], **kwargs: Any) -> str:
        return self._token(await call(self.user.submit, items, **kwargs))

    async def poll(self, token: str) -> Any:
        result = await call(self.user.poll, self.by_token[token])
        if isinstance(result, Pending):
            self.by_token.pop(token, None)
            return Pending(self._token(result.handle))
        return result

    async def cancel(self, token: str) -> None:
        if self.user.cancel is not None:
            await call(self.user.cancel, self.by_token[token])

    async def release(self, token: str) -> None:
        handle = self.by_token.pop(token, None)
        if self.user.release is not None:
            await call(self.user.release, handle)

    def provider(self) -> Provider:
        return Provider(
            self.submit,
            self.poll,
            self.cancel,
            self.user.keyed,
            self.release,
            fallback=self.user.fallback,
        )


@dataclass
class Futures:
    """Script mode's delivery: each record's result goes to its caller's future."""

    ledger: Ledger
    waiting: dict[str, concurrent.futures.Future[Any]]
    delivered: int = 0

    async def run(self, records: list[ItemRecord]) -> None:
        for record in records:
            future = self.waiting.pop(record.key, None)
            if future is None or future.done():
                continue
            try:
                future.set_result(unwrap(record.result or {}))
            except Exception as exc:
                future.set_exception(exc)
        for record in records:
            record.status = "delivered"
        self.delivered += len(records)
        await self.ledger.delete(ITEMS, [r.key for r in records])


class LocalRunner:
    """One bridge's life cycle in a daemon thread of this process."""

    def __init__(
        self,
        provider: Provider,
        policy: FlushPolicy,
        reliability: Reliability,
        name: str,
        prices: PriceTable = DEFAULT_TABLE,
    ) -> None:
        self.name = name
        self.ledger = Ledger(InMemoryStore(), name)
        self.upkeep = Upkeep(self.ledger, None, reliability)
        self.futures = Futures(self.ledger, {})
        self.batches = Batches(
            self.ledger,
            Handles(provider).provider(),
            policy,
            reliability,
            self.futures.run,
            time.time,
            prices,
        )
        self.passes = Passes(self.batches, Intake(self.batches, everyone_waits), self.futures)
        self._arrived: list[tuple[ItemRecord, concurrent.futures.Future[Any]]] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._wake = asyncio.Event()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"batcher-{name}", daemon=True
        )
        self._thread.start()
        self._main_task = asyncio.run_coroutine_threadsafe(self._run(), self._loop)
        atexit.register(self.close)

    def close(self) -> None:
        """Stop the loop thread; callers still waiting get their futures cancelled."""
        self._main_task.cancel()
        self._thread.join(timeout=2)

    def usage(self) -> UsageSummary:
        """Tokens and cost of every result this process's bridge recorded (thread "local")."""
        return asyncio.run_coroutine_threadsafe(self._usage(), self._loop).result()

    async def _usage(self) -> UsageSummary:
        by_model: dict[str, ModelUsage] = {}
        add_records(by_model, (s.value for s in await self.ledger.search(USAGE)))
        return summary(self.name, LOCAL_THREAD, by_model)

    def _digest(self, item: Any) -> str:
        """The item's digest when deduplicating; items that are not JSON are never shared."""
        if not self.batches.policy.dedupe:
            return ""
        with contextlib.suppress(TypeError, ValueError):
            return digest(item)
        return uuid.uuid4().hex

    def submit(self, item: Any, max_wait_s: float | None = None) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        now = time.time()
        record = ItemRecord(
            thread_id=LOCAL_THREAD,
            interrupt_id=uuid.uuid4().hex,
            assistant_id=self.name,
            graph_id=None,
            resume_url=None,
            item=item,
            digest=self._digest(item),
            created_at=now,
            deadline_at=None if max_wait_s is None else now + max_wait_s,
        )
        with self._lock:
            self._arrived.append((record, future))
        self._loop.call_soon_threadsafe(self._wake.set)
        return future

    async def _run(self) -> None:
        _trust.in_process_only.set(True)  # this task and every task it starts
        try:
            await self._main()
        finally:
            with self._lock:
                waiting = [f for _, f in self._arrived] + list(self.futures.waiting.values())
            for future in waiting:
                future.cancel()
            asyncio.get_running_loop().stop()

    async def _main(self) -> None:
        last_flushed = time.time()
        while True:
            self._wake.clear()
            with self._lock:
                arrived, self._arrived = self._arrived, []
            for record, future in arrived:
                self.futures.waiting[record.key] = future
            await self.ledger.put_items([record for record, _ in arrived])
            last_flushed, delay, _ = await self.passes.take(False, last_flushed)
            await self.upkeep.fold_usage({h.batch_id for h in await self.ledger.headers()})
            await self.upkeep.purge_usage(time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
