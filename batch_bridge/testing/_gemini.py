"""The emulator's Gemini routes: Batch Mode, Files and `generateContent`, as the
`google-genai` SDK calls them with `http_options=HttpOptions(base_url=<root>/gemini)`
(`EmulatorServer.gemini_base_url`): under `/gemini`, the API version (`v1` or `v1beta`, as
the SDK is configured) follows, so the paths never meet the OpenAI routes' `/v1/batches`.

A batch (`POST /v1beta/models/{model}:batchGenerateContent`) holds inline requests (keyed
by their `metadata.key`) or names an uploaded JSONL file of `{"key", "request"}` lines. Its
state follows from its creation time, the server's knobs and its cancel moment, so nothing
runs in the background:

- `BATCH_STATE_PENDING` for `validating_s`, `BATCH_STATE_RUNNING` for `in_progress_s +
  finalizing_s`, then `BATCH_STATE_SUCCEEDED`; a cancel ends it `BATCH_STATE_CANCELLED`
  after `finalizing_s`; with `expire_after_s` shorter, it ends `BATCH_STATE_EXPIRED`;
  `fail_batches` (an attribute) makes the next N batches end `BATCH_STATE_FAILED`;
- an expired (cancelled) batch's results hold only the requests among
  `expire_completed_fraction` (`cancel_completed_fraction`), picked by hash;
- results sit in `metadata.output`: `inlinedResponses` for inline requests (each with its
  `metadata`, in an order unrelated to the requests), else a generated `responsesFile` of
  `{"key", "response"}` / `{"key", "error"}` lines; `[[fail]]` (or `error_rate`) and
  `[[status:NNN]]` give a row `error`, as does a request the emulator cannot answer.

`x-goog-api-key` is accepted and not checked. `Emulator.add_fault` applies to these routes
(their labels are in `GeminiRoutes.handlers()`).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from batch_bridge.testing._gemini_files import GeminiApiError, GeminiFiles, rfc3339
from batch_bridge.testing._gemini_synth import error, synthesize_content
from batch_bridge.testing._knobs import Knobs
from batch_bridge.testing._synth import digest, unit_interval

__all__ = ["MAX_INLINE_BYTES", "GeminiBatchRecord", "GeminiRoutes"]

MAX_INLINE_BYTES = 20 * 1024 * 1024
"""The largest `batchGenerateContent` body with inline requests the API takes."""
_WINDOW_S = 48 * 3600.0
_OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
_BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"


def _picked(keys: list[str], salt: str, fraction: float) -> set[str]:
    count = math.floor(fraction * len(keys) + 0.5)
    return set(sorted(keys, key=lambda key: unit_interval(salt, key))[:count])


@dataclass(slots=True)
class GeminiBatchRecord:
    """One batch: its keyed requests, where they came from, pinned knobs and moments."""

    id: str
    model: str
    display_name: str
    requests: tuple[tuple[str, dict[str, Any]], ...]
    inline: bool
    knobs: Knobs
    created: float
    failed: bool = False
    cancel_at: float | None = None
    output_file: str | None = None
    _rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return f"batches/{self.id}"

    def ended_at(self) -> tuple[float, str]:
        """When processing ends, and in which state."""
        knobs = self.knobs
        done = self.created + knobs.validating_s + knobs.in_progress_s + knobs.finalizing_s
        end = (done, "FAILED" if self.failed else "SUCCEEDED")
        expires = self.created + (
            knobs.expire_after_s if knobs.expire_after_s is not None else _WINDOW_S
        )
        if done > expires:
            end = (expires, "EXPIRED")
        if self.cancel_at is not None and self.cancel_at < end[0]:
            end = (self.cancel_at + knobs.finalizing_s, "CANCELLED")
        return end

    def state(self, now: float) -> str:
        at, how = self.ended_at()
        if now >= at:
            return how
        return "PENDING" if now < self.created + self.knobs.validating_s else "RUNNING"

    def rows(self) -> list[dict[str, Any]]:
        """The result rows of the ended batch, in an order unrelated to the requests."""
        how = self.ended_at()[1]
        if how not in self._rows:
            self._rows[how] = self._build_rows(how)
        return self._rows[how]

    def _build_rows(self, how: str) -> list[dict[str, Any]]:
        keys = [key for key, _ in self.requests]
        failing = _picked(keys, "error", self.knobs.error_rate)
        stopped: set[str] = set()
        if how in ("EXPIRED", "CANCELLED"):
            fraction = (
                self.knobs.expire_completed_fraction
                if how == "EXPIRED"
                else self.knobs.cancel_completed_fraction
            )
            stopped = set(keys) - _picked(keys, "finished", fraction)
        rows = []
        for key, request in sorted(self.requests, key=lambda r: digest("order", r[0])):
            if key in stopped:
                continue
            if key in failing:
                status, body = 500, error(500, f"Internal error while processing {key!r}.")
            else:
                status, body = synthesize_content(request, self.model, key=key)
            rows.append({"key": key, **({"response": body} if status == 200 else body)})
        return rows

    def view(self, now: float, files: GeminiFiles) -> dict[str, Any]:
        """The batch as the API's long-running operation at `now`."""
        state = self.state(now)
        done = state in ("SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED")
        counts = (
            Counter("failed" if "error" in row else "ok" for row in self.rows()) if done else {}
        )
        metadata: dict[str, Any] = {
            "@type": _BATCH_TYPE,
            "name": self.name,
            "model": self.model,
            "displayName": self.display_name,
            "createTime": rfc3339(self.created),
            "updateTime": rfc3339(min(now, self.ended_at()[0])),
            "state": f"BATCH_STATE_{state}",
            "batchStats": {
                "requestCount": str(len(self.requests)),
                "successfulRequestCount": str(counts.get("ok", 0)),
                "failedRequestCount": str(counts.get("failed", 0)),
                "pendingRequestCount": str(0 if done else len(self.requests)),
            },
        }
        operation: dict[str, Any] = {"name": self.name, "metadata": metadata, "done": done}
        if done:
            metadata["endTime"] = rfc3339(self.ended_at()[0])
        if state == "FAILED":
            operation["error"] = {"code": 13, "message": f"Batch {self.name} failed."}
        elif done:
            output = self._output(files)
            metadata["output"] = output
            operation["response"] = {"@type": _OUTPUT_TYPE, **output}
        return operation

    def _output(self, files: GeminiFiles) -> dict[str, Any]:
        if self.inline:
            responses = [
                {"metadata": {"key": row["key"]}, **{k: v for k, v in row.items() if k != "key"}}
                for row in self.rows()
            ]
            return {"inlinedResponses": {"inlinedResponses": responses}}
        if self.output_file is None:
            data = "".join(json.dumps(row) + "\n" for row in self.rows()).encode()
            self.output_file = files.store(f"{self.name}-output", data, generated=True).name
        return {"responsesFile": self.output_file}


