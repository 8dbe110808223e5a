"""The emulator's Anthropic routes: Message Batches and Messages, as the `anthropic` SDK calls them.

Mounted on the same Starlette app as the OpenAI routes (the SDK's `base_url` is the server
root, without `/v1`). A batch, like the OpenAI side's, is a record whose state follows from
its creation time, pinned knobs and cancel moment, so nothing runs in the background:

- `processing_status` is `in_progress` for `validating_s + in_progress_s + finalizing_s`,
  then `ended`; a cancel makes it `canceling` for `finalizing_s`, then `ended`;
- with `expire_after_s` set and shorter than that, the batch ends at that moment and the
  rows not among `expire_completed_fraction` (picked by hash) are `expired`; after a cancel,
  those not among `cancel_completed_fraction` are `canceled`;
- the results are a JSONL stream at the absolute `results_url`, in an order unrelated to
  the requests; `[[fail]]` (or `error_rate`) gives an `errored` row with an `api_error`,
  `[[status:NNN]]` an errored row of the matching type, and params the installed
  `anthropic` types reject an errored `invalid_request_error` row.

`POST /v1/messages` and every succeeded row answer alike (`synthesize_message`): the text
"Echo: <the last user text>", or, when the params offer `tools` (and `tool_choice` is not
`none`) and the last message is the user's, one `tool_use` block calling the first tool (or
the one `tool_choice` names) with `stop_reason: "tool_use"` and arguments from
`_synth.tool_arguments` (required strings are the user's text, numbers 1, booleans true).
A last user message holding `tool_result` blocks is answered "Echo: <their text>". The
tool_use id comes from the messages, the tool and the input only, so the same params get
the same reply whether batched or not.

`x-api-key` is accepted and not checked. The fault knobs and `Emulator.add_fault` apply to
these routes like to the OpenAI ones (their labels are in `ROUTES`).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from batch_bridge.testing._anthropic_synth import error, error_type, synthesize_message
from batch_bridge.testing._knobs import Knobs
from batch_bridge.testing._synth import (
    digest,
    unit_interval,
)

__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_REQUESTS", "AnthropicRoutes", "MessageBatchRecord"]

MAX_BATCH_REQUESTS = 100_000
"""Requests one Message Batch may hold."""
MAX_BATCH_BYTES = 256 * 1024 * 1024
"""Bytes one Message Batch create body may take."""
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_WINDOW_S = 24 * 3600.0


class AnthropicApiError(Exception):
    """Answered as Anthropic's error JSON with the given HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.type = error_type(status)


