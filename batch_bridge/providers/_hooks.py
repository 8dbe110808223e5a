"""What a provider fills in for the poll skeleton of `BatchAdapter` (see `_base`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from batch_bridge.providers._handles import Handle, Part

__all__ = ["Gate", "Hooks", "Unfinished"]

_B = TypeVar("_B")


@dataclass(frozen=True, slots=True)
class Unfinished:
    """Rows an ended batch of `part` left unfinished, by the code of why, to resubmit."""

    key: str
    context: Any
    part: Part
    missing: dict[str, list[int]]
    reason: str
    now: int


class Gate:
    """Which waiting parts may start now; this one lets every part through."""

    def admits(self, part: Part) -> bool:
        return True

    def started(self, part: Part) -> None:
        """Note a part that started."""


class Hooks(Generic[_B]):
    """The provider's API as the skeleton needs it; `_B` is its SDK's batch object.

    `context` is what `_context` made for one poll (OpenAI: the look for earlier batches).
    """

    def _context(self, state: Handle) -> Any:
        """Per-poll state the hooks share (OpenAI: the look for earlier batches)."""
        return None

    async def _tidy(self, state: Handle) -> None:
        """Clean-up before a poll's work and after its results (OpenAI: ended parts' inputs)."""

    def _gate(self, state: Handle) -> Gate:
        """Which waiting parts may start (OpenAI: the enqueued-token budget)."""
        return Gate()

    async def _delete_late(self, source: str) -> bool:
        raise NotImplementedError

    def _status_error(self, exc: Any) -> tuple[str, str]:
        raise NotImplementedError

    async def _retrieve(self, batch_id: str) -> _B:
        raise NotImplementedError

    def _settle(self, batch: _B, part: Part, now: int) -> bool:
        """True once the batch's rows can be read; a failed batch is handled here."""
        raise NotImplementedError

    async def _batch_rows(self, batch: _B) -> Mapping[str, Mapping[str, Any]]:
        raise NotImplementedError

    def _unfinished(self, batch: _B, row: Mapping[str, Any] | None) -> str | None:
        """None for a row that finished, else the code of why it did not."""
        raise NotImplementedError

    def _rows_short(self, batch: _B, found: int) -> bool:
        return False

    def _done_fields(self, batch: _B) -> dict[str, Any]:
        raise NotImplementedError

    def _end_reason(self, batch: _B, part: Part, missing: int) -> str:
        raise NotImplementedError

    def _failed_part(self, part: Part, ids: list[int], error: str, code: str) -> Part:
        raise NotImplementedError

    async def _resubmit(self, rows: Unfinished) -> list[Part]:
        """New parts for the unfinished rows (and failed ones for rows it cannot send)."""
        raise NotImplementedError

    async def _create(self, state: Handle, context: Any, part: Part) -> dict[str, Any]:
        """Create the part's batch; the fields of the running part (`batch` at least)."""
        raise NotImplementedError

    async def _part_rows(self, part: Part) -> Mapping[str, Mapping[str, Any]]:
        raise NotImplementedError

    def _row_result(self, row: Mapping[str, Any], cid: str) -> Any:
        raise NotImplementedError

    def _unreadable(self, part: Part) -> str:
        """What could not be read, e.g. "OpenAI result files of batch b"."""
        raise NotImplementedError

    def _result_sources(self, state: Handle) -> list[str]:
        """The files or batches holding returned results, deleted after the grace."""
        raise NotImplementedError
