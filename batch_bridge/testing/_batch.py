"""One emulated batch: input validation, a life cycle read off the clock, and result lines.

Nothing runs in the background. A batch stores its creation time, its pinned knobs and
the moment a cancel arrived; its status at any instant follows from those, so reads are
reproducible and a test never waits on a scheduler.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from batch_bridge.testing._knobs import Knobs
from batch_bridge.testing._synth import (
    digest,
    has_fail_marker,
    prompt_tokens,
    synthesize,
    unit_interval,
)

__all__ = [
    "ACTIVE_STATUSES",
    "RESULT_STATUSES",
    "STATUSES",
    "BatchRecord",
    "InputRequest",
    "ParsedInput",
    "parse_input",
    "token_limit_error",
]

STATUSES = (
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
)
ACTIVE_STATUSES = frozenset({"validating", "in_progress", "finalizing"})
"""Statuses whose batch still holds enqueued tokens and can be cancelled."""
RESULT_STATUSES = frozenset({"completed", "expired", "cancelled"})
"""Terminal statuses that come with output and error files."""

_MAX_ERRORS = 100
_WINDOWS = {"24h": 24 * 3600}
_STOPS = {
    "expired": (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
    "cancelled": (
        "batch_cancelled",
        "This request was not executed because the batch was cancelled.",
    ),
}


@dataclass(frozen=True, slots=True)
class InputRequest:
    """One valid line of a batch input file."""

    line: int
    custom_id: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ParsedInput:
    """A validated input file: its requests, or the errors that fail the batch."""

    requests: tuple[InputRequest, ...]
    errors: tuple[dict[str, Any], ...]
    model: str | None
    prompt_tokens: int


def _error(
    code: str, message: str, *, line: int | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def token_limit_error(model: str, limit: int) -> dict[str, Any]:
    """The error a batch shows when its model's enqueued-token budget is spent."""
    message = (
        f"Enqueued token limit reached for {model} in organization org-emulator. "
        f"Limit: {limit:,} enqueued tokens. Please try submitting your requests again later."
    )
    return _error("token_limit_exceeded", message)


def _check_line(
    number: int, raw: str, endpoint: str, seen: set[str]
) -> tuple[InputRequest | None, list[dict[str, Any]]]:
    try:
        obj = json.loads(raw)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        message = f"Line {number} is not a valid JSON object."
        return None, [_error("invalid_json_line", message, line=number)]
    errors: list[dict[str, Any]] = []
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        message = f"Line {number} has no custom_id string."
        errors.append(_error("missing_custom_id", message, line=number, param="custom_id"))
    elif custom_id in seen:
        message = f"The custom_id {custom_id!r} on line {number} was already used."
        errors.append(_error("duplicate_custom_id", message, line=number, param="custom_id"))
    else:
        seen.add(custom_id)
    if obj.get("method") != "POST":
        message = f"Line {number} must use method 'POST'."
        errors.append(_error("invalid_method", message, line=number, param="method"))
    if obj.get("url") != endpoint:
        message = f"Line {number} has url {obj.get('url')!r}; the batch endpoint is {endpoint!r}."
        errors.append(_error("mismatched_endpoint", message, line=number, param="url"))
    body = obj.get("body")
    if not isinstance(body, dict):
        message = f"Line {number} has no JSON object body."
        errors.append(_error("invalid_body", message, line=number, param="body"))
    elif not isinstance(body.get("model"), str) or not body["model"]:
        message = f"Line {number} names no model."
        errors.append(_error("missing_model", message, line=number, param="body.model"))
    if errors:
        return None, errors
    assert isinstance(custom_id, str) and isinstance(body, dict)
    return InputRequest(number, custom_id, body), []


