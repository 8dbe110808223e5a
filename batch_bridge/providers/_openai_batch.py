"""OpenAI Batch API adapter: `submit`/`poll`/`cancel` for the bridge, and a drop-in client.

`OpenAIBatch` turns a list of bridge items into as few provider batches as the API's
limits allow and hides the Batch API's failure modes (out-of-order output, per-line
errors, expiry, cancellation, validation failures, token-limit refusals, late output
files) behind the bridge's contract: one result or one exception per item, in order.

Everything it needs between polls lives in the JSON handle (file ids, item indices,
attempt counters, `not_before` timestamps), never the request bodies, so a handle stays
small whatever the batch size and survives a restart of the process polling it.

Creating things at the provider is idempotent. Every input file is named, and every
batch tagged with metadata, after the handle's key, the part and the attempt; before
creating one the adapter looks for it, so a `submit` retried with the same
`idempotency_key`, or a poll replayed from the same handle after a crash, adopts what the
interrupted call created instead of submitting the items again.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, Literal, TypeVar

import openai
from openai.pagination import AsyncCursorPage
from openai.types import Batch, FileObject

from batch_bridge.errors import BatchFailedError, BatchItemError, ConfigError, ProviderError
from batch_bridge.providers._common import (
    Handle,
    LateDeletes,
    Part,
    RowCache,
    SdkAdapter,
    check_non_negative,
    check_positive_ints,
    collect_results,
    decode_rows,
    error_fields,
    load_handle,
    new_part,
    now_ms,
)
from batch_bridge.providers._packing import (
    batch_key,
    build_request,
    custom_id,
    estimate_tokens,
    file_name,
    file_pattern,
    pack,
)
from batch_bridge.providers._profiles import OPENAI, BatchProfile
from batch_bridge.providers._transient import is_refusal, is_transient
from batch_bridge.types import Pending

__all__ = ["OpenAIBatch"]

_T = TypeVar("_T")


def _transient(exc: BaseException) -> bool:
    """A later call may get past it (see `_transient`); the handle is kept as it was."""
    return is_transient(exc, openai)


_RUNNING = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
_CANCELLABLE = frozenset({"validating", "in_progress", "finalizing"})
_UNFINISHED_CODES = frozenset({"batch_expired", "batch_cancelled"})
_END_CODES = {"expired": "batch_expired", "cancelled": "batch_cancelled"}

_KEY_TAG = "batch_bridge_key"
_PART_TAG = "batch_bridge_part"
_ATTEMPT_TAG = "batch_bridge_attempt"
_MAX_USER_METADATA = 16 - 3
"""OpenAI allows 16 metadata pairs per batch; the adapter adds the three tags above."""

_BATCH_PAGE = 100
_FILE_PAGE = 1_000
_MAX_LIST_PAGES = 10
"""How far a look for earlier batches (100 a page) and files (1,000 a page) reads at most."""
_MAX_RETRY_AFTER_S = 120.0
"""The SDK does not retry when the server asks to wait longer than this; neither do we."""


def _tags(key: str, origin: int, attempt: int) -> dict[str, str]:
    return {_KEY_TAG: key, _PART_TAG: str(origin), _ATTEMPT_TAG: str(attempt)}


def _new_part(
    *,
    url: str,
    model: str,
    ids: list[int],
    tokens: int,
    file: str,
    attempt: int,
    origin: int,
    state: Literal["waiting", "failed"] = "waiting",
    not_before: int = 0,
    error: str = "",
    code: str = "",
) -> Part:
    """A part record (see `new_part`) with one input file of one endpoint and model.

    `gate` = 1 makes a waiting part start only once no other part of its model runs.
    `origin` and `attempt` name the part's input file and tag its batch, and no two
    batches of one handle share the pair; `err` is the ended batch's error file.
    """
    return new_part(
        ids=ids,
        attempt=attempt,
        origin=origin,
        state=state,
        not_before=not_before,
        error=error,
        code=code,
        url=url,
        model=model,
        tokens=tokens,
        file=file,
        gate=0,
        err="",
    )


def _status_error(exc: openai.APIStatusError) -> tuple[str, str]:
    return error_fields(exc.body, exc.message, str(exc.status_code), keys=("code", "type"))


def _retry_after_s(headers: Mapping[str, str]) -> float | None:
    for name, divisor in (("retry-after-ms", 1000), ("retry-after", 1)):
        try:
            return float(headers[name]) / divisor
        except (KeyError, ValueError):
            continue
    return None


def _retry_delay(exc: openai.APIError, tries: int) -> float | None:
    """Seconds to wait before trying a call again, as the SDK would; None: it would not."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        headers = exc.response.headers
        if headers.get("x-should-retry") == "false":
            return None
        if status not in (408, 409, 429) and status < 500:
            return None
        wait_s = _retry_after_s(headers)
        if wait_s is not None and math.isfinite(wait_s):
            if wait_s > _MAX_RETRY_AFTER_S:
                return None
            if wait_s > 0:
                return wait_s
    elif not isinstance(exc, openai.APIConnectionError):
        return None
    return min(0.5 * 2.0**tries, 8.0) * (1 - 0.25 * random.random())


