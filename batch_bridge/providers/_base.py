"""The adapter base: the poll skeleton every provider shares, written once.

A poll checks each running part's batch, reads the results of those that ended, requeues
the rows they left unfinished, starts the parts that wait, and returns the results once
every part is done or failed. The provider's API fills in hooks: how to retrieve a batch,
read its rows, create one, and what its terminal states are.

What may resubmit or fail items, and the terminal state that justifies each:
- the batch ended `failed` (`_settle`): the part is retried, or fails after `max_attempts`;
- the batch ended completed, expired or cancelled with rows unfinished (`_check`,
  `_requeue`): those rows are resubmitted, or fail after `max_attempts` or when OpenAI no
  longer holds their input file (a 404);
- a 400 or 404 about the batch or its files: on a retrieve or download while checking
  (`_check_or_retry`) the part is retried; on the final result download (`_results`) its
  items fail;
- the provider refused to create a batch, and none exists for that attempt
  (`_start_waiting`): retried (OpenAI: a 404 for its input file fails the part).
A handle that `cancel` returned (marked `cancelled`) does none of this: what its batches
left unfinished fails for good. A transient answer (`_transient`) is none of these: the poll
says "later". Any other answer about an existing batch (401, 403, ...) is raised, and the
bridge polls again until `poll_error_horizon`. tests/unit/test_transient.py holds the rule
for every call kind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from types import ModuleType
from typing import Any, ClassVar, Generic, TypeVar

from batch_bridge.errors import BatchFailedError
from batch_bridge.providers._handles import Handle, Part, load_handle, now_ms
from batch_bridge.providers._hooks import Hooks, Unfinished
from batch_bridge.providers._packing import custom_id
from batch_bridge.providers._rows import (
    FileRows,
    FirstOf,
    LateDeletes,
    Results,
    RowCache,
    RowTable,
    collect_results,
    decode_rows,
    results_as_read,
)
from batch_bridge.providers._sdk import SdkAdapter
from batch_bridge.providers._settings import Settings
from batch_bridge.providers._transient import is_refusal, is_transient
from batch_bridge.types import Pending

__all__ = ["CANCELLED", "BatchAdapter"]

CANCELLED = "batch_cancelled"
"""The code of rows a cancelled handle left unfinished."""

_C = TypeVar("_C")
_B = TypeVar("_B")


class BatchAdapter(SdkAdapter[_C], Hooks[_B], Generic[_C, _B]):
    """Submit/poll/cancel for one provider's batch API; `_B` is its SDK's batch object."""

    _sdk: ClassVar[ModuleType]
    """The provider's SDK module: its error classes are the same names in both."""
    _provider: ClassVar[str]
    _kind: ClassVar[str | None] = None
    """The handle's `kind` field, None for handles without one."""

    def __init__(self, client: _C | None, settings: Settings) -> None:
        super().__init__(client, settings.timeout_s)
        self.settings = settings
        for field in dataclasses.fields(settings):
            setattr(self, field.name, getattr(settings, field.name))
        self._rows = RowCache()
        self._late = LateDeletes(settings.delete_results_after_s)

    def _transient(self, exc: BaseException) -> bool:
        return is_transient(exc, self._sdk)

    def _load(self, handle: Any) -> Handle:
        return load_handle(handle, name=type(self).__name__, kind=self._kind)

    async def poll(self, handle: Handle) -> Pending | list[Any] | BaseException | None:
        """Advance every part; results in item order once all parts are done or failed.

        Returns `Pending(new_handle)` whenever the handle changed (a part finished, was
        retried or started), so a restarted poll never redoes finished work; a transient
        answer leaves the rest of the handle as it was. Files or batches whose results were
        returned are deleted by a poll that comes `delete_results_after_s` later (the bridge
        polls again if it failed to record the results, and then needs them).
        """
        try:
            state = self._load(handle)
        except ValueError as exc:
            return BatchFailedError(str(exc), code="bad_handle")
        now = now_ms()
        context = self._context(state)
        self._late.keep(state["key"])
        await self._late.run(self._delete_late)
        try:
            await self._tidy(state)
            for part in list(state["parts"]):
                if part["state"] == "running":
                    await self._check_or_retry(state, context, part, now)
            await self._start_waiting(state, context, now, strict=False)
            if all(p["state"] in ("done", "failed") for p in state["parts"]):
                results = await self._results(state)
                await self._tidy(state)
                if results_as_read.get():  # the bridge, which reads them a page at a time
                    return results  # type: ignore[return-value]
                return list(results)
        except self._sdk.APIError as exc:
            if not self._transient(exc):
                raise
        return None if state == handle else Pending(state)

    async def _check_or_retry(self, state: Handle, context: Any, part: Part, now: int) -> None:
        """`_check`, retrying the part if the provider refuses a call about its batch for good.

        Only a 400 or 404 about the batch or its files (a vanished batch or result file, a
        refused download) is final, and would otherwise fail the whole bridge batch;
        resubmitting is bounded by `max_attempts` like any retry. A transient answer, or
        any other, is raised: the poll then says "later", or the bridge counts it against
        `poll_error_horizon`.
        """
        batch_id = part["batch"]
        try:
            await self._check(state, context, part, now)
        except self._sdk.APIStatusError as exc:
            if not is_refusal(exc, self._sdk):
                raise
            message, code = self._status_error(exc)
            message = f"{self._provider} refused a call about batch {batch_id}: {message}"
            self._retry_or_fail(part, message, code, now)

    async def _check(self, state: Handle, context: Any, part: Part, now: int) -> None:
        """Look at one running part's batch and move the part on once it has ended.

        All downloads and uploads happen before the part is changed, so a transport error
        half-way leaves the part exactly as it was.
        """
        batch = await self._retrieve(part["batch"])
        if not self._settle(batch, part, now):
            return
        rows = await self._batch_rows(batch)
        finished: list[int] = []
        missing: dict[str, list[int]] = {}
        for index in part["ids"]:
            code = self._unfinished(batch, rows.get(custom_id(state["key"], index)))
            if code is None:
                finished.append(index)
            else:
                missing.setdefault(code, []).append(index)
        if missing and self._rows_short(batch, len(finished)):
            return
        # Terminal: the batch ended (completed, expired, cancelled); what it left unfinished
        # is resubmitted, or failed once out of attempts or gone from the provider.
        rest = await self._requeue(state, context, part, missing, batch, now) if missing else []
        part.update(state="done", batch="", ids=finished, **self._done_fields(batch))
        state["parts"].extend(rest)

    async def _requeue(
        self,
        state: Handle,
        context: Any,
        part: Part,
        missing: dict[str, list[int]],
        batch: _B,
        now: int,
    ) -> list[Part]:
        """New parts for rows an ended batch left unfinished: resubmitted, or failed for good."""
        attempt = part["attempt"]
        reason = self._end_reason(batch, part, sum(len(ids) for ids in missing.values()))
        if state.get("cancelled"):
            return [
                self._failed_part(part, ids, f"{reason} ({code}; cancelled on request)", code)
                for code, ids in missing.items()
            ]
        if attempt + 1 >= self.max_attempts:
            return [
                self._failed_part(
                    part, ids, f"{reason} ({code}; gave up after {attempt + 1} attempts)", code
                )
                for code, ids in missing.items()
            ]
        return await self._resubmit(Unfinished(state["key"], context, part, missing, reason, now))

    async def _start_waiting(self, state: Handle, context: Any, now: int, *, strict: bool) -> None:
        """Create batches for waiting parts whose backoff has passed, as the gate allows.

        With `strict` (submit), a failure before any batch started is raised; after one
        started, a transient failure leaves the rest waiting for `poll`.
        """
        if state.get("cancelled"):
            self._stop_waiting(state)
            return
        gate = self._gate(state)
        started = any(p["state"] != "waiting" for p in state["parts"])
        for part in state["parts"]:
            if part["state"] != "waiting" or part["not_before"] > now or not gate.admits(part):
                continue
            try:
                fields = await self._create(state, context, part)
            except self._sdk.APIError as exc:
                if strict and not started:
                    raise
                if self._transient(exc):
                    return
                # No batch exists for this attempt: the provider refused to create it.
                self._create_refused(part, exc, now)
                continue
            started = True
            part.update(state="running", **fields)
            part["batches"].append(fields["batch"])
            gate.started(part)

    def _stop_waiting(self, state: Handle) -> None:
        """A cancelled handle starts nothing: its waiting parts fail for good."""
        state["parts"] = [
            self._failed_part(
                part, part["ids"], "the batch was cancelled before these rows ran", CANCELLED
            )
            if part["state"] == "waiting"
            else part
            for part in state["parts"]
        ]

    @staticmethod
    def mark_cancelled(state: Handle) -> Handle:
        """The handle to poll after a cancel: it resubmits nothing and starts nothing, so
        the rows the provider left unfinished fail (`BatchFailedError`, code `batch_cancelled`)."""
        return {**state, "cancelled": True}

    def _create_refused(self, part: Part, exc: Exception, now: int) -> None:
        if isinstance(exc, self._sdk.APIStatusError):
            message, code = self._status_error(exc)
        else:
            message, code = str(exc), "api_error"
        message = f"{self._provider} refused to create the batch: {message}"
        self._retry_or_fail(part, message, code, now)

    async def _rows_from(
        self,
        sources: Sequence[str | None],
        download: Callable[[str], Awaitable[bytes | FileRows]],
    ) -> RowTable:
        """Rows by custom_id of result files or batches (the first source's row wins), each
        downloaded once and cached between polls."""
        tables = [await self._cached(source, download) for source in sources if source]
        return tables[0] if len(tables) == 1 else FirstOf(tables)

    async def _cached(
        self, source: str, download: Callable[[str], Awaitable[bytes | FileRows]]
    ) -> RowTable:
        cached = self._rows.get(source)
        if cached is None:
            got = await download(source)
            rows = got if isinstance(got, FileRows) else await decode_rows(got)
            self._rows.put(source, rows, rows.size)
            cached = rows
        return cached

    async def _stream_rows(self, download: AbstractAsyncContextManager[Any]) -> FileRows:
        """A result file from the SDK's streaming response, written to a spooled file as it
        arrives, each row indexed. A body cut short is the SDK's connection error: polled
        again, like any transient answer."""
        import httpx2  # both SDKs that stream result files are built on it

        rows = FileRows()
        try:
            async with download as response:
                async for chunk in response.iter_bytes():
                    rows.feed(chunk)
        except httpx2.TransportError as exc:  # the body is read after the SDK returned
            raise self._sdk.APIConnectionError(request=exc.request) from exc
        rows.end()
        return rows

    async def _results(self, state: Handle) -> Results:
        def unreadable(part: Part, exc: Exception) -> tuple[str, str] | None:
            if not is_refusal(exc, self._sdk):
                return None  # transient: poll again; other: raised to the bridge
            message, code = self._status_error(exc)
            return f"{self._unreadable(part)} are unreadable: {message}", code

        results = await collect_results(
            state,
            provider=self._provider,
            rows_of=self._part_rows,
            row_result=self._row_result,
            unreadable=unreadable,
        )
        sources = self._result_sources(state)
        for source in sources:
            self._rows.pop(source)
        self._late.add(state["key"], sources)
        return results
