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
from batch_bridge.providers._base import BatchAdapter
from batch_bridge.providers._fallback import openai_fallback
from batch_bridge.providers._handles import Handle, Part, load_handle, now_ms
from batch_bridge.providers._hooks import Gate, Unfinished
from batch_bridge.providers._packing import (
    batch_key,
    pack,
)
from batch_bridge.providers._profiles import OPENAI, BatchProfile
from batch_bridge.providers._rows import FileRows
from batch_bridge.providers.openai import _cleanup, _rows
from batch_bridge.providers.openai._files import Files
from batch_bridge.providers.openai._lookup import Earlier
from batch_bridge.providers.openai._parts import (
    Budget,
    build,
    failed_part,
    input_file_missing,
    new_part,
    resubmit,
)
from batch_bridge.providers.openai._retries import create_batch
from batch_bridge.providers.openai._settings import DEFAULT_FILE_LIFETIME_S, OpenAISettings
from batch_bridge.types import FallbackAnswer

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

    `file_lifetime_s` (default a week; None: the provider's 30 days) is set as the expiry of
    every input file (`expires_after`) and of each batch's output and error files
    (`output_expires_after`) where the profile takes them (OpenAI): `release` deletes them
    once the results are recorded, and the expiry is the backstop when it never runs.

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
    _status_error = staticmethod(_rows.status_error)
    _rows_short = staticmethod(_rows.rows_short)
    _row_result = staticmethod(_rows.row_result)
    _failed_part = staticmethod(failed_part)

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
        file_lifetime_s: int | None = DEFAULT_FILE_LIFETIME_S,
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
            file_lifetime_s=file_lifetime_s,
        )
        super().__init__(client, settings)
        self._files = Files(lambda: self.client, self._quiet_client, settings.expires_after())

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
        pre, requests = build(items, key, self.settings)
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
                await self._files.adopt_or_upload(earlier, key, part, chunk.content())
            await self._start_waiting(handle, earlier, now_ms(), strict=True)
        except Exception:
            if not earlier.eager:  # a random key: no retry will ever reuse the uploads
                await self._files.drop_uploads(parts)
            raise
        return handle

    async def cancel(self, handle: Handle) -> Handle:
        """Cancel every batch of this handle still running, and delete its input files.

        Idempotent: batches already ended, cancelled or gone and files already deleted are
        skipped. Batches an interrupted call created but the handle does not name yet are
        found by their key tag and cancelled too. Raises the SDK's error when the provider
        cannot be reached, so that the caller may try again.

        Cancelling takes the provider a while (`cancelling` → `cancelled`, up to minutes
        at OpenAI). Returns the handle to poll from then on: its poll returns None while a
        batch is cancelling, then the rows that finished before the cancel and a
        `BatchFailedError` (code `batch_cancelled`) for every other item.
        """
        state = load_handle(handle, name="OpenAIBatch")
        earlier = self._earlier(state["key"], eager=True)
        await _cleanup.cancel(self.client, state, earlier, self._files)
        return self.mark_cancelled(state)

    async def release(self, handle: Handle) -> None:
        """Delete every file of a batch whose results the bridge has recorded; idempotent.

        The bridge calls it (`Bridge(release=...)`) after the results are in its ledger and
        before it forgets the batch, so no later poll can need them and a crash in between
        only means a second call. Raises the SDK's error when the provider cannot be reached.
        """
        state = load_handle(handle, name="OpenAIBatch")
        await _cleanup.release(self.client, state, self._files)
        self._late.keep(state["key"])

    async def fallback(self, item: Any) -> FallbackAnswer:
        """Answer one item through OpenAI's normal API, for `Bridge(fallback=)`: the flex tier
        first (chat completions and responses; billed at batch prices), then the standard
        tier. The result is the response body, as a batch row gives it; its `service_tier`
        says which tier answered. Raises `ProviderError` (`retryable` for 429, 5xx, timeouts).
        """
        return await openai_fallback(self.client, self._quiet_client(), openai, item)

    # The poll's hooks (see `BatchAdapter`).

    def _context(self, state: Handle) -> Earlier:
        return self._earlier(state["key"], eager=True)

    async def _tidy(self, state: Handle) -> None:
        await self._files.drop_inputs(state)

    def _gate(self, state: Handle) -> Gate:
        return Budget(state, self.settings)

    async def _delete_late(self, source: str) -> bool:
        return await self._files.delete(source)

    async def _create(self, state: Handle, context: Any, part: Part) -> dict[str, Any]:
        batch = await create_batch(
            self._quiet_client(),
            self.client.max_retries,
            context,
            part,
            window=self.completion_window,
            metadata=self.metadata,
            output_expires_after=self.settings.expires_after(),
        )
        return {"batch": batch.id, "file": batch.input_file_id, "gate": 0}

    def _create_refused(self, part: Part, exc: Exception, now: int) -> None:
        if not isinstance(exc, openai.APIStatusError):
            raise exc
        if isinstance(exc, openai.NotFoundError):  # terminal: the input file is gone
            input_file_missing(part, _rows.status_error(exc)[0])
        else:
            super()._create_refused(part, exc, now)

    async def _retrieve(self, batch_id: str) -> Batch:
        return await self.client.batches.retrieve(batch_id)

    def _settle(self, batch: Batch, part: Part, now: int) -> bool:
        if batch.status != "failed":
            return batch.status not in _rows.RUNNING and _rows.files_ready(batch)
        # Terminal: the batch failed; the part is retried from its input file, or fails.
        message, code, gate = _rows.failure(batch)
        self._retry_or_fail(part, message, code, now, gate=gate)
        return False

    async def _batch_rows(self, batch: Batch) -> Mapping[str, Mapping[str, Any]]:
        return await self._rows_from([batch.output_file_id, batch.error_file_id], self._download)

    def _unfinished(self, batch: Batch, row: Mapping[str, Any] | None) -> str | None:
        if row is not None and not _rows.is_unfinished(row):
            return None
        return _rows.END_CODES.get(batch.status, "missing_result")

    def _done_fields(self, batch: Batch) -> dict[str, Any]:
        return {"out": batch.output_file_id or "", "err": batch.error_file_id or ""}

    async def _resubmit(self, rows: Unfinished) -> list[Part]:
        return await resubmit(self._files, rows)

    def _end_reason(self, batch: Batch, part: Part, missing: int) -> str:
        return (
            f"OpenAI batch {batch.id} ended {batch.status!r} before {missing} of its "
            f"{len(part['ids'])} requests finished"
        )

    async def _download(self, file_id: str) -> FileRows:
        return await self._stream_rows(self.client.files.with_streaming_response.content(file_id))

    async def _part_rows(self, part: Part) -> Mapping[str, Mapping[str, Any]]:
        return await self._rows_from([part["out"], part["err"]], self._download)

    def _unreadable(self, part: Part) -> str:
        return f"OpenAI result files of batch {part['batches'][-1]}"

    def _result_sources(self, state: Handle) -> list[str]:
        return [f for part in state["parts"] for f in (part["out"], part["err"]) if f]
