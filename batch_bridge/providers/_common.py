"""What the provider adapters share: settings checks, handles, retries, result rows.

Kept free of any SDK, so each adapter module holds only what its provider's API makes
different, and these rules are tested once for all of them.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, Generic, TypeAlias, TypeVar

import orjson

from batch_bridge.errors import BatchFailedError, BatchItemError, ConfigError
from batch_bridge.providers._packing import custom_id

__all__ = [
    "OFF_LOOP_BYTES",
    "Delegate",
    "DropIn",
    "Handle",
    "LateDeletes",
    "Part",
    "RowCache",
    "SdkAdapter",
    "WaitFunc",
    "check_non_negative",
    "check_positive_ints",
    "check_timeout",
    "collect_results",
    "decode_rows",
    "error_fields",
    "load_handle",
    "new_part",
    "now_ms",
    "request_body",
    "retry_or_fail",
    "wait_for",
]

Handle: TypeAlias = dict[str, Any]
"""`{"v": 1, "key", "n", "pre": [[index, message, code]], "parts": [part, ...]}`, plain JSON."""
Part: TypeAlias = dict[str, Any]
"""One provider batch of a handle and its successive attempts; each adapter's `_new_part`."""
WaitFunc: TypeAlias = Callable[..., Awaitable[Any]]
Rows: TypeAlias = dict[str, dict[str, Any]]
"""Result rows by custom_id."""

OFF_LOOP_BYTES = 1 << 20
"""Result files larger than this are decoded in a worker thread: the event loop that runs
the bridge's tick also serves its callers, and a big `json.loads` loop would stall them."""
CACHE_BYTES = 64 << 20
"""Result rows kept between polls, counted in bytes of the files they were decoded from."""


def check_positive_ints(**values: object) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive int, got {value!r}")


def check_non_negative(**values: object) -> None:
    for name, value in values.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value < math.inf
        ):
            raise ConfigError(f"{name} must be a non-negative number, got {value!r}")


def check_timeout(timeout_s: object) -> float | None:
    """`timeout_s` as float seconds, or None for the SDK's own timeout."""
    if timeout_s is None:
        return None
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not 0 < timeout_s < math.inf
    ):
        raise ConfigError(
            f"timeout_s must be a positive number of seconds or None, got {timeout_s!r}"
        )
    return float(timeout_s)


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


_REFUSED_OPTIONS = ("extra_headers", "extra_query")


def request_body(
    kwargs: Mapping[str, Any], *, omitted: tuple[type, ...], api: str
) -> dict[str, Any]:
    """The batch request body of a drop-in client's create call: what the SDK would send.

    Options that change how the SDK sends (headers, query, timeout) have no place in a
    batch line and raise, as does `stream=True`; `extra_body` is merged as the SDK does.
    """
    if kwargs.get("stream"):
        raise TypeError(
            f"stream=True cannot go through {api}; call the unwrapped client for streaming"
        )
    refused = [name for name in _REFUSED_OPTIONS if kwargs.get(name)]
    if refused:
        raise TypeError(f"{', '.join(refused)} cannot be sent with a batched request")
    body = {
        name: value
        for name, value in kwargs.items()
        if name not in ("extra_body", "timeout", "stream", *_REFUSED_OPTIONS)
        and not isinstance(value, omitted)
    }
    body.update(kwargs.get("extra_body") or {})
    return body


async def wait_for(item: Any, *, batcher: str, wait: WaitFunc | None) -> Any:
    """Send one item through `batcher` from inside a graph node; `wait` stands in for tests."""
    if wait is not None:
        return await wait(item, batcher=batcher)
    from batch_bridge._wait import wait as bridge_wait

    return await bridge_wait(item, batcher=batcher)


_C = TypeVar("_C")


class DropIn(Generic[_C]):
    """Base of the drop-in clients: the real client is made on first use (so wrapping
    needs no API key) and answers everything the drop-in does not batch."""

    def __init__(self, client: _C | None, *, batcher: str, wait: WaitFunc | None) -> None:
        self._client = client
        self._batcher = batcher
        self._wait = wait

    def _new_client(self) -> _C:
        raise NotImplementedError

    @property
    def client(self) -> _C:
        """The wrapped client."""
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.client, name)

    async def _send(self, item: Any) -> Any:
        return await wait_for(item, batcher=self._batcher, wait=self._wait)


class Delegate:
    """A namespace of a drop-in client (`chat`, `messages`, ...): what it does not define
    comes from the same namespace of the real client."""

    def __init__(self, owner: DropIn[Any], path: tuple[str, ...]) -> None:
        self._owner = owner
        self._path = path

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        target: Any = self._owner.client
        for step in self._path:
            target = getattr(target, step)
        return getattr(target, name)


class SdkAdapter(Generic[_C]):
    """Holds an adapter's SDK client: made on first use (so importing needs no API key),
    each request bounded by `timeout_s`, plus a copy without SDK retries for the calls
    that create things, which the adapters retry themselves, or not at all."""

    max_attempts: int
    retry_backoff_s: float
    _on_retry: ClassVar[Mapping[str, Any]] = {}
    """Fields a part resets when it is retried."""
    _on_failure: ClassVar[Mapping[str, Any]] = {}
    """Fields a part drops when it fails for good."""

    def __init__(self, client: _C | None, timeout_s: object) -> None:
        self.timeout_s = check_timeout(timeout_s)
        if client is not None and self.timeout_s is not None:
            client = self._with_options(client, timeout=self.timeout_s)
        self._client = client
        self._quiet: tuple[_C, _C] | None = None

    def _new_client(self, **options: Any) -> _C:
        raise NotImplementedError

    def _with_options(self, client: _C, **options: Any) -> _C:
        raise NotImplementedError

    @property
    def client(self) -> _C:
        """The SDK client."""
        if self._client is None:
            options = {} if self.timeout_s is None else {"timeout": self.timeout_s}
            self._client = self._new_client(**options)
        return self._client

    def _retry_or_fail(
        self, part: Part, message: str, code: str, now: int, **on_retry: Any
    ) -> None:
        retry_or_fail(
            part,
            message,
            code,
            now,
            max_attempts=self.max_attempts,
            backoff_s=self.retry_backoff_s,
            on_retry={**self._on_retry, **on_retry},
            on_failure=copy.deepcopy(dict(self._on_failure)),
        )

    def _quiet_client(self) -> _C:
        client = self.client
        if self._quiet is None or self._quiet[0] is not client:
            self._quiet = (client, self._with_options(client, max_retries=0))
        return self._quiet[1]