def _may_have_acted(exc: openai.APIError) -> bool:
    """Whether the provider may have carried out a create call that failed this way.

    A 429 refuses the call before it runs; a timeout, a dropped connection or a 5xx may
    come after the provider created the batch or file.
    """
    return not (isinstance(exc, openai.APIStatusError) and exc.status_code == 429)


def _row_result(row: Mapping[str, Any], cid: str) -> Any:
    """An output or error-file line as the caller's result: the response body, or its error."""
    error = row.get("error")
    if isinstance(error, Mapping):
        return BatchItemError(
            str(error.get("message") or "OpenAI reported an error for this request"),
            item_id=cid,
            code=str(error.get("code") or "request_failed"),
        )
    response = row.get("response")
    if not isinstance(response, Mapping):
        return BatchItemError(
            "OpenAI returned a result line without a response",
            item_id=cid,
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
        item_id=cid,
        code=str(detail.get("code") or detail.get("type") or status),
    )


def _is_unfinished(row: Mapping[str, Any]) -> bool:
    error = row.get("error")
    return isinstance(error, Mapping) and error.get("code") in _UNFINISHED_CODES


def _files_ready(batch: Batch) -> bool:
    """False while the request counts promise rows but no file id to read them from yet."""
    counts = batch.request_counts
    if counts is None:
        return batch.status != "completed" or bool(batch.output_file_id or batch.error_file_id)
    if counts.completed > 0 and not batch.output_file_id:
        return False
    return not (counts.failed > 0 and not (batch.output_file_id or batch.error_file_id))


def _rows_short(batch: Batch, found: int) -> bool:
    """A completed batch with fewer rows than counted and a file id still null: not ready."""
    counts = batch.request_counts
    if batch.status != "completed" or counts is None:
        return False
    if batch.output_file_id and batch.error_file_id:
        return False
    return found < counts.completed + counts.failed


