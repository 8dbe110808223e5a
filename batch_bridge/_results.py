"""Result envelopes: what a poll returned, turned into one JSON-safe outcome per item.

An envelope travels from the bridge to the waiting caller inside `Command(resume=...)` and is
turned back into a value or a raised error by `unwrap` in the caller's node.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from batch_bridge._constants import RESULT_KIND
from batch_bridge._store import check_storable
from batch_bridge._views import Mapped
from batch_bridge.errors import (
    _ERRORS_BY_NAME,
    BatchBridgeError,
    BatchCancelledError,
    BatchFailedError,
    BatchItemError,
)
from batch_bridge.types import Pending

Envelope = dict[str, Any]


def _json_default(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def to_json_safe(value: Any) -> Any:
    """Round-trip through JSON so what we store is exactly what the caller will get; a
    value that is already plain JSON (an adapter's decoded row) is that already."""
    if _plain(value):
        return value
    return json.loads(json.dumps(value, default=_json_default))


def _plain(node: Any) -> bool:
    """Whether `node` is made of dicts with string keys, lists and JSON scalars only: its
    JSON round trip is itself. Tuples, models and other keys need the round trip."""
    if node is None or isinstance(node, str | int | float):  # bool is an int
        return True
    if isinstance(node, list):
        return all(_plain(v) for v in node)
    if isinstance(node, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in node.items())
    return False


def ok(value: Any) -> Envelope:
    try:
        safe = to_json_safe(value)
        check_storable(safe, "The provider's result")
    except (TypeError, ValueError) as exc:
        return failed(BatchItemError(f"The provider's result could not be sent back: {exc}"))
    return {"kind": RESULT_KIND, "ok": True, "value": safe}


def failed(error: BaseException) -> Envelope:
    return {
        "kind": RESULT_KIND,
        "ok": False,
        "error": {
            "type": type(error).__name__,
            "message": _describe(error),
            "code": getattr(error, "code", None),
        },
    }


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if isinstance(error, BatchBridgeError) else f"{type(error).__name__}: {text}"


def batch_failed(message: str, n: int) -> list[Envelope]:
    return [failed(BatchFailedError(message))] * n


def _envelope(result: Any) -> Envelope:
    return failed(result) if isinstance(result, BaseException) else ok(result)


def cancelled(batch_id: str, envelopes: Sequence[Envelope]) -> list[Envelope]:
    """A batch cancelled on request: what it left unfinished (a whole-batch failure) becomes
    `BatchCancelledError` naming it; finished rows, answers and row errors alike, stay."""
    error = failed(
        BatchCancelledError(
            f"Batch {batch_id!r} was cancelled on request before this item finished",
            code="batch_cancelled",
        )
    )
    unfinished = BatchFailedError.__name__, BatchCancelledError.__name__
    return [
        error if not e.get("ok") and (e.get("error") or {}).get("type") in unfinished else e
        for e in envelopes
    ]


def interpret_poll(result: Any, n_items: int, batch_id: str) -> Pending | Sequence[Envelope] | None:
    """Apply the poll contract: None/Pending while running, else one envelope per item."""
    if result is None or isinstance(result, Pending):
        return result
    if isinstance(result, BaseException):
        return [failed(_as_batch_failure(result, batch_id))] * n_items
    if isinstance(result, str | bytes | dict) or not isinstance(result, Sequence):
        return batch_failed(
            f"poll for batch {batch_id!r} returned {type(result).__name__}; expected None "
            "(still running), a list of results in submission order, or an exception.",
            n_items,
        )
    if len(result) != n_items:
        return batch_failed(
            f"poll for batch {batch_id!r} returned {len(result)} results for {n_items} items; "
            "results must match the submitted items one to one, in order.",
            n_items,
        )
    if isinstance(result, list | tuple):
        return [_envelope(r) for r in result]
    return Mapped(_envelope, result)  # each enveloped as read: one page in memory at a time


def _as_batch_failure(error: BaseException, batch_id: str) -> BaseException:
    if isinstance(error, BatchItemError):
        return error
    return BatchFailedError(f"Batch {batch_id!r} failed: {type(error).__name__}: {error}")


def is_envelope(value: Any) -> bool:
    return isinstance(value, dict) and value.get("kind") == RESULT_KIND


def unwrap(envelope: Envelope) -> Any:
    """The caller's side: return the value, or raise the named error with its message."""
    if envelope.get("ok"):
        return envelope.get("value")
    error = envelope.get("error") or {}
    cls = _ERRORS_BY_NAME.get(error.get("type", ""), BatchItemError)
    message = error.get("message", "batch item failed")
    if issubclass(cls, BatchItemError):
        raise cls(message, code=error.get("code"))
    raise cls(message)
