"""An offline stand-in for the OpenAI Files, Batch and plain model endpoints (the Anthropic
and Gemini routes live in `_anthropic` and `_gemini`, mounted on the same app).

It speaks the HTTP the `openai` SDK speaks, so provider code can be tested end to end
without a network or a key, and it can be told to misbehave the ways the real Batch API
does: slow stages, failed lines, expiry, cancellation, late output files and limits, and
the ways any HTTP service does: calls that hang, 5xx and 429 answers, dropped connections.

Two routes outside `/v1` serve tests: `GET /_emulator/stats` (see `Emulator.stats`) and
`POST /_emulator/faults` / `DELETE /_emulator/faults` (see `Emulator.add_fault`: the next K
calls of a route answer status S; `--fault ROUTE S K` sets it on the command line).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batch_bridge.providers._profiles import OPENAI, BatchProfile
from batch_bridge.testing._anthropic import AnthropicRoutes
from batch_bridge.testing._batch import (
    ACTIVE_STATUSES,
    STATUSES,
    BatchRecord,
    parse_input,
    token_limit_error,
)
from batch_bridge.testing._faults import Faults
from batch_bridge.testing._files import FileStore, expiry_s
from batch_bridge.testing._gemini import GeminiRoutes
from batch_bridge.testing._http import (
    EXCEPTION_HANDLERS,
    ApiError,
    json_object,
    page,
    reply,
    required_str,
)
from batch_bridge.testing._http import metadata as metadata_of
from batch_bridge.testing._knobs import Knobs
from batch_bridge.testing._synth import ENDPOINTS, synthesize
from batch_bridge.testing._webhooks import WebhookSender

__all__ = ["Emulator"]

ENDINGS = frozenset({"completed", "failed", "expired", "cancelled"})


def _batch_knobs(
    profile: BatchProfile, knobs: Knobs, endpoint: str, window: str, raw_metadata: Any
) -> tuple[Knobs, dict[str, str] | None]:
    """The knobs a new batch pins, and its metadata, once its endpoint, window and metadata
    pass the profile's checks."""
    if endpoint not in ENDPOINTS or endpoint not in profile.endpoints:
        supported = ", ".join(sorted(set(ENDPOINTS) & set(profile.endpoints)))
        message = f"Invalid endpoint {endpoint!r}; the emulator supports {supported}."
        raise ApiError(400, message, param="endpoint", code="invalid_value")
    window_problem = profile.window_problem(window)
    if window_problem is not None:
        message = f"Invalid completion_window: {window_problem}."
        raise ApiError(400, message, param="completion_window", code="invalid_value")
    metadata = metadata_of(raw_metadata)
    try:
        pinned = knobs.with_metadata(metadata)
    except ValueError as exc:
        raise ApiError(400, str(exc), param="metadata") from None
    if not profile.expires:
        pinned = dataclasses.replace(pinned, expire_after_s=None)
    return pinned, metadata


