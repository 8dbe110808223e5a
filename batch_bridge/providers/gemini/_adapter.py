"""`GeminiBatch`: Gemini Batch Mode behind the bridge's submit/poll/cancel contract.

`GeminiBatch` sends bridge items (the keyword arguments of `client.aio.models.
generate_content`: `model`, `contents`, `config`) as batch jobs, one model per job: inline
requests while a job's requests take at most `max_inline_bytes` (the API's inline limit
is about 20 MB), else an uploaded JSONL file. Each request carries its key (`<key>-<index>`;
inline in its `metadata`, in the file on its line) and results are matched by that key,
never by position; a row's `error` fails only its item. A job that ended `EXPIRED`,
`CANCELLED` or `SUCCEEDED` with rows missing has those rows resubmitted, and a `FAILED` job
the whole part, up to `max_attempts`; a transient answer (408/409/429/5xx, connection,
timeout) only means "poll again later" (`_api`, `providers/_transient.py`).

Like Anthropic's, the handle keeps the items of rows still running: the API never hands a
job's requests back. Every job is named (`display_name`) after the handle's key, the part
and the attempt, and before creating one the adapter lists recent jobs for that name and
adopts one it finds: a `submit` retried with the same `idempotency_key` after a crash
between Google's accept and the bridge recording the handle, or a replayed poll, does not
create a second job (within the `lookup_pages` newest pages of jobs). A request file
uploaded by a call that crashed before creating its job is not found again (Google deletes
files after 48 hours). `release` deletes the jobs, their response files and the uploads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType, ModuleType
from typing import Any, ClassVar

from google import genai
from google.genai import types

from batch_bridge.errors import BatchItemError, ConfigError, ProviderError
from batch_bridge.providers._base import BatchAdapter
from batch_bridge.providers._handles import Handle, Part, new_part, now_ms
from batch_bridge.providers._hooks import Unfinished
from batch_bridge.providers._packing import batch_key, custom_id, file_name
from batch_bridge.providers._rows import RowTable
from batch_bridge.providers._transient import is_transient
from batch_bridge.providers.gemini import _api, _rows
from batch_bridge.providers.gemini._api import GeminiApi
from batch_bridge.providers.gemini._settings import GeminiSettings

__all__ = ["GeminiBatch"]

READABLE = frozenset({"JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED"})
STOPPED = {"JOB_STATE_EXPIRED": "batch_expired", "JOB_STATE_CANCELLED": "batch_cancelled"}
"""The code of rows a job that ended this way left unfinished."""
RUNNING = frozenset({"JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING"})
_PAGE = 100


def _state(job: types.BatchJob) -> str:
    return job.state.name if job.state is not None else "JOB_STATE_UNSPECIFIED"


def display_name(key: str, origin: int, attempt: int) -> str:
    """The name of the job (and request file) of part `origin` at `attempt`."""
    return file_name(key, origin, attempt).removesuffix(".jsonl")


class _Earlier:
    """Jobs already at Google by display name, listed once per submit or poll."""

    def __init__(self, api: GeminiApi, pages: int) -> None:
        self._api = api
        self._pages = pages
        self._names: dict[str, str] | None = None

    async def find(self, name: str) -> str | None:
        if self._names is None:
            self._names = await self._api.names(self._pages, _PAGE)
        return self._names.get(name)


class GeminiBatch(BatchAdapter[genai.Client, types.BatchJob]):
    """Submit/poll/cancel/release functions for Gemini Batch Mode, as the bridge expects them.

    Items are dicts of `client.aio.models.generate_content` arguments (`model`, `contents`,
    `config`; JSON); each result is the `GenerateContentResponse` as a JSON dict
    (`GenerateContentResponse.model_validate(result)` rebuilds it), or a `BatchItemError`
    for that item alone. A client made here reads `GEMINI_API_KEY` / `GOOGLE_API_KEY`; each
    call is bounded by `timeout_s`. `fallback(item)` answers one item at standard price.
    """

    _sdk: ClassVar[ModuleType] = _api
    _provider = "Gemini"
    _kind = "gemini"
    _on_failure: ClassVar[Mapping[str, Any]] = MappingProxyType({"params": []})
    settings: GeminiSettings
    max_requests_per_batch: int
    max_bytes_per_batch: int
    max_inline_bytes: int
    lookup_pages: int
    _status_error = staticmethod(_rows.status_error)
    _row_result = staticmethod(_rows.row_result)

    def __init__(
        self,
        client: genai.Client | None = None,
        *,
        max_requests_per_batch: int = 50_000,
        max_bytes_per_batch: int = 2_000_000_000,
        max_inline_bytes: int = 19_000_000,
        lookup_pages: int = 5,
        max_attempts: int = 3,
        retry_backoff_s: float = 60.0,
        timeout_s: float | None = 120.0,
        delete_results_after_s: float | None = 600.0,
    ) -> None:
        settings = GeminiSettings(
            max_requests_per_batch=max_requests_per_batch,
            max_bytes_per_batch=max_bytes_per_batch,
            max_inline_bytes=max_inline_bytes,
            lookup_pages=lookup_pages,
            max_attempts=max_attempts,
            retry_backoff_s=retry_backoff_s,
            timeout_s=timeout_s,
            delete_results_after_s=delete_results_after_s,
        )
        if client is not None and client.vertexai:
            raise ConfigError(
                "GeminiBatch speaks the Gemini Developer API's Batch Mode; a Vertex AI client "
                "(genai.Client(vertexai=True)) batches through Cloud Storage, which it does not do"
            )
        super().__init__(client, settings)

    def _new_client(self, **options: Any) -> genai.Client:
        try:
            return genai.Client()
        except ValueError as exc:
            raise ConfigError(
                f"GeminiBatch cannot create its Gemini client: {exc} Set GEMINI_API_KEY in "
                "the bridge deployment, or pass GeminiBatch(genai.Client(...))."
            ) from exc

    def _with_options(self, client: genai.Client, **options: Any) -> genai.Client:
        return client  # the timeout goes with each call (`GeminiApi`); the SDK never retries

    @property
    def api(self) -> GeminiApi:
        """The client's calls, each bounded by `timeout_s`."""
        return GeminiApi(self.client, self.timeout_s)

    def _context(self, state: Handle) -> _Earlier:
        return _Earlier(self.api, self.lookup_pages)

    async def submit(self, items: Sequence[Any], *, idempotency_key: str | None = None) -> Handle:
        """Create one job per model (split at the request and byte limits); malformed items
        fail alone. A transport error or refusal before any job was created raises; one
        after leaves the remaining parts waiting for `poll`."""
        key = batch_key(idempotency_key)
        pre: list[list[Any]] = []
        groups: dict[str, list[tuple[int, Any, int]]] = {}
        for index, item in enumerate(items):
            problem, size = self._measure(key, index, item)
            if problem is not None:
                pre.append([index, problem, "invalid_request"])
            else:
                groups.setdefault(item["model"], []).append((index, dict(item), size))
        parts: list[Part] = []
        for model, members in groups.items():
            ids: list[int] = []
            params: list[Any] = []
            total = 0
            for index, item, size in members:
                if ids and (
                    len(ids) >= self.max_requests_per_batch
                    or total + size > self.max_bytes_per_batch
                ):
                    parts.append(self._new_part(model, ids, params, len(parts)))
                    ids, params, total = [], [], 0
                ids.append(index)
                params.append(item)
                total += size
            parts.append(self._new_part(model, ids, params, len(parts)))
        handle: Handle = {"v": 1, "kind": self._kind, "key": key, "n": len(items), "pre": pre}
        handle["parts"] = parts
        await self._start_waiting(handle, self._context(handle), now_ms(), strict=True)
        return handle

    @staticmethod
    def _new_part(model: str, ids: list[int], params: list[Any], origin: int) -> Part:
        return new_part(ids=ids, params=params, attempt=0, origin=origin, model=model, inputs=[])

    def _measure(self, key: str, index: int, item: Any) -> tuple[str | None, int]:
        """Why an item fails alone, if so, and its request's bytes."""
        problem = _rows.check_item(item)
        if problem is not None:
            return problem, 0
        try:
            size = len(_rows.render(self.client, item, custom_id(key, index))) + 1
        except (TypeError, ValueError) as exc:
            return f"Gemini batch item is not a valid request: {exc}", 0
        if size > self.max_bytes_per_batch:
            limit = self.max_bytes_per_batch
            return f"Gemini batch request is {size} bytes, over the {limit}-byte limit", 0
        return None, size

    async def fallback(self, item: Any) -> Any:
        """One `generate_content` call with the item's request, at standard price.

        The result is what a batch would give: the response dict, or a `BatchItemError` for
        a request Gemini refuses for good; a transient failure raises (`_api.APIError`).
        """
        problem = _rows.check_item(item)
        if problem is not None:
            return BatchItemError(problem, code="invalid_request")
        try:
            response = await self.api.generate(dict(item))
        except _api.APIStatusError as exc:
            if is_transient(exc, _api):
                raise
            message, code = _rows.status_error(exc)
            return BatchItemError(message, code=code)
        return _rows.response_dict(response)

    async def cancel(self, handle: Handle) -> Handle:
        """Cancel every job of this handle still running; idempotent.

        Jobs that ended or are gone are skipped. Raises when Gemini cannot be reached.
        Returns the handle to poll from then on: it resubmits nothing (cancelled rows fail
        with code `batch_cancelled`); rows that finished keep their results.
        """
        state = self._load(handle)
        for part in state["parts"]:
            if part["state"] != "running" or not part["batch"]:
                continue
            try:
                job = await self.api.get(part["batch"])
                if _state(job) in RUNNING:
                    await self.api.cancel(part["batch"])
            except _api.APIStatusError as exc:
                if exc.status_code not in (400, 404):
                    raise
        return self.mark_cancelled(state)

    async def release(self, handle: Handle) -> None:
        """Delete the jobs (with their response files) and the uploaded request files of a
        handle whose results the bridge recorded. Idempotent; raises while Gemini cannot be
        reached, so that the bridge tries again."""
        state = self._load(handle)
        named = {
            name
            for part in state["parts"]
            for name in (*part["batches"], part["out"], *part.get("inputs", []))
            if name
        }
        for name in sorted(named):
            if not await self._delete_late(name):
                raise ProviderError(f"Gemini {name} could not be deleted yet")
        self._late.keep(state["key"])

    # The poll's hooks (see `BatchAdapter`).

    async def _delete_late(self, source: str) -> bool:
        """Delete a job and its response file, or a request file; False if a later try
        might succeed."""
        try:
            if source.startswith("files/"):
                await self.api.delete_file(source)
                return True
            job = await self.api.get(source)
            if job.dest is not None and job.dest.file_name:
                await self._delete_late(job.dest.file_name)
            await self.api.delete(source)
        except _api.APIError as exc:
            return not self._transient(exc)
        return True

    async def _create(self, state: Handle, context: Any, part: Part) -> dict[str, Any]:
        name = display_name(state["key"], part["origin"], part["attempt"])
        earlier = await context.find(name) if isinstance(context, _Earlier) else None
        if earlier is not None:
            return {"batch": earlier}
        keys = [custom_id(state["key"], index) for index in part["ids"]]
        lines = [
            _rows.render(self.client, item, key)
            for item, key in zip(part["params"], keys, strict=True)
        ]
        if sum(len(line) + 1 for line in lines) <= self.max_inline_bytes:
            src: Any = [
                {**item, "metadata": {"key": key}}
                for item, key in zip(part["params"], keys, strict=True)
            ]
            job = await self.api.create(part["model"], src, name)
            return {"batch": job.name}
        uploaded = await self.api.upload(b"\n".join(lines) + b"\n", name)
        job = await self.api.create(part["model"], uploaded, name)
        return {"batch": job.name, "inputs": [*part.get("inputs", []), uploaded]}

    async def _retrieve(self, batch_id: str) -> types.BatchJob:
        return await self.api.get(batch_id)

    def _settle(self, batch: types.BatchJob, part: Part, now: int) -> bool:
        state = _state(batch)
        if state == "JOB_STATE_FAILED":
            detail = batch.error.message if batch.error is not None else None
            message = f"Gemini batch {batch.name} failed" + (f": {detail}" if detail else "")
            self._retry_or_fail(part, message, "batch_failed", now)
            return False
        return state in READABLE or state in STOPPED

    async def _batch_rows(self, batch: types.BatchJob) -> RowTable:
        name = str(batch.name)
        cached = self._rows.get(name)
        if cached is not None:
            return cached
        if batch.dest is not None and batch.dest.file_name:
            data = await self.api.download(batch.dest.file_name)
            rows, size = await _rows.file_rows(data), len(data)
        else:
            rows = _rows.inline_rows(batch)
            size = sum(len(str(row)) for row in rows.values())
        self._rows.put(name, rows, size)
        return rows

    def _unfinished(self, batch: types.BatchJob, row: Mapping[str, Any] | None) -> str | None:
        if row is not None:
            return None
        return STOPPED.get(_state(batch), "missing_result")

    def _done_fields(self, batch: types.BatchJob) -> dict[str, Any]:
        return {"params": [], "out": batch.name}

    def _end_reason(self, batch: types.BatchJob, part: Part, missing: int) -> str:
        ended = _state(batch).removeprefix("JOB_STATE_").lower()
        return (
            f"Gemini batch {batch.name} ended {ended} before {missing} of its "
            f"{len(part['ids'])} requests finished"
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
            model=part["model"],
            inputs=[],
        )

    async def _resubmit(self, rows: Unfinished) -> list[Part]:
        """The unfinished rows, with the items the handle kept for them, as a new part."""
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
            model=part["model"],
            inputs=[],
        )
        rest["batches"] = list(part["batches"])
        return [rest]

    async def _part_rows(self, part: Part) -> RowTable:
        cached = self._rows.get(part["out"])
        if cached is not None:
            return cached
        return await self._batch_rows(await self.api.get(part["out"]))

    def _unreadable(self, part: Part) -> str:
        return f"Gemini results of batch {part['out']}"

    def _result_sources(self, state: Handle) -> list[str]:
        names = {part["out"] for part in state["parts"] if part["out"]}
        names |= {name for part in state["parts"] for name in part.get("inputs", [])}
        return sorted(names)
