"""The OpenAI adapter's files: uploads found or made once, deletions, input lines read back."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import openai
from openai.types import Batch, FileObject

from batch_bridge.errors import ProviderError
from batch_bridge.providers._handles import Handle, Part
from batch_bridge.providers._packing import custom_id, file_name
from batch_bridge.providers._rows import decode_rows
from batch_bridge.providers._transient import is_transient
from batch_bridge.providers.openai._lookup import Earlier
from batch_bridge.providers.openai._retries import create_once

__all__ = ["Files"]


class Files:
    """File calls of one adapter; `client` and `quiet` give its SDK clients (made on first
    use; `quiet` without SDK retries)."""

    def __init__(
        self,
        client: Callable[[], openai.AsyncOpenAI],
        quiet: Callable[[], openai.AsyncOpenAI],
        expires_after: Mapping[str, Any] | None = None,
    ) -> None:
        self._client = client
        self._quiet = quiet
        self._lifetime: dict[str, Any] = (
            {} if expires_after is None else {"expires_after": dict(expires_after)}
        )

    async def upload(self, earlier: Earlier, name: str, content: bytes) -> str:
        """The id of an input file with this name and content: found, or uploaded now."""
        found = await earlier.file(name, len(content))
        if found is not None:
            return found.id

        async def create(client: openai.AsyncOpenAI) -> FileObject:
            return await client.files.create(
                file=(name, content, "application/jsonl"), purpose="batch", **self._lifetime
            )

        uploaded = await create_once(
            self._quiet(),
            self._client().max_retries,
            create,
            lambda: earlier.file(name, len(content), fresh=True),
        )
        return uploaded.id

    async def adopt_or_upload(self, earlier: Earlier, key: str, part: Part, content: bytes) -> None:
        """Adopt the batch an interrupted submit created for this part, or upload its file."""
        number = part["origin"]
        batch = await earlier.batch(number, 0)
        if batch is None:
            part["file"] = await self.upload(earlier, file_name(key, number, 0), content)
            return
        await self.check_adopted(batch, key, number, part["url"], len(content))
        part.update(state="running", batch=batch.id, file=batch.input_file_id)
        part["batches"].append(batch.id)

    async def delete(self, file_id: str, *, strict: bool = False) -> bool:
        """Delete a file; False if a later try might succeed where this one failed.

        A refusal is final (a file the provider will not delete is left alone); a transient
        failure returns False, or with `strict` raises, so that the caller may try again.
        """
        try:
            await self._client().files.delete(file_id)
        except openai.APIError as exc:
            if not is_transient(exc, openai):
                return True
            if strict:
                raise
            return False
        return True

    async def drop_inputs(self, state: Handle) -> None:
        """Delete the input files of ended parts, best effort.

        Safe because a part's input file is only read while it runs (to resubmit rows its
        batch left unfinished, or to retry it): by the time the bridge hands back a handle
        where the part is done or failed, a replayed poll can no longer need it.
        """
        for part in state["parts"]:
            ended = part["state"] in ("done", "failed")
            if ended and part["file"] and await self.delete(part["file"]):
                part["file"] = ""

    async def drop_uploads(self, parts: list[Part]) -> None:
        """Best effort: delete the input files of a submit that failed before any batch."""
        for part in parts:
            if part["file"] and part["state"] == "waiting":
                await self.delete(part["file"])

    async def input_lines(self, part: Part, key: str, ids: list[int]) -> dict[int, str] | None:
        """The request lines of these items in the part's input file; None if it is gone."""
        try:
            content = await self._client().files.content(part["file"])
        except openai.NotFoundError:
            return None
        held = await decode_rows(content.content)
        lines: dict[int, str] = {}
        for index in ids:
            row = held.get(custom_id(key, index))
            if row is not None:
                lines[index] = json.dumps(row, separators=(",", ":"), ensure_ascii=False)
        return lines

    async def check_adopted(self, batch: Batch, key: str, number: int, url: str, size: int) -> None:
        """Refuse to adopt a batch made from other requests than this submit's part."""
        try:
            held = await self._client().files.retrieve(batch.input_file_id)
        except openai.NotFoundError:
            held = None
        if batch.endpoint != url or (held is not None and held.bytes != size):
            found = f"{batch.endpoint} from {held.bytes if held else '?'} bytes"
            raise ProviderError(
                f"OpenAI already holds batch {batch.id} for key {key!r} part {number} "
                f"({found}), but this submit's part is {url} from {size} bytes; a retried "
                "submit must pass the same items, in the same order, with the same adapter "
                "settings",
                provider="openai",
                retryable=False,
            )