def parse_input(data: bytes, endpoint: str, knobs: Knobs) -> ParsedInput:
    """Validate a JSONL input file the way the Batch API does before it runs anything."""
    errors: list[dict[str, Any]] = []
    if len(data) > knobs.max_file_bytes:
        message = f"The input file has {len(data)} bytes; the limit is {knobs.max_file_bytes}."
        return ParsedInput((), (_error("file_too_large", message),), None, 0)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        message = "The input file is not UTF-8 encoded JSONL."
        return ParsedInput((), (_error("invalid_file_encoding", message),), None, 0)
    lines = [(number, raw) for number, raw in enumerate(text.split("\n"), start=1) if raw.strip()]
    if not lines:
        errors.append(_error("empty_file", "The input file contains no requests."))
    if len(lines) > knobs.max_requests_per_file:
        message = (
            f"The input file has {len(lines)} requests; "
            f"a batch may hold at most {knobs.max_requests_per_file}."
        )
        errors.append(_error("too_many_requests", message))
    requests: list[InputRequest] = []
    models: dict[str, int] = {}
    seen: set[str] = set()
    for number, raw in lines:
        request, line_errors = _check_line(number, raw.rstrip("\r"), endpoint, seen)
        errors.extend(line_errors)
        if request is not None:
            requests.append(request)
            models.setdefault(request.body["model"], number)
    if len(models) > 1:
        names = ", ".join(sorted(models))
        message = f"The input file mixes models ({names}); a batch may use only one model."
        errors.append(_error("mixed_models", message, line=sorted(models.values())[1]))
    tokens = sum(prompt_tokens(endpoint, request.body) for request in requests)
    model = next(iter(models), None)
    return ParsedInput(tuple(requests), tuple(errors[:_MAX_ERRORS]), model, tokens)


def _picked(requests: Sequence[InputRequest], salt: str, fraction: float) -> set[str]:
    """Exactly round(fraction * n) custom_ids, chosen by hash so every run picks the same."""
    count = math.floor(fraction * len(requests) + 0.5)
    ranked = sorted(requests, key=lambda request: unit_interval(salt, request.custom_id))
    return {request.custom_id for request in ranked[:count]}


