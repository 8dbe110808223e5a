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
import functools
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

from batch_bridge.testing._knobs import Knobs
from batch_bridge.testing._synth import (
    digest,
    estimate_tokens,
    has_fail_marker,
    status_marker,
    tool_arguments,
    tool_call_id,
    unit_interval,
)

__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_REQUESTS", "AnthropicRoutes", "MessageBatchRecord"]

MAX_BATCH_REQUESTS = 100_000
"""Requests one Message Batch may hold."""
MAX_BATCH_BYTES = 256 * 1024 * 1024
"""Bytes one Message Batch create body may take."""
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_WINDOW_S = 24 * 3600.0
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class AnthropicApiError(Exception):
    """Answered as Anthropic's error JSON with the given HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.type = _error_type(status)


def _error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def _error(kind: str, message: str) -> dict[str, Any]:
    """The `ErrorResponse` envelope every Anthropic endpoint (and errored row) uses."""
    return {
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": "req_" + uuid.uuid4().hex[:24],
    }


def _reply(payload: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(payload, status, headers={"request-id": "req_" + uuid.uuid4().hex[:24]})


def _rfc3339(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


@functools.cache
def _params_validator() -> Callable[[Any], Any] | None:
    """The installed SDK's `MessageCreateParamsNonStreaming`, as a pydantic validator."""
    try:
        import pydantic
        from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
    except ImportError:  # pragma: no cover - the anthropic extra is not installed
        return None
    return pydantic.TypeAdapter(MessageCreateParamsNonStreaming).validate_python


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (block.get("text") for block in content if isinstance(block, dict))
        return " ".join(part for part in parts if isinstance(part, str))
    return ""


def _tool_results(message: dict[str, Any]) -> list[str] | None:
    """The texts of the message's `tool_result` blocks, or None when it holds none."""
    content = message.get("content")
    if not isinstance(content, list):
        return None
    results = [
        _text(block.get("content"))
        for block in content
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]
    return results or None


def _tool_to_call(params: dict[str, Any]) -> dict[str, Any] | None:
    """The client tool a reply calls: the one `tool_choice` names, else the first."""
    tools = params.get("tools")
    choice = params.get("tool_choice")
    kind = choice.get("type") if isinstance(choice, dict) else None
    if not isinstance(tools, list) or kind == "none":
        return None
    custom = [tool for tool in tools if isinstance(tool, dict) and "input_schema" in tool]
    if kind == "tool" and isinstance(choice, dict):
        custom = [tool for tool in custom if tool.get("name") == choice.get("name")]
    return custom[0] if custom else None


def _content(params: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str]:
    """The reply's content blocks, stop reason, and the text its output tokens count."""
    messages = params["messages"]
    last = messages[-1]
    results = _tool_results(last) if last.get("role") == "user" else None
    tool = _tool_to_call(params) if last.get("role") == "user" and results is None else None
    if tool is not None:
        name = str(tool.get("name"))
        arguments = tool_arguments(tool.get("input_schema"), _text(last.get("content")))
        block = {
            "type": "tool_use",
            "id": tool_call_id("toolu_", messages, name, arguments),
            "name": name,
            "input": arguments,
        }
        return [block], "tool_use", json.dumps(arguments)
    if results is not None:
        reply = "Echo: " + " ".join(results)
    else:
        users = [m for m in messages if m.get("role") == "user"]
        reply = "Echo: " + (_text(users[-1].get("content")) if users else "")
    return [{"type": "text", "text": reply, "citations": None}], "end_turn", reply


def check_params(params: Any) -> str | None:
    """Why these Messages API params are invalid, or None; checked by the installed types."""
    if not isinstance(params, dict):
        return "params: Input should be an object"
    if params.get("stream"):
        return "stream: batch requests and the emulator do not stream"
    validate = _params_validator()
    if validate is not None:
        try:
            validate(params)
        except ValueError as exc:  # pydantic.ValidationError is a ValueError
            return str(exc).splitlines()[0] + ": " + "; ".join(str(exc).splitlines()[1:3])
    messages = params.get("messages")
    if not isinstance(params.get("model"), str) or not params["model"]:
        return "model: Field required"
    if isinstance(params.get("max_tokens"), bool) or not isinstance(params.get("max_tokens"), int):
        return "max_tokens: Field required"
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for number, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{number}.role: Input should be 'user' or 'assistant'"
    return None


def synthesize_message(params: Any, *, key: str = "") -> tuple[int, dict[str, Any]]:
    """The status and body `POST /v1/messages` answers: a `Message` echoing the last user
    text, or calling a tool (see the module docstring)."""
    problem = check_params(params)
    if problem is not None:
        return 400, _error("invalid_request_error", problem)
    if has_fail_marker(params):
        message = f"Internal server error while processing request {key or 'sync'!r}."
        return 500, _error("api_error", message)
    if (status := status_marker(params)) is not None:
        message = f"Emulated error status {status} requested by a [[status:{status}]] marker."
        return status, _error(_error_type(status), message)
    messages = params["messages"]
    content, stop_reason, output = _content(params)
    prompt = estimate_tokens("".join(_text(m.get("content")) for m in messages))
    seed = key + "\x1f" + json.dumps(params, sort_keys=True, default=str)
    return 200, {
        "id": "msg_" + digest("message", seed)[:24],
        "type": "message",
        "role": "assistant",
        "model": params["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": prompt,
            "output_tokens": estimate_tokens(output),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "service_tier": "batch" if key else "standard",
        },
    }


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
                result = {"type": "errored", "error": _error("api_error", message)}
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
            return _reply(_error(exc.type, str(exc)), exc.status)

    return endpoint
