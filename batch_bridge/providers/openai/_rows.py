"""Reading OpenAI's output and error files: each line as its caller's result, and whether
an ended batch's files can be read yet."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import openai
from openai.types import Batch

from batch_bridge.errors import BatchItemError
from batch_bridge.providers._handles import error_fields

__all__ = [
    "CANCELLABLE",
    "END_CODES",
    "RUNNING",
    "failure",
    "files_ready",
    "is_unfinished",
    "row_result",
    "rows_short",
    "status_error",
]

RUNNING = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
CANCELLABLE = frozenset({"validating", "in_progress", "finalizing"})
_UNFINISHED_CODES = frozenset({"batch_expired", "batch_cancelled"})
END_CODES = {"expired": "batch_expired", "cancelled": "batch_cancelled"}
"""The code of a row an ended batch left unfinished, by the batch's status."""


def status_error(exc: openai.APIStatusError) -> tuple[str, str]:
    """The message and code of an OpenAI error answer."""
    return error_fields(exc.body, exc.message, str(exc.status_code), keys=("code", "type"))


def row_result(row: Mapping[str, Any], cid: str) -> Any:
    """An output or error-file line as the caller's result: the response body, or its error."""
    error = row.get("error")
    if isinstance(error, Mapping):
        return BatchItemError(
            str(error.get("message") or "OpenAI reported an error for this request"),
            item_id=cid,
            code=str(error.get("code") or "request_failed"),
        )
    response = row.get("response")
    if not isinstance(response, Mapping):
        return BatchItemError(
            "OpenAI returned a result line without a response",
            item_id=cid,
            code="no_response",
        )
    status = response.get("status_code")
    body = response.get("body")
    if isinstance(status, int) and 200 <= status < 300:
        return body
    detail = body.get("error") if isinstance(body, Mapping) else None
    detail = detail if isinstance(detail, Mapping) else {}
    return BatchItemError(
        str(detail.get("message") or f"OpenAI answered HTTP {status} for this request"),
        item_id=cid,
        code=str(detail.get("code") or detail.get("type") or status),
    )


def is_unfinished(row: Mapping[str, Any]) -> bool:
    error = row.get("error")
    return isinstance(error, Mapping) and error.get("code") in _UNFINISHED_CODES


def files_ready(batch: Batch) -> bool:
    """False while the request counts promise rows but no file id to read them from yet."""
    counts = batch.request_counts
    if counts is None:
        return batch.status != "completed" or bool(batch.output_file_id or batch.error_file_id)
    if counts.completed > 0 and not batch.output_file_id:
        return False
    return not (counts.failed > 0 and not (batch.output_file_id or batch.error_file_id))


def rows_short(batch: Batch, found: int) -> bool:
    """A completed batch with fewer rows than counted and a file id still null: not ready."""
    counts = batch.request_counts
    if batch.status != "completed" or counts is None:
        return False
    if batch.output_file_id and batch.error_file_id:
        return False
    return found < counts.completed + counts.failed


def failure(batch: Batch) -> tuple[str, str, int]:
    """A failed batch's message, code, and gate (1: refused for the enqueued-token limit,
    so its retry waits until nothing else of its model runs)."""
    errors = batch.errors.data if batch.errors and batch.errors.data else []
    details = "; ".join(
        f"{e.message or 'no message'} [{e.code}]" if e.code else (e.message or "?") for e in errors
    )
    return (
        f"OpenAI batch {batch.id} failed: {details or 'no error details given'}",
        next((e.code for e in errors if e.code), "batch_failed"),
        int(any(e.code == "token_limit_exceeded" for e in errors)),
    )
