"""`OpenAIBatch`: the OpenAI Batch API behind the bridge's submit/poll/cancel contract.

It turns a list of bridge items into as few provider batches as the API's limits allow
and hides the Batch API's failure modes (out-of-order output, per-line errors, expiry,
cancellation, validation failures, token-limit refusals, late output files) behind the
bridge's contract: one result or one exception per item, in order.

Everything it needs between polls lives in the JSON handle (file ids, item indices,
attempt counters, `not_before` timestamps), never the request bodies, so a handle stays
small whatever the batch size and survives a restart of the process polling it.

Creating things at the provider is idempotent. Every input file is named, and every
batch tagged with metadata, after the handle's key, the part and the attempt; before
creating one the adapter looks for it (`_lookup`), so a `submit` retried with the same
`idempotency_key`, or a poll replayed from the same handle after a crash, adopts what the
interrupted call created instead of submitting the items again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType, ModuleType
from typing import Any, ClassVar

import openai
from openai.types import Batch

from batch_bridge.errors import ConfigError
from batch_bridge.providers._base import BatchAdapter, Gate
from batch_bridge.providers._handles import Handle, Part, load_handle, now_ms
from batch_bridge.providers._packing import (
    Request,
    batch_key,
    build_request,
    custom_id,
    estimate_tokens,
    file_name,
    pack,
)
from batch_bridge.providers._profiles import OPENAI, BatchProfile
from batch_bridge.providers.openai import _cleanup, _rows
from batch_bridge.providers.openai._files import Files
from batch_bridge.providers.openai._lookup import Earlier, tags
from batch_bridge.providers.openai._parts import Budget, new_part
from batch_bridge.providers.openai._retries import create_once
from batch_bridge.providers.openai._settings import OpenAISettings

__all__ = ["OpenAIBatch"]


class OpenAIBatch(BatchAdapter[openai.AsyncOpenAI, Batch]):
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

    _sdk: ClassVar[ModuleType] = openai
    _provider = "OpenAI"
    _on_retry: ClassVar[Mapping[str, Any]] = MappingProxyType({"gate": 0})
    settings: OpenAISettings
    profile: BatchProfile
    completion_window: str
    max_requests_per_file: int
    max_bytes_per_file: int
    enqueued_token_budget: int | dict[str, int] | None
    metadata: dict[str, str]
    lookback_s: float

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
        settings = OpenAISettings(
            profile=profile,
            completion_window=completion_window,
            max_requests_per_file=max_requests_per_file,  # type: ignore[arg-type]
            max_bytes_per_file=max_bytes_per_file,  # type: ignore[arg-type]
            enqueued_token_budget=enqueued_token_budget,  # type: ignore[arg-type]
            max_attempts=max_attempts,
            retry_backoff_s=retry_backoff_s,
            metadata=metadata,  # type: ignore[arg-type]
            timeout_s=timeout_s,
            lookback_s=lookback_s,
            delete_results_after_s=delete_results_after_s,
        )
        super().__init__(client, settings)
        self._files = Files(lambda: self.client, self._quiet_client)

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

    def _earlier(self, key: str, *, eager: bool) -> Earlier:
        return Earlier(
            self.client,
            key,
            eager=eager,
            lookback_s=self.lookback_s,
            delete_file=self._files.delete,
        )

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
        earlier = self._earlier(key, eager=idempotency_key is not None)
        pre, requests = self._build(items, key)
        parts: list[Part] = []
        handle: Handle = {"v": 1, "key": key, "n": len(items), "pre": pre, "parts": parts}
        try:
            for number, chunk in enumerate(
                pack(
                    requests,
                    max_requests=self.max_requests_per_file,
                    max_bytes=self.max_bytes_per_file,
                    token_budget=self.settings.budget,
                )
            ):
                part = new_part(
                    url=chunk.url,
                    model=chunk.model,
                    ids=[r.index for r in chunk.requests],
                    tokens=chunk.tokens,
                    file="",
                    attempt=0,
                    origin=number,
                )
                parts.append(part)
                await self._adopt_or_upload(earlier, key, part, chunk.content())
            await self._start_waiting(handle, earlier, now_ms(), strict=True)
        except Exception:
            if not earlier.eager:  # a random key: no retry will ever reuse the uploads
                await self._files.drop_uploads(parts)
            raise
        return handle

    def _build(self, items: Sequence[Any], key: str) -> tuple[list[list[Any]], list[Request]]:
        """Each item's request line, or why it fails alone: `[index, message, code]`."""
        pre: list[list[Any]] = []
        requests = []
        for index, item in enumerate(items):
            built = build_request(index, custom_id(key, index), item)
            if isinstance(built, str):
                pre.append([index, built, "invalid_request"])
            elif (refused := self.profile.endpoint_problem(built.url)) is not None:
                pre.append([index, refused, "unsupported_endpoint"])
            elif built.size > self.max_bytes_per_file:
                message = (
                    f"OpenAI batch request is {built.size} bytes, over the "
                    f"{self.max_bytes_per_file}-byte file limit"
                )
                pre.append([index, message, "request_too_large"])
            else:
                requests.append(built)
        return pre, requests

    async def _adopt_or_upload(
        self, earlier: Earlier, key: str, part: Part, content: bytes
    ) -> None:
        """Adopt the batch an interrupted submit created for this part, or upload its file."""
        number = part["origin"]
        batch = await earlier.batch(number, 0)
        if batch is None:
            part["file"] = await self._files.upload(earlier, file_name(key, number, 0), content)
            return
        await self._files.check_adopted(batch, key, number, part["url"], len(content))
        part.update(state="running", batch=batch.id, file=batch.input_file_id)
        part["batches"].append(batch.id)

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
        earlier = self._earlier(state["key"], eager=True)
        await _cleanup.cancel(self.client, state, earlier, self._files)

    async def release(self, handle: Handle) -> None:
        """Delete every file of a batch whose results the bridge has recorded; idempotent.

        The bridge calls it (`Bridge(release=...)`) after the results are in its ledger and
        before it forgets the batch, so no later poll can need them and a crash in between
        only means a second call. Raises the SDK's error when the provider cannot be reached.
        """
        state = load_handle(handle, name="OpenAIBatch")
        await _cleanup.release(self.client, state, self._files)
        self._late.keep(state["key"])

    # The poll's hooks (see `BatchAdapter`).

    def _context(self, state: Handle) -> Earlier:
        return self._earlier(state["key"], eager=True)

    async def _tidy(self, state: Handle) -> None:
        await self._files.drop_inputs(state)

    def _gate(self, state: Handle) -> Gate:
        return Budget(state, self.settings)

    async def _delete_late(self, source: str) -> bool:
        return await self._files.delete(source)

    def _status_error(self, exc: Any) -> tuple[str, str]:
        return _rows.status_error(exc)

    async def _create(self, state: Handle, context: Any, part: Part) -> dict[str, Any]:
        key, origin, attempt = state["key"], part["origin"], part["attempt"]
        batch = await context.batch(origin, attempt)
        if batch is None:

            async def create(client: openai.AsyncOpenAI) -> Batch:
                return await client.batches.create(
                    completion_window=self.completion_window,  # type: ignore[arg-type]
                    endpoint=part["url"],
                    input_file_id=part["file"],
                    metadata={**self.metadata, **tags(key, origin, attempt)},
                )

            find = lambda: context.batch(origin, attempt, fresh=True)  # noqa: E731
            batch = await create_once(self._quiet_client(), self.client.max_retries, create, find)
        return {"batch": batch.id, "file": batch.input_file_id, "gate": 0}

    def _create_refused(self, part: Part, exc: Exception, now: int) -> None:
        if not isinstance(exc, openai.APIStatusError):
            raise exc
        if isinstance(exc, openai.NotFoundError):  # terminal: the input file is gone
            message, _ = _rows.status_error(exc)
            part.update(
                state="failed",
                error=f"OpenAI has no input file {part['file']} for this batch any "
                f"more (deleted, e.g. by cancel()): {message}",
                code="input_file_missing",
            )
            return
        super()._create_refused(part, exc, now)

    async def _retrieve(self, batch_id: str) -> Batch:
        return await self.client.batches.retrieve(batch_id)

    def _settle(self, batch: Batch, part: Part, now: int) -> bool:
        if batch.status != "failed":
            return batch.status not in _rows.RUNNING and _rows.files_ready(batch)
        # Terminal: the batch failed; the part is retried from its input file, or fails.
        errors = batch.errors.data if batch.errors and batch.errors.data else []
        details = "; ".join(
            f"{e.message or 'no message'} [{e.code}]" if e.code else (e.message or "?")
            for e in errors
        )
        self._retry_or_fail(
            part,
            f"OpenAI batch {batch.id} failed: {details or 'no error details given'}",
            next((e.code for e in errors if e.code), "batch_failed"),
            now,
            gate=int(any(e.code == "token_limit_exceeded" for e in errors)),
        )
        return False

    async def _batch_rows(self, batch: Batch) -> Mapping[str, Mapping[str, Any]]:
        return await self._rows_of([batch.output_file_id, batch.error_file_id])

    def _unfinished(self, batch: Batch, row: Mapping[str, Any] | None) -> str | None:
        if row is not None and not _rows.is_unfinished(row):
            return None
        return _rows.END_CODES.get(batch.status, "missing_result")

    def _rows_short(self, batch: Batch, found: int) -> bool:
        return _rows.rows_short(batch, found)

    def _done_fields(self, batch: Batch) -> dict[str, Any]:
        return {"out": batch.output_file_id or "", "err": batch.error_file_id or ""}

    def _end_reason(self, batch: Batch, part: Part, missing: int) -> str:
        return (
            f"OpenAI batch {batch.id} ended {batch.status!r} before {missing} of its "
            f"{len(part['ids'])} requests finished"
        )

    def _failed_part(self, part: Part, ids: list[int], error: str, code: str) -> Part:
        return new_part(
            url=part["url"],
            model=part["model"],
            origin=part["origin"],
            ids=ids,
            tokens=0,
            file="",
            attempt=part["attempt"],
            state="failed",
            error=error,
            code=code,
        )

    async def _resubmit(
        self,
        state: Handle,
        context: Any,
        part: Part,
        missing: dict[str, list[int]],
        reason: str,
        now: int,
    ) -> list[Part]:
        """The unfinished rows, read back from the part's input file, as a new file."""
        ((code, ids),) = missing.items()
        lines = await self._files.input_lines(part, state["key"], ids)
        gone = "is gone (deleted, e.g. by cancel())" if lines is None else "no longer holds them"
        lines = lines or {}
        absent = [i for i in ids if i not in lines]
        note = f"{reason}, and its input file {part['file']} {gone}"
        parts = [self._failed_part(part, absent, note, code)] if absent else []
        kept = [i for i in ids if i in lines]
        if kept:
            attempt = part["attempt"] + 1
            content = "".join(lines[i] + "\n" for i in kept).encode()
            name = file_name(state["key"], part["origin"], attempt)
            rest = new_part(
                url=part["url"],
                model=part["model"],
                origin=part["origin"],
                ids=kept,
                tokens=sum(estimate_tokens(lines[i]) for i in kept),
                file=await self._files.upload(context, name, content),
                attempt=attempt,
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
            if file_id:
                for cid, row in (await self._cached_rows(file_id, self._download)).items():
                    rows.setdefault(cid, row)
        return rows

    async def _download(self, file_id: str) -> bytes:
        return (await self.client.files.content(file_id)).content

    async def _part_rows(self, part: Part) -> Mapping[str, Mapping[str, Any]]:
        return await self._rows_of([part["out"], part["err"]])

    def _row_result(self, row: Mapping[str, Any], cid: str) -> Any:
        return _rows.row_result(row, cid)

    def _unreadable(self, part: Part) -> str:
        return f"OpenAI result files of batch {part['batches'][-1]}"

    def _result_sources(self, state: Handle) -> list[str]:
        return [f for part in state["parts"] for f in (part["out"], part["err"]) if f]
