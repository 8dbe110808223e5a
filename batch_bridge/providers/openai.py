"""OpenAI Batch API adapter: `submit`/`poll` for the bridge, and a drop-in batched client.

`OpenAIBatch` turns a list of bridge items into as few provider batches as the API's
limits allow and hides the Batch API's failure modes (out-of-order output, per-line
errors, expiry, cancellation, validation failures, token-limit refusals, late output
files) behind the bridge's contract: one result or one exception per item, in order.

Everything it needs between polls lives in the JSON handle (file ids, item indices,
attempt counters, `not_before` timestamps), never the request bodies, so a handle stays
small whatever the batch size and survives a restart of the process polling it.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeAlias

import openai
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from batch_bridge.errors import BatchFailedError, BatchItemError, ConfigError
from batch_bridge.providers._packing import ENDPOINTS, build_request, estimate_tokens, pack
from batch_bridge.types import Pending

__all__ = ["BatchedAsyncOpenAI", "OpenAIBatch", "wrap_openai"]

Handle: TypeAlias = dict[str, Any]
"""`{"v": 1, "key", "n", "pre": [[index, message, code]], "parts": [part, ...]}`."""
Part: TypeAlias = dict[str, Any]
"""One provider file and its successive batches; see `_new_part` for the fields."""
WaitFunc: TypeAlias = Callable[..., Awaitable[Any]]

RETRYABLE: tuple[type[Exception], ...] = (
    openai.APIConnectionError,
    openai.RateLimitError,
    openai.InternalServerError,
)
"""Transport failures a later poll may get past; the handle is kept as it was."""

_RUNNING = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
_UNFINISHED_CODES = frozenset({"batch_expired", "batch_cancelled"})
_END_CODES = {"expired": "batch_expired", "cancelled": "batch_cancelled"}
_HANDLE_VERSION = 1
_CACHED_FILES = 16


def _now_ms() -> int:
    return int(time.time() * 1000)


def _custom_id(key: str, index: int) -> str:
    return f"{key}-{index}"


def _new_part(
    *,
    url: str,
    model: str,
    ids: list[int],
    tokens: int,
    file: str,
    attempt: int,
    state: Literal["waiting", "failed"] = "waiting",
    not_before: int = 0,
    error: str = "",
    code: str = "",
) -> Part:
    """A part record; only str/int/list values, so the handle is plain JSON.

    `state` moves waiting → running → done, or back to waiting for a retry, or to failed.
    `gate` = 1 makes a waiting part start only once no other part of its model runs.
    """
    return {
        "url": url,
        "model": model,
        "ids": ids,
        "tokens": tokens,
        "file": file,
        "attempt": attempt,
        "state": state,
        "batch": "",
        "batches": [],
        "not_before": not_before,
        "gate": 0,
        "out": "",
        "err": "",
        "error": error,
        "code": code,
    }


def _load(handle: Any) -> Handle:
    """Copy and sanity-check a handle, so a poll never mutates what the bridge stored."""
    if not isinstance(handle, Mapping) or handle.get("v") != _HANDLE_VERSION:
        raise ValueError(f"not an OpenAIBatch handle: {handle!r:.200}")
    state = copy.deepcopy(dict(handle))
    for field in ("key", "n", "pre", "parts"):
        if field not in state:
            raise ValueError(f"OpenAIBatch handle lacks {field!r}")
    return state


def _status_error(exc: openai.APIStatusError) -> tuple[str, str]:
    body = exc.body if isinstance(exc.body, Mapping) else {}
    error = body.get("error", body)
    error = error if isinstance(error, Mapping) else {}
    message = str(error.get("message") or exc.message)
    code = str(error.get("code") or error.get("type") or exc.status_code)
    return message, code


def _row_result(row: Mapping[str, Any], custom_id: str) -> Any:
    """An output or error-file line as the caller's result: the response body, or its error."""
    error = row.get("error")
    if isinstance(error, Mapping):
        return BatchItemError(
            str(error.get("message") or "OpenAI reported an error for this request"),
            item_id=custom_id,
            code=str(error.get("code") or "request_failed"),
        )
    response = row.get("response")
    if not isinstance(response, Mapping):
        return BatchItemError(
            "OpenAI returned a result line without a response",
            item_id=custom_id,
            code="no_response",
        )
    status = response.get("status_code")
    body = response.get("body")
    if isinstance(status, int) and 200 <= status < 300:
        return body
    detail = body.get("error") if isinstance(body, Mapping) else None
    detail = detail if isinstance(detail, Mapping) else {}
    return BatchItemError(
        str(detail.get("message") or f"OpenAI answered HTTP {status} for this request"),
        item_id=custom_id,
        code=str(detail.get("code") or detail.get("type") or status),
    )


