"""Items held as their JSON bytes while a flush carries tens of thousands of them.

A parsed chat request is a tree of dicts, lists and strings of about a kilobyte; its JSON is
a fifth of that. The intake reads every queued record before it flushes, so a forced flush
of 50,000 items held all their trees at once (`benchmarks/bench_scale.py`, 500 × 100). The
queue read keeps each item packed; it is read back when its record is written again, and
one at a time as the provider adapter builds its request lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from batch_bridge._views import Mapped

__all__ = ["Packed", "pack", "unpack", "unpacked"]


class Packed:
    """One item's JSON, compact."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Packed({len(self.data)} bytes)"


def pack(item: Any) -> Any:
    """The item as `Packed`, or as it is when orjson cannot write it exactly (it never
    meets one from the store: `wait()` refuses what JSON cannot carry)."""
    if item is None or isinstance(item, str | int | float | Packed):
        return item
    try:
        data = orjson.dumps(item)
    except (TypeError, orjson.JSONEncodeError):
        return item
    return Packed(bytes(memoryview(data)))  # orjson's own buffer is at least 4 kB


def unpack(item: Any) -> Any:
    return orjson.loads(item.data) if isinstance(item, Packed) else item


def unpacked(items: Sequence[Any]) -> Mapped[Any]:
    """Items, each read back from its JSON when it is looked at: what a provider adapter is
    given to submit, so a batch's items are never all parsed at once."""
    return Mapped(unpack, items)
