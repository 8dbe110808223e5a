"""Stopping and clearing away what a handle left at OpenAI: `cancel` and `release`."""

from __future__ import annotations

import openai

from batch_bridge.providers._handles import Handle
from batch_bridge.providers.openai._files import Files
from batch_bridge.providers.openai._lookup import Earlier
from batch_bridge.providers.openai._rows import CANCELLABLE

__all__ = ["cancel", "release"]


async def cancel(client: openai.AsyncOpenAI, state: Handle, earlier: Earlier, files: Files) -> None:
    """Cancel the handle's batches still running, named or found by tag; delete its inputs."""
    listed = {batch.id: batch.status for batch in await earlier.all_batches()}
    named = {p["batch"] for p in state["parts"] if p["state"] == "running" and p["batch"]}
    for batch_id in sorted(named | set(listed)):
        status = listed.get(batch_id)
        if status is None:
            try:
                status = (await client.batches.retrieve(batch_id)).status
            except openai.NotFoundError:
                continue
        if status not in CANCELLABLE:
            continue
        try:
            await client.batches.cancel(batch_id)
        except (openai.NotFoundError, openai.BadRequestError):
            continue  # gone, or refused for good: nothing left to stop
        except openai.ConflictError:
            # Transient, unless the batch ended between the look and the cancel.
            if (await client.batches.retrieve(batch_id)).status in CANCELLABLE:
                raise
    ids = {p["file"] for p in state["parts"] if p["file"]}
    ids.update(uploaded.id for uploaded in await earlier.all_files())
    for file_id in sorted(ids):
        await files.delete(file_id, strict=True)


async def release(client: openai.AsyncOpenAI, state: Handle, files: Files) -> None:
    """Delete every file of the handle's batches: inputs, outputs and errors."""
    ids = {f for part in state["parts"] for f in (part["file"], part["out"], part.get("err")) if f}
    for part in state["parts"]:
        for batch_id in part["batches"]:
            try:
                batch = await client.batches.retrieve(batch_id)
            except openai.NotFoundError:
                continue
            found = (batch.input_file_id, batch.output_file_id, batch.error_file_id)
            ids.update(f for f in found if f)
    for file_id in sorted(ids):
        await files.delete(file_id, strict=True)
