"""Result rows: decoded off the event loop when large, cached between polls, collected
into one result per item, and the files (or batches) that held them deleted after a grace.
Kept free of any SDK.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, TypeAlias, overload

import orjson

from batch_bridge.errors import BatchFailedError, BatchItemError
from batch_bridge.providers._handles import Handle, Part
from batch_bridge.providers._packing import custom_id

__all__ = [
    "CACHE_BYTES",
    "OFF_LOOP_BYTES",
    "FileRows",
    "FirstOf",
    "LateDeletes",
    "Results",
    "RowCache",
    "RowTable",
    "Rows",
    "collect_results",
    "decode_rows",
    "results_as_read",
]

WaitFunc: TypeAlias = Callable[..., Awaitable[Any]]
Rows: TypeAlias = dict[str, dict[str, Any]]
"""Result rows by custom_id, decoded."""
RowTable: TypeAlias = Mapping[str, Mapping[str, Any]]
"""Result rows by custom_id, decoded or decoded when read (`FileRows`)."""
RowResult: TypeAlias = Callable[[Mapping[str, Any], str], Any]
"""A row as the caller's result (or the item's own error), given its custom_id."""

results_as_read: ContextVar[bool] = ContextVar("batch_bridge_results_as_read", default=False)
"""Set by the bridge around its polls: an adapter then returns its `Results` as they are
(made from their rows when read, a page at a time), not the list its users get."""

OFF_LOOP_BYTES = 1 << 20
"""Result files larger than this are decoded in a worker thread: the event loop that runs
the bridge's tick also serves its callers, and a big `json.loads` loop would stall them."""
SPOOL_BYTES = 1 << 20
"""Result files larger than this wait on disk, not in memory, until their rows are read."""
CACHE_BYTES = 64 << 20
"""Result rows kept between polls, counted in bytes of the files they were decoded from."""


tempfile.gettempdir()  # resolved now, as graphs load: the first call may look at the cwd,
# which `langgraph dev` refuses on its event loop once runs start (BlockingError).


class _Spool:
    """Bytes in memory up to `SPOOL_BYTES`, then in an unnamed temporary file, written and
    read at explicit offsets (`os.pwrite`/`os.pread`, one row at a time from the page
    cache). Not a `SpooledTemporaryFile`: its buffered reads and writes are blocking calls
    `langgraph dev` refuses on its event loop, and the bridge reads rows from there."""

    def __init__(self) -> None:
        self._memory: bytearray | None = bytearray()
        self._disk: Any = None  # closed with the object (the bridge reads rows until then)
        self.size = 0

    def write(self, data: bytes) -> None:
        if self._memory is not None and self.size + len(data) > SPOOL_BYTES:
            self._disk = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115
            weakref.finalize(self, self._disk.close)
            os.pwrite(self._disk.fileno(), self._memory, 0)
            self._memory = None
        if self._memory is not None:
            self._memory += data
        else:
            os.pwrite(self._disk.fileno(), data, self.size)
        self.size += len(data)

    def read(self, offset: int, length: int) -> bytes:
        if self._memory is not None:
            return bytes(self._memory[offset : offset + length])
        return os.pread(self._disk.fileno(), length, offset)

    @property
    def on_disk(self) -> bool:
        return self._disk is not None