def _is_unfinished(row: Mapping[str, Any]) -> bool:
    error = row.get("error")
    return isinstance(error, Mapping) and error.get("code") in _UNFINISHED_CODES


def _files_ready(batch: openai.types.Batch) -> bool:
    """False while the request counts promise rows but no file id to read them from yet."""
    counts = batch.request_counts
    if counts is None:
        return batch.status != "completed" or bool(batch.output_file_id or batch.error_file_id)
    if counts.completed > 0 and not batch.output_file_id:
        return False
    return not (counts.failed > 0 and not (batch.output_file_id or batch.error_file_id))


def _rows_short(batch: openai.types.Batch, found: int) -> bool:
    """A completed batch with fewer rows than counted and a file id still null: not ready."""
    counts = batch.request_counts
    if batch.status != "completed" or counts is None:
        return False
    if batch.output_file_id and batch.error_file_id:
        return False
    return found < counts.completed + counts.failed


class OpenAIBatch:
    """Submit/poll functions for the OpenAI Batch API, as the bridge expects them.

    Items are `{"url": "/v1/chat/completions" | "/v1/responses" | "/v1/embeddings",
    "body": {...request arguments, including "model"...}}`; each result is the response
    body dict (e.g. the ChatCompletion JSON) or a `BatchItemError` for that item alone.
    """

    def __init__(
        self,
        client: openai.AsyncOpenAI | None = None,
        *,
        completion_window: str = "24h",
        max_requests_per_file: int = 50_000,
        max_bytes_per_file: int = 200 * 1024 * 1024,
        enqueued_token_budget: int | Mapping[str, int] | None = None,
        max_attempts: int = 3,
        retry_backoff_s: float = 60.0,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        for name, value in (
            ("max_requests_per_file", max_requests_per_file),
            ("max_bytes_per_file", max_bytes_per_file),
            ("max_attempts", max_attempts),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        budgets = (
            enqueued_token_budget.values()
            if isinstance(enqueued_token_budget, Mapping)
            else [enqueued_token_budget]
        )
        for budget in budgets:
            if budget is not None and (
                isinstance(budget, bool) or not isinstance(budget, int) or budget < 1
            ):
                raise ConfigError(
                    "enqueued_token_budget must be a positive int or a {model: int} mapping, "
                    f"got {enqueued_token_budget!r}"
                )
        if (
            isinstance(retry_backoff_s, bool)
            or not isinstance(retry_backoff_s, int | float)
            or retry_backoff_s < 0
        ):
            raise ConfigError(
                f"retry_backoff_s must be a non-negative number, got {retry_backoff_s!r}"
            )
        if metadata is not None and (
            len(metadata) > 15
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
        ):
            raise ConfigError(
                f"metadata must map str to str, at most 15 keys (the adapter adds one), "
                f"got {metadata!r}"
            )
        self._client = client
        self.completion_window = completion_window
        self.max_requests_per_file = max_requests_per_file
        self.max_bytes_per_file = max_bytes_per_file
        self.enqueued_token_budget = (
            dict(enqueued_token_budget)
            if isinstance(enqueued_token_budget, Mapping)
            else enqueued_token_budget
        )
        self.max_attempts = max_attempts
        self.retry_backoff_s = float(retry_backoff_s)
        self.metadata = dict(metadata or {})
        self._rows: OrderedDict[str, dict[str, dict[str, Any]]] = OrderedDict()

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The SDK client, created on first use so that importing needs no API key."""
        if self._client is None:
            self._client = openai.AsyncOpenAI()
        return self._client

    def _budget(self, model: str) -> int | None:
        if isinstance(self.enqueued_token_budget, dict):
            return self.enqueued_token_budget.get(model)
        return self.enqueued_token_budget

    async def submit(self, items: Sequence[Any]) -> Handle:
        """Upload one file per (endpoint, model, limit) part and start what the budget allows.

        Malformed items are refused here, alone, and reported by `poll`. Transport errors
        raise (nothing was started yet); a failure after the first batch started leaves
        the remaining parts waiting for `poll` instead, so no started batch is orphaned.
        """
        key = f"bb{uuid.uuid4().hex[:16]}"
        pre: list[list[Any]] = []
        requests = []
        for index, item in enumerate(items):
            built = build_request(index, _custom_id(key, index), item)
            if isinstance(built, str):
                pre.append([index, built, "invalid_request"])
            elif built.size > self.max_bytes_per_file:
                pre.append(
                    [
                        index,
                        f"OpenAI batch request is {built.size} bytes, over the "
                        f"{self.max_bytes_per_file}-byte file limit",
                        "request_too_large",
                    ]
                )
            else:
                requests.append(built)
        chunks = pack(
            requests,
            max_requests=self.max_requests_per_file,
            max_bytes=self.max_bytes_per_file,
            token_budget=self._budget,
        )
        parts: list[Part] = []
        for number, chunk in enumerate(chunks):
            file_id = await self._upload(f"{key}-{number}", chunk.content())
            parts.append(
                _new_part(
                    url=chunk.url,
                    model=chunk.model,
                    ids=[r.index for r in chunk.requests],
                    tokens=chunk.tokens,
                    file=file_id,
                    attempt=0,
                )
            )
        handle: Handle = {
            "v": _HANDLE_VERSION,
            "key": key,
            "n": len(items),
            "pre": pre,
            "parts": parts,
        }
        await self._start_waiting(handle, _now_ms(), strict=True)
        return handle

    async def poll(self, handle: Handle) -> Pending | list[Any] | BaseException | None:
        """Advance every part; results in item order once all parts are done or failed.

        Returns `Pending(new_handle)` whenever the handle changed (a part finished, was
        retried or started), so a restarted poll never redoes finished work.
        """
        try:
            state = _load(handle)
        except ValueError as exc:
            return BatchFailedError(str(exc), code="bad_handle")
        now = _now_ms()
        try:
            for part in list(state["parts"]):
                if part["state"] == "running":
                    await self._check_or_retry(state, part, now)
            await self._start_waiting(state, now, strict=False)
            if all(p["state"] in ("done", "failed") for p in state["parts"]):
                return await self._results(state)
        except RETRYABLE:
            pass
        return None if state == handle else Pending(state)

    async def _upload(self, name: str, content: bytes) -> str:
        uploaded = await self.client.files.create(
            file=(f"{name}.jsonl", content, "application/jsonl"), purpose="batch"
        )
        return uploaded.id

    async def _start_waiting(self, state: Handle, now: int, *, strict: bool) -> None:
        """Create batches for waiting parts, first come first served per model and budget.

        With `strict`, an API refusal before any batch started is raised (used by submit).
        """
        enqueued: dict[str, int] = {}
        for part in state["parts"]:
            if part["state"] == "running":
                enqueued[part["model"]] = enqueued.get(part["model"], 0) + part["tokens"]
        blocked: set[str] = set()
        started = any(p["state"] != "waiting" for p in state["parts"])
        for part in state["parts"]:
            model = part["model"]
            if part["state"] != "waiting" or model in blocked or part["not_before"] > now:
                continue
            budget = self._budget(model)
            used = enqueued.get(model, 0)
            if used and (part["gate"] or (budget is not None and used + part["tokens"] > budget)):
                blocked.add(model)
                continue
            try:
                batch = await self.client.batches.create(
                    completion_window=self.completion_window,  # type: ignore[arg-type]
                    endpoint=part["url"],
                    input_file_id=part["file"],
                    metadata={**self.metadata, "batch_bridge_key": state["key"]},
                )
            except openai.APIStatusError as exc:
                if strict and not started:
                    raise
                if isinstance(exc, RETRYABLE):
                    return
                message, code = _status_error(exc)
                message = f"OpenAI refused to create the batch: {message}"
                self._retry_or_fail(part, message, code, now)
                continue
            except RETRYABLE:
                if strict and not started:
                    raise
                return
            started = True
            part.update(state="running", batch=batch.id, gate=0)
            part["batches"].append(batch.id)
            enqueued[model] = used + part["tokens"]

    def _retry_or_fail(
        self, part: Part, message: str, code: str, now: int, *, gate: bool = False
    ) -> None:
        attempt = part["attempt"]
        if attempt + 1 < self.max_attempts:
            delay_ms = int(self.retry_backoff_s * 2**attempt * 1000)
            part.update(
                state="waiting",
                batch="",
                attempt=attempt + 1,
                not_before=now + delay_ms,
                gate=int(gate),
                error=message,
                code=code,
            )
        else:
            part.update(
                state="failed",
                batch="",
                error=f"{message} (gave up after {attempt + 1} attempts)",
                code=code,
            )

    async def _check_or_retry(self, state: Handle, part: Part, now: int) -> None:
        """`_check`, retrying the part from its input file if OpenAI refuses a call for good.

        A vanished batch or result file (404) or a refused download would otherwise fail
        the whole bridge batch; resubmitting is bounded by `max_attempts` like any retry.
        """
        batch_id = part["batch"]
        try:
            await self._check(state, part, now)
        except openai.APIStatusError as exc:
            if isinstance(exc, RETRYABLE):
                raise
            message, code = _status_error(exc)
            message = f"OpenAI refused a call about batch {batch_id}: {message}"
            self._retry_or_fail(part, message, code, now)

    async def _check(self, state: Handle, part: Part, now: int) -> None:
        """Look at one running part's batch and move the part on if the batch has ended.

        All downloads and uploads happen before the part is changed, so a transport error
        half-way leaves the part exactly as it was.
        """
        batch = await self.client.batches.retrieve(part["batch"])
        if batch.status in _RUNNING:
            return
        if batch.status == "failed":
            errors = batch.errors.data if batch.errors and batch.errors.data else []
            details = "; ".join(
                f"{e.message or 'no message'} [{e.code}]" if e.code else (e.message or "?")
                for e in errors
            )
            code = next((e.code for e in errors if e.code), "batch_failed")
            self._retry_or_fail(
                part,
                f"OpenAI batch {batch.id} failed: {details or 'no error details given'}",
                code,
                now,
                gate=any(e.code == "token_limit_exceeded" for e in errors),
            )
            return
        if not _files_ready(batch):
            return
        rows = await self._rows_of([batch.output_file_id, batch.error_file_id])
        key = state["key"]
        finished: list[int] = []
        missing: list[int] = []
        for index in part["ids"]:
            row = rows.get(_custom_id(key, index))
            (finished if row is not None and not _is_unfinished(row) else missing).append(index)
        if missing and _rows_short(batch, len(finished)):
            return
        rest = await self._requeue(state, part, missing, batch, now) if missing else []
        part.update(
            state="done",
            batch="",
            ids=finished,
            out=batch.output_file_id or "",
            err=batch.error_file_id or "",
        )
        state["parts"].extend(rest)

    async def _requeue(
        self, state: Handle, part: Part, missing: list[int], batch: openai.types.Batch, now: int
    ) -> list[Part]:
        """New parts for requests an ended batch left unfinished: retried, or failed for good."""
        attempt = part["attempt"]
        code = _END_CODES.get(batch.status, "missing_result")
        reason = (
            f"OpenAI batch {batch.id} ended {batch.status!r} before {len(missing)} of its "
            f"{len(part['ids'])} requests finished"
        )
        common = {"url": part["url"], "model": part["model"]}
        if attempt + 1 >= self.max_attempts:
            gave_up = _new_part(
                **common,
                ids=missing,
                tokens=0,
                file="",
                attempt=attempt,
                state="failed",
                error=f"{reason} (gave up after {attempt + 1} attempts)",
                code=code,
            )
            return [gave_up]
        wanted = {_custom_id(state["key"], i): i for i in missing}
        content = await self.client.files.content(part["file"])
        lines: dict[int, str] = {}
        for line in content.text.splitlines():
            if line.strip():
                index = wanted.get(json.loads(line).get("custom_id"))
                if index is not None:
                    lines[index] = line
        parts: list[Part] = []
        absent = [i for i in missing if i not in lines]
        if absent:
            parts.append(
                _new_part(
                    **common,
                    ids=absent,
                    tokens=0,
                    file="",
                    attempt=attempt,
                    state="failed",
                    error=f"{reason}, and its input file {part['file']} no longer holds them",
                    code=code,
                )
            )
        ordered = [lines[i] for i in missing if i in lines]
        if ordered:
            file_id = await self._upload(
                f"{state['key']}-r{len(state['parts'])}",
                "".join(t + "\n" for t in ordered).encode(),
            )
            rest = _new_part(
                **common,
                ids=[i for i in missing if i in lines],
                tokens=sum(estimate_tokens(t) for t in ordered),
                file=file_id,
                attempt=attempt + 1,
                not_before=now,
                error=reason,
                code=code,
            )
            rest["batches"] = list(part["batches"])
            parts.append(rest)
        return parts

    async def _rows_of(self, file_ids: Sequence[str | None]) -> dict[str, dict[str, Any]]:
        """Rows of output/error files by custom_id (output first), cached between polls."""
        rows: dict[str, dict[str, Any]] = {}
        for file_id in file_ids:
            if not file_id:
                continue
            cached = self._rows.get(file_id)
            if cached is None:
                content = await self.client.files.content(file_id)
                cached = {}
                for line in content.text.splitlines():
                    if line.strip():
                        row = json.loads(line)
                        cached.setdefault(str(row.get("custom_id")), row)
                self._rows[file_id] = cached
                while len(self._rows) > _CACHED_FILES:
                    self._rows.popitem(last=False)
            for custom_id, row in cached.items():
                rows.setdefault(custom_id, row)
        return rows

    async def _results(self, state: Handle) -> list[Any]:
        key = state["key"]
        results: list[Any] = [None] * state["n"]
        for index, message, code in state["pre"]:
            results[index] = BatchItemError(message, item_id=_custom_id(key, index), code=code)
        for part in state["parts"]:
            if part["state"] == "failed":
                for index in part["ids"]:
                    results[index] = BatchFailedError(
                        part["error"], item_id=_custom_id(key, index), code=part["code"]
                    )
                continue
            try:
                rows = await self._rows_of([part["out"], part["err"]])
            except openai.APIStatusError as exc:
                if isinstance(exc, RETRYABLE):
                    raise
                message, code = _status_error(exc)
                for index in part["ids"]:
                    results[index] = BatchFailedError(
                        f"OpenAI result files of batch {part['batches'][-1]} are unreadable: "
                        f"{message}",
                        item_id=_custom_id(key, index),
                        code=code,
                    )
                continue
            for index in part["ids"]:
                custom_id = _custom_id(key, index)
                row = rows.get(custom_id)
                results[index] = (
                    _row_result(row, custom_id)
                    if row is not None
                    else BatchItemError(
                        "OpenAI returned no result for this request",
                        item_id=custom_id,
                        code="missing_result",
                    )
                )
        for part in state["parts"]:
            for file_id in (part["out"], part["err"]):
                self._rows.pop(file_id, None)
        return results


class _Namespace:
    """Delegates unknown attributes to the matching namespace of the real client."""

    def __init__(self, owner: BatchedAsyncOpenAI, path: tuple[str, ...]) -> None:
        self._owner = owner
        self._path = path

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        target: Any = self._owner.client
        for step in self._path:
            target = getattr(target, step)
        return getattr(target, name)


class _ChatCompletions(_Namespace):
    async def create(self, **kwargs: Any) -> ChatCompletion:
        """Like `client.chat.completions.create`, answered through the Batch API."""
        body = await self._owner._call("/v1/chat/completions", kwargs)
        return body if isinstance(body, ChatCompletion) else ChatCompletion.construct(**body)


class _Chat(_Namespace):
    def __init__(self, owner: BatchedAsyncOpenAI) -> None:
        super().__init__(owner, ("chat",))
        self.completions = _ChatCompletions(owner, ("chat", "completions"))


class _Responses(_Namespace):
    async def create(self, **kwargs: Any) -> Response:
        """Like `client.responses.create`, answered through the Batch API."""
        body = await self._owner._call("/v1/responses", kwargs)
        return body if isinstance(body, Response) else Response.construct(**body)


class _Embeddings(_Namespace):
    async def create(self, **kwargs: Any) -> CreateEmbeddingResponse:
        """Like `client.embeddings.create`, answered through the Batch API."""
        body = await self._owner._call("/v1/embeddings", kwargs)
        if isinstance(body, CreateEmbeddingResponse):
            return body
        return CreateEmbeddingResponse.construct(**body)


_REFUSED_OPTIONS = ("extra_headers", "extra_query")


class BatchedAsyncOpenAI:
    """An `AsyncOpenAI` look-alike whose create calls go through a BatchBridge batcher.

    `chat.completions.create`, `responses.create` and `embeddings.create` suspend the
    calling graph node until the batch answers; everything else is the real client.
    """

    def __init__(
        self,
        client: openai.AsyncOpenAI | None = None,
        *,
        batcher: str = "bridge",
        _wait: WaitFunc | None = None,
    ) -> None:
        self._client = client
        self._batcher = batcher
        self._wait = _wait
        self.chat = _Chat(self)
        self.responses = _Responses(self, ("responses",))
        self.embeddings = _Embeddings(self, ("embeddings",))

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The wrapped client, created on first use so that wrapping needs no API key."""
        if self._client is None:
            self._client = openai.AsyncOpenAI()
        return self._client

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.client, name)

    async def _call(self, url: str, kwargs: dict[str, Any]) -> Any:
        if url not in ENDPOINTS:
            raise ValueError(f"unsupported batch endpoint {url!r}")
        if kwargs.get("stream"):
            raise TypeError(
                f"stream=True cannot go through the Batch API ({url}); call the unwrapped "
                "client for streaming"
            )
        refused = [name for name in _REFUSED_OPTIONS if kwargs.get(name)]
        if refused:
            raise TypeError(f"{', '.join(refused)} cannot be sent with a batched request")
        body = {
            name: value
            for name, value in kwargs.items()
            if name not in ("extra_body", "timeout", *_REFUSED_OPTIONS)
            and not isinstance(value, openai.NotGiven | openai.Omit)
        }
        body.update(kwargs.get("extra_body") or {})
        if self._wait is not None:
            return await self._wait({"url": url, "body": body}, batcher=self._batcher)
        from batch_bridge._wait import wait

        return await wait({"url": url, "body": body}, batcher=self._batcher)


def wrap_openai(
    client: openai.AsyncOpenAI | None = None, *, batcher: str = "bridge"
) -> BatchedAsyncOpenAI:
    """Wrap an `AsyncOpenAI` client so its create calls are answered through `batcher`."""
    return BatchedAsyncOpenAI(client, batcher=batcher)
