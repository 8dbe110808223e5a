"""`wrap_anthropic`: an `AsyncAnthropic` whose `messages.create` is answered through the bridge."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anthropic
from anthropic.types import Message

from batch_bridge.providers._dropin import Delegate, DropIn, WaitFunc, request_body

__all__ = ["BatchedAsyncAnthropic", "wrap_anthropic"]


class _Messages(Delegate):
    async def create(self, **kwargs: Any) -> Message:
        """Like `client.messages.create`, answered through Message Batches."""
        body = request_body(
            kwargs,
            omitted=(anthropic.NotGiven, anthropic.Omit),
            api="Message Batches (use messages.stream on the unwrapped client)",
        )
        reply = await self._owner._send(body)
        return reply if isinstance(reply, Message) else Message.construct(**reply)


class BatchedAsyncAnthropic(DropIn[anthropic.AsyncAnthropic]):
    """An `AsyncAnthropic` look-alike whose `messages.create` goes through a BatchBridge batcher.

    The call suspends the calling graph node until the batch answers and returns the SDK's
    `Message`; everything else is the real client.
    """

    def __init__(
        self,
        client: anthropic.AsyncAnthropic | None = None,
        *,
        batcher: str = "bridge",
        max_wait: float | timedelta | None = None,
        _wait: WaitFunc | None = None,
    ) -> None:
        super().__init__(client, batcher=batcher, wait=_wait, max_wait=max_wait)
        self.messages = _Messages(self, ("messages",))

    def _new_client(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic()


def wrap_anthropic(
    client: anthropic.AsyncAnthropic | None = None,
    *,
    batcher: str = "bridge",
    max_wait: float | timedelta | None = None,
) -> BatchedAsyncAnthropic:
    """Wrap an `AsyncAnthropic` client so `messages.create` is answered through `batcher`.

    With `max_wait` (seconds or a timedelta), a call its batch has not answered by then is
    answered through the provider's normal API (the bridge's `fallback=`)."""
    return BatchedAsyncAnthropic(client, batcher=batcher, max_wait=max_wait)
