"""Anthropic Message Batches adapter: `submit`/`poll`/`cancel` for the bridge, and a drop-in client.

`AnthropicBatch` sends bridge items (the keyword arguments of `client.messages.create`) as
inline requests of as few Message Batches as the API's limits allow (100,000 requests or
256 MB each), and hides the API's failure modes behind the bridge's contract: one result
or one exception per item, in order. Results arrive as an unordered JSONL stream and are
matched by `custom_id`; an `errored` row fails only its item; `expired` and `canceled`
rows are resubmitted (bounded by `max_attempts`), then fail as `BatchFailedError`.

The handle is plain JSON. Unlike OpenAI's, it carries the params of requests still
running: the Anthropic API never hands a batch's requests back, and they are needed to
resubmit expired or canceled rows. Once a batch ends, only the rows it left unfinished
keep their params; finished rows are re-read from the batch's `results_url` (kept by
Anthropic for 29 days).

**Submit is at least once, not exactly once.** Message Batches carry no metadata, name or
idempotency key, and their requests (hence custom ids) are visible only in the results,
once a batch has ended. No lookup can tell whether a running batch holds this key's
requests, so a `submit` retried after a crash between Anthropic's accept and the bridge
recording the handle (or a poll replayed after it created a resubmission) creates a new
batch, and those requests are paid for twice. What stays exact: custom ids are a pure
function of the `idempotency_key` (`<key>-<index>`), the adapter reads results only from
the batches its handle names, so each caller still gets exactly one result. Creating calls
are never retried by the SDK (only a 429, which refuses before acting, or a connection
refused, is safe to repeat; the adapter leaves those to the bridge's next call).
"""

from __future__ import annotations

import copy
import json
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias

try:
    import anthropic
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "batch_bridge.providers.anthropic needs the anthropic SDK: "
        "pip install 'batch-bridge[anthropic]'"
    ) from exc
from anthropic.types import Message
from anthropic.types.messages import MessageBatch

from batch_bridge.errors import BatchFailedError, BatchItemError, ConfigError
from batch_bridge.providers._packing import batch_key, custom_id, now_ms, retry_or_fail
from batch_bridge.types import Pending

__all__ = ["AnthropicBatch", "BatchedAsyncAnthropic", "wrap_anthropic"]

Handle: TypeAlias = dict[str, Any]
"""`{"v": 1, "kind": "anthropic", "key", "n", "pre": [[index, message, code]], "parts"}`."""
Part: TypeAlias = dict[str, Any]
"""One Message Batch and its successive attempts; see `_new_part` for the fields."""
WaitFunc: TypeAlias = Callable[..., Awaitable[Any]]

_HANDLE_VERSION = 1
_KIND = "anthropic"
_CACHED_BATCHES = 16
_FINISHED = frozenset({"succeeded", "errored"})
_UNFINISHED_CODES = {"expired": "batch_expired", "canceled": "batch_canceled"}
_ENVELOPE_BYTES = len('{"custom_id":"","params":},')


