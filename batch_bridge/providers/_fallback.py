"""The adapters' `fallback(item)`: one item through the provider's normal API, answered in
the shape a batch row gives (the response body as JSON), for `Bridge(fallback=)`.

The request body is the one the batch would have sent. SDK errors become `ProviderError`
with `retryable` set by the shared transient rule, so the bridge tries a timeout, a 429 or a
5xx again on a later pass and fails the caller at once on a 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

from batch_bridge.errors import ProviderError
from batch_bridge.providers._transient import is_transient
from batch_bridge.types import FallbackAnswer

__all__ = ["anthropic_fallback", "openai_fallback"]

FLEX_ENDPOINTS = frozenset({"/v1/chat/completions", "/v1/responses"})
"""Where OpenAI takes `service_tier="flex"` (billed at batch prices, slower, may refuse)."""


def provider_error(exc: Exception, sdk: ModuleType, name: str) -> ProviderError:
    status = getattr(exc, "status_code", None)
    return ProviderError(
        f"{name} normal API: {type(exc).__name__}: {exc}",
        provider=name,
        status_code=status,
        retryable=is_transient(exc, sdk),
    )


def _openai_request(item: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(item, Mapping) or not isinstance(item.get("body"), Mapping):
        raise ProviderError("an OpenAI item is {'url': ..., 'body': {...}}", retryable=False)
    url = item.get("url")
    if url not in ("/v1/chat/completions", "/v1/responses", "/v1/embeddings"):
        raise ProviderError(f"no normal OpenAI endpoint for url {url!r}", retryable=False)
    return str(url), dict(item["body"])


async def openai_fallback(client: Any, quiet: Any, sdk: ModuleType, item: Any) -> FallbackAnswer:
    """Flex first where OpenAI offers it (without SDK retries: a refusal goes to the
    standard tier at once), then the standard tier; a `service_tier` the item names is kept."""
    url, body = _openai_request(item)
    path = url.removeprefix("/v1")
    if url in FLEX_ENDPOINTS and "service_tier" not in body:
        try:
            value = await quiet.post(path, cast_to=object, body={**body, "service_tier": "flex"})
            return FallbackAnswer(value, billed="batch", route="flex")
        except sdk.APIError:
            pass  # flex refused (429 "resource unavailable"), unsupported, or slow: standard
    try:
        value = await client.post(path, cast_to=object, body=body)
    except sdk.APIError as exc:
        raise provider_error(exc, sdk, "OpenAI") from exc
    flex = body.get("service_tier") == "flex"
    return FallbackAnswer(
        value, billed="batch" if flex else "standard", route="flex" if flex else "standard"
    )


async def anthropic_fallback(client: Any, sdk: ModuleType, item: Any) -> FallbackAnswer:
    """`messages.create` with the item's params (standard price: Anthropic has no cheaper
    synchronous tier)."""
    if not isinstance(item, Mapping):
        raise ProviderError(
            "an Anthropic item is a dict of messages.create params", retryable=False
        )
    try:
        value = await client.post("/v1/messages", cast_to=object, body=dict(item))
    except sdk.APIError as exc:
        raise provider_error(exc, sdk, "Anthropic") from exc
    return FallbackAnswer(value, billed="standard", route="standard")
