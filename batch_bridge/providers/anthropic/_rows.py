"""Anthropic's requests and result rows: what an item must hold, and each result row as
its caller's result."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anthropic

from batch_bridge.errors import BatchItemError
from batch_bridge.providers._handles import error_fields

__all__ = ["FINISHED", "UNFINISHED_CODES", "check_item", "row_result", "status_error"]

FINISHED = frozenset({"succeeded", "errored"})
UNFINISHED_CODES = {"expired": "batch_expired", "canceled": "batch_canceled"}
"""The code of a row an ended batch left unfinished, by its result type."""


def status_error(exc: anthropic.APIStatusError) -> tuple[str, str]:
    """The message and code of an Anthropic error answer."""
    return error_fields(exc.body, exc.message, str(exc.status_code), keys=("type",))


def check_item(item: Any) -> str | None:
    """Why an item cannot be a Message Batch request, or None."""
    if not isinstance(item, Mapping):
        return (
            "Anthropic batch item must be a dict of messages.create arguments, got "
            f"{type(item).__name__}"
        )
    if not isinstance(item.get("model"), str) or not item["model"]:
        return "Anthropic batch item must name a 'model' (a non-empty string)"
    tokens = item.get("max_tokens")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        return "Anthropic batch item must set 'max_tokens' (a positive int)"
    if not isinstance(item.get("messages"), list):
        return "Anthropic batch item must give 'messages' (a list)"
    if item.get("stream"):
        return "Anthropic batch requests cannot stream; drop 'stream=True'"
    return None


def row_result(row: Mapping[str, Any], cid: str) -> Any:
    """A result row as the caller's result: the Message dict, or its error."""
    result = row.get("result")
    result = result if isinstance(result, Mapping) else {}
    if result.get("type") == "succeeded" and isinstance(result.get("message"), Mapping):
        return dict(result["message"])
    if result.get("type") == "errored":
        envelope = result.get("error")
        envelope = envelope if isinstance(envelope, Mapping) else {}
        detail = envelope.get("error", envelope)
        detail = detail if isinstance(detail, Mapping) else {}
        return BatchItemError(
            str(detail.get("message") or "Anthropic reported an error for this request"),
            item_id=cid,
            code=str(detail.get("type") or "request_failed"),
        )
    return BatchItemError(
        f"Anthropic returned a {result.get('type')!r} result for this request",
        item_id=cid,
        code="missing_result",
    )