class FileRows(Mapping[str, Mapping[str, Any]]):
    """A JSONL result file's rows by custom_id (the first row of an id wins), each decoded
    when it is read. The file goes to a spooled temporary file (on disk past `SPOOL_BYTES`)
    as it arrives, with an index of where each row is: a worker holds neither the file nor
    its decoded rows, which take four times its size (50,000 rows: 42 MB, then 160 MB)."""

    def __init__(self) -> None:
        self._file = _Spool()
        self._spans: dict[str, tuple[int, int]] = {}
        self._tail = b""
        self.size = 0

    @classmethod
    def of(cls, data: bytes) -> FileRows:
        rows = cls()
        rows.feed(data)
        rows.end()
        return rows

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the file; each row is indexed once its line is whole."""
        offset = self.size - len(self._tail)
        data = self._tail + chunk if self._tail else chunk
        self._file.write(chunk)
        self.size += len(chunk)
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            self._index(data[start:end], offset + start)
            start = end + 1
        self._tail = data[start:]

    def end(self) -> None:
        """The file is whole: index a last line that has no newline."""
        self._index(self._tail, self.size - len(self._tail))
        self._tail = b""

    def _index(self, line: bytes, offset: int) -> None:
        if line.strip():
            cid = str(orjson.loads(line).get("custom_id"))
            self._spans.setdefault(cid, (offset, len(line)))

    def __getitem__(self, cid: str) -> dict[str, Any]:
        offset, length = self._spans[cid]
        row: dict[str, Any] = orjson.loads(self._file.read(offset, length))
        return row

    def __iter__(self) -> Iterator[str]:
        return iter(self._spans)

    def __len__(self) -> int:
        return len(self._spans)


class FirstOf(Mapping[str, Mapping[str, Any]]):
    """Several tables as one, the first table's row of an id winning (an output file and
    an error file, or the results of a resubmitted part)."""

    def __init__(self, tables: Sequence[RowTable]) -> None:
        self._tables = tables

    def __getitem__(self, cid: str) -> Mapping[str, Any]:
        for table in self._tables:
            row = table.get(cid)
            if row is not None:
                return row
        raise KeyError(cid)

    def __iter__(self) -> Iterator[str]:
        return iter({cid: None for table in self._tables for cid in table})

    def __len__(self) -> int:
        return sum(1 for _ in self)


async def decode_rows(data: bytes) -> FileRows:
    """A JSONL result file's rows by custom_id (the first row of an id wins)."""
    if len(data) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(FileRows.of, data)
    return FileRows.of(data)


class RowCache:
    """Decoded result files by id, least recently used dropped first, bounded by bytes.

    A batch's rows are read again on every poll until the whole bridge batch is done;
    keeping them saves the downloads, and the byte bound keeps a burst of large batches
    from holding them all in memory (a file over the bound is simply not kept).
    """

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[RowTable, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, source: str) -> RowTable | None:
        entry = self._entries.get(source)
        if entry is None:
            return None
        self._entries.move_to_end(source)
        return entry[0]

    def put(self, source: str, rows: RowTable, size: int) -> None:
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


class _InRows:
    """A result still in its part's rows, made when read."""

    __slots__ = ("rows",)

    def __init__(self, rows: RowTable) -> None:
        self.rows = rows


class Results(Sequence[Any]):
    """Every item's result in item order, each made from its row when read: a finished
    batch hands the bridge its rows a page at a time, not 50,000 results at once."""

    def __init__(self, key: str, provider: str, row_result: RowResult, n: int) -> None:
        self._key, self._provider, self._row_result = key, provider, row_result
        self._slots: list[Any] = [None] * n

    def __len__(self) -> int:
        return len(self._slots)

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        slot = self._slots[index]
        if not isinstance(slot, _InRows):
            return slot
        cid = custom_id(self._key, index % len(self))
        row = slot.rows.get(cid)
        if row is None:
            return BatchItemError(
                f"{self._provider} returned no result for this request",
                item_id=cid,
                code="missing_result",
            )
        return self._row_result(row, cid)


async def collect_results(
    state: Handle,
    *,
    provider: str,
    rows_of: Callable[[Part], Awaitable[RowTable]],
    row_result: RowResult,
    unreadable: Callable[[Part, Exception], tuple[str, str] | None],
) -> Results:
    """Every item's result, in item order, once all parts of a handle are done or failed.

    `unreadable(part, exc)` gives the message and code of a part whose rows can never be
    read (its items then fail), or None to let the error through: a later poll may pass.
    """
    key = state["key"]
    results = Results(key, provider, row_result, state["n"])
    slots = results._slots
    for index, message, code in state["pre"]:
        slots[index] = BatchItemError(message, item_id=custom_id(key, index), code=code)
    for part in state["parts"]:
        if part["state"] == "failed":
            for index in part["ids"]:
                slots[index] = BatchFailedError(
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
                slots[index] = BatchFailedError(
                    verdict[0], item_id=custom_id(key, index), code=verdict[1]
                )
            continue
        in_rows = _InRows(rows)
        for index in part["ids"]:
            slots[index] = in_rows
    return results
