"""How the OpenAI adapter retries calls that create things: like the SDK, never blindly.

After a failure that may have created the batch or file anyway (a timeout, a dropped
connection, a 5xx), it waits the SDK's backoff (or `retry-after`) and looks for the thing
before creating it again.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import openai
from openai.types import Batch

from batch_bridge.providers._handles import Part
from batch_bridge.providers.openai._lookup import Earlier, tags

__all__ = ["create_batch", "create_once", "may_have_acted", "retry_delay"]

_T = TypeVar("_T")

_MAX_RETRY_AFTER_S = 120.0
"""The SDK does not retry when the server asks to wait longer than this; neither do we."""


def _retry_after_s(headers: Mapping[str, str]) -> float | None:
    for name, divisor in (("retry-after-ms", 1000), ("retry-after", 1)):
        try:
            return float(headers[name]) / divisor
        except (KeyError, ValueError):
            continue
    return None


def retry_delay(exc: openai.APIError, tries: int) -> float | None:
    """Seconds to wait before trying a call again, as the SDK would; None: it would not."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        headers = exc.response.headers
        if headers.get("x-should-retry") == "false":
            return None
        if status not in (408, 409, 429) and status < 500:
            return None
        wait_s = _retry_after_s(headers)
        if wait_s is not None and math.isfinite(wait_s):
            if wait_s > _MAX_RETRY_AFTER_S:
                return None
            if wait_s > 0:
                return wait_s
    elif not isinstance(exc, openai.APIConnectionError):
        return None
    return min(0.5 * 2.0**tries, 8.0) * (1 - 0.25 * random.random())


def may_have_acted(exc: openai.APIError) -> bool:
    """Whether the provider may have carried out a create call that failed this way.

    A 429 refuses the call before it runs; a timeout, a dropped connection or a 5xx may
    come after the provider created the batch or file.
    """
    return not (isinstance(exc, openai.APIStatusError) and exc.status_code == 429)


async def create_once(
    quiet: openai.AsyncOpenAI,
    retries: int,
    create: Callable[[openai.AsyncOpenAI], Awaitable[_T]],
    find: Callable[[], Awaitable[_T | None]],
) -> _T:
    """`create` with `quiet` (a client without SDK retries), tried again up to `retries`
    times as the SDK would, but never blindly.

    After a failure that may have created the thing anyway, it waits, then `find`s; if
    found, that is the answer; if the look itself fails, the original error is raised
    rather than risking a duplicate.
    """
    tries = 0
    while True:
        try:
            return await create(quiet)
        except (openai.APIConnectionError, openai.APIStatusError) as exc:
            delay = retry_delay(exc, tries)
            again = delay is not None and tries < retries
            if again and delay:
                await asyncio.sleep(delay)
            if delay is not None and may_have_acted(exc):
                try:
                    found = await find()
                except openai.APIError:
                    raise exc from None
                if found is not None:
                    return found
            if not again:
                raise
            tries += 1


async def create_batch(
    quiet: openai.AsyncOpenAI,
    retries: int,
    earlier: Earlier,
    part: Part,
    *,
    window: str,
    metadata: Mapping[str, str],
    output_expires_after: Mapping[str, Any] | None = None,
) -> Batch:
    """The batch of this part and attempt: found, or created once from its input file."""
    origin, attempt = part["origin"], part["attempt"]
    found = await earlier.batch(origin, attempt)
    if found is not None:
        return found

    lifetime: dict[str, Any] = (
        {} if output_expires_after is None else {"output_expires_after": output_expires_after}
    )

    async def create(client: openai.AsyncOpenAI) -> Batch:
        return await client.batches.create(
            completion_window=window,  # type: ignore[arg-type]
            endpoint=part["url"],
            input_file_id=part["file"],
            metadata={**metadata, **tags(earlier.key, origin, attempt)},
            **lifetime,
        )

    return await create_once(
        quiet, retries, create, lambda: earlier.batch(origin, attempt, fresh=True)
    )