class _Earlier:
    """What earlier, interrupted calls for one key left at the provider, listed once per call.

    Batches are matched by their tags (key, part, attempt), input files by name. With
    `eager`, the adapter looks before every create (a retried submit, any poll); without,
    only after a create failed in a way that may have created the thing anyway.
    """

    def __init__(self, adapter: OpenAIBatch, key: str, *, eager: bool) -> None:
        self._adapter = adapter
        self.key = key
        self.eager = eager
        self._batches: list[Batch] | None = None
        self._files: list[FileObject] | None = None

    async def all_batches(self, *, fresh: bool = False) -> list[Batch]:
        """Batches tagged with this key, oldest first."""
        if fresh or self._batches is None:
            first = await self._adapter.client.batches.list(limit=_BATCH_PAGE)
            listed = await self._adapter._recent(first)
            self._batches = [
                batch
                for batch in reversed(listed)
                if (batch.metadata or {}).get(_KEY_TAG) == self.key
            ]
        return self._batches

    async def all_files(self, *, fresh: bool = False) -> list[FileObject]:
        """Input files named after this key, oldest first."""
        if fresh or self._files is None:
            first = await self._adapter.client.files.list(
                purpose="batch", order="desc", limit=_FILE_PAGE
            )
            listed = await self._adapter._recent(first)
            pattern = file_pattern(self.key)
            self._files = [f for f in reversed(listed) if pattern.fullmatch(f.filename)]
        return self._files

    async def batch(self, origin: int, attempt: int, *, fresh: bool = False) -> Batch | None:
        """The first batch created for this part and attempt, if any."""
        if not (self.eager or fresh):
            return None
        wanted = _tags(self.key, origin, attempt)
        for batch in await self.all_batches(fresh=fresh):
            metadata = batch.metadata or {}
            if all(metadata.get(tag) == value for tag, value in wanted.items()):
                return batch
        return None

    async def file(self, name: str, size: int, *, fresh: bool = False) -> FileObject | None:
        """The first uploaded file of this name and size; ones of another size are deleted."""
        if not (self.eager or fresh):
            return None
        found = None
        for uploaded in await self.all_files(fresh=fresh):
            if uploaded.filename != name:
                continue
            if uploaded.bytes == size and uploaded.status != "error":
                if found is None:
                    found = uploaded
            else:
                await self._adapter._delete_file(uploaded.id)
        return found