def _reply(payload: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(payload, status, headers={"request-id": "req_" + uuid.uuid4().hex[:24]})


def _rfc3339(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def _picked(ids: list[str], salt: str, fraction: float) -> set[str]:
    count = math.floor(fraction * len(ids) + 0.5)
    return set(sorted(ids, key=lambda cid: unit_interval(salt, cid))[:count])


@dataclass(slots=True)
class MessageBatchRecord:
    """One Message Batch: its requests, pinned knobs, creation and cancel moments."""

    id: str
    requests: tuple[tuple[str, dict[str, Any]], ...]
    knobs: Knobs
    created: float
    cancel_at: float | None = None
    _rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict, init=False, repr=False)

    @property
    def expires_at(self) -> float:
        """When processing stops for good: 24 h, or the `expire_after_s` knob."""
        if self.knobs.expire_after_s is not None:
            return self.created + self.knobs.expire_after_s
        return self.created + _WINDOW_S

    def ended_at(self) -> tuple[float, str]:
        """When processing ends, and how: `completed`, `expired` or `canceled`."""
        knobs = self.knobs
        done = self.created + knobs.validating_s + knobs.in_progress_s + knobs.finalizing_s
        end = (done, "completed")
        if knobs.expire_after_s is not None and done > self.expires_at:
            end = (self.expires_at, "expired")
        if self.cancel_at is not None and self.cancel_at < end[0]:
            end = (self.cancel_at + knobs.finalizing_s, "canceled")
        return end

    def status(self, now: float) -> str:
        """`in_progress`, `canceling` or `ended` at `now`."""
        at, _ = self.ended_at()
        if now >= at:
            return "ended"
        return (
            "canceling" if self.cancel_at is not None and now >= self.cancel_at else "in_progress"
        )

    def rows(self) -> list[dict[str, Any]]:
        """The result lines of the ended batch, in an order unrelated to the requests."""
        _, how = self.ended_at()
        if how not in self._rows:
            self._rows[how] = self._build_rows(how)
        return self._rows[how]

    def _build_rows(self, how: str) -> list[dict[str, Any]]:
        ids = [cid for cid, _ in self.requests]
        failing = _picked(ids, "error", self.knobs.error_rate)
        stopped: set[str] = set()
        if how != "completed":
            fraction = (
                self.knobs.expire_completed_fraction
                if how == "expired"
                else self.knobs.cancel_completed_fraction
            )
            stopped = set(ids) - _picked(ids, "finished", fraction)
        rows = []
        for cid, params in sorted(self.requests, key=lambda r: digest("order", r[0])):
            result: dict[str, Any]
            if cid in stopped:
                result = {"type": how}
            elif cid in failing:
                message = f"Internal server error while processing request {cid!r}."
                result = {"type": "errored", "error": error("api_error", message)}
            else:
                status, body = synthesize_message(params, key=cid)
                if status == 200:
                    result = {"type": "succeeded", "message": body}
                else:
                    result = {"type": "errored", "error": body}
            rows.append({"custom_id": cid, "result": result})
        return rows

    def counts(self, now: float) -> dict[str, int]:
        """`request_counts`: all `processing` until the batch ends, then by result type."""
        tally = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
        if math.isnan(now) or self.status(now) != "ended":
            tally["processing"] = len(self.requests)
            return tally
        for row in self.rows():
            tally[row["result"]["type"]] += 1
        return tally

    def view(self, now: float, base_url: str, *, fresh: bool = False) -> dict[str, Any]:
        """The `MessageBatch` object at `now`; `results_url` is absolute, off `base_url`.

        With `fresh` (the create call's answer) it is `in_progress` whatever the latencies,
        as the real API always reports a new batch.
        """
        status = "in_progress" if fresh else self.status(now)
        ended = status == "ended"
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": self.counts(math.nan if fresh else now),
            "created_at": _rfc3339(self.created),
            "expires_at": _rfc3339(self.created + _WINDOW_S),
            "ended_at": _rfc3339(self.ended_at()[0]) if ended else None,
            "cancel_initiated_at": _rfc3339(self.cancel_at),
            "archived_at": None,
            "results_url": (
                f"{base_url.rstrip('/')}/v1/messages/batches/{self.id}/results" if ended else None
            ),
        }


Handler = Callable[[Request], Awaitable[Response]]