Handler = Callable[[Request], Awaitable[Response]]


class GeminiRoutes:
    """The Gemini part of the emulator; `Emulator` mounts `handlers()` on its app."""

    def __init__(self, *, knobs: Callable[[], Knobs], clock: Callable[[], float]) -> None:
        self._knobs = knobs
        self._clock = clock
        self._lock = threading.Lock()
        self.files = GeminiFiles(lock=self._lock, clock=clock)
        self._batches: dict[str, GeminiBatchRecord] = {}
        self._sync_requests = 0
        self._created: Counter[str] = Counter()
        self.fail_batches = 0
        """The next this many batches end `BATCH_STATE_FAILED`."""

    def handlers(self) -> dict[str, Handler]:
        """Route labels (`"METHOD /path"`, the names `add_fault` takes) and their handlers;
        a `:verb` route comes before the plain one its path would also match."""
        routes: dict[str, Handler] = {
            "POST /gemini/{version}/models/{model}:generateContent": self._generate,
            "POST /gemini/{version}/models/{model}:batchGenerateContent": self._create,
            "GET /gemini/{version}/batches": self._list,
            "POST /gemini/{version}/batches/{batch}:cancel": self._cancel,
            "GET /gemini/{version}/batches/{batch}": self._get,
            "DELETE /gemini/{version}/batches/{batch}": self._delete,
            "POST /gemini/upload/{version}/files": self.files.upload,
            "GET /gemini/{version}/files/{file}:download": self.files.download,
            "GET /gemini/download/{version}/files/{file}:download": self.files.download,
            "GET /gemini/{version}/files/{file}": self.files.metadata,
            "DELETE /gemini/{version}/files/{file}": self.files.delete,
        }
        return {label: _answering_errors(handler) for label, handler in routes.items()}

    def stats(self) -> dict[str, Any]:
        """`batches`, `batches_by_state`, `requests` (sync calls plus batch requests),
        `submitted` (per key, how many created batches held it), `files`,
        `files_uploaded`, `files_deleted`; `batches_created` and `requests_created` count
        deleted batches too."""
        with self._lock:
            now = self._clock()
            submitted: Counter[str] = Counter()
            by_state: Counter[str] = Counter()
            for record in self._batches.values():
                submitted.update(key for key, _ in record.requests)
                by_state[record.state(now)] += 1
            return {
                "batches": len(self._batches),
                "batches_by_state": dict(by_state),
                "requests": sum(submitted.values()) + self._sync_requests,
                "submitted": dict(submitted),
                "batches_created": self._created["batches"],
                "requests_created": self._created["requests"],
                "files": len(self.files.files),
                "files_uploaded": self.files.uploaded,
                "files_deleted": self.files.deleted,
            }

    def _record(self, request: Request) -> GeminiBatchRecord:
        batch_id = request.path_params["batch"]
        record = self._batches.get(batch_id)
        if record is None:
            raise GeminiApiError(404, f"Batch batches/{batch_id} not found.")
        return record

    async def _generate(self, request: Request) -> Response:
        body = _json_object(await request.body())
        status, payload = synthesize_content(body, "models/" + request.path_params["model"])
        with self._lock:
            self._sync_requests += 1
        return JSONResponse(payload, status)

    async def _create(self, request: Request) -> Response:
        raw = await request.body()
        body = _json_object(raw)
        batch = _member(body, "batch")
        source = _member(batch, "inputConfig")
        inline = "requests" in source
        if inline and len(raw) > MAX_INLINE_BYTES:
            message = f"Request payload size exceeds the limit: {MAX_INLINE_BYTES} bytes."
            raise GeminiApiError(400, message)
        knobs = self._knobs()
        with self._lock:
            requests = self._requests(source)
            record = GeminiBatchRecord(
                id=uuid.uuid4().hex[:20],
                model="models/" + request.path_params["model"],
                display_name=str(batch.get("displayName") or ""),
                requests=requests,
                inline=inline,
                knobs=knobs,
                created=self._clock(),
                failed=self.fail_batches > 0,
            )
            self.fail_batches = max(0, self.fail_batches - 1)
            self._batches[record.id] = record
            self._created.update(batches=1, requests=len(requests))
            view = record.view(record.created, self.files)
        if knobs.hang_creates_s:
            await asyncio.sleep(knobs.hang_creates_s)
        return JSONResponse(view)

    def _requests(self, source: dict[str, Any]) -> tuple[tuple[str, dict[str, Any]], ...]:
        """The keyed requests of an inline list or of an uploaded file's lines."""
        if "requests" in source:
            entries = (source.get("requests") or {}).get("requests")
            if not isinstance(entries, list) or not entries:
                raise GeminiApiError(400, "inputConfig.requests.requests must not be empty.")
            pairs = [
                (str((entry.get("metadata") or {}).get("key", "")), entry.get("request"))
                for entry in entries
                if isinstance(entry, dict)
            ]
        elif isinstance(source.get("fileName"), str):
            data = self.files.get(source["fileName"]).data
            try:
                lines = [json.loads(line) for line in data.splitlines() if line.strip()]
            except ValueError:
                raise GeminiApiError(400, f"{source['fileName']} is not JSONL.") from None
            pairs = [(str(line.get("key", "")), line.get("request")) for line in lines]
        else:
            raise GeminiApiError(400, "inputConfig needs requests or fileName.")
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            raise GeminiApiError(400, "Request keys must be unique within a batch.")
        return tuple((key, req if isinstance(req, dict) else {}) for key, req in pairs)

    async def _get(self, request: Request) -> Response:
        with self._lock:
            hang_s = self._record(request).knobs.hang_polls_s
        if hang_s:
            await asyncio.sleep(hang_s)
        with self._lock:
            return JSONResponse(self._record(request).view(self._clock(), self.files))

    async def _list(self, request: Request) -> Response:
        size = int(request.query_params.get("pageSize") or 50)
        start = int(request.query_params.get("pageToken") or 0)
        with self._lock:
            now = self._clock()
            records = list(reversed(self._batches.values()))
            views = [r.view(now, self.files) for r in records[start : start + size]]
        reply: dict[str, Any] = {"operations": views}
        if start + size < len(records):
            reply["nextPageToken"] = str(start + size)
        return JSONResponse(reply)

    async def _cancel(self, request: Request) -> Response:
        with self._lock:
            record = self._record(request)
            now = self._clock()
            if record.state(now) in ("PENDING", "RUNNING"):
                record.cancel_at = now
        return JSONResponse({})

    async def _delete(self, request: Request) -> Response:
        with self._lock:
            record = self._record(request)
            if record.state(self._clock()) in ("PENDING", "RUNNING"):
                message = f"Batch {record.name} is still running; cancel it first."
                raise GeminiApiError(400, message)
            del self._batches[record.id]
        return JSONResponse({})


def _member(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    return value if isinstance(value, dict) else {}


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise GeminiApiError(400, "Invalid JSON payload received.") from None
    if not isinstance(body, dict):
        raise GeminiApiError(400, "Invalid JSON payload: expected an object.")
    return body


def _answering_errors(handler: Handler) -> Handler:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except GeminiApiError as exc:
            return JSONResponse(error(exc.status, str(exc)), exc.status)

    return endpoint
