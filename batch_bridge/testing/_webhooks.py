"""The emulator's batch webhooks, signed as OpenAI and Gemini sign them (Standard Webhooks).

Opt in with a target URL and a `whsec_` secret. A watcher task reads every batch's state
off the emulator's clock (a fake clock works too) and posts one event per batch, the moment
it ends: OpenAI's `batch.completed`, `.failed`, `.expired`, `.cancelled` about `data.id`
(`openai_event`), or Gemini's `batch.succeeded`, `.failed`, `.expired`, `.cancelled` about
the job name in `data.id` (`gemini_event`). Headers `webhook-id`, `webhook-timestamp` (real
seconds: verifiers refuse any more than 5 minutes off), and `webhook-signature:
v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

__all__ = ["WebhookSender", "gemini_event", "new_secret", "openai_event", "sign_webhook"]

WATCH_EVERY_S = 0.02

Ended = Callable[[set[str]], Iterable[tuple[str, str]]]
"""(batch id, event type) of every batch that has ended so far, but those in the set given
(already told)."""
EventBody = Callable[[str, str], dict[str, Any]]
"""The event posted about a batch: (batch id, event type) -> JSON body."""


def new_secret() -> str:
    """A fresh secret in OpenAI's format."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def sign_webhook(
    secret: str, body: bytes, *, webhook_id: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for `body`."""
    webhook_id = webhook_id or f"wh_{uuid.uuid4().hex}"
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    key = (
        base64.b64decode(secret.removeprefix("whsec_"))
        if secret.startswith("whsec_")
        else (secret.encode())
    )
    mac = hmac.new(key, f"{webhook_id}.{stamp}.".encode() + body, hashlib.sha256)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(mac.digest()).decode(),
        "content-type": "application/json",
    }


def openai_event(batch_id: str, kind: str) -> dict[str, Any]:
    """OpenAI's event shape (`openai.types.webhooks`)."""
    created = int(time.time())
    event_id = f"evt_{uuid.uuid4().hex}"
    return {
        "id": event_id,
        "object": "event",
        "created_at": created,
        "type": kind,
        "data": {"id": batch_id},
    }


def gemini_event(job_name: str, kind: str) -> dict[str, Any]:
    """Gemini's thin event: the type, a schema version, when, and the job in `data.id`."""
    stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {"type": kind, "version": "v1", "timestamp": stamp, "data": {"id": job_name}}


@dataclass
class WebhookSender:
    """Posts a signed event when each batch ends; `sent` keeps every delivery (body,
    headers, the answer's status) so a test can replay or forge one."""

    url: str | None = None
    secret: str | None = None
    sent: list[dict[str, Any]] = field(default_factory=list)
    transport: httpx.AsyncBaseTransport | None = None
    """Where posts go instead of the network (`httpx.ASGITransport(app=...)` in-process)."""
    event: EventBody = openai_event
    _notified: set[str] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None

    def watch(self, ended: Ended) -> None:
        """Start the watcher in the running loop (once per loop), if webhooks are on."""
        if self.url is None or self.secret is None:
            return
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self._task.get_loop() is loop:
            return
        self._task = loop.create_task(self._watch(ended))

    async def _watch(self, ended: Ended) -> None:
        async with httpx.AsyncClient(timeout=10, transport=self.transport) as http:
            while True:
                fresh = list(ended(self._notified))
                self._notified.update(batch_id for batch_id, _ in fresh)
                for batch_id, kind in fresh:
                    await self._send(http, batch_id, kind)
                await asyncio.sleep(WATCH_EVERY_S)

    async def _send(self, http: httpx.AsyncClient, batch_id: str, kind: str) -> None:
        assert self.url is not None and self.secret is not None
        body = json.dumps(self.event(batch_id, kind)).encode()
        headers = sign_webhook(self.secret, body)
        delivery: dict[str, Any] = {
            "batch_id": batch_id,
            "type": kind,
            "body": body,
            "headers": headers,
            "sent_at": time.time(),
        }
        try:
            answer = await http.post(self.url, content=body, headers=headers)
            delivery["status"] = answer.status_code
        except httpx.HTTPError as exc:
            delivery["status"] = None
            delivery["error"] = repr(exc)
        self.sent.append(delivery)
