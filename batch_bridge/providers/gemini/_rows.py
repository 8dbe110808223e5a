"""Gemini's requests and result rows: what an item must hold, its request as the API takes
it (built by the SDK's own converter), and each result row as its caller's result.

Rows are plain dicts by request key, whichever way the batch answered: `{"key", "response"}`
with the response as the SDK's `GenerateContentResponse` dumped to JSON, or `{"key",
"error": {"code", "message", "status"}}`.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Mapping
from typing import Any

import orjson
from google import genai
from google.genai import _common, types
from google.genai import batches as _sdk_batches

from batch_bridge.errors import BatchItemError
from batch_bridge.providers._packing import compact
from batch_bridge.providers._rows import OFF_LOOP_BYTES, Rows
from batch_bridge.providers.gemini._api import APIStatusError

__all__ = [
    "KEYS",
    "check_item",
    "file_rows",
    "inline_rows",
    "render",
    "response_dict",
    "row_result",
    "status_error",
]

KEYS = frozenset({"model", "contents", "config"})
"""The `models.generate_content` arguments an item may give."""


def status_error(exc: APIStatusError) -> tuple[str, str]:
    """The message and code (the status code, as a row error's) of a Gemini error answer."""
    return exc.message, str(exc.status_code or exc.status)


def check_item(item: Any) -> str | None:
    """Why an item cannot be a Gemini batch request, or None."""
    if not isinstance(item, Mapping):
        return (
            "Gemini batch item must be a dict of models.generate_content arguments "
            f"(model, contents, config), got {type(item).__name__}"
        )
    extra = sorted(set(item) - KEYS)
    if extra:
        return f"Gemini batch item takes only model, contents and config, not {extra}"
    if not isinstance(item.get("model"), str) or not item["model"]:
        return "Gemini batch item must name a 'model' (a non-empty string)"
    if not item.get("contents"):
        return "Gemini batch item must give 'contents'"
    return None


def render(client: genai.Client, item: Mapping[str, Any], key: str) -> bytes:
    """The item's JSONL request line (`{"key", "request"}`), built by the SDK's converter,
    so a file request is exactly what the SDK would send inline. Raises `ValueError`
    (pydantic's `ValidationError` is one) for arguments the SDK's types reject."""
    request = types.InlinedRequest(**dict(item))
    converted = _sdk_batches._InlinedRequest_to_mldev(client._api_client, request)
    body = _common.encode_unserializable_types(_common.convert_to_dict(converted["request"]))
    return compact(orjson.dumps({"key": key, "request": body}))


def response_dict(response: types.GenerateContentResponse) -> dict[str, Any]:
    """The caller's result: the SDK's response as JSON (`GenerateContentResponse.model_validate`
    makes it the SDK object again)."""
    return response.model_dump(mode="json", exclude_none=True)


def _error(error: Any) -> dict[str, Any]:
    error = error if isinstance(error, Mapping) else {}
    return {k: error[k] for k in ("code", "message", "status") if error.get(k) is not None}


def inline_rows(job: types.BatchJob) -> Rows:
    """The rows of a batch that answered inline, by the `key` of each request's metadata."""
    rows: Rows = {}
    for answer in (job.dest.inlined_responses if job.dest else None) or []:
        key = (answer.metadata or {}).get("key")
        if key is None or key in rows:
            continue
        if answer.error is not None:
            rows[key] = {"key": key, "error": _error(answer.error.model_dump(exclude_none=True))}
        elif answer.response is not None:
            rows[key] = {"key": key, "response": response_dict(answer.response)}
    return rows


def _decode(data: bytes) -> Rows:
    rows: Rows = {}
    collecting = gc.isenabled()
    gc.disable()
    try:
        for line in data.splitlines():
            if not line.strip():
                continue
            raw = orjson.loads(line)
            key = raw.get("key") if isinstance(raw, dict) else None
            if not isinstance(key, str) or key in rows:
                continue
            if isinstance(raw.get("response"), dict):
                converted = _sdk_batches._GenerateContentResponse_from_mldev(raw["response"])
                parsed = types.GenerateContentResponse._from_response(response=converted, kwargs={})
                rows[key] = {"key": key, "response": response_dict(parsed)}
            else:
                rows[key] = {"key": key, "error": _error(raw.get("error"))}
    finally:
        if collecting:
            gc.enable()
    return rows


async def file_rows(data: bytes) -> Rows:
    """The rows of a responses file, by key; decoded in a thread when large."""
    if len(data) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(_decode, data)
    return _decode(data)


def row_result(row: Mapping[str, Any], cid: str) -> Any:
    """A row as the caller's result: the response dict, or its own error."""
    if isinstance(row.get("response"), Mapping):
        return dict(row["response"])
    error = row.get("error")
    error = error if isinstance(error, Mapping) else {}
    return BatchItemError(
        str(error.get("message") or "Gemini reported an error for this request"),
        item_id=cid,
        code=str(error.get("code") or error.get("status") or "request_failed"),
    )
