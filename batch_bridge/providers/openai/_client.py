"""`wrap_openai`: an `AsyncOpenAI` whose create calls are answered through the bridge."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Generic, TypeVar

import openai
from openai import BaseModel
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from batch_bridge.providers._dropin import Delegate, DropIn, WaitFunc, request_body
from batch_bridge.providers._packing import ENDPOINTS

__all__ = ["BatchedAsyncOpenAI", "wrap_openai"]

_M = TypeVar("_M", bound=BaseModel)


class _Create(Delegate, Generic[_M]):
    """A namespace whose `create` goes through the Batch API endpoint `url`."""

    def __init__(
        self, owner: BatchedAsyncOpenAI, path: tuple[str, ...], url: str, model: type[_M]
    ) -> None:
        super().__init__(owner, path)
        self._batched = owner
        self._url = url
        self._model = model

    async def create(self, **kwargs: Any) -> _M:
        """Like the real client's `create`, answered through the Batch API."""
        body = await self._batched._call(self._url, kwargs)
        return body if isinstance(body, self._model) else self._model.construct(**body)


class _Chat(Delegate):
    def __init__(self, owner: BatchedAsyncOpenAI) -> None:
        super().__init__(owner, ("chat",))
        self.completions = _Create(
            owner, ("chat", "completions"), "/v1/chat/completions", ChatCompletion
        )


class BatchedAsyncOpenAI(DropIn[openai.AsyncOpenAI]):
    """An `AsyncOpenAI` look-alike whose create calls go through a BatchBridge batcher.

    `chat.completions.create`, `responses.create` and `embeddings.create` suspend the
    calling graph node until the batch answers; everything else is the real client.
    """

    def __init__(
        self,
        client: openai.AsyncOpenAI | None = None,
        *,
        batcher: str = "bridge",
        max_wait: float | timedelta | None = None,
        _wait: WaitFunc | None = None,
    ) -> None:
        super().__init__(client, batcher=batcher, wait=_wait, max_wait=max_wait)
        self.chat = _Chat(self)
        self.responses = _Create(self, ("responses",), "/v1/responses", Response)
        self.embeddings = _Create(self, ("embeddings",), "/v1/embeddings", CreateEmbeddingResponse)

    def _new_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI()

    async def _call(self, url: str, kwargs: dict[str, Any]) -> Any:
        if url not in ENDPOINTS:
            raise ValueError(f"unsupported batch endpoint {url!r}")
        body = request_body(
            kwargs, omitted=(openai.NotGiven, openai.Omit), api=f"the Batch API ({url})"
        )
        return await self._send({"url": url, "body": body})


def wrap_openai(
    client: openai.AsyncOpenAI | None = None,
    *,
    batcher: str = "bridge",
    max_wait: float | timedelta | None = None,
) -> BatchedAsyncOpenAI:
    """Wrap an `AsyncOpenAI` client so its create calls are answered through `batcher`.

    With `max_wait` (seconds or a timedelta), a call its batch has not answered by then is
    answered through the provider's normal API (the bridge's `fallback=`)."""
    return BatchedAsyncOpenAI(client, batcher=batcher, max_wait=max_wait)
