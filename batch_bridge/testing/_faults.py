"""Faults: the next K calls of a route answer status S (or drop the connection) instead of
acting, as any HTTP service may; queued per route, plus the server-wide fault knobs."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from batch_bridge.testing._http import ApiError, reply
from batch_bridge.testing._knobs import Knobs
from batch_bridge.testing._synth import error_body

__all__ = ["FAULT_STATUSES", "Fault", "Faults", "fault_reply"]

FAULT_STATUSES = frozenset({0, 408, 409, 429, 500, 502, 503, 504})

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(slots=True)
class Fault:
    """The next `times` calls of one route answer `status` instead of the real reply.

    Status 0 drops the connection half-way through the answer (the SDK raises
    `APIConnectionError`). With `after`, the call acts first and only its answer is lost:
    the batch or file exists although the client saw an error.
    """

    status: int
    times: int
    after: bool
    retry_after_s: float | None


class _Dropped(Response):
    """Starts a reply it never finishes, so the server closes the connection mid-answer."""

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"1024")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{", "more_body": True})


def fault_reply(status: int, retry_after_s: float) -> Response:
    """The answer of a faulted call: a dropped connection (0), a 429, or an error status."""
    if status == 0:
        return _Dropped()
    if status == 429:
        message = "Rate limit reached for requests (emulated). Please try again later."
        limited = reply(error_body(message, type_="requests", code="rate_limit_exceeded"), 429)
        limited.headers["retry-after"] = f"{retry_after_s:g}"
        return limited
    message = f"The server had an error while processing your request (emulated {status})."
    return reply(error_body(message, type_="server_error", code="server_error"), status)


class Faults:
    """The faults queued per route, and the calls counted per route, under the emulator's
    lock (`add` and `clear` expect the caller to hold it)."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._queued: dict[str, list[Fault]] = {}
        self.calls: Counter[str] = Counter()
        """Calls per route, faulted ones included."""

    def guard(self, route: str, handler: Handler, knobs: Callable[[], Knobs]) -> Handler:
        """The route's handler behind the fault knobs and the faults queued for it."""

        async def endpoint(request: Request) -> Response:
            with self._lock:
                seen = self.calls[route]
                self.calls[route] += 1
                fault = self.next(route, seen, knobs())
            if fault is None:
                return await handler(request)
            retry_after_s = knobs().retry_after_s
            if fault.retry_after_s is not None:
                retry_after_s = fault.retry_after_s
            if fault.after:
                with contextlib.suppress(ApiError, HTTPException):
                    await handler(request)
            return fault_reply(fault.status, retry_after_s)

        return endpoint

    def add(
        self, route: str, *, times: int, status: int, after: bool, retry_after_s: float | None
    ) -> None:
        """Queue a fault, refusing a bad one with `ValueError` (the route is checked by the
        emulator, which knows its routes)."""
        if status not in FAULT_STATUSES:
            raise ValueError(f"fault status must be one of {sorted(FAULT_STATUSES)}, got {status}")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError(f"fault times must be a positive int, got {times!r}")
        if not isinstance(after, bool):
            raise ValueError(f"fault after must be true or false, got {after!r}")
        if retry_after_s is not None and not 0 <= retry_after_s < float("inf"):
            raise ValueError(f"fault retry_after_s must be >= 0, got {retry_after_s!r}")
        fault = Fault(status=status, times=times, after=after, retry_after_s=retry_after_s)
        self._queued.setdefault(route, []).append(fault)

    def clear(self) -> None:
        self._queued.clear()

    def left(self) -> int:
        """Calls the queued faults will still fail."""
        return sum(fault.times for queued in self._queued.values() for fault in queued)

    def next(self, route: str, seen: int, knobs: Knobs) -> Fault | None:
        """The fault for the call of `route` after `seen` earlier ones, if any."""
        errors, limits = knobs.server_errors_first_n, knobs.rate_limits_first_n
        if seen < errors:
            return Fault(status=500, times=1, after=False, retry_after_s=None)
        if seen < errors + limits:
            return Fault(status=429, times=1, after=False, retry_after_s=None)
        queued = self._queued.get(route)
        if not queued:
            return None
        fault = queued[0]
        fault.times -= 1
        if fault.times <= 0:
            queued.pop(0)
        return fault
