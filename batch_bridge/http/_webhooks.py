"""Provider webhooks wake the bridge: `POST /batch-bridge/webhooks/{provider}`.

A verified event about a batch the deployment holds leaves a hint (`_hints`) that makes the
batch due, and starts a tick unless one will read it anyway. Anything else changes nothing
and is counted: a bad signature (401), a webhook id already taken (409), a batch no bridge
here holds (404), a provider without a secret configured (404). Events of other types are
acknowledged (200) and ignored. The route table is generic: a provider is a verifier that
turns (body, headers) into an event, and the index finds the batch by the provider's id.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from langgraph.store.base import BaseStore
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from batch_bridge import _client, _hints
from batch_bridge._store import BATCHES, namespace

__all__ = [
    "OPENAI_WEBHOOK_SECRET_ENV",
    "WEBHOOK_SOURCES",
    "WebhookEvent",
    "WebhookRejectedError",
    "receive_webhook",
    "verify_openai",
    "webhook_counts",
    "webhook_routes",
]

log = logging.getLogger("batch_bridge")

OPENAI_WEBHOOK_SECRET_ENV = "OPENAI_WEBHOOK_SECRET"
BATCH_EVENTS = frozenset({"batch.completed", "batch.failed", "batch.expired", "batch.cancelled"})
OUTCOMES = ("accepted", "ignored", "bad_signature", "replayed", "unknown_batch", "not_configured")


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified webhook: its delivery id, its type, and the provider batch it is about."""

    webhook_id: str
    type: str
    provider_batch_id: str | None
    """None for events about anything but a batch's end."""


class WebhookRejectedError(Exception):
    """A webhook the route refuses; `outcome` is the counter it adds to."""

    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


Verifier = Callable[[bytes, Mapping[str, str]], WebhookEvent]
"""Checks a delivery's signature and reads it; raises `WebhookRejectedError`."""
Waker = Callable[[BaseStore, str], Awaitable[bool]]
"""Starts a tick of a bridge unless one will read its hints anyway; True if it did."""


@cache
def _openai_client(secret: str) -> Any:
    import openai

    return openai.OpenAI(api_key="webhook-verification-only", webhook_secret=secret)