class OpenAIBatch(SdkAdapter[openai.AsyncOpenAI]):
    """Submit/poll/cancel functions for the OpenAI Batch API, as the bridge expects them.

    Items are `{"url": "/v1/chat/completions" | "/v1/responses" | "/v1/embeddings",
    "body": {...request arguments, including "model"...}}`; each result is the response
    body dict (e.g. the ChatCompletion JSON) or a `BatchItemError` for that item alone.

    Every SDK request is bounded by `timeout_s` (the per-attempt HTTP timeout; the SDK
    client's `max_retries`, which honour `retry-after`, come on top). Creating calls are
    not retried blindly: after a failure that may have created the batch or file anyway,
    the adapter waits as the SDK would and looks for it before creating it again.

    A look for earlier batches or files reads the provider's lists newest first, and stops
    at entries created more than `lookback_s` before the newest one listed, or after ten
    pages (1,000 batches, 10,000 files), whichever comes first: a retry must come within
    that window to be recognised. Without an `idempotency_key`, `submit` looks only after
    an ambiguous failure; `poll` looks before each batch it creates (retries and
    resubmissions), since it may be replaying a poll that crashed after creating it.

    Output and error files are deleted by a poll that comes `delete_results_after_s`
    after their results were returned (None keeps them): the bridge polls a handle again
    if it failed to record its results, and then needs them.

    `profile` names the service behind the client's `base_url` (`OPENAI`, `AZURE_OPENAI`,
    `GROQ`, `TOGETHER`): its file limits are the defaults (a larger setting is refused),
    `completion_window` must be one it accepts, and an item for an endpoint it does not
    run fails alone at submit, before any upload.
    """

    _on_retry: ClassVar[Mapping[str, Any]] = MappingProxyType({"gate": 0})

    def __init__(
        self,
        client: openai.AsyncOpenAI | None = None,
        *,
        profile: BatchProfile = OPENAI,
        completion_window: str = "24h",
        max_requests_per_file: int | None = None,
        max_bytes_per_file: int | None = None,
        enqueued_token_budget: int | Mapping[str, int] | None = None,
        max_attempts: int = 3,
        retry_backoff_s: float = 60.0,
        metadata: Mapping[str, str] | None = None,
        timeout_s: float | None = 120.0,
        lookback_s: float = 48 * 3600.0,
        delete_results_after_s: float | None = 600.0,
    ) -> None:
        if not isinstance(profile, BatchProfile):
            raise ConfigError(f"profile must be a BatchProfile such as GROQ, got {profile!r}")
        if max_requests_per_file is None:
            max_requests_per_file = profile.max_requests_per_file
        if max_bytes_per_file is None:
            max_bytes_per_file = profile.max_bytes_per_file
        check_positive_ints(
            max_requests_per_file=max_requests_per_file,
            max_bytes_per_file=max_bytes_per_file,
            max_attempts=max_attempts,
        )
        for name, value, limit in (
            ("max_requests_per_file", max_requests_per_file, profile.max_requests_per_file),
            ("max_bytes_per_file", max_bytes_per_file, profile.max_bytes_per_file),
        ):
            if value > limit:
                raise ConfigError(f"{name} is {value}, over {profile.name}'s limit of {limit}")
        window_problem = profile.window_problem(completion_window)
        if window_problem is not None:
            raise ConfigError(window_problem)
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
        check_non_negative(retry_backoff_s=retry_backoff_s, lookback_s=lookback_s)
        if delete_results_after_s is not None:
            check_non_negative(delete_results_after_s=delete_results_after_s)
        if metadata is not None and (
            len(metadata) > _MAX_USER_METADATA
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
        ):
            raise ConfigError(
                f"metadata must map str to str, at most {_MAX_USER_METADATA} keys (the adapter "
                f"adds three), got {metadata!r}"
            )
        super().__init__(client, timeout_s)
        self.profile = profile
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
        self.lookback_s = float(lookback_s)
        self.metadata = dict(metadata or {})
        self._rows = RowCache()
        self._late = LateDeletes(delete_results_after_s)

    def _new_client(self, **options: Any) -> openai.AsyncOpenAI:
        try:
            return openai.AsyncOpenAI(**options)
        except openai.OpenAIError as exc:  # e.g. no OPENAI_API_KEY: retrying cannot help
            raise ConfigError(
                f"OpenAIBatch cannot create its OpenAI client: {exc} Set OPENAI_API_KEY "
                "(and OPENAI_BASE_URL for another endpoint) in the bridge deployment."
            ) from exc

    def _with_options(self, client: openai.AsyncOpenAI, **options: Any) -> openai.AsyncOpenAI:
        return client.with_options(**options)

    def _budget(self, model: str) -> int | None:
        if isinstance(self.enqueued_token_budget, dict):
            return self.enqueued_token_budget.get(model)
        return self.enqueued_token_budget

    async def submit(self, items: Sequence[Any], *, idempotency_key: str | None = None) -> Handle:
        """Upload one file per (endpoint, model, limit) part and start what the budget allows.

        Malformed items are refused here, alone, and reported by `poll`. Transport errors
        raise (nothing was started yet); a failure after the first batch started leaves
        the remaining parts waiting for `poll` instead, so no started batch is orphaned.

        With an `idempotency_key`, the handle's key, custom ids (`<key>-<index>`), file
        names and batch tags are pure functions of it and the items, and the files and
        batches an interrupted call with the same key and items already created are
        reused: a retry returns an equivalent handle and submits no item twice (a batch
        found for a part but made from other requests raises a non-retryable
        `ProviderError`). Without one, the key is random, nothing is looked up beforehand,
        and a submit that raises deletes the files it uploaded.
        """
        key = batch_key(idempotency_key)
        earlier = _Earlier(self, key, eager=idempotency_key is not None)
        pre: list[list[Any]] = []
        requests = []
        for index, item in enumerate(items):
            built = build_request(index, custom_id(key, index), item)
            if isinstance(built, str):
                pre.append([index, built, "invalid_request"])
            elif (refused := self.profile.endpoint_problem(built.url)) is not None:
                pre.append([index, refused, "unsupported_endpoint"])
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
            part = _new_part(
                url=chunk.url,
                model=chunk.model,
                ids=[r.index for r in chunk.requests],
                tokens=chunk.tokens,
                file="",
                attempt=0,
                origin=number,
            )
            content = chunk.content()
            batch = await earlier.batch(number, 0)
            if batch is not None:
                await self._check_adopted(batch, key, number, chunk.url, len(content))
                part.update(state="running", batch=batch.id, file=batch.input_file_id)
                part["batches"].append(batch.id)
            else:
                try:
                    part["file"] = await self._upload(earlier, file_name(key, number, 0), content)
                except Exception:
                    if not earlier.eager:  # a random key: no retry will ever reuse them
                        await self._drop_uploads(parts)
                    raise
            parts.append(part)
        handle: Handle = {
            "v": 1,
            "key": key,
            "n": len(items),
            "pre": pre,
            "parts": parts,
        }
        try:
            await self._start_waiting(handle, earlier, now_ms(), strict=True)
        except Exception:
            if not earlier.eager:
                await self._drop_uploads(parts)
            raise
        return handle

    async def _check_adopted(
        self, batch: Batch, key: str, number: int, url: str, size: int
    ) -> None:
        """Refuse to adopt a batch made from other requests than this submit's part."""
        try:
            held = await self.client.files.retrieve(batch.input_file_id)
        except openai.NotFoundError:
            held = None
        if batch.endpoint != url or (held is not None and held.bytes != size):
            found = f"{batch.endpoint} from {held.bytes if held else '?'} bytes"
            raise ProviderError(
                f"OpenAI already holds batch {batch.id} for key {key!r} part {number} "
                f"({found}), but this submit's part is {url} from {size} bytes; a retried "
                "submit must pass the same items, in the same order, with the same adapter "
                "settings",
                provider="openai",
                retryable=False,
            )

    async def _drop_uploads(self, parts: list[Part]) -> None:
        """Best effort: delete the input files of a submit that failed before any batch."""
        for part in parts:
            if part["file"] and part["state"] == "waiting":
                await self._delete_file(part["file"])

    async def poll(self, handle: Handle) -> Pending | list[Any] | BaseException | None:
        """Advance every part; results in item order once all parts are done or failed.

        Returns `Pending(new_handle)` whenever the handle changed (a part finished, was
        retried or started), so a restarted poll never redoes finished work. Input files
        of parts that ended are deleted once a handle recording the end comes back, and
        all of them when the results are returned; output and error files a later poll
        deletes, `delete_results_after_s` after their results were returned.
        """
        try:
            state = load_handle(handle, name="OpenAIBatch")
        except ValueError as exc:
            return BatchFailedError(str(exc), code="bad_handle")
        now = now_ms()
        earlier = _Earlier(self, state["key"], eager=True)
        self._late.keep(state["key"])
        await self._late.run(self._delete_file)
        try:
            await self._drop_inputs(state)
            for part in list(state["parts"]):
                if part["state"] == "running":
                    await self._check_or_retry(state, earlier, part, now)
            await self._start_waiting(state, earlier, now, strict=False)
            if all(p["state"] in ("done", "failed") for p in state["parts"]):
                results = await self._results(state)
                await self._drop_inputs(state)
                return results
        except openai.APIError as exc:
            if not _transient(exc):
                raise
        return None if state == handle else Pending(state)

    async def cancel(self, handle: Handle) -> None:
        """Cancel every batch of this handle still running, and delete its input files.

        Idempotent: batches already ended, cancelled or gone and files already deleted are
        skipped. Batches an interrupted call created but the handle does not name yet are
        found by their key tag and cancelled too. Raises the SDK's error when the provider
        cannot be reached, so that the caller may try again.

        Cancelling takes the provider a while (`cancelling` → `cancelled`, up to minutes
        at OpenAI). The handle should not be polled afterwards; if it is, it returns None
        while a batch is cancelling, then the rows that finished before the cancel and a
        `BatchFailedError` for every other item, since their input files are gone.
        """
        state = load_handle(handle, name="OpenAIBatch")
        earlier = _Earlier(self, state["key"], eager=True)
        listed = {batch.id: batch.status for batch in await earlier.all_batches()}
        named = {p["batch"] for p in state["parts"] if p["state"] == "running" and p["batch"]}
        for batch_id in sorted(named | set(listed)):
            status = listed.get(batch_id)
            if status is None:
                try:
                    status = (await self.client.batches.retrieve(batch_id)).status
                except openai.NotFoundError:
                    continue
            if status not in _CANCELLABLE:
                continue
            try:
                await self.client.batches.cancel(batch_id)
            except (openai.NotFoundError, openai.BadRequestError):
                continue  # gone, or refused for good: nothing left to stop
            except openai.ConflictError:
                # Transient, unless the batch ended between the look and the cancel.
                if (await self.client.batches.retrieve(batch_id)).status in _CANCELLABLE:
                    raise
        files = {p["file"] for p in state["parts"] if p["file"]}
        files.update(uploaded.id for uploaded in await earlier.all_files())
        for file_id in sorted(files):
            await self._delete_file(file_id, strict=True)

    async def release(self, handle: Handle) -> None:
        """Delete every file of a batch whose results the bridge has recorded; idempotent.

        The bridge calls it (`Bridge(release=...)`) after the results are in its ledger and
        before it forgets the batch, so no later poll can need them and a crash in between
        only means a second call. Raises the SDK's error when the provider cannot be reached.
        """
        state = load_handle(handle, name="OpenAIBatch")
        files = {
            f for part in state["parts"] for f in (part["file"], part["out"], part.get("err")) if f
        }
        for part in state["parts"]:
            for batch_id in part["batches"]:
                try:
                    batch = await self.client.batches.retrieve(batch_id)
                except openai.NotFoundError:
                    continue
                found = (batch.input_file_id, batch.output_file_id, batch.error_file_id)
                files.update(f for f in found if f)
        for file_id in sorted(files):
            await self._delete_file(file_id, strict=True)
        self._late.keep(state["key"])

    async def _recent(self, first: AsyncCursorPage[_T]) -> list[_T]:
        """A newest-first list read as far back as `lookback_s` and `_MAX_LIST_PAGES` allow."""
        items: list[_T] = []
        newest: int | None = None
        pages = 0
        async for page in first.iter_pages():
            for item in page.data:
                created = int(getattr(item, "created_at", 0))
                newest = created if newest is None else newest
                if created < newest - self.lookback_s:
                    return items
                items.append(item)
            pages += 1
            if pages >= _MAX_LIST_PAGES:
                break
        return items

    async def _create_once(
        self,
        create: Callable[[openai.AsyncOpenAI], Awaitable[_T]],
        find: Callable[[], Awaitable[_T | None]],
    ) -> _T:
        """`create`, retried like the SDK would, but never blindly.

        After a failure that may have created the thing anyway (a timeout, a dropped
        connection, a 5xx), it waits the SDK's backoff (or `retry-after`), then `find`s;
        if found, that is the answer; if the look itself fails, the original error is
        raised rather than risking a duplicate.
        """
        retries = self.client.max_retries
        tries = 0
        while True:
            try:
                return await create(self._quiet_client())
            except (openai.APIConnectionError, openai.APIStatusError) as exc:
                delay = _retry_delay(exc, tries)
                again = delay is not None and tries < retries
                if again and delay:
                    await asyncio.sleep(delay)
                if delay is not None and _may_have_acted(exc):
                    try:
                        found = await find()
                    except openai.APIError:
                        raise exc from None
                    if found is not None:
                        return found
                if not again:
                    raise
                tries += 1

    async def _upload(self, earlier: _Earlier, name: str, content: bytes) -> str:
        """The id of an input file with this name and content: found, or uploaded now."""
        found = await earlier.file(name, len(content))
        if found is not None:
            return found.id

        async def create(client: openai.AsyncOpenAI) -> FileObject:
            return await client.files.create(
                file=(name, content, "application/jsonl"), purpose="batch"
            )

        uploaded = await self._create_once(
            create, lambda: earlier.file(name, len(content), fresh=True)
        )
        return uploaded.id

    async def _delete_file(self, file_id: str, *, strict: bool = False) -> bool:
        """Delete an input file; False if a later try might succeed where this one failed.

        A refusal is final (a file the provider will not delete is left alone); a transport
        failure returns False, or with `strict` raises, so that the caller may try again.
        """
        try:
            await self.client.files.delete(file_id)
        except openai.APIError as exc:
            if not _transient(exc):
                return True
            if strict:
                raise
            return False
        return True

    async def _drop_inputs(self, state: Handle) -> None:
        """Delete the input files of ended parts, best effort.

        Safe because a part's input file is only read while it runs (to resubmit rows its
        batch left unfinished, or to retry it): by the time the bridge hands back a handle
        where the part is done or failed, a replayed poll can no longer need it.
        """
        for part in state["parts"]:
            ended = part["state"] in ("done", "failed")
            if ended and part["file"] and await self._delete_file(part["file"]):
                part["file"] = ""

    async def _create_batch(self, earlier: _Earlier, key: str, part: Part) -> Batch:
        origin, attempt = part["origin"], part["attempt"]
        found = await earlier.batch(origin, attempt)
        if found is not None:
            return found

        async def create(client: openai.AsyncOpenAI) -> Batch:
            return await client.batches.create(
                completion_window=self.completion_window,  # type: ignore[arg-type]
                endpoint=part["url"],
                input_file_id=part["file"],
                metadata={**self.metadata, **_tags(key, origin, attempt)},
            )

        return await self._create_once(create, lambda: earlier.batch(origin, attempt, fresh=True))

    async def _start_waiting(
        self, state: Handle, earlier: _Earlier, now: int, *, strict: bool
    ) -> None:
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
                batch = await self._create_batch(earlier, state["key"], part)
            except openai.APIError as exc:
                if strict and not started:
                    raise
                if _transient(exc):
                    return
                if not isinstance(exc, openai.APIStatusError):
                    raise
                # No batch exists for this attempt: the provider refused to create it.
                message, code = _status_error(exc)
                if isinstance(exc, openai.NotFoundError):  # terminal: the input file is gone
                    part.update(
                        state="failed",
                        error=f"OpenAI has no input file {part['file']} for this batch any "
                        f"more (deleted, e.g. by cancel()): {message}",
                        code="input_file_missing",
                    )
                    continue
                message = f"OpenAI refused to create the batch: {message}"
                self._retry_or_fail(part, message, code, now)
                continue
            started = True
            part.update(state="running", batch=batch.id, file=batch.input_file_id, gate=0)
            part["batches"].append(batch.id)
            enqueued[model] = used + part["tokens"]

    async def _check_or_retry(self, state: Handle, earlier: _Earlier, part: Part, now: int) -> None:
        """`_check`, retrying the part from its input file if OpenAI refuses a call for good.

        Only a 400 or 404 about the batch or its files (a vanished batch or result file, a
        refused download) is final, and would otherwise fail the whole bridge batch;
        resubmitting is bounded by `max_attempts` like any retry. A transient answer, or
        any other, is raised: the poll then says "later", or the bridge counts it against
        `poll_error_horizon`.
        """
        batch_id = part["batch"]
        try:
            await self._check(state, earlier, part, now)
        except openai.APIStatusError as exc:
            if not is_refusal(exc, openai):
                raise
            message, code = _status_error(exc)
            message = f"OpenAI refused a call about batch {batch_id}: {message}"
            self._retry_or_fail(part, message, code, now)

    async def _check(self, state: Handle, earlier: _Earlier, part: Part, now: int) -> None:
        """Look at one running part's batch and move the part on if the batch has ended.

        All downloads and uploads happen before the part is changed, so a transport error
        half-way leaves the part exactly as it was.
        """
        batch = await self.client.batches.retrieve(part["batch"])
        if batch.status in _RUNNING:
            return
        if batch.status == "failed":  # terminal: retried from the input file, or failed
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
                gate=int(any(e.code == "token_limit_exceeded" for e in errors)),
            )
            return
        if not _files_ready(batch):
            return
        rows = await self._rows_of([batch.output_file_id, batch.error_file_id])
        key = state["key"]
        finished: list[int] = []
        missing: list[int] = []
        for index in part["ids"]:
            row = rows.get(custom_id(key, index))
            (finished if row is not None and not _is_unfinished(row) else missing).append(index)
        if missing and _rows_short(batch, len(finished)):
            return
        # Terminal: the batch ended (completed, expired, cancelled); what it left unfinished
        # is resubmitted, or failed once out of attempts or gone from the input file.
        rest = await self._requeue(state, earlier, part, missing, batch, now) if missing else []
        part.update(
            state="done",
            batch="",
            ids=finished,
            out=batch.output_file_id or "",
            err=batch.error_file_id or "",
        )
        state["parts"].extend(rest)

    async def _requeue(
        self,
        state: Handle,
        earlier: _Earlier,
        part: Part,
        missing: list[int],
        batch: Batch,
        now: int,
    ) -> list[Part]:
        """New parts for requests an ended batch left unfinished: retried, or failed for good."""
        attempt = part["attempt"]
        code = _END_CODES.get(batch.status, "missing_result")
        reason = (
            f"OpenAI batch {batch.id} ended {batch.status!r} before {len(missing)} of its "
            f"{len(part['ids'])} requests finished"
        )
        common = {"url": part["url"], "model": part["model"], "origin": part["origin"]}

        def failed(ids: list[int], error: str) -> Part:
            return _new_part(
                **common,
                ids=ids,
                tokens=0,
                file="",
                attempt=attempt,
                state="failed",
                error=error,
                code=code,
            )

        if attempt + 1 >= self.max_attempts:
            return [failed(missing, f"{reason} (gave up after {attempt + 1} attempts)")]
        lines: dict[int, str] = {}
        try:
            content = await self.client.files.content(part["file"])
        except openai.NotFoundError:
            gone = "is gone (deleted, e.g. by cancel())"
        else:
            gone = "no longer holds them"
            held = await decode_rows(content.content)
            for index in missing:
                row = held.get(custom_id(state["key"], index))
                if row is not None:
                    lines[index] = json.dumps(row, separators=(",", ":"), ensure_ascii=False)
        absent = [i for i in missing if i not in lines]
        note = f"{reason}, and its input file {part['file']} {gone}"
        parts = [failed(absent, note)] if absent else []
        ordered = [lines[i] for i in missing if i in lines]
        if ordered:
            file_id = await self._upload(
                earlier,
                file_name(state["key"], part["origin"], attempt + 1),
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
                data = (await self.client.files.content(file_id)).content
                cached = await decode_rows(data)
                self._rows.put(file_id, cached, len(data))
            for cid, row in cached.items():
                rows.setdefault(cid, row)
        return rows

    async def _results(self, state: Handle) -> list[Any]:
        def unreadable(part: Part, exc: Exception) -> tuple[str, str] | None:
            if not isinstance(exc, openai.APIStatusError) or not is_refusal(exc, openai):
                return None  # transient: poll again; other: raised to the bridge
            message, code = _status_error(exc)
            batch = part["batches"][-1]
            return f"OpenAI result files of batch {batch} are unreadable: {message}", code

        results = await collect_results(
            state,
            provider="OpenAI",
            rows_of=lambda part: self._rows_of([part["out"], part["err"]]),
            row_result=_row_result,
            unreadable=unreadable,
        )
        files = [f for part in state["parts"] for f in (part["out"], part["err"]) if f]
        for file_id in files:
            self._rows.pop(file_id)
        self._late.add(state["key"], files)
        return results
