"""Batching outside a graph: items from threads of one process share batches.

A daemon thread runs an event loop that applies the same flush rule and poll contract as
the bridge graph; callers block on (or await) a future for their own result.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from batch_bridge._bridge import call
from batch_bridge._flush import next_check_in, plan_flush
from batch_bridge._results import batch_failed, interpret_poll, unwrap
from batch_bridge.types import FlushPolicy, Pending, PollFunc, SubmitFunc


@dataclass
class _Waiting:
    item: Any
    future: concurrent.futures.Future[Any]
    created_at: float = field(default_factory=time.time)


@dataclass
class _InFlight:
    batch_id: str
    handle: Any
    waiting: list[_Waiting]
    next_poll_at: float


class LocalRunner:
    def __init__(self, submit: SubmitFunc, poll: PollFunc, policy: FlushPolicy, name: str):
        self.submit_func, self.poll_func, self.policy, self.name = submit, poll, policy, name
        self._pending: list[_Waiting] = []
        self._in_flight: list[_InFlight] = []
        self._last_flushed_at = time.time()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._wake = asyncio.Event()
        self._count = 0
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

    async def _run(self) -> None:
        try:
            await self._main()
        finally:
            with self._lock:
                waiting = [w for w in self._pending] + [
                    w for b in self._in_flight for w in b.waiting
                ]
            for w in waiting:
                w.future.cancel()
            asyncio.get_running_loop().stop()

    def submit(self, item: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            self._pending.append(_Waiting(item, future))
        self._loop.call_soon_threadsafe(self._wake.set)
        return future

    async def _main(self) -> None:
        while True:
            now = time.time()
            with self._lock:
                pending = list(self._pending)
            chunks = plan_flush(
                pending,
                payloads=[w.item for w in pending],
                oldest_at=pending[0].created_at if pending else None,
                last_flushed_at=self._last_flushed_at,
                now=now,
                policy=self.policy,
            )
            if chunks:
                self._last_flushed_at = now
                taken = {id(w) for chunk in chunks for w in chunk}
                with self._lock:
                    self._pending = [w for w in self._pending if id(w) not in taken]
                await asyncio.gather(*(self._submit(chunk) for chunk in chunks))
            due = [b for b in self._in_flight if b.next_poll_at <= time.time()]
            await asyncio.gather(*(self._poll(b) for b in due))
            with self._lock:
                oldest = self._pending[0].created_at if self._pending else None
            delay = next_check_in(
                has_pending=oldest is not None,
                oldest_at=oldest,
                due_times=[b.next_poll_at for b in self._in_flight],
                now=time.time(),
                policy=self.policy,
            )
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    async def _submit(self, chunk: list[_Waiting]) -> None:
        self._count += 1
        batch_id = f"{self.name}-{self._count}"
        try:
            handle = await call(self.submit_func, [w.item for w in chunk])
        except Exception as exc:
            message = f"Batch {batch_id!r} could not be submitted: {type(exc).__name__}: {exc}"
            self._settle(chunk, batch_failed(message, len(chunk)))
            return
        poll_at = time.time() + self.policy.poll_interval_s
        self._in_flight.append(_InFlight(batch_id, handle, chunk, poll_at))

    async def _poll(self, batch: _InFlight) -> None:
        try:
            result = await call(self.poll_func, batch.handle)
        except Exception as exc:
            result = exc
        outcome = interpret_poll(result, len(batch.waiting), batch.batch_id)
        if outcome is None or isinstance(outcome, Pending):
            if isinstance(outcome, Pending):
                batch.handle = outcome.handle
            batch.next_poll_at = time.time() + self.policy.poll_interval_s
            return
        self._in_flight.remove(batch)
        self._settle(batch.waiting, outcome)

    @staticmethod
    def _settle(waiting: list[_Waiting], envelopes: list[dict[str, Any]]) -> None:
        for w, envelope in zip(waiting, envelopes, strict=True):
            try:
                w.future.set_result(unwrap(envelope))
            except Exception as exc:
                w.future.set_exception(exc)