def verify_openai(body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
    """OpenAI's Standard Webhooks signature, checked by the SDK's own `webhooks.unwrap`
    (it also refuses timestamps more than 5 minutes off), with the secret in
    `OPENAI_WEBHOOK_SECRET`."""
    import openai

    secret = os.environ.get(OPENAI_WEBHOOK_SECRET_ENV)
    if not secret:
        raise WebhookRejectedError(
            "not_configured", f"set {OPENAI_WEBHOOK_SECRET_ENV} to take OpenAI webhooks"
        )
    try:
        event = _openai_client(secret).webhooks.unwrap(body, headers)
    except (openai.InvalidWebhookSignatureError, ValueError) as exc:
        raise WebhookRejectedError("bad_signature", f"signature refused: {exc}") from exc
    data = getattr(event, "data", None)
    batch_id = getattr(data, "id", None)
    kind = str(getattr(event, "type", ""))
    about = batch_id if kind in BATCH_EVENTS and isinstance(batch_id, str) else None
    return WebhookEvent(headers.get("webhook-id", ""), kind, about)


WEBHOOK_SOURCES: dict[str, Verifier] = {"openai": verify_openai}
"""Provider name (the route's last segment) -> its verifier."""


async def _count(store: BaseStore, provider: str, outcome: str) -> None:
    """Best effort, read then write: concurrent webhooks may undercount, never act."""
    stored = await store.aget(_hints.COUNTS, provider)
    counts = dict(stored.value) if stored is not None else {}
    counts[outcome] = int(counts.get(outcome) or 0) + 1
    counts[f"last_{outcome}_at"] = time.time()
    await store.aput(_hints.COUNTS, provider, counts, index=False)


async def webhook_counts(store: BaseStore) -> dict[str, dict[str, float]]:
    """What each provider's webhook route accepted and refused (numbers only)."""
    found: dict[str, dict[str, float]] = {}
    for stored in await store.asearch(_hints.COUNTS, limit=100):
        value = stored.value if isinstance(stored.value, dict) else {}
        found[stored.key] = {
            k: v for k, v in value.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
    return found


async def receive_webhook(
    provider: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    store: BaseStore,
    wake: Waker,
    sources: Mapping[str, Verifier] = WEBHOOK_SOURCES,
) -> tuple[int, dict[str, Any]]:
    """One delivery: (HTTP status, JSON answer). Counts every outcome."""
    verify = sources.get(provider)
    if verify is None:
        return 404, {"error": f"no webhook route for provider {provider!r}"}
    try:
        event = verify(body, headers)
        await _take_id(store, provider, event.webhook_id)
        if event.provider_batch_id is None:
            await _count(store, provider, "ignored")
            return 200, {"outcome": "ignored", "type": event.type}
        found = await _find_batch(store, event.provider_batch_id)
    except WebhookRejectedError as exc:
        await _count(store, provider, exc.outcome)
        log.warning("%s webhook refused (%s): %s", provider, exc.outcome, exc)
        status = {"bad_signature": 401, "replayed": 409}.get(exc.outcome, 404)
        return status, {"outcome": exc.outcome, "error": str(exc)}
    bridge, batch_id = found
    await store.aput(
        namespace(bridge, _hints.HINTS), batch_id, _hints.hint_value(time.time(), event.type)
    )
    started = await wake(store, bridge)
    await _count(store, provider, "accepted")
    return 200, {"outcome": "accepted", "bridge": bridge, "batch_id": batch_id, "tick": started}


async def _take_id(store: BaseStore, provider: str, webhook_id: str) -> None:
    """Put-if-absent on the delivery's id (the store has no compare-and-set: two copies
    racing may both pass, and only mark the same batch due twice)."""
    if not webhook_id or len(webhook_id) > 200:
        raise WebhookRejectedError("bad_signature", "no usable webhook-id header")
    seen = _hints.seen_namespace(provider)
    if await store.aget(seen, webhook_id) is not None:
        raise WebhookRejectedError("replayed", f"webhook id {webhook_id!r} was taken already")
    now = time.time()
    ttl = _hints.SEEN_TTL_MIN if store.supports_ttl else None
    await store.aput(seen, webhook_id, {"at": now}, index=False, ttl=ttl)
    if ttl is None:  # forget ids the SDK's 5-minute window refuses anyway, a page at a time
        cutoff = now - _hints.SEEN_TTL_MIN * 60
        for old in await store.asearch(seen, filter={"at": {"$lt": cutoff}}, limit=50):
            await store.adelete(seen, old.key)


async def _find_batch(store: BaseStore, provider_batch_id: str) -> tuple[str, str]:
    stored = await store.aget(_hints.INDEX, provider_batch_id)
    found = None if stored is None else _hints.parse_index(stored.value)
    if found is not None and await store.aget(namespace(found[0], BATCHES), found[1]):
        return found
    raise WebhookRejectedError(
        "unknown_batch", f"no bridge here holds provider batch {provider_batch_id!r}"
    )


async def platform_wake(store: BaseStore, bridge: str) -> bool:
    client = _client.client_for(None)
    return await _client.as_deployment(_client.tick_for_hint(client, store, bridge))


def webhook_routes(
    prefix: str,
    store: Callable[[], BaseStore],
    *,
    wake: Waker = platform_wake,
    sources: Mapping[str, Verifier] = WEBHOOK_SOURCES,
) -> list[BaseRoute]:
    """`POST {prefix}/webhooks/{provider}`: the URL to register with the provider."""

    async def webhook(request: Request) -> Response:
        status, answer = await receive_webhook(
            request.path_params["provider"],
            await request.body(),
            dict(request.headers),
            store=store(),
            wake=wake,
            sources=sources,
        )
        return JSONResponse(answer, status_code=status, headers={"Cache-Control": "no-store"})

    return [Route(f"{prefix}/webhooks/{{provider}}", webhook, methods=["POST"])]
