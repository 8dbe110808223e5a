"""`AnthropicBatch`: Anthropic Message Batches behind the bridge's submit/poll/cancel contract.

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

import json
from collections.abc import Mapping, Sequence
from types import MappingProxyType, ModuleType
from typing import Any, ClassVar

import anthropic
from anthropic.types.messages import MessageBatch

from batch_bridge.errors import ConfigError, ProviderError
from batch_bridge.providers._base import BatchAdapter
from batch_bridge.providers._fallback import anthropic_fallback
from batch_bridge.providers._handles import Handle, Part, new_part, now_ms
from batch_bridge.providers._hooks import Unfinished
from batch_bridge.providers._packing import batch_key, custom_id
from batch_bridge.providers._rows import FileRows
from batch_bridge.providers.anthropic import _rows
from batch_bridge.providers.anthropic._settings import AnthropicSettings
from batch_bridge.types import FallbackAnswer

__all__ = ["AnthropicBatch"]

_ENVELOPE_BYTES = len('{"custom_id":"","params":},')


class AnthropicBatch(BatchAdapter[anthropic.AsyncAnthropic, MessageBatch]):
    """Submit/poll/cancel functions for Anthropic Message Batches, as the bridge expects them.

    Items are dicts of `client.messages.create` keyword arguments (`model`, `max_tokens`,
    `messages`, ...); each result is the `Message` JSON dict, or a `BatchItemError` for that
    item alone. Every SDK request is bounded by `timeout_s`. See the module docstring for
    why `submit` is at least once with this provider.
    """

    _sdk: ClassVar[ModuleType] = anthropic
    _provider = "Anthropic"
    _kind = "anthropic"
    _on_failure: ClassVar[Mapping[str, Any]] = MappingProxyType({"params": []})
    settings: AnthropicSettings
    max_requests_per_batch: int
    max_bytes_per_batch: int
    _status_error = staticmethod(_rows.status_error)
    _row_result = staticmethod(_rows.row_result)

    def __init__(
        self,
        client: anthropic.AsyncAnthropic | None = None,
        *,
        max_requests_per_batch: int = 100_000,
        max_bytes_per_batch: int = 256 * 1024 * 1024,
        max_attempts: int = 3,
        retry_backoff_s: float = 60.0,
        timeout_s: float | None = 120.0,
        delete_results_after_s: float | None = 600.0,
    ) -> None:
        settings = AnthropicSettings(
            max_requests_per_batch=max_requests_per_batch,
            max_bytes_per_batch=max_bytes_per_batch,
            max_attempts=max_attempts,
            retry_backoff_s=retry_backoff_s,
            timeout_s=timeout_s,
            delete_results_after_s=delete_results_after_s,
        )
        super().__init__(client, settings)

    def _new_client(self, **options: Any) -> anthropic.AsyncAnthropic:
        try:
            return anthropic.AsyncAnthropic(**options)
        except anthropic.AnthropicError as exc:
            raise ConfigError(
                f"AnthropicBatch cannot create its Anthropic client: {exc} Set "
                "ANTHROPIC_API_KEY (and ANTHROPIC_BASE_URL for another endpoint) in the "
                "bridge deployment."
            ) from exc

    def _with_options(
        self, client: anthropic.AsyncAnthropic, **options: Any
    ) -> anthropic.AsyncAnthropic:
        return client.with_options(**options)

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
            line, cost, problem = self._line(key, index, item)
            if problem is not None:
                pre.append([index, problem, "invalid_request"])
                continue
            if ids and (
                len(ids) >= self.max_requests_per_batch or size + cost > self.max_bytes_per_batch
            ):
                parts.append(new_part(ids=ids, params=params, attempt=0, origin=len(parts)))
                ids, params, size = [], [], 0
            ids.append(index)
            params.append(json.loads(line))
            size += cost
        if ids:
            parts.append(new_part(ids=ids, params=params, attempt=0, origin=len(parts)))
        handle: Handle = {
            "v": 1,
            "kind": self._kind,
            "key": key,
            "n": len(items),
            "pre": pre,
            "parts": parts,
        }
        await self._start_waiting(handle, None, now_ms(), strict=True)
        return handle

    def _line(self, key: str, index: int, item: Any) -> tuple[str, int, str | None]:
        """An item's params as JSON, its bytes in the batch, and why it fails alone, if so."""
        problem = _rows.check_item(item)
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
        return line, cost, problem

    async def cancel(self, handle: Handle) -> Handle:
        """Cancel every batch of this handle still processing; idempotent.

        Batches that ended, are already canceling or are gone are skipped. Batches an
        interrupted call created but no handle names cannot be found (see the module
        docstring). Raises the SDK's error when Anthropic cannot be reached. Returns the
        handle to poll from then on: it resubmits no canceled row (they fail with code
        `batch_cancelled`), and the rows that finished before the cancel keep their results.
        """
        state = self._load(handle)
        batches = self.client.messages.batches
        for part in state["parts"]:
            if part["state"] != "running" or not part["batch"]:
                continue
            try:
                batch = await batches.retrieve(part["batch"])
                if batch.processing_status == "in_progress":
                    await batches.cancel(part["batch"])
            except (anthropic.NotFoundError, anthropic.BadRequestError):
                continue  # gone, or refused for good: nothing left to stop
            except anthropic.ConflictError:
                # Transient, unless the batch ended between the look and the cancel.
                batch = await batches.retrieve(part["batch"])
                if batch.processing_status == "in_progress":
                    raise
        return self.mark_cancelled(state)

    async def release(self, handle: Handle) -> None:
        """Delete the ended batches (and their results) whose results the bridge recorded.

        Idempotent; the bridge calls it (`Bridge(release=...)`) before it forgets the batch.
        Raises the SDK's error when Anthropic cannot be reached, so that it may try again.
        """
        state = self._load(handle)
        named = (b for part in state["parts"] for b in (*part["batches"], part["out"]))
        for batch_id in sorted({b for b in named if b}):
            if not await self._delete_late(batch_id):
                raise ProviderError(f"Anthropic batch {batch_id} could not be deleted yet")
        self._late.keep(state["key"])

    async def fallback(self, item: Any) -> FallbackAnswer:
        """Answer one item with `messages.create` (Anthropic's normal API, standard price),
        for `Bridge(fallback=)`; the result is the Message, as a succeeded row gives it.
        Raises `ProviderError` (`retryable` for 429, 5xx, 529 and timeouts)."""
        return await anthropic_fallback(self.client, anthropic, item)

    # The poll's hooks (see `BatchAdapter`).

    async def _delete_late(self, source: str) -> bool:
        """Delete an ended batch and its results; False if a later try might succeed."""
        try:
            await self.client.messages.batches.delete(source)
        except anthropic.APIError as exc:
            return not self._transient(exc)
        return True

    async def _create(self, state: Handle, context: Any, part: Part) -> dict[str, Any]:
        requests = [
            {"custom_id": custom_id(state["key"], index), "params": params}
            for index, params in zip(part["ids"], part["params"], strict=True)
        ]
        batch = await self._quiet_client().messages.batches.create(
            requests=requests  # type: ignore[arg-type]
        )
        return {"batch": batch.id}

    async def _retrieve(self, batch_id: str) -> MessageBatch:
        return await self.client.messages.batches.retrieve(batch_id)

    def _settle(self, batch: MessageBatch, part: Part, now: int) -> bool:
        return batch.processing_status == "ended"

    async def _batch_rows(self, batch: MessageBatch) -> Mapping[str, Mapping[str, Any]]:
        return await self._rows_from([batch.id], self._download)

    async def _download(self, batch_id: str) -> FileRows:
        results = self.client.messages.batches.with_streaming_response.results(batch_id)
        return await self._stream_rows(results)

    def _unfinished(self, batch: MessageBatch, row: Mapping[str, Any] | None) -> str | None:
        kind = str((row or {}).get("result", {}).get("type"))
        if row is not None and kind in _rows.FINISHED:
            return None
        return _rows.UNFINISHED_CODES.get(kind, "missing_result")

    def _done_fields(self, batch: MessageBatch) -> dict[str, Any]:
        return {"params": [], "out": batch.id}

    def _end_reason(self, batch: MessageBatch, part: Part, missing: int) -> str:
        return (
            f"Anthropic batch {batch.id} ended before {missing} of its {len(part['ids'])} "
            "requests finished"
        )

    def _failed_part(self, part: Part, ids: list[int], error: str, code: str) -> Part:
        return new_part(
            ids=ids,
            params=[],
            attempt=part["attempt"],
            origin=part["origin"],
            state="failed",
            error=error,
            code=code,
        )

    async def _resubmit(self, rows: Unfinished) -> list[Part]:
        """The unfinished rows, with the params the handle kept for them, as a new part."""
        part, missing = rows.part, rows.missing
        params = dict(zip(part["ids"], part["params"], strict=True))
        ids = sorted(i for group in missing.values() for i in group)
        rest = new_part(
            ids=ids,
            params=[params[i] for i in ids],
            attempt=part["attempt"] + 1,
            origin=part["origin"],
            not_before=rows.now,
            error=rows.reason,
            code=next(iter(missing)),
        )
        rest["batches"] = list(part["batches"])
        return [rest]

    async def _part_rows(self, part: Part) -> Mapping[str, Mapping[str, Any]]:
        return await self._rows_from([part["out"]], self._download)

    def _unreadable(self, part: Part) -> str:
        return f"Anthropic results of batch {part['out']}"

    def _result_sources(self, state: Handle) -> list[str]:
        return sorted({part["out"] for part in state["parts"] if part["out"]})
