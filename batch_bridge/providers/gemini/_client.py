"""`wrap_gemini`: a `genai.Client` whose `aio.models.generate_content` is answered through
the bridge."""

from __future__ import annotations

from typing import Any

import pydantic
from google import genai
from google.genai import types

from batch_bridge.providers._dropin import Delegate, DropIn, WaitFunc

__all__ = ["BatchedGemini", "wrap_gemini"]


def _jsonable(value: Any) -> Any:
    """SDK objects (`Content`, `GenerateContentConfig`, ...) as the JSON a batch item holds."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    return value


_SENDING_ONLY = frozenset({"retry_options", "timeout"})
"""`http_options` that only shape how one call is sent: meaningless in a batch, dropped."""


def request_item(model: str, contents: Any, config: Any = None) -> dict[str, Any]:
    """The batch item of one `generate_content` call.

    `config.http_options` is dropped when it only sets retries or a timeout (LangChain's
    model always sets them); other options (headers, base_url, ...) cannot travel with a
    batched request and raise `TypeError`.
    """
    item: dict[str, Any] = {"model": model, "contents": _jsonable(contents)}
    config = dict(_jsonable(config) or {})
    options = config.pop("http_options", None) or {}
    refused = sorted(set(options) - _SENDING_ONLY)
    if refused:
        raise TypeError(f"config.http_options {refused} cannot be sent with a batched request")
    if config:
        item["config"] = config
    return item


class _Models(Delegate):
    async def generate_content(
        self, *, model: str, contents: Any, config: Any = None
    ) -> types.GenerateContentResponse:
        """Like `client.aio.models.generate_content`, answered through Gemini Batch Mode."""
        reply = await self._owner._send(request_item(model, contents, config))
        if isinstance(reply, types.GenerateContentResponse):
            return reply
        return types.GenerateContentResponse.model_validate(reply)


class _Aio(Delegate):
    def __init__(self, owner: DropIn[Any]) -> None:
        super().__init__(owner, ("aio",))
        self.models = _Models(owner, ("aio", "models"))


class BatchedGemini(DropIn[genai.Client]):
    """A `genai.Client` look-alike whose `aio.models.generate_content` goes through a
    BatchBridge batcher.

    The call suspends the calling graph node until the batch answers and returns the SDK's
    `GenerateContentResponse`; everything else is the real client.
    """

    def __init__(
        self,
        client: genai.Client | None = None,
        *,
        batcher: str = "bridge",
        _wait: WaitFunc | None = None,
    ) -> None:
        super().__init__(client, batcher=batcher, wait=_wait)
        self.aio = _Aio(self)

    def _new_client(self) -> genai.Client:
        return genai.Client()


def wrap_gemini(client: genai.Client | None = None, *, batcher: str = "bridge") -> BatchedGemini:
    """Wrap a `genai.Client` so `aio.models.generate_content` is answered through `batcher`."""
    return BatchedGemini(client, batcher=batcher)
