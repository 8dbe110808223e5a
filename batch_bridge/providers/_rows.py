"""Result rows: decoded off the event loop when large, cached between polls, collected
into one result per item, and the files (or batches) that held them deleted after a grace.
Kept free of any SDK.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeAlias

import orjson

from batch_bridge.errors import BatchFailedError, BatchItemError
from batch_bridge.providers._handles import Handle, Part
from batch_bridge.providers._packing import custom_id

__all__ = [
    "CACHE_BYTES",
    "OFF_LOOP_BYTES",
    "LateDeletes",
    "RowCache",
    "Rows",
    "collect_results",
    "decode_rows",
]

WaitFunc: TypeAlias = Callable[..., Awaitable[Any]]
Rows: TypeAlias = dict[str, dict[str, Any]]
"""Result rows by custom_id."""

OFF_LOOP_BYTES = 1 << 20
"""Result files larger than this are decoded in a worker thread: the event loop that runs
the bridge's tick also serves its callers, and a big `json.loads` loop would stall them."""
CACHE_BYTES = 64 << 20
"""Result rows kept between polls, counted in bytes of the files they were decoded from."""


def _decode(data: bytes) -> Rows:
    """Rows by custom_id; the cyclic GC is paused meanwhile: its passes over the tens of
    thousands of fresh dicts cost three times the parsing (benchmarks/bench_adapter.py)."""
    rows: Rows = {}
    collecting = gc.isenabled()
    gc.disable()
    try:
        for line in data.splitlines():
            if line.strip():
                row = orjson.loads(line)
                rows.setdefault(str(row.get("custom_id")), row)
    finally:
        if collecting:
            gc.enable()
    return rows


async def decode_rows(data: bytes) -> Rows:
    """A JSONL result file's rows by custom_id (the first row of an id wins)."""
    if len(data) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(_decode, data)
    return _decode(data)


class RowCache:
    """Decoded result files by id, least recently used dropped first, bounded by bytes.

    A batch's rows are read again on every poll until the whole bridge batch is done;
    keeping them saves the downloads, and the byte bound keeps a burst of large batches
    from holding them all in memory (a file over the bound is simply not kept).
    """

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[Rows, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, source: str) -> Rows | None:
        entry = self._entries.get(source)
        if entry is None:
            return None
        self._entries.move_to_end(source)
        return entry[0]

    def put(self, source: str, rows: Rows, size: int) -> None:
        self.pop(source)
        if size > self.max_bytes:
            return
        self._entries[source] = (rows, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.bytes -= dropped

    def pop(self, source: str) -> None:
        entry = self._entries.pop(source, None)
        if entry is not None:
            self.bytes -= entry[1]


class LateDeletes:
    """Provider files (or batches) of results already returned, deleted after a grace.

    A poll that returns results cannot know whether the bridge recorded them: if it did
    not, it polls the same handle again and needs the rows once more. So the adapter
    notes what to delete under the handle's key; a new poll of that key takes the note
    back, and a later call of the adapter deletes what has waited `grace_s`.
    """

    def __init__(self, grace_s: float | None) -> None:
        self.grace_s = grace_s
        self._due: dict[str, tuple[float, list[str]]] = {}

    def add(self, key: str, ids: list[str]) -> None:
        if self.grace_s is not None and ids:
            self._due[key] = (time.monotonic() + self.grace_s, ids)

    def keep(self, key: str) -> None:
        self._due.pop(key, None)

    async def run(self, delete: Callable[[str], Awaitable[bool]]) -> None:
        """Delete what is due; `delete` returns False for a failure worth another try."""
        now = time.monotonic()
        for key, (due, ids) in list(self._due.items()):
            if due > now:
                continue
            del self._due[key]
            left = [i for i in ids if not await delete(i)]
            if left:
                self._due[key] = (now, left)


async def collect_results(
    state: Handle,
    *,
    provider: str,
    rows_of: Callable[[Part], Awaitable[Mapping[str, Mapping[str, Any]]]],
    row_result: Callable[[Mapping[str, Any], str], Any],
    unreadable: Callable[[Part, Exception], tuple[str, str] | None],
) -> list[Any]:
    """Every item's result, in item order, once all parts of a handle are done or failed.

    `unreadable(part, exc)` gives the message and code of a part whose rows can never be
    read (its items then fail), or None to let the error through: a later poll may pass.
    """
    key = state["key"]
    results: list[Any] = [None] * state["n"]
    for index, message, code in state["pre"]:
        results[index] = BatchItemError(message, item_id=custom_id(key, index), code=code)
    for part in state["parts"]:
        if part["state"] == "failed":
            for index in part["ids"]:
                results[index] = BatchFailedError(
                    part["error"], item_id=custom_id(key, index), code=part["code"]
                )
            continue
        if not part["ids"]:
            continue
        try:
            rows = await rows_of(part)
        except Exception as exc:
            verdict = unreadable(part, exc)
            if verdict is None:
                raise
            for index in part["ids"]:
                results[index] = BatchFailedError(
                    verdict[0], item_id=custom_id(key, index), code=verdict[1]
                )
            continue
        for index in part["ids"]:
            cid = custom_id(key, index)
            row = rows.get(cid)
            results[index] = (
                row_result(row, cid)
                if row is not None
                else BatchItemError(
                    f"{provider} returned no result for this request",
                    item_id=cid,
                    code="missing_result",
                )
            )
    return results
