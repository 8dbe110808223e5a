"""Handles: the plain-JSON state an adapter hands the bridge between polls, and its parts.

A handle never holds more than ids, counters and provider ids (Anthropic's also keeps the
params of rows still running), so it stays small and survives a restart of the process
polling it. Kept free of any SDK.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any, TypeAlias

__all__ = [
    "Handle",
    "Part",
    "error_fields",
    "handle_summary",
    "load_handle",
    "new_part",
    "now_ms",
    "provider_ids",
    "retry_or_fail",
]

Handle: TypeAlias = dict[str, Any]
"""`{"v": 1, "key", "n", "pre": [[index, message, code]], "parts": [part, ...]}`, plain JSON."""
Part: TypeAlias = dict[str, Any]
"""One provider batch of a handle and its successive attempts; each adapter's `_new_part`."""


def load_handle(handle: Any, *, name: str, kind: str | None = None) -> Handle:
    """Copy and sanity-check a handle, so a poll never mutates what the bridge stored."""
    if (
        not isinstance(handle, Mapping)
        or handle.get("v") != 1
        or (kind is not None and handle.get("kind") != kind)
    ):
        raise ValueError(f"not an {name} handle: {handle!r:.200}")
    state = copy.deepcopy(dict(handle))
    for field in ("key", "n", "pre", "parts"):
        if field not in state:
            raise ValueError(f"{name} handle lacks {field!r}")
    for number, part in enumerate(state["parts"]):
        part.setdefault("origin", number)
    return state


def new_part(
    *,
    ids: list[int],
    attempt: int,
    origin: int,
    state: str = "waiting",
    not_before: int = 0,
    error: str = "",
    code: str = "",
    **extra: Any,
) -> Part:
    """A part record, plain JSON; `extra` are the provider's own fields.

    `state` moves waiting → running → done, back to waiting for a retry, or to failed.
    `origin` is the number of the submitted part this one descends from (itself, or the
    part whose unfinished rows it resubmits); `batches` lists every batch it ran as, and
    `out` the ended one whose results hold its rows.
    """
    return {
        "ids": ids,
        "attempt": attempt,
        "origin": origin,
        "state": state,
        "batch": "",
        "batches": [],
        "not_before": not_before,
        "out": "",
        "error": error,
        "code": code,
        **extra,
    }


def error_fields(body: Any, message: str, code: str, *, keys: tuple[str, ...]) -> tuple[str, str]:
    """The message and code of an `{"error": {...}}` body (or of a bare error object).

    `keys` are the fields tried for the code in order; `message` and `code` stand in for
    whatever the body lacks.
    """
    body = body if isinstance(body, Mapping) else {}
    detail = body.get("error", body)
    detail = detail if isinstance(detail, Mapping) else {}
    found = next((detail[k] for k in keys if detail.get(k)), None)
    return str(detail.get("message") or message), str(found or code)


def now_ms() -> int:
    """Handles keep times as integer milliseconds: plain JSON, exact across a round trip."""
    return int(time.time() * 1000)


def retry_or_fail(
    part: Part,
    message: str,
    code: str,
    now: int,
    *,
    max_attempts: int,
    backoff_s: float,
    on_retry: Mapping[str, Any] | None = None,
    on_failure: Mapping[str, Any] | None = None,
) -> None:
    """The adapters' shared retry rule for one part of a provider batch.

    Another attempt after `backoff_s * 2**attempt` while attempts remain, else the part fails
    for good with the reason and the count; `on_retry` / `on_failure` are the provider's own
    extra fields to set (an OpenAI gate, dropping Anthropic's kept params).
    """
    attempt = part["attempt"]
    if attempt + 1 < max_attempts:
        part.update(
            state="waiting",
            batch="",
            attempt=attempt + 1,
            not_before=now + int(backoff_s * 2**attempt * 1000),
            error=message,
            code=code,
            **(on_retry or {}),
        )
    else:
        part.update(
            state="failed",
            batch="",
            error=f"{message} (gave up after {attempt + 1} attempts)",
            code=code,
            **(on_failure or {}),
        )


MAX_SHOWN_IDS = 10
"""Provider ids a summary names at most (a handle retried many times lists more)."""


def provider_ids(handle: Any) -> list[str]:
    """Every provider batch id a handle names, oldest first (a short string handle is one)."""
    if isinstance(handle, str):
        return [handle] if len(handle) <= 200 else []
    if not isinstance(handle, Mapping):
        return []
    parts = handle.get("parts")
    if handle.get("v") == 1 and isinstance(parts, list):
        ids: list[str] = []
        for part in parts:
            if isinstance(part, Mapping):
                ran = part.get("batches") or ([part["batch"]] if part.get("batch") else [])
                ids += [b for b in ran if isinstance(b, str) and b not in ids]
        return ids
    for key in ("provider_batch_id", "batch_id", "id"):
        if isinstance(handle.get(key), str) and len(handle[key]) <= 200:
            return [handle[key]]
    return []


def handle_summary(handle: Any) -> dict[str, Any]:
    """What a status page may show of a handle: the provider's ids and, for the adapters'
    handles, requests done of total; never params or payloads. `{}` when nothing is known.

    A short string handle (a user's own submit) is the provider's id itself.
    """
    ids = provider_ids(handle)
    summary: dict[str, Any] = {"provider_ids": ids[-MAX_SHOWN_IDS:]} if ids else {}
    parts = handle.get("parts") if isinstance(handle, Mapping) else None
    if isinstance(handle, Mapping) and handle.get("v") == 1 and isinstance(parts, list):
        summary.setdefault("provider_ids", [])
        done = len(handle.get("pre") or [])
        for part in parts:
            if isinstance(part, Mapping) and part.get("state") in ("done", "failed"):
                done += len(part.get("ids") or [])
        if isinstance(handle.get("n"), int):
            summary |= {"done": done, "total": handle["n"]}
    return summary
