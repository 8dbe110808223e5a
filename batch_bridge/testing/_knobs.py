"""The emulator's knobs, and their per-batch overrides through `emulator_<knob>` metadata.

One frozen record carries every knob so a batch can pin its own copy at creation: later
changes to the server defaults must not alter a batch that is already running.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_args, get_type_hints

__all__ = ["METADATA_PREFIX", "SERVER_KNOBS", "Knobs", "knob_types"]

METADATA_PREFIX = "emulator_"
"""Batch metadata keys starting with this override the knob named by the rest of the key."""

SERVER_KNOBS = frozenset(
    {"server_errors_first_n", "rate_limits_first_n", "retry_after_s", "hang_sync_s"}
)
"""Knobs about the server as a whole: refused in batch metadata, which could not scope them."""

_NONE_WORDS = frozenset({"", "none", "null"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Knobs:
    """Latencies, failure rates and limits the emulator applies to batches and uploads."""

    validating_s: float = 0.0
    """Seconds a batch spends in `validating`."""
    in_progress_s: float = 0.2
    """Seconds a batch spends in `in_progress`."""
    finalizing_s: float = 0.0
    """Seconds in `finalizing`, and from `cancelling` to `cancelled`."""
    error_rate: float = 0.0
    """Fraction of lines sent to the error file, picked by a hash of the custom_id."""
    expire_after_s: float | None = None
    """A batch not finished this many seconds after creation becomes `expired`."""
    expire_completed_fraction: float = 0.5
    """Fraction of lines of an expired batch that finished and appear in its output."""
    cancel_completed_fraction: float = 0.5
    """Fraction of lines of a cancelled batch that finished and appear in its output."""
    output_file_delay_s: float = 0.0
    """Seconds a `completed` batch still shows no output/error file id."""
    max_requests_per_file: int = 50_000
    """Input files with more lines fail validation with `too_many_requests`."""
    enqueued_token_limit: int | None = None
    """Per-model cap on the estimated prompt tokens of all unfinished batches."""
    max_file_bytes: int = 200 * 1024 * 1024
    """Uploads larger than this are refused; a batch whose input is larger fails."""
    hang_polls_s: float = 0.0
    """Seconds `GET /v1/batches/{id}` holds its answer, which then shows the later status."""
    hang_creates_s: float = 0.0
    """Seconds `POST /v1/batches` holds its answer after the batch was recorded and started."""
    hang_sync_s: float = 0.0
    """Server-wide: seconds the normal (non-batch) routes, `POST /v1/chat/completions` and
    the like and Anthropic's `POST /v1/messages`, hold their answer (a slow normal API)."""
    server_errors_first_n: int = 0
    """Server-wide: the first N calls of each route answer HTTP 500 without acting."""
    rate_limits_first_n: int = 0
    """Server-wide: the N calls of each route after those answer HTTP 429 without acting."""
    retry_after_s: float = 1.0
    """Server-wide: the `retry-after` header, in seconds, sent with every emulated 429."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"knob {field.name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"knob {field.name} must be a finite number >= 0, got {value!r}")
            if field.name.endswith(("_rate", "_fraction")) and value > 1:
                raise ValueError(f"knob {field.name} must be between 0 and 1, got {value!r}")
            if knob_types()[field.name] is int and not isinstance(value, int):
                raise TypeError(f"knob {field.name} must be an integer, got {value!r}")

    def with_metadata(self, metadata: Mapping[str, Any] | None) -> Knobs:
        """These knobs, overridden by the batch's `emulator_<knob>` metadata strings.

        Raises `ValueError` naming the key for an unknown knob or an unreadable value, so a
        typo in a test shows up as a 400 instead of a silently ignored setting.
        """
        changes: dict[str, Any] = {}
        kinds = knob_types()
        for key, raw in (metadata or {}).items():
            if not key.startswith(METADATA_PREFIX):
                continue
            name = key.removeprefix(METADATA_PREFIX)
            if name not in kinds:
                raise ValueError(f"unknown emulator knob in metadata key {key!r}")
            if name in SERVER_KNOBS:
                raise ValueError(
                    f"emulator knob {name!r} (metadata key {key!r}) applies to the whole "
                    "server; set it on the Emulator instead"
                )
            changes[name] = _parse(key, str(raw), kinds[name], optional=_optional(name))
        if not changes:
            return self
        try:
            return dataclasses.replace(self, **changes)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad emulator metadata: {exc}") from exc


@functools.cache
def knob_types() -> Mapping[str, type]:
    """Each knob's number type (`int` or `float`), ignoring whether it may be None."""
    hints = get_type_hints(Knobs)
    kinds = {field.name: _base(hints[field.name]) for field in dataclasses.fields(Knobs)}
    return types.MappingProxyType(kinds)


@functools.cache
def _optional(name: str) -> bool:
    hint = get_type_hints(Knobs)[name]
    return isinstance(hint, types.UnionType) and type(None) in get_args(hint)


def _base(hint: Any) -> type:
    if isinstance(hint, types.UnionType):
        hint = next(arg for arg in get_args(hint) if arg is not type(None))
    return hint if isinstance(hint, type) else object


def _parse(key: str, raw: str, kind: type, *, optional: bool) -> int | float | None:
    text = raw.strip()
    if optional and text.lower() in _NONE_WORDS:
        return None
    try:
        return int(text) if kind is int else float(text)
    except ValueError:
        raise ValueError(f"metadata {key}={raw!r} is not a valid {kind.__name__}") from None
