"""An offline stand-in for the OpenAI Files, Batch and plain model endpoints.

It speaks the HTTP the `openai` SDK speaks, so provider code can be tested end to end
without a network or a key, and it can be told to misbehave the ways the real Batch API
does: slow stages, failed lines, expiry, cancellation, late output files and limits.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from batch_bridge.testing._batch import (
    ACTIVE_STATUSES,
    STATUSES,
    BatchRecord,
    parse_input,
    token_limit_error,
)
from batch_bridge.testing._knobs import Knobs
from batch_bridge.testing._synth import ENDPOINTS, error_body, synthesize

__all__ = ["Emulator"]

_UPLOAD_PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
_WINDOWS = frozenset({"24h"})
_MAX_METADATA_KEYS = 16


class ApiError(Exception):
    """Answered as the OpenAI error JSON with the given HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type_: str = "invalid_request_error",
    ):
        super().__init__(message)
        self.status = status
        self.body = error_body(message, type_=type_, param=param, code=code)


@dataclass(frozen=True, slots=True)
class StoredFile:
    """An uploaded or generated file and its bytes."""

    id: str
    filename: str
    purpose: str
    data: bytes
    created: float

    def view(self) -> dict[str, Any]:
        """The File object as the API returns it."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": int(self.created),
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": None,
        }


def _reply(payload: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(payload, status, headers={"x-request-id": "req_" + uuid.uuid4().hex})


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


def _required_str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise ApiError(400, f"Missing required parameter: '{name}'.", param=name)
    if not isinstance(value, str):
        raise ApiError(400, f"Invalid type for '{name}': expected a string.", param=name)
    return value


def _metadata(raw: Any) -> dict[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or len(raw) > _MAX_METADATA_KEYS:
        raise ApiError(400, "metadata must be an object of at most 16 pairs.", param="metadata")
    for key, value in raw.items():
        if len(key) > 64 or not isinstance(value, str) or len(value) > 512:
            message = f"Invalid metadata pair {key!r}: string keys <= 64, string values <= 512."
            raise ApiError(400, message, param="metadata")
    return dict(raw)


def _limit(request: Request, maximum: int) -> int:
    raw = request.query_params.get("limit", "20")
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= maximum:
        raise ApiError(400, f"Invalid limit {raw!r}: expected 1 to {maximum}.", param="limit")
    return limit


def _page(items: list[dict[str, Any]], request: Request, *, maximum: int) -> dict[str, Any]:
    """A cursor page over newest-first items, the way the list endpoints page."""
    limit = _limit(request, maximum)
    after = request.query_params.get("after")
    if after:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    data = items[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(items) > limit,
    }


class Emulator:
    """In-memory Files and Batch APIs, plus synchronous model endpoints, as a Starlette app.

    Keyword arguments are the server-wide knobs (see `Knobs`); a batch can override any of
    them with `emulator_<knob>` metadata. State is guarded by a lock, so `stats()` may be
    called from a test thread while `EmulatorServer` serves the app from another.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, **knobs: float | None):
        try:
            self.knobs = Knobs(**knobs)  # type: ignore[arg-type]
        except TypeError as exc:
            raise TypeError(f"bad emulator knob: {exc}") from exc
        self._clock = clock
        self._lock = threading.Lock()
        self._files: dict[str, StoredFile] = {}
        self._batches: dict[str, BatchRecord] = {}
        self._sync_requests = 0
        self.app = self._build_app()

    def stats(self) -> dict[str, Any]:
        """Counts of stored files, batches (by current status) and model requests seen.

        `requests` counts lines of batches that passed validation plus synchronous calls.
        """
        with self._lock:
            now = self._clock()
            by_status = dict.fromkeys(STATUSES, 0)
            for record in self._batches.values():
                self._write_results(record, now)
                by_status[record.status(now)] += 1
            valid = [record for record in self._batches.values() if not record.errors]
            batch_requests = sum(len(record.parsed.requests) for record in valid)
            return {
                "files": len(self._files),
                "batches": len(self._batches),
                "batches_by_status": by_status,
                "requests": batch_requests + self._sync_requests,
            }

    def _build_app(self) -> Starlette:
        routes = [
            Route("/v1/files", self._create_file, methods=["POST"]),
            Route("/v1/files", self._list_files, methods=["GET"]),
            Route("/v1/files/{file_id}", self._get_file, methods=["GET"]),
            Route("/v1/files/{file_id}", self._delete_file, methods=["DELETE"]),
            Route("/v1/files/{file_id}/content", self._file_content, methods=["GET"]),
            Route("/v1/batches", self._create_batch, methods=["POST"]),
            Route("/v1/batches", self._list_batches, methods=["GET"]),
            Route("/v1/batches/{batch_id}", self._get_batch, methods=["GET"]),
            Route("/v1/batches/{batch_id}/cancel", self._cancel_batch, methods=["POST"]),
            *(Route(path, self._sync_endpoint(path), methods=["POST"]) for path in ENDPOINTS),
        ]
        handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _server_error,
        }
        return Starlette(routes=routes, exception_handlers=handlers)

    def _store_file(self, filename: str, purpose: str, data: bytes, now: float) -> StoredFile:
        stored = StoredFile("file-" + uuid.uuid4().hex[:24], filename, purpose, data, now)
        self._files[stored.id] = stored
        return stored

    def _file(self, file_id: str) -> StoredFile:
        if file_id not in self._files:
            raise ApiError(404, f"No such File object: {file_id}", param="id")
        return self._files[file_id]

    def _batch(self, batch_id: str) -> BatchRecord:
        if batch_id not in self._batches:
            raise ApiError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
        return self._batches[batch_id]

    def _write_results(self, record: BatchRecord, now: float) -> None:
        """Create a finished batch's output and error files the first time they are due."""
        if record.files_written or not record.files_due(now):
            return
        output, errors = record.result_files(record.status(now))
        if output is not None:
            name = f"batch_{record.id}_output.jsonl"
            record.output_file_id = self._store_file(name, "batch_output", output, now).id
        if errors is not None:
            name = f"batch_{record.id}_error.jsonl"
            record.error_file_id = self._store_file(name, "batch_output", errors, now).id
        record.files_written = True

    async def _create_file(self, request: Request) -> Response:
        async with request.form(max_files=1, max_fields=16) as form:
            purpose = form.get("purpose")
            upload = form.get("file")
            if not isinstance(purpose, str) or not purpose:
                raise ApiError(400, "Missing required parameter: 'purpose'.", param="purpose")
            if purpose not in _UPLOAD_PURPOSES:
                message = f"Invalid value for 'purpose': {purpose!r}."
                raise ApiError(400, message, param="purpose", code="invalid_value")
            if not isinstance(upload, UploadFile):
                raise ApiError(400, "Missing required parameter: 'file'.", param="file")
            data = await upload.read()
            filename = upload.filename or "upload"
        limit = self.knobs.max_file_bytes
        if len(data) > limit:
            message = f"File is too large: {len(data)} bytes; the maximum is {limit} bytes."
            raise ApiError(400, message, param="file", code="file_too_large")
        with self._lock:
            stored = self._store_file(filename, purpose, data, self._clock())
        return _reply(stored.view())

    async def _list_files(self, request: Request) -> Response:
        purpose = request.query_params.get("purpose")
        with self._lock:
            files = [f.view() for f in reversed(self._files.values())]
        wanted = [f for f in files if purpose in (None, f["purpose"])]
        return _reply(_page(wanted, request, maximum=10_000))

    async def _get_file(self, request: Request) -> Response:
        with self._lock:
            return _reply(self._file(request.path_params["file_id"]).view())

    async def _delete_file(self, request: Request) -> Response:
        with self._lock:
            stored = self._file(request.path_params["file_id"])
            del self._files[stored.id]
        return _reply({"id": stored.id, "object": "file", "deleted": True})

    async def _file_content(self, request: Request) -> Response:
        with self._lock:
            stored = self._file(request.path_params["file_id"])
        return Response(stored.data, media_type="application/octet-stream")

    async def _create_batch(self, request: Request) -> Response:
        body = await _json_object(request)
        input_file_id = _required_str(body, "input_file_id")
        endpoint = _required_str(body, "endpoint")
        window = _required_str(body, "completion_window")
        if endpoint not in ENDPOINTS:
            supported = ", ".join(sorted(ENDPOINTS))
            message = f"Invalid endpoint {endpoint!r}; the emulator supports {supported}."
            raise ApiError(400, message, param="endpoint", code="invalid_value")
        if window not in _WINDOWS:
            message = f"Invalid completion_window {window!r}; only '24h' is supported."
            raise ApiError(400, message, param="completion_window", code="invalid_value")
        metadata = _metadata(body.get("metadata"))
        try:
            knobs = self.knobs.with_metadata(metadata)
        except ValueError as exc:
            raise ApiError(400, str(exc), param="metadata") from None
        with self._lock:
            stored = self._file(input_file_id)
            if stored.purpose != "batch":
                message = f"File {stored.id} has purpose {stored.purpose!r}, not 'batch'."
                raise ApiError(400, message, param="input_file_id")
            now = self._clock()
            parsed = parse_input(stored.data, endpoint, knobs)
            errors = parsed.errors
            limit = knobs.enqueued_token_limit
            if not errors and limit is not None and parsed.model is not None:
                enqueued = sum(
                    other.parsed.prompt_tokens
                    for other in self._batches.values()
                    if other.parsed.model == parsed.model
                    and not other.errors
                    and other.status(now) in ACTIVE_STATUSES
                )
                if enqueued + parsed.prompt_tokens > limit:
                    errors = (token_limit_error(parsed.model, limit),)
            record = BatchRecord(
                id="batch_" + uuid.uuid4().hex,
                input_file_id=stored.id,
                endpoint=endpoint,
                completion_window=window,
                metadata=metadata,
                knobs=knobs,
                created=now,
                parsed=parsed,
                errors=errors,
            )
            self._batches[record.id] = record
            return _reply(record.view(now, upto="validating"))

    async def _get_batch(self, request: Request) -> Response:
        with self._lock:
            record = self._batch(request.path_params["batch_id"])
            now = self._clock()
            self._write_results(record, now)
            return _reply(record.view(now))

    async def _cancel_batch(self, request: Request) -> Response:
        with self._lock:
            record = self._batch(request.path_params["batch_id"])
            now = self._clock()
            status = record.status(now)
            if status in ACTIVE_STATUSES:
                record.cancel_at = now
                return _reply(record.view(now, upto="cancelling"))
            if status not in {"cancelling", "cancelled"}:
                message = f"Cannot cancel a batch with status '{status}'."
                raise ApiError(409, message, param="batch_id")
            self._write_results(record, now)
            return _reply(record.view(now))

    async def _list_batches(self, request: Request) -> Response:
        with self._lock:
            now = self._clock()
            views = []
            for record in reversed(self._batches.values()):
                self._write_results(record, now)
                views.append(record.view(now))
        return _reply(_page(views, request, maximum=100))

    def _sync_endpoint(self, endpoint: str) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            body = await _json_object(request)
            if body.get("stream"):
                raise ApiError(400, "The emulator does not stream; omit 'stream'.", param="stream")
            status, payload = synthesize(endpoint, body)
            with self._lock:
                self._sync_requests += 1
            return _reply(payload, status)

        return handle


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _reply(exc.body, exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (404, 405):
        message = f"Invalid URL ({request.method} {request.url.path})"
    else:
        message = str(exc.detail)
    return _reply(error_body(message), exc.status_code)


async def _server_error(request: Request, exc: Exception) -> Response:
    body = error_body(f"The emulator failed: {exc!r}", type_="server_error", code="server_error")
    return _reply(body, 500)
