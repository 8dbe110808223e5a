"""OpenAI file lifetimes and the emulator's batch webhooks, over the real `openai` SDK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest

from batch_bridge.errors import ConfigError
from batch_bridge.providers.openai import OpenAIBatch
from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.testing._webhooks import new_secret
from batch_bridge.types import Pending

WEEK = 7 * 86400
SECRET = new_secret()


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    emulator = Emulator(
        in_progress_s=0.05, webhook_url="http://127.0.0.1:9/", webhook_secret=SECRET
    )
    with EmulatorServer(emulator, port=0) as running:
        yield running


@pytest.fixture
async def client(server: EmulatorServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0) as c:
        yield c


def chat(text: str) -> dict[str, Any]:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    return {"url": "/v1/chat/completions", "body": body}


async def tagged(client: openai.AsyncOpenAI, tag: str) -> Any:
    async for batch in client.batches.list():
        if (batch.metadata or {}).get("t") == tag:
            return batch
    raise AssertionError(f"no batch tagged {tag!r}")


async def run(adapter: OpenAIBatch, items: list[Any]) -> list[Any]:
    handle = await adapter.submit(items)
    for _ in range(200):
        result = await adapter.poll(handle)
        if isinstance(result, Pending):
            handle = result.handle
        elif result is not None:
            return list(result)
        await asyncio.sleep(0.02)
    raise AssertionError("the batch did not end")


async def test_input_and_output_files_expire_a_week_after_they_are_made(client):
    adapter = OpenAIBatch(client, retry_backoff_s=0, metadata={"t": "life"})
    await adapter.submit([chat("hi")])
    upload = await client.files.retrieve((await tagged(client, "life")).input_file_id)
    assert upload.expires_at == upload.created_at + WEEK
    await run(adapter, [chat("hi")])  # a second batch; the list shows the newest first
    output = await client.files.retrieve((await tagged(client, "life")).output_file_id or "")
    assert output.expires_at == output.created_at + WEEK


async def test_no_lifetime_keeps_the_providers_default(client):
    adapter = OpenAIBatch(client, retry_backoff_s=0, file_lifetime_s=None, metadata={"t": "d"})
    await adapter.submit([chat("hi")])
    batch = await tagged(client, "d")
    assert (await client.files.retrieve(batch.input_file_id)).expires_at is None


@pytest.mark.parametrize("lifetime", [60, 31 * 86400, 3600.5, True])
def test_a_lifetime_outside_the_providers_range_is_refused(lifetime):
    with pytest.raises(ConfigError, match="file_lifetime_s must be whole seconds"):
        OpenAIBatch(file_lifetime_s=lifetime)


async def test_the_emulator_refuses_a_bad_output_expiry(client):
    upload = await client.files.create(
        file=("x.jsonl", b"{}\n", "application/jsonl"), purpose="batch"
    )
    with pytest.raises(openai.BadRequestError, match="between 3600 and 2592000"):
        await client.batches.create(
            completion_window="24h",
            endpoint="/v1/chat/completions",
            input_file_id=upload.id,
            output_expires_after={"anchor": "created_at", "seconds": 10},
        )


async def test_the_emulator_signs_a_webhook_as_each_batch_ends(client, server):
    await run(OpenAIBatch(client, retry_backoff_s=0, metadata={"t": "hook"}), [chat("hi")])
    batch = await tagged(client, "hook")
    sent = server.emulator.webhooks.sent

    async def delivered() -> dict[str, Any]:
        while not any(d["batch_id"] == batch.id for d in sent):
            await asyncio.sleep(0.02)
        return next(d for d in sent if d["batch_id"] == batch.id)

    delivery = await asyncio.wait_for(delivered(), 5)
    verifier = openai.OpenAI(api_key="unused", webhook_secret=SECRET)
    event = verifier.webhooks.unwrap(delivery["body"], delivery["headers"])
    assert (event.type, event.data.id) == ("batch.completed", batch.id)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        verifier.webhooks.unwrap(delivery["body"] + b" ", delivery["headers"])