def _transient(exc: BaseException) -> bool:
    """Whether a later call may get past this failure (the handle is then kept as it was)."""
    if isinstance(exc, anthropic.APIConnectionError):
        return True
    if isinstance(exc, anthropic.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def _new_part(
    *,
    ids: list[int],
    params: list[Any],
    attempt: int,
    origin: int,
    state: str = "waiting",
    not_before: int = 0,
    error: str = "",
    code: str = "",
) -> Part:
    """A part record, only str/int/list/dict values.

    `state` moves waiting → running → done, or to failed. `params` lists the requests of
    `ids` while they may still be (re)submitted, and is emptied once the part is done.
    `out` is the ended batch whose results hold the part's rows.
    """
    return {
        "ids": ids,
        "params": params,
        "attempt": attempt,
        "origin": origin,
        "state": state,
        "batch": "",
        "batches": [],
        "not_before": not_before,
        "out": "",
        "error": error,
        "code": code,
    }


def _load(handle: Any) -> Handle:
    if (
        not isinstance(handle, Mapping)
        or handle.get("v") != _HANDLE_VERSION
        or handle.get("kind") != _KIND
    ):
        raise ValueError(f"not an AnthropicBatch handle: {handle!r:.200}")
    state = copy.deepcopy(dict(handle))
    for name in ("key", "n", "pre", "parts"):
        if name not in state:
            raise ValueError(f"AnthropicBatch handle lacks {name!r}")
    return state


def _status_error(exc: anthropic.APIStatusError) -> tuple[str, str]:
    body = exc.body if isinstance(exc.body, Mapping) else {}
    error = body.get("error", body)
    error = error if isinstance(error, Mapping) else {}
    return str(error.get("message") or exc.message), str(error.get("type") or exc.status_code)


def _check_item(item: Any) -> str | None:
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


def _row_result(row: Mapping[str, Any], cid: str) -> Any:
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


class AnthropicBatch:
    """Submit/poll/cancel functions for Anthropic Message Batches, as the bridge expects them.

    Items are dicts of `client.messages.create` keyword arguments (`model`, `max_tokens`,
    `messages`, ...); each result is the `Message` JSON dict, or a `BatchItemError` for that
    item alone. Every SDK request is bounded by `timeout_s`. See the module docstring for
    why `submit` is at least once with this provider.
    """

    def __init__(
        self,
        client: anthropic.AsyncAnthropic | None = None,
        *,
        max_requests_per_batch: int = 100_000,
        max_bytes_per_batch: int = 256 * 1024 * 1024,
        max_attempts: int = 3,
        retry_backoff_s: float = 60.0,
        timeout_s: float | None = 120.0,
    ) -> None:
        for name, value in (
            ("max_requests_per_batch", max_requests_per_batch),
            ("max_bytes_per_batch", max_bytes_per_batch),
            ("max_attempts", max_attempts),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        if (
            isinstance(retry_backoff_s, bool)
            or not isinstance(retry_backoff_s, int | float)
            or not 0 <= retry_backoff_s < math.inf
        ):
            raise ConfigError(
                f"retry_backoff_s must be a non-negative number, got {retry_backoff_s!r}"
            )
        if timeout_s is not None and (
            isinstance(timeout_s, bool)
            or not isinstance(timeout_s, int | float)
            or not 0 < timeout_s < math.inf
        ):
            raise ConfigError(
                f"timeout_s must be a positive number of seconds or None, got {timeout_s!r}"
            )
        self.timeout_s = None if timeout_s is None else float(timeout_s)
        if client is not None and self.timeout_s is not None:
            client = client.with_options(timeout=self.timeout_s)
        self._client = client
        self._quiet: tuple[anthropic.AsyncAnthropic, anthropic.AsyncAnthropic] | None = None
        self.max_requests_per_batch = max_requests_per_batch
        self.max_bytes_per_batch = max_bytes_per_batch
        self.max_attempts = max_attempts
        self.retry_backoff_s = float(retry_backoff_s)
        self._rows: OrderedDict[str, dict[str, dict[str, Any]]] = OrderedDict()

    @property
    def client(self) -> anthropic.AsyncAnthropic:
        """The SDK client, created on first use so that importing needs no API key."""
        if self._client is None:
            try:
                if self.timeout_s is None:
                    self._client = anthropic.AsyncAnthropic()
                else:
                    self._client = anthropic.AsyncAnthropic(timeout=self.timeout_s)
            except anthropic.AnthropicError as exc:
                raise ConfigError(
                    f"AnthropicBatch cannot create its Anthropic client: {exc} Set "
                    "ANTHROPIC_API_KEY (and ANTHROPIC_BASE_URL for another endpoint) in the "
                    "bridge deployment."
                ) from exc
        return self._client

    def _quiet_client(self) -> anthropic.AsyncAnthropic:
        """The client without SDK retries, for the call that creates batches."""
        client = self.client
        if self._quiet is None or self._quiet[0] is not client:
            self._quiet = (client, client.with_options(max_retries=0))
        return self._quiet[1]

    async def submit(self, items: Sequence[Any], *, idempotency_key: str | None = None) -> Handle:
        """Create one Message Batch per (request, byte) limit; malformed items fail alone.

        Custom ids are `<key>-<index>`, the key derived from `idempotency_key` (random
        without one). A transport error or refusal before any batch was created raises; one
        after leaves the remaining parts waiting for `poll`, so no created batch is orphaned.
        At least once: see the module docstring.
        """
        key = batch_key(idempotency_key)
        pre: list[list[Any]] = []
        parts: list[Part] = []
        ids: list[int] = []
        params: list[Any] = []
        size = 0
        for index, item in enumerate(items):
            problem = _check_item(item)
            line = ""
            if problem is None:
                try:
                    line = json.dumps(dict(item), separators=(",", ":"), ensure_ascii=False)
                except (TypeError, ValueError) as exc:
                    problem = f"Anthropic batch item is not JSON-serialisable: {exc}"
            cost = len(line.encode()) + len(custom_id(key, index)) + _ENVELOPE_BYTES
            if problem is None and cost > self.max_bytes_per_batch:
                problem = (
                    f"Anthropic batch request is {cost} bytes, over the "
                    f"{self.max_bytes_per_batch}-byte batch limit"
                )
            if problem is not None:
                pre.append([index, problem, "invalid_request"])
                continue
            if ids and (
                len(ids) >= self.max_requests_per_batch or size + cost > self.max_bytes_per_batch
            ):
                parts.append(_new_part(ids=ids, params=params, attempt=0, origin=len(parts)))
                ids, params, size = [], [], 0
            ids.append(index)
            params.append(json.loads(line))
            size += cost
        if ids:
            parts.append(_new_part(ids=ids, params=params, attempt=0, origin=len(parts)))
        handle: Handle = {
            "v": _HANDLE_VERSION,
            "kind": _KIND,
            "key": key,
            "n": len(items),
            "pre": pre,
            "parts": parts,
        }
        await self._start_waiting(handle, now_ms(), strict=True)
        return handle

    async def poll(self, handle: Handle) -> Pending | list[Any] | BaseException | None:
        """Advance every part; results in item order once all parts are done or failed.

        Returns `Pending(new_handle)` whenever the handle changed, so a restarted poll never
        redoes finished work; transport failures leave the handle as it was (None).
        """
        try:
            state = _load(handle)
        except ValueError as exc:
            return BatchFailedError(str(exc), code="bad_handle")
        now = now_ms()
        try:
            for part in list(state["parts"]):
                if part["state"] == "running":
                    await self._check_or_retry(state, part, now)
            await self._start_waiting(state, now, strict=False)
            if all(p["state"] in ("done", "failed") for p in state["parts"]):
                return await self._results(state)
        except anthropic.APIError as exc:
            if not _transient(exc):
                raise
        return None if state == handle else Pending(state)

    async def cancel(self, handle: Handle) -> None:
        """Cancel every batch of this handle still processing; idempotent.

        Batches that ended, are already canceling or are gone are skipped. Batches an
        interrupted call created but no handle names cannot be found (see the module
        docstring). Raises the SDK's error when Anthropic cannot be reached.
        """
        state = _load(handle)
        for part in state["parts"]:
            if part["state"] != "running" or not part["batch"]:
                continue
            try:
                batch = await self.client.messages.batches.retrieve(part["batch"])
                if batch.processing_status == "in_progress":
                    await self.client.messages.batches.cancel(part["batch"])
            except (anthropic.NotFoundError, anthropic.BadRequestError, anthropic.ConflictError):
                continue

    async def _start_waiting(self, state: Handle, now: int, *, strict: bool) -> None:
        """Create a batch for each waiting part whose backoff has passed."""
        started = any(p["state"] != "waiting" for p in state["parts"])
        for part in state["parts"]:
            if part["state"] != "waiting" or part["not_before"] > now:
                continue
            requests = [
                {"custom_id": custom_id(state["key"], index), "params": params}
                for index, params in zip(part["ids"], part["params"], strict=True)
            ]
            try:
                batch = await self._quiet_client().messages.batches.create(
                    requests=requests  # type: ignore[arg-type]
                )
            except anthropic.APIError as exc:
                if (strict and not started) or _transient(exc):
                    raise
                message, code = (
                    _status_error(exc)
                    if isinstance(exc, anthropic.APIStatusError)
                    else (str(exc), "api_error")
                )
                self._retry_or_fail(
                    part, f"Anthropic refused to create the batch: {message}", code, now
                )
                continue
            started = True
            part.update(state="running", batch=batch.id)
            part["batches"].append(batch.id)

    def _retry_or_fail(self, part: Part, message: str, code: str, now: int) -> None:
        retry_or_fail(
            part,
            message,
            code,
            now,
            max_attempts=self.max_attempts,
            backoff_s=self.retry_backoff_s,
            on_failure={"params": []},
        )

    async def _check_or_retry(self, state: Handle, part: Part, now: int) -> None:
        """`_check`, retrying the part if Anthropic refuses a call about its batch for good."""
        batch_id = part["batch"]
        try:
            await self._check(state, part, now)
        except anthropic.APIStatusError as exc:
            if _transient(exc):
                raise
            message, code = _status_error(exc)
            self._retry_or_fail(
                part, f"Anthropic refused a call about batch {batch_id}: {message}", code, now
            )

    async def _check(self, state: Handle, part: Part, now: int) -> None:
        """Look at one running part's batch and move the part on once it has ended."""
        batch = await self.client.messages.batches.retrieve(part["batch"])
        if batch.processing_status != "ended":
            return
        rows = await self._rows_of(batch)
        key = state["key"]
        finished: list[int] = []
        missing: dict[str, list[int]] = {}
        for index in part["ids"]:
            row = rows.get(custom_id(key, index))
            kind = str((row or {}).get("result", {}).get("type"))
            if row is not None and kind in _FINISHED:
                finished.append(index)
            else:
                missing.setdefault(_UNFINISHED_CODES.get(kind, "missing_result"), []).append(index)
        rest = self._requeue(part, missing, batch, now)
        part.update(state="done", batch="", ids=finished, params=[], out=batch.id)
        state["parts"].extend(rest)

    def _requeue(
        self, part: Part, missing: dict[str, list[int]], batch: MessageBatch, now: int
    ) -> list[Part]:
        """New parts for rows an ended batch left unfinished: resubmitted, or failed for good."""
        if not missing:
            return []
        attempt = part["attempt"]
        params = dict(zip(part["ids"], part["params"], strict=True))
        total = sum(len(ids) for ids in missing.values())
        reason = (
            f"Anthropic batch {batch.id} ended before {total} of its {len(part['ids'])} "
            "requests finished"
        )
        if attempt + 1 >= self.max_attempts:
            return [
                _new_part(
                    ids=ids,
                    params=[],
                    attempt=attempt,
                    origin=part["origin"],
                    state="failed",
                    error=f"{reason} ({code}; gave up after {attempt + 1} attempts)",
                    code=code,
                )
                for code, ids in missing.items()
            ]
        ids = sorted(i for group in missing.values() for i in group)
        rest = _new_part(
            ids=ids,
            params=[params[i] for i in ids],
            attempt=attempt + 1,
            origin=part["origin"],
            not_before=now,
            error=reason,
            code=next(iter(missing)),
        )
        rest["batches"] = list(part["batches"])
        return [rest]

    async def _rows_of(self, batch: MessageBatch | str) -> dict[str, dict[str, Any]]:
        """The result rows of an ended batch by custom_id, cached between polls."""
        batch_id = batch if isinstance(batch, str) else batch.id
        cached = self._rows.get(batch_id)
        if cached is None:
            cached = {}
            async for row in await self.client.messages.batches.results(batch_id):
                cached.setdefault(row.custom_id, row.to_dict(mode="json"))
            self._rows[batch_id] = cached
            while len(self._rows) > _CACHED_BATCHES:
                self._rows.popitem(last=False)
        return cached

    async def _results(self, state: Handle) -> list[Any]:
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
                rows = await self._rows_of(part["out"])
            except anthropic.APIStatusError as exc:
                if _transient(exc):
                    raise
                message, code = _status_error(exc)
                for index in part["ids"]:
                    results[index] = BatchFailedError(
                        f"Anthropic results of batch {part['out']} are unreadable: {message}",
                        item_id=custom_id(key, index),
                        code=code,
                    )
                continue
            for index in part["ids"]:
                cid = custom_id(key, index)
                row = rows.get(cid)
                results[index] = (
                    _row_result(row, cid)
                    if row is not None
                    else BatchItemError(
                        "Anthropic returned no result for this request",
                        item_id=cid,
                        code="missing_result",
                    )
                )
        for part in state["parts"]:
            self._rows.pop(part["out"], None)
        return results


class _Messages:
    """`messages.create` through the bridge; everything else is the real `client.messages`."""

    def __init__(self, owner: BatchedAsyncAnthropic) -> None:
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._owner.client.messages, name)

    async def create(self, **kwargs: Any) -> Message:
        """Like `client.messages.create`, answered through Message Batches."""
        body = await self._owner._call(kwargs)
        return body if isinstance(body, Message) else Message.construct(**body)


_REFUSED_OPTIONS = ("extra_headers", "extra_query")


class BatchedAsyncAnthropic:
    """An `AsyncAnthropic` look-alike whose `messages.create` goes through a BatchBridge batcher.

    The call suspends the calling graph node until the batch answers and returns the SDK's
    `Message`; everything else is the real client.
    """

    def __init__(
        self,
        client: anthropic.AsyncAnthropic | None = None,
        *,
        batcher: str = "bridge",
        _wait: WaitFunc | None = None,
    ) -> None:
        self._client = client
        self._batcher = batcher
        self._wait = _wait
        self.messages = _Messages(self)

    @property
    def client(self) -> anthropic.AsyncAnthropic:
        """The wrapped client, created on first use so that wrapping needs no API key."""
        if self._client is None:
            self._client = anthropic.AsyncAnthropic()
        return self._client

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.client, name)

    async def _call(self, kwargs: dict[str, Any]) -> Any:
        if kwargs.get("stream"):
            raise TypeError(
                "stream=True cannot go through Message Batches; call the unwrapped client "
                "(or messages.stream on it) for streaming"
            )
        refused = [name for name in _REFUSED_OPTIONS if kwargs.get(name)]
        if refused:
            raise TypeError(f"{', '.join(refused)} cannot be sent with a batched request")
        body = {
            name: value
            for name, value in kwargs.items()
            if name not in ("extra_body", "timeout", "stream", *_REFUSED_OPTIONS)
            and not isinstance(value, anthropic.NotGiven | anthropic.Omit)
        }
        body.update(kwargs.get("extra_body") or {})
        if self._wait is not None:
            return await self._wait(body, batcher=self._batcher)
        from batch_bridge._wait import wait

        return await wait(body, batcher=self._batcher)


def wrap_anthropic(
    client: anthropic.AsyncAnthropic | None = None, *, batcher: str = "bridge"
) -> BatchedAsyncAnthropic:
    """Wrap an `AsyncAnthropic` client so `messages.create` is answered through `batcher`."""
    return BatchedAsyncAnthropic(client, batcher=batcher)
