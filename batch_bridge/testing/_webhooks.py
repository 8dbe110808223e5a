"""The emulator's batch webhooks, signed as OpenAI signs them (Standard Webhooks).

Opt in with a target URL and a `whsec_` secret. A watcher task reads every batch's status
off the emulator's clock (a fake clock works too) and posts `batch.completed`,
`batch.failed`, `batch.expired` or `batch.cancelled` once per batch, the moment it ends:
headers `webhook-id`, `webhook-timestamp` (real seconds: the SDK refuses any more than 5
minutes off), and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from batch_bridge.testing._batch import BatchRecord

__all__ = ["WebhookSender", "new_secret", "sign_webhook"]

WATCH_EVERY_S = 0.02
ENDINGS = {"completed", "failed", "expired", "cancelled"}


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


@dataclass
class WebhookSender:
    """Posts a signed event when each batch ends; `sent` keeps every delivery (body,
    headers, the answer's status) so a test can replay or forge one."""

    url: str | None = None
    secret: str | None = None
    sent: list[dict[str, Any]] = field(default_factory=list)
    transport: httpx.AsyncBaseTransport | None = None
    """Where posts go instead of the network (`httpx.ASGITransport(app=...)` in-process)."""
    _notified: set[str] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None

    def watch(
        self,
        batches: Callable[[], Mapping[str, BatchRecord]],
        clock: Callable[[], float],
        lock: threading.Lock,
    ) -> None:
        """Start the watcher in the running loop (once per loop), if webhooks are on."""
        if self.url is None or self.secret is None:
            return
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self._task.get_loop() is loop:
            return
        self._task = loop.create_task(self._watch(batches, clock, lock))

    async def _watch(
        self,
        batches: Callable[[], Mapping[str, BatchRecord]],
        clock: Callable[[], float],
        lock: threading.Lock,
    ) -> None:
        async with httpx.AsyncClient(timeout=10, transport=self.transport) as http:
            while True:
                with lock:
                    now = clock()
                    ended = [
                        (record.id, status)
                        for record in batches().values()
                        if record.id not in self._notified
                        and (status := record.status(now)) in ENDINGS
                        and (status == "failed" or record.files_due(now))
                    ]
                    self._notified.update(batch_id for batch_id, _ in ended)
                for batch_id, status in ended:
                    await self._send(http, batch_id, status)
                await asyncio.sleep(WATCH_EVERY_S)

    async def _send(self, http: httpx.AsyncClient, batch_id: str, status: str) -> None:
        assert self.url is not None and self.secret is not None
        event = {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "created_at": int(time.time()),
            "type": f"batch.{status}",
            "data": {"id": batch_id},
        }
        body = json.dumps(event).encode()
        headers = sign_webhook(self.secret, body)
        delivery: dict[str, Any] = {
            "batch_id": batch_id,
            "type": event["type"],
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
