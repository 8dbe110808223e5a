"""Anthropic Message Batches adapter: `submit`/`poll`/`cancel` for the bridge.

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
from types import MappingProxyType
from typing import Any, ClassVar

import anthropic
import httpx2
from anthropic.types.messages import MessageBatch

from batch_bridge.errors import BatchFailedError, BatchItemError, ConfigError, ProviderError
from batch_bridge.providers import _common
from batch_bridge.providers._common import Handle, LateDeletes, Part, RowCache, SdkAdapter
from batch_bridge.providers._packing import batch_key, custom_id
from batch_bridge.providers._transient import is_refusal, is_transient
from batch_bridge.types import Pending

__all__ = ["AnthropicBatch"]

_KIND = "anthropic"

_FINISHED = frozenset({"succeeded", "errored"})
_UNFINISHED_CODES = {"expired": "batch_expired", "canceled": "batch_canceled"}
_ENVELOPE_BYTES = len('{"custom_id":"","params":},')


def _transient(exc: BaseException) -> bool:
    """A later call may get past it (see `_transient`); the handle is kept as it was."""
    return is_transient(exc, anthropic)


def _status_error(exc: anthropic.APIStatusError) -> tuple[str, str]:
    return _common.error_fields(exc.body, exc.message, str(exc.status_code), keys=("type",))


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


class AnthropicBatch(SdkAdapter[anthropic.AsyncAnthropic]):
    """Submit/poll/cancel functions for Anthropic Message Batches, as the bridge expects them.

    Items are dicts of `client.messages.create` keyword arguments (`model`, `max_tokens`,
    `messages`, ...); each result is the `Message` JSON dict, or a `BatchItemError` for that
    item alone. Every SDK request is bounded by `timeout_s`. See the module docstring for
    why `submit` is at least once with this provider.
    """

    _on_failure: ClassVar[Mapping[str, Any]] = MappingProxyType({"params": []})

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
        _common.check_positive_ints(
            max_requests_per_batch=max_requests_per_batch,
            max_bytes_per_batch=max_bytes_per_batch,
            max_attempts=max_attempts,
        )
        _common.check_non_negative(retry_backoff_s=retry_backoff_s)
        if delete_results_after_s is not None:
            _common.check_non_negative(delete_results_after_s=delete_results_after_s)
        super().__init__(client, timeout_s)
        self.max_requests_per_batch = max_requests_per_batch
        self.max_bytes_per_batch = max_bytes_per_batch
        self.max_attempts = max_attempts
        self.retry_backoff_s = float(retry_backoff_s)
        self._rows = RowCache()
        self._late = LateDeletes(delete_results_after_s)

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
                parts.append(_common.new_part(ids=ids, params=params, attempt=0, origin=len(parts)))
                ids, params, size = [], [], 0
            ids.append(index)
            params.append(json.loads(line))
            size += cost
        if ids:
            parts.append(_common.new_part(ids=ids, params=params, attempt=0, origin=len(parts)))
        handle: Handle = {
            "v": 1,
            "kind": _KIND,
            "key": key,
            "n": len(items),
            "pre": pre,
            "parts": parts,
        }
        await self._start_waiting(handle, _common.now_ms(), strict=True)
        return handle

    async def poll(self, handle: Handle) -> Pending | list[Any] | BaseException | None:
        """Advance every part; results in item order once all parts are done or failed.

        Returns `Pending(new_handle)` whenever the handle changed, so a restarted poll never
        redoes finished work; transport failures leave the handle as it was (None). Ended
        batches whose results were returned are deleted at Anthropic by a poll that comes
        `delete_results_after_s` later (the bridge polls again if it failed to record them).
        """
        try:
            state = _common.load_handle(handle, name="AnthropicBatch", kind=_KIND)
        except ValueError as exc:
            return BatchFailedError(str(exc), code="bad_handle")
        now = _common.now_ms()
        self._late.keep(state["key"])
        await self._late.run(self._delete_batch)
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
        state = _common.load_handle(handle, name="AnthropicBatch", kind=_KIND)
        for part in state["parts"]:
            if part["state"] != "running" or not part["batch"]:
                continue
            try:
                batch = await self.client.messages.batches.retrieve(part["batch"])
                if batch.processing_status == "in_progress":
                    await self.client.messages.batches.cancel(part["batch"])
            except (anthropic.NotFoundError, anthropic.BadRequestError):
                continue  # gone, or refused for good: nothing left to stop
            except anthropic.ConflictError:
                # Transient, unless the batch ended between the look and the cancel.
                batch = await self.client.messages.batches.retrieve(part["batch"])
                if batch.processing_status == "in_progress":
                    raise

    async def release(self, handle: Handle) -> None:
        """Delete the ended batches (and their results) whose results the bridge recorded.

        Idempotent; the bridge calls it (`Bridge(release=...)`) before it forgets the batch.
        Raises the SDK's error when Anthropic cannot be reached, so that it may try again.
        """
        state = _common.load_handle(handle, name="AnthropicBatch", kind=_KIND)
        named = (b for part in state["parts"] for b in (*part["batches"], part["out"]))
        batches = sorted({b for b in named if b})
        for batch_id in batches:
            if not await self._delete_batch(batch_id):
                raise ProviderError(f"Anthropic batch {batch_id} could not be deleted yet")
        self._late.keep(state["key"])

    async def _delete_batch(self, batch_id: str) -> bool:
        """Delete an ended batch and its results; False if a later try might succeed."""
        try:
            await self.client.messages.batches.delete(batch_id)
        except anthropic.APIError as exc:
            return not _transient(exc)
        return True

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
                if strict and not started:
                    raise
                if _transient(exc):
                    return
                # No batch exists for this attempt: Anthropic refused to create it.
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

    async def _check_or_retry(self, state: Handle, part: Part, now: int) -> None:
        """`_check`, retrying the part if Anthropic refuses a call about its batch for good.

        Only a 400 or 404 about the batch (or its results) is final; a transient answer, or
        any other, is raised: the poll then says "later", or the bridge counts it against
        `poll_error_horizon`.
        """
        batch_id = part["batch"]
        try:
            await self._check(state, part, now)
        except anthropic.APIStatusError as exc:
            if not is_refusal(exc, anthropic):
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
        rows = await self._rows_of(batch.id)
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
        # Terminal: the batch ended; its expired or canceled rows are resubmitted, or failed.
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
                _common.new_part(
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
        rest = _common.new_part(
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

    async def _rows_of(self, batch_id: str) -> dict[str, dict[str, Any]]:
        """The result rows of an ended batch by custom_id, cached between polls.

        Read as raw JSONL rather than through the SDK's per-row decoder, so that a large
        result file is decoded in a worker thread, off the event loop.
        """
        cached = self._rows.get(batch_id)
        if cached is None:
            raw = await self.client.messages.batches.with_raw_response.results(batch_id)
            try:
                data = await raw.read()
            except httpx2.TransportError as exc:  # the body is streamed after the SDK returns
                raise anthropic.APIConnectionError(request=exc.request) from exc
            cached = await _common.decode_rows(data)
            self._rows.put(batch_id, cached, len(data))
        return cached

    async def _results(self, state: Handle) -> list[Any]:
        def unreadable(part: Part, exc: Exception) -> tuple[str, str] | None:
            if not isinstance(exc, anthropic.APIStatusError) or not is_refusal(exc, anthropic):
                return None  # transient: poll again; other: raised to the bridge
            message, code = _status_error(exc)
            return f"Anthropic results of batch {part['out']} are unreadable: {message}", code

        results = await _common.collect_results(
            state,
            provider="Anthropic",
            rows_of=lambda part: self._rows_of(part["out"]),
            row_result=_row_result,
            unreadable=unreadable,
        )
        batches = sorted({part["out"] for part in state["parts"] if part["out"]})
        for batch_id in batches:
            self._rows.pop(batch_id)
        self._late.add(state["key"], batches)
        return results
