"""The look for what earlier, interrupted calls for one key left at OpenAI.

Every input file is named, and every batch tagged with metadata, after the handle's key,
the part and the attempt; before creating one the adapter looks for it, so a retried
`submit` or a replayed poll adopts what the interrupted call created.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import openai
from openai.pagination import AsyncCursorPage
from openai.types import Batch, FileObject

from batch_bridge.providers._packing import file_pattern

__all__ = ["KEY_TAG", "MAX_USER_METADATA", "Earlier", "recent", "tags"]

_T = TypeVar("_T")

KEY_TAG = "batch_bridge_key"
PART_TAG = "batch_bridge_part"
ATTEMPT_TAG = "batch_bridge_attempt"
MAX_USER_METADATA = 16 - len((KEY_TAG, PART_TAG, ATTEMPT_TAG))
"""OpenAI allows 16 metadata pairs per batch; the adapter adds the three tags above."""

_BATCH_PAGE = 100
_FILE_PAGE = 1_000
_MAX_LIST_PAGES = 10
"""How far a look for earlier batches (100 a page) and files (1,000 a page) reads at most."""


def tags(key: str, origin: int, attempt: int) -> dict[str, str]:
    """The metadata naming the batch of part `origin`, attempt `attempt`, of key `key`."""
    return {KEY_TAG: key, PART_TAG: str(origin), ATTEMPT_TAG: str(attempt)}


async def recent(first: AsyncCursorPage[_T], lookback_s: float) -> list[_T]:
    """A newest-first list read as far back as `lookback_s` and `_MAX_LIST_PAGES` allow."""
    items: list[_T] = []
    newest: int | None = None
    pages = 0
    async for page in first.iter_pages():
        for item in page.data:
            created = int(getattr(item, "created_at", 0))
            newest = created if newest is None else newest
            if created < newest - lookback_s:
                return items
            items.append(item)
        pages += 1
        if pages >= _MAX_LIST_PAGES:
            break
    return items


class Earlier:
    """What earlier, interrupted calls for one key left at the provider, listed once per call.

    Batches are matched by their tags (key, part, attempt), input files by name. With
    `eager`, the adapter looks before every create (a retried submit, any poll); without,
    only after a create failed in a way that may have created the thing anyway.
    """

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        key: str,
        *,
        eager: bool,
        lookback_s: float,
        delete_file: Callable[[str], Awaitable[bool]],
    ) -> None:
        self._client = client
        self._lookback_s = lookback_s
        self._delete_file = delete_file
        self.key = key
        self.eager = eager
        self._batches: list[Batch] | None = None
        self._files: list[FileObject] | None = None

    async def all_batches(self, *, fresh: bool = False) -> list[Batch]:
        """Batches tagged with this key, oldest first."""
        if fresh or self._batches is None:
            first = await self._client.batches.list(limit=_BATCH_PAGE)
            listed = await recent(first, self._lookback_s)
            self._batches = [
                batch
                for batch in reversed(listed)
                if (batch.metadata or {}).get(KEY_TAG) == self.key
            ]
        return self._batches

    async def all_files(self, *, fresh: bool = False) -> list[FileObject]:
        """Input files named after this key, oldest first."""
        if fresh or self._files is None:
            first = await self._client.files.list(purpose="batch", order="desc", limit=_FILE_PAGE)
            listed = await recent(first, self._lookback_s)
            pattern = file_pattern(self.key)
            self._files = [f for f in reversed(listed) if pattern.fullmatch(f.filename)]
        return self._files

    async def batch(self, origin: int, attempt: int, *, fresh: bool = False) -> Batch | None:
        """The first batch created for this part and attempt, if any."""
        if not (self.eager or fresh):
            return None
        wanted = tags(self.key, origin, attempt)
        for batch in await self.all_batches(fresh=fresh):
            metadata = batch.metadata or {}
            if all(metadata.get(tag) == value for tag, value in wanted.items()):
                return batch
        return None

    async def file(self, name: str, size: int, *, fresh: bool = False) -> FileObject | None:
        """The first uploaded file of this name and size; ones of another size are deleted."""
        if not (self.eager or fresh):
            return None
        found = None
        for uploaded in await self.all_files(fresh=fresh):
            if uploaded.filename != name:
                continue
            if uploaded.bytes == size and uploaded.status != "error":
                if found is None:
                    found = uploaded
            else:
                await self._delete_file(uploaded.id)
        return found