class Emulator:
    """In-memory Files and Batch APIs, plus synchronous model endpoints, as a Starlette app.

    Keyword arguments are the server-wide knobs (see `Knobs`); a batch can override the
    ones about batches with `emulator_<knob>` metadata. State is guarded by a lock, so
    `stats()` and `add_fault()` may be called from a test thread while `EmulatorServer`
    serves the app from another.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        profile: BatchProfile = OPENAI,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        gemini_webhook_url: str | None = None,
        gemini_webhook_secret: str | None = None,
        **knobs: float | None,
    ):
        limits = {
            "max_requests_per_file": profile.max_requests_per_file,
            "max_file_bytes": profile.max_bytes_per_file,
        }
        try:
            self.knobs = Knobs(**{**limits, **knobs})  # type: ignore[arg-type]
        except TypeError as exc:
            raise TypeError(f"bad emulator knob: {exc}") from exc
        self.profile = profile
        """The service emulated: its endpoints, completion windows, expiry and URL prefix."""
        self._clock = clock
        self._lock = threading.Lock()
        self._files = FileStore(
            lock=self._lock, clock=clock, max_bytes=lambda: self.knobs.max_file_bytes
        )
        self._batches: dict[str, BatchRecord] = {}
        self._sync_requests = 0
        self._faults = Faults(self._lock)
        self._handlers: dict[str, Callable[[Request], Awaitable[Response]]] = {
            **self._files.handlers(),
            "POST /v1/batches": self._create_batch,
            "GET /v1/batches": self._list_batches,
            "GET /v1/batches/{batch_id}": self._get_batch,
            "POST /v1/batches/{batch_id}/cancel": self._cancel_batch,
            **{f"POST {path}": self._sync_endpoint(path) for path in ENDPOINTS},
        }
        self.retrievals: list[tuple[str, float]] = []
        """(batch id, wall-clock time) of every `GET /v1/batches/{id}`: what polling costs."""
        self.webhooks = WebhookSender(webhook_url, webhook_secret)
        """Batch webhooks, opt in: a target URL and a `whsec_` secret (`testing._webhooks`);
        `gemini_webhook_url` and `_secret` turn on the Gemini routes' (`gemini.webhooks`)."""
        self.anthropic = AnthropicRoutes(knobs=lambda: self.knobs, clock=self._clock)
        """The Anthropic Message Batches and Messages routes (see `_anthropic`)."""
        self._handlers.update(self.anthropic.handlers())
        self.gemini = GeminiRoutes(knobs=lambda: self.knobs, clock=self._clock)
        """The Gemini Batch Mode, Files and generateContent routes (see `_gemini`)."""
        self._handlers.update(self.gemini.handlers())
        self.gemini.webhooks.url = gemini_webhook_url
        self.gemini.webhooks.secret = gemini_webhook_secret
        self.app = self._build_app()

    @property
    def routes(self) -> list[str]:
        """The `/v1` routes as `"METHOD /path/{param}"`, the names `add_fault` accepts."""
        return list(self._handlers)

    def add_fault(
        self,
        route: str,
        *,
        times: int = 1,
        status: int = 500,
        after: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        """Make the next `times` calls of `route` (e.g. `"POST /v1/batches"`) fail.

        `status` is 500, 502, 503, 504, 408, 409, 429 or 0 (drop the connection mid-answer);
        a 429 carries `retry-after: retry_after_s` (default: the `retry_after_s` knob). With
        `after=True` the call takes effect first and only its answer is replaced: the
        "accepted by the provider, but the reply was lost" case. Faults queue per route.
        """
        if route not in self._handlers:
            raise ValueError(f"unknown emulator route {route!r}; one of {self.routes}")
        with self._lock:
            self._faults.add(
                route, times=times, status=status, after=after, retry_after_s=retry_after_s
            )

    def accepted_by(self, key: Callable[[dict[str, Any]], str]) -> Counter[str]:
        """How many batches that passed validation held each request, grouped by
        `key(request body)`: "was each item submitted once?" whatever its custom_id."""
        with self._lock:
            counts: Counter[str] = Counter()
            for record in self._batches.values():
                if not record.errors:
                    counts.update(key(request.body) for request in record.parsed.requests)
            return counts

    def clear_faults(self) -> None:
        """Forget every fault `add_fault` queued that has not fired yet."""
        with self._lock:
            self._faults.clear()

    def stats(self) -> dict[str, Any]:
        """Counters for tests; `GET /_emulator/stats` answers the same JSON.

        - `files`, `batches`: stored now (files include batch output/error files);
          `batches_by_status`: batches by their current status;
        - `requests`: lines of batches that passed validation, plus synchronous calls;
        - `files_uploaded`, `files_deleted`, `batches_created`, `batches_cancelled`
          (cancels that found the batch still running);
        - `calls`: calls per route (`"POST /v1/batches"`), faulted ones included;
        - `submitted`: per custom_id, how many created batches held it in their input file
          (each valid line, once per batch creation); `accepted`: the same, counting only
          batches that passed validation, i.e. that ran or will run the line;
        - `anthropic`: the same figures for the Anthropic routes (`batches`,
          `batches_by_status`, `requests`, `submitted`); `gemini`: the Gemini routes'
          (see `GeminiRoutes.stats`).
        """
        with self._lock:
            now = self._clock()
            by_status = dict.fromkeys(STATUSES, 0)
            submitted: Counter[str] = Counter()
            accepted: Counter[str] = Counter()
            for record in self._batches.values():
                self._write_results(record, now)
                by_status[record.status(now)] += 1
                ids = [request.custom_id for request in record.parsed.requests]
                submitted.update(ids)
                if not record.errors:
                    accepted.update(ids)
            return {
                "files": len(self._files.files),
                "batches": len(self._batches),
                "batches_by_status": by_status,
                "requests": sum(accepted.values()) + self._sync_requests,
                "files_uploaded": self._files.uploaded,
                "files_deleted": self._files.deleted,
                "batches_created": len(self._batches),
                "batches_cancelled": sum(
                    1 for record in self._batches.values() if record.cancel_at is not None
                ),
                "calls": dict(self._faults.calls),
                "submitted": dict(submitted),
                "accepted": dict(accepted),
                "anthropic": self.anthropic.stats(),
                "webhooks_sent": len(self.webhooks.sent),
                "gemini": self.gemini.stats(),
            }

    def _build_app(self) -> Starlette:
        routes = []
        prefix = self.profile.path_prefix
        for label, handler in self._handlers.items():
            method, path = label.split(" ", 1)
            endpoint = self._faults.guard(label, handler, lambda: self.knobs)
            routes.append(Route(path, endpoint, methods=[method]))
            if prefix:
                routes.append(Route(prefix + path, endpoint, methods=[method]))
        routes += [
            Route("/_emulator/stats", self._stats_route, methods=["GET"]),
            Route("/_emulator/faults", self._add_fault_route, methods=["POST"]),
            Route("/_emulator/faults", self._clear_faults_route, methods=["DELETE"]),
        ]
        return Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)

    async def _stats_route(self, request: Request) -> Response:
        return reply(self.stats())

    async def _add_fault_route(self, request: Request) -> Response:
        body = await json_object(request)
        route = required_str(body, "route")
        options = {name: body[name] for name in ("times", "status", "after") if name in body}
        retry_after_s = body.get("retry_after_s")
        try:
            self.add_fault(route, retry_after_s=retry_after_s, **options)
        except (TypeError, ValueError) as exc:
            raise ApiError(400, str(exc)) from None
        return reply({"object": "emulator.fault", "route": route, **options})

    async def _clear_faults_route(self, request: Request) -> Response:
        self.clear_faults()
        return reply({"object": "emulator.faults", "deleted": True})

    def _batch(self, batch_id: str) -> BatchRecord:
        if batch_id not in self._batches:
            raise ApiError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
        return self._batches[batch_id]

    def _write_results(self, record: BatchRecord, now: float) -> None:
        """Create a finished batch's output and error files the first time they are due."""
        if record.files_written or not record.files_due(now):
            return
        output, errors = record.result_files(record.status(now))
        life = record.output_expires_after_s
        if output is not None:
            name = f"batch_{record.id}_output.jsonl"
            record.output_file_id = self._files.store(name, "batch_output", output, now, life).id
        if errors is not None:
            name = f"batch_{record.id}_error.jsonl"
            record.error_file_id = self._files.store(name, "batch_output", errors, now, life).id
        record.files_written = True

    async def _create_batch(self, request: Request) -> Response:
        body = await json_object(request)
        input_file_id, endpoint, window = (
            required_str(body, name) for name in ("input_file_id", "endpoint", "completion_window")
        )
        knobs, metadata = _batch_knobs(
            self.profile, self.knobs, endpoint, window, body.get("metadata")
        )
        output_life = expiry_s(body.get("output_expires_after"), "output_expires_after")
        with self._lock:
            stored = self._files.get(input_file_id)
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
                output_expires_after_s=output_life,
            )
            self._batches[record.id] = record
            view = record.view(now, upto="validating")
        self.webhooks.watch(self._ended)
        if knobs.hang_creates_s:
            await asyncio.sleep(knobs.hang_creates_s)
        return reply(view)

    def _ended(self, told: set[str]) -> list[tuple[str, str]]:
        """Batches whose end a webhook may tell: failed, or ended with their files due."""
        with self._lock:
            now = self._clock()
            return [
                (record.id, f"batch.{status}")
                for record in self._batches.values()
                if record.id not in told
                and (status := record.status(now)) in ENDINGS
                and (status == "failed" or record.files_due(now))
            ]

    async def _get_batch(self, request: Request) -> Response:
        with self._lock:
            hang_s = self._batch(request.path_params["batch_id"]).knobs.hang_polls_s
        if hang_s:
            await asyncio.sleep(hang_s)
        with self._lock:
            record = self._batch(request.path_params["batch_id"])
            now = self._clock()
            self.retrievals.append((record.id, time.time()))
            self._write_results(record, now)
            return reply(record.view(now))

    async def _cancel_batch(self, request: Request) -> Response:
        with self._lock:
            record = self._batch(request.path_params["batch_id"])
            now = self._clock()
            status = record.status(now)
            if status in ACTIVE_STATUSES:
                record.cancel_at = now
                return reply(record.view(now, upto="cancelling"))
            if status not in {"cancelling", "cancelled"}:
                message = f"Cannot cancel a batch with status '{status}'."
                raise ApiError(409, message, param="batch_id")
            self._write_results(record, now)
            return reply(record.view(now))

    async def _list_batches(self, request: Request) -> Response:
        with self._lock:
            now = self._clock()
            views = []
            for record in reversed(self._batches.values()):
                self._write_results(record, now)
                views.append(record.view(now))
        return reply(page(views, request, maximum=100))

    def _sync_endpoint(self, endpoint: str) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            body = await json_object(request)
            if body.get("stream"):
                raise ApiError(400, "The emulator does not stream; omit 'stream'.", param="stream")
            status, payload = synthesize(endpoint, body)
            if self.knobs.hang_sync_s:
                await asyncio.sleep(self.knobs.hang_sync_s)
            with self._lock:
                self._sync_requests += 1
            return reply(payload, status)

        return handle