@dataclass(slots=True)
class BatchRecord:
    """A batch and everything needed to derive its state at any moment."""

    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None
    knobs: Knobs
    created: float
    parsed: ParsedInput
    errors: tuple[dict[str, Any], ...]
    cancel_at: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    files_written: bool = False
    output_expires_after_s: float | None = None
    """The batch's `output_expires_after`: its output and error files expire this long after
    they are written."""
    _results: dict[str, list[dict[str, Any]]] = field(default_factory=dict, init=False, repr=False)

    @property
    def expires_at(self) -> float:
        """When the completion window (or the `expire_after_s` knob) runs out."""
        if self.knobs.expire_after_s is not None:
            return self.created + self.knobs.expire_after_s
        return self.created + _WINDOWS.get(self.completion_window, _WINDOWS["24h"])

    def events(self) -> list[tuple[str, float]]:
        """The statuses this batch passes through, each with the moment it enters it."""
        knobs = self.knobs
        validated = self.created + knobs.validating_s
        path: list[tuple[str, float]]
        if self.errors:
            path = [("failed", validated)]
        else:
            processed = validated + knobs.in_progress_s
            done = processed + knobs.finalizing_s
            path = [("in_progress", validated), ("finalizing", processed), ("completed", done)]
            if knobs.expire_after_s is not None and done > self.expires_at:
                path = [event for event in path if event[1] < self.expires_at]
                path.append(("expired", self.expires_at))
        path.insert(0, ("validating", self.created))
        if self.cancel_at is not None:
            path = [event for event in path if event[1] <= self.cancel_at]
            path.append(("cancelling", self.cancel_at))
            path.append(("cancelled", self.cancel_at + knobs.finalizing_s))
        return path

    def reached(self, now: float) -> list[tuple[str, float]]:
        """The events that have happened by `now`; the last one is the current status."""
        return [event for event in self.events() if event[1] <= now]

    def status(self, now: float) -> str:
        """The status a retrieve at `now` reports."""
        return self.reached(now)[-1][0]

    def files_due(self, now: float) -> bool:
        """Whether the result files should exist at `now` (late for `completed` batches)."""
        name, since = self.reached(now)[-1]
        if name not in RESULT_STATUSES:
            return False
        delay = self.knobs.output_file_delay_s if name == "completed" else 0.0
        return now >= since + delay

    def results(self, end: str) -> list[dict[str, Any]]:
        """Every result line (output or error) for a batch ending as `end`, in file order."""
        if end not in self._results:
            self._results[end] = self._build_results(end)
        return self._results[end]

    def _build_results(self, end: str) -> list[dict[str, Any]]:
        requests = self.parsed.requests
        failing = _picked(requests, "error", self.knobs.error_rate)
        stop = _STOPS.get(end)
        fraction = (
            self.knobs.expire_completed_fraction
            if end == "expired"
            else self.knobs.cancel_completed_fraction
        )
        finished = _picked(requests, "finished", fraction) if stop else None
        lines = []
        for request in sorted(requests, key=lambda r: digest("order", r.custom_id)):
            cid = request.custom_id
            line_id = "batch_req_" + digest(self.id, cid)[:32]
            if stop and finished is not None and cid not in finished:
                lines.append(_error_line(line_id, cid, *stop))
            elif cid in failing or has_fail_marker(request.body):
                message = f"The server had an error while processing request {cid!r}."
                lines.append(_error_line(line_id, cid, "server_error", message))
            else:
                status, body = synthesize(self.endpoint, request.body, key=cid)
                response = {
                    "status_code": status,
                    "request_id": "req_" + digest("request", self.id, cid)[:32],
                    "body": body,
                }
                lines.append({"id": line_id, "custom_id": cid, "response": response, "error": None})
        return lines

    def result_files(self, end: str) -> tuple[bytes | None, bytes | None]:
        """The output and error JSONL files; None for a file that would be empty."""
        outputs = [line for line in self.results(end) if line["response"] is not None]
        errors = [line for line in self.results(end) if line["response"] is None]
        return _jsonl(outputs), _jsonl(errors)

    def request_counts(self, reached: list[tuple[str, float]], now: float) -> dict[str, int]:
        """Progress counters; they climb through `in_progress`, then match the files."""
        status, since = reached[-1]
        if status in RESULT_STATUSES:
            return _counts(self.results(status))
        if status == "finalizing":
            return _counts(self.results("completed"))
        started = dict(reached).get("in_progress")
        if started is None:
            return {"total": 0, "completed": 0, "failed": 0}
        moment = since if status == "cancelling" else now
        span = self.knobs.in_progress_s
        progress = 1.0 if span <= 0 else min(1.0, max(0.0, (moment - started) / span))
        final = _counts(self.results("completed"))
        return {
            "total": final["total"],
            "completed": math.floor(final["completed"] * progress),
            "failed": math.floor(final["failed"] * progress),
        }

    def view(self, now: float, *, upto: str | None = None) -> dict[str, Any]:
        """The Batch object as the API returns it at `now`, stopped at status `upto` if given.

        The create and cancel calls answer with `upto` set: the real API always reports a
        new batch as `validating` and a just-cancelled one as `cancelling`, even when zero
        latencies would have moved it further by the time the answer is written.
        """
        reached = self.reached(now)
        if upto is not None:
            names = [name for name, _ in reached]
            reached = reached[: names.index(upto) + 1] if upto in names else reached
        status = reached[-1][0]
        has_files = status in RESULT_STATUSES
        view: dict[str, Any] = {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": self.parsed.model,
            "errors": None,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": status,
            "output_file_id": self.output_file_id if has_files else None,
            "error_file_id": self.error_file_id if has_files else None,
            "created_at": int(self.created),
            "in_progress_at": None,
            "expires_at": int(self.expires_at),
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": self.request_counts(reached, now),
            "usage": _usage(self.results(status)) if has_files else None,
            "metadata": self.metadata,
        }
        view.update({f"{name}_at": int(at) for name, at in reached if name != "validating"})
        if status == "failed":
            view["errors"] = {"object": "list", "data": list(self.errors)}
        return view


def _error_line(line_id: str, custom_id: str, code: str, message: str) -> dict[str, Any]:
    error = {"code": code, "message": message}
    return {"id": line_id, "custom_id": custom_id, "response": None, "error": error}


def _jsonl(lines: list[dict[str, Any]]) -> bytes | None:
    if not lines:
        return None
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def _counts(lines: list[dict[str, Any]]) -> dict[str, int]:
    completed = sum(
        1 for line in lines if line["response"] and 200 <= line["response"]["status_code"] < 300
    )
    return {"total": len(lines), "completed": completed, "failed": len(lines) - completed}


def _usage(lines: list[dict[str, Any]]) -> dict[str, Any]:
    inputs = outputs = 0
    for line in lines:
        usage = (line["response"] or {}).get("body", {}).get("usage") or {}
        inputs += usage.get("prompt_tokens", usage.get("input_tokens", 0))
        outputs += usage.get("completion_tokens", usage.get("output_tokens", 0))
    return {
        "input_tokens": inputs,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": outputs,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": inputs + outputs,
    }