class AnthropicRoutes:
    """The Anthropic half of the emulator; `Emulator` mounts `handlers()` on its app."""

    def __init__(self, *, knobs: Callable[[], Knobs], clock: Callable[[], float]) -> None:
        self._knobs = knobs
        self._clock = clock
        self._lock = threading.Lock()
        self._batches: dict[str, MessageBatchRecord] = {}
        self._sync_requests = 0
        self._created: Counter[str] = Counter()

    def handlers(self) -> dict[str, Handler]:
        """Route labels (`"METHOD /path"`, the names `add_fault` takes) and their handlers."""
        routes: dict[str, Handler] = {
            "POST /v1/messages/batches": self._create,
            "GET /v1/messages/batches": self._list,
            "GET /v1/messages/batches/{batch_id}": self._retrieve,
            "DELETE /v1/messages/batches/{batch_id}": self._delete,
            "POST /v1/messages/batches/{batch_id}/cancel": self._cancel,
            "GET /v1/messages/batches/{batch_id}/results": self._results,
            "POST /v1/messages": self._message,
        }
        return {label: _answering_errors(handler) for label, handler in routes.items()}

    def stats(self) -> dict[str, Any]:
        """`batches`, `batches_by_status`, `requests` (sync calls plus batch requests),
        `submitted` (per custom_id, how many created batches held it); `batches_created`
        and `requests_created` count deleted batches too."""
        with self._lock:
            now = self._clock()
            submitted: Counter[str] = Counter()
            by_status: Counter[str] = Counter()
            for record in self._batches.values():
                submitted.update(cid for cid, _ in record.requests)
                by_status[record.status(now)] += 1
            return {
                "batches": len(self._batches),
                "batches_by_status": dict(by_status),
                "requests": sum(submitted.values()) + self._sync_requests,
                "submitted": dict(submitted),
                "batches_created": self._created["batches"],
                "requests_created": self._created["requests"],
            }

    def _record(self, request: Request) -> MessageBatchRecord:
        batch_id = request.path_params["batch_id"]
        record = self._batches.get(batch_id)
        if record is None:
            raise AnthropicApiError(404, f"No Message Batch found with id '{batch_id}'.")
        return record

    async def _create(self, request: Request) -> Response:
        raw = await request.body()
        if len(raw) > MAX_BATCH_BYTES:
            raise AnthropicApiError(413, f"Request is {len(raw)} bytes; over {MAX_BATCH_BYTES}.")
        body = _json_object(raw)
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise AnthropicApiError(400, "requests: at least one request is required")
        if len(requests) > MAX_BATCH_REQUESTS:
            message = f"requests: at most {MAX_BATCH_REQUESTS} requests, got {len(requests)}"
            raise AnthropicApiError(400, message)
        seen: set[str] = set()
        accepted: list[tuple[str, dict[str, Any]]] = []
        for number, entry in enumerate(requests):
            cid = entry.get("custom_id") if isinstance(entry, dict) else None
            if not isinstance(cid, str) or not _CUSTOM_ID.fullmatch(cid):
                message = f"requests.{number}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$"
                raise AnthropicApiError(400, message)
            if cid in seen:
                raise AnthropicApiError(400, f"requests.{number}.custom_id: duplicate {cid!r}")
            params = entry.get("params")
            if not isinstance(params, dict):
                raise AnthropicApiError(400, f"requests.{number}.params: must be an object")
            seen.add(cid)
            accepted.append((cid, params))
        knobs = self._knobs()
        with self._lock:
            now = self._clock()
            record = MessageBatchRecord(
                id="msgbatch_" + uuid.uuid4().hex[:24],
                requests=tuple(accepted),
                knobs=knobs,
                created=now,
            )
            self._batches[record.id] = record
            self._created.update(batches=1, requests=len(accepted))
            view = record.view(now, str(request.base_url), fresh=True)
        if knobs.hang_creates_s:
            await asyncio.sleep(knobs.hang_creates_s)
        return _reply(view)

    async def _retrieve(self, request: Request) -> Response:
        with self._lock:
            hang_s = self._record(request).knobs.hang_polls_s
        if hang_s:
            await asyncio.sleep(hang_s)
        with self._lock:
            return _reply(self._record(request).view(self._clock(), str(request.base_url)))

    async def _list(self, request: Request) -> Response:
        raw = request.query_params.get("limit", "20")
        try:
            limit = int(raw)
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            raise AnthropicApiError(400, f"limit: expected 1 to 1000, got {raw!r}")
        with self._lock:
            now = self._clock()
            views = [
                record.view(now, str(request.base_url))
                for record in reversed(self._batches.values())
            ]
        ids = [view["id"] for view in views]
        after, before = request.query_params.get("after_id"), request.query_params.get("before_id")
        if after:
            views = views[ids.index(after) + 1 :] if after in ids else []
            data, more = views[:limit], len(views) > limit
        elif before:
            views = views[: ids.index(before)] if before in ids else []
            data, more = views[-limit:], len(views) > limit
        else:
            data, more = views[:limit], len(views) > limit
        return _reply(
            {
                "data": data,
                "has_more": more,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    async def _cancel(self, request: Request) -> Response:
        with self._lock:
            record = self._record(request)
            now = self._clock()
            if record.status(now) == "in_progress":
                record.cancel_at = now
            return _reply(record.view(now, str(request.base_url)))

    async def _delete(self, request: Request) -> Response:
        with self._lock:
            record = self._record(request)
            if record.status(self._clock()) != "ended":
                message = f"Message Batch {record.id} is still processing; cancel it first."
                raise AnthropicApiError(400, message)
            del self._batches[record.id]
        return _reply({"id": record.id, "type": "message_batch_deleted"})

    async def _results(self, request: Request) -> Response:
        with self._lock:
            record = self._record(request)
            if record.status(self._clock()) != "ended":
                message = f"Message Batch {record.id} has not ended; results are not ready."
                raise AnthropicApiError(404, message)
            rows = record.rows()
        text = "".join(json.dumps(row) + "\n" for row in rows)
        return Response(text.encode(), media_type="application/binary")

    async def _message(self, request: Request) -> Response:
        body = _json_object(await request.body())
        status, payload = synthesize_message(body)
        hang_s = self._knobs().hang_sync_s
        if hang_s:
            await asyncio.sleep(hang_s)
        with self._lock:
            self._sync_requests += 1
        return _reply(payload, status)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise AnthropicApiError(400, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise AnthropicApiError(400, "The request body must be a JSON object.")
    return body


def _answering_errors(handler: Handler) -> Handler:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except AnthropicApiError as exc:
            return _reply(error(exc.type, str(exc)), exc.status)

    return endpoint
