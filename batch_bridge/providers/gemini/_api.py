"""The `google-genai` calls `GeminiBatch` makes, each bounded by `timeout_s` and with its
errors translated into the three classes the shared poll skeleton knows.

The skeleton (`_base`, `_transient`) catches `sdk.APIError` and tells transient answers
from refusals by `sdk.APIConnectionError` and `sdk.APIStatusError.status_code`, the names
the `openai` and `anthropic` SDKs share. `google-genai` raises `errors.APIError` (with
`.code`) for HTTP answers and lets `httpx` / `httpx2` transport errors through, so this
module is the "SDK module" the adapter hands the skeleton: the same rule of what is
transient (408/409/429/5xx, connection errors, timeouts) then holds for Gemini too.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from google import genai
from google.genai import errors, types

try:  # the SDK's default transport when installed
    import httpx2

    _TRANSPORT: tuple[type[BaseException], ...] = (httpx.TransportError, httpx2.TransportError)
except ImportError:  # pragma: no cover - depends on the installed packages
    _TRANSPORT = (httpx.TransportError,)

__all__ = ["APIConnectionError", "APIError", "APIStatusError", "GeminiApi", "sdk_errors"]


class APIError(Exception):
    """Any failed call to the Gemini API."""


class APIConnectionError(APIError):
    """No answer: the connection failed or timed out."""


class APIStatusError(APIError):
    """An HTTP error answer; `status` is Google's status name (`NOT_FOUND`, ...)."""

    def __init__(self, exc: errors.APIError) -> None:
        super().__init__(str(exc))
        self.status_code = int(exc.code or 0)
        self.status = str(exc.status or "")
        self.message = str(exc.message or exc)
        self.body = exc.details


@contextmanager
def sdk_errors() -> Iterator[None]:
    """Raise the SDK's errors inside as this module's classes (the original as the cause)."""
    try:
        yield
    except errors.APIError as exc:
        raise APIStatusError(exc) from exc
    except _TRANSPORT as exc:
        raise APIConnectionError(str(exc) or type(exc).__name__) from exc


class GeminiApi:
    """The Batch Mode, Files and `generateContent` calls of one client."""

    def __init__(self, client: genai.Client, timeout_s: float | None) -> None:
        self.client = client
        self._timeout: dict[str, Any] = (
            {} if timeout_s is None else {"http_options": {"timeout": int(timeout_s * 1000)}}
        )

    def _config(self, **fields: Any) -> Any:
        """A call's config dict: its fields, plus the timeout (the SDK's typed dicts vary)."""
        return {**fields, **self._timeout}

    async def get(self, name: str) -> types.BatchJob:
        with sdk_errors():
            return await self.client.aio.batches.get(name=name, config=self._config())

    async def create(self, model: str, src: Any, display_name: str) -> types.BatchJob:
        with sdk_errors():
            return await self.client.aio.batches.create(
                model=model, src=src, config=self._config(display_name=display_name)
            )

    async def names(self, pages: int, page_size: int) -> dict[str, str]:
        """Batch names by display name, newest first wins, from at most `pages` pages."""
        found: dict[str, str] = {}
        with sdk_errors():
            pager = await self.client.aio.batches.list(config=self._config(page_size=page_size))
            for number in range(pages):
                if number:
                    if not pager.config.get("page_token"):
                        break
                    await pager.next_page()
                for job in pager.page:
                    if job.display_name and job.name:
                        found.setdefault(job.display_name, job.name)
        return found

    async def cancel(self, name: str) -> None:
        with sdk_errors():
            await self.client.aio.batches.cancel(name=name, config=self._config())

    async def delete(self, name: str) -> None:
        with sdk_errors():
            await self.client.aio.batches.delete(name=name, config=self._config())

    async def upload(self, data: bytes, display_name: str) -> str:
        """Upload a JSONL request file; its name (`files/...`)."""
        config = self._config(mime_type="jsonl", display_name=display_name)
        with sdk_errors():
            uploaded = await self.client.aio.files.upload(file=io.BytesIO(data), config=config)
        if not uploaded.name:
            raise APIConnectionError("the Gemini Files API returned no file name")
        return uploaded.name

    async def download(self, name: str) -> bytes:
        with sdk_errors():
            data: bytes = await self.client.aio.files.download(file=name, config=self._config())
        return data

    async def delete_file(self, name: str) -> None:
        with sdk_errors():
            await self.client.aio.files.delete(name=name, config=self._config())

    async def generate(self, item: dict[str, Any]) -> types.GenerateContentResponse:
        config = self._config(**(item.get("config") or {}))
        with sdk_errors():
            return await self.client.aio.models.generate_content(
                model=item["model"], contents=item["contents"], config=config
            )
