"""Profiles of OpenAI-compatible batch services: `OpenAIBatch(profile=...)` checks its
settings and items against one, and the emulator behaves like one, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from batch_bridge.errors import BatchItemError, ConfigError
from batch_bridge.providers._profiles import PROFILES, window_hours
from batch_bridge.providers.openai import (
    AZURE_OPENAI,
    GROQ,
    OPENAI,
    TOGETHER,
    BatchProfile,
    OpenAIBatch,
)
from batch_bridge.testing import Emulator, EmulatorServer
from tests.unit.adapter_helpers import chat, finish


def embed(text: str) -> dict[str, Any]:
    return {"url": "/v1/embeddings", "body": {"model": "m", "input": text}}


@pytest.fixture
def groq() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(profile=GROQ, in_progress_s=0.05), port=0) as server:
        yield server


def test_window_hours_reads_hours_and_days() -> None:
    assert [window_hours(w) for w in ("24h", "7d", "48h", "0h", "1w", "24")] == [
        24,
        168,
        48,
        None,
        None,
        None,
    ]


@pytest.mark.parametrize(
    ("profile", "window"),
    [(OPENAI, "48h"), (GROQ, "8d"), (GROQ, "12h"), (TOGETHER, "7d"), (AZURE_OPENAI, "1d2h")],
)
def test_a_window_the_service_refuses_fails_when_the_adapter_is_built(
    profile: BatchProfile, window: str
) -> None:
    with pytest.raises(ConfigError, match=f"{profile.name} accepts completion_window"):
        OpenAIBatch(profile=profile, completion_window=window)


def test_file_limits_default_to_the_profile_and_may_only_be_lowered() -> None:
    together = OpenAIBatch(profile=TOGETHER)
    assert (together.max_requests_per_file, together.max_bytes_per_file) == (50_000, 100 << 20)
    assert OpenAIBatch(profile=TOGETHER, max_bytes_per_file=1 << 20).max_bytes_per_file == 1 << 20
    with pytest.raises(ConfigError, match="over Together's limit"):
        OpenAIBatch(profile=TOGETHER, max_bytes_per_file=200 << 20)
    with pytest.raises(ConfigError, match="BatchProfile"):
        OpenAIBatch(profile="groq")  # type: ignore[arg-type]
    assert set(PROFILES.values()) == {OPENAI, AZURE_OPENAI, GROQ, TOGETHER}


def test_a_profile_names_only_known_endpoints() -> None:
    with pytest.raises(ValueError, match="endpoints"):
        BatchProfile(name="x", endpoints=("/v1/completions",))


async def test_groq_refuses_a_non_chat_item_alone_before_any_upload(
    groq: EmulatorServer,
) -> None:
    async with openai.AsyncOpenAI(base_url=groq.base_url, api_key="t", max_retries=0) as client:
        adapter = OpenAIBatch(client, profile=GROQ, completion_window="7d")
        results = await finish(adapter, await adapter.submit([chat("a"), embed("b"), chat("c")]))

        refused = results[1]
        assert isinstance(refused, BatchItemError) and refused.code == "unsupported_endpoint"
        assert "Groq batches run only /v1/chat/completions" in str(refused)
        assert [r["choices"][0]["message"]["content"] for r in (results[0], results[2])] == [
            "Echo: a",
            "Echo: c",
        ]
        stats = groq.emulator.stats()
        assert stats["files_uploaded"] == 1
        (batch,) = (await client.batches.list()).data
        assert batch.completion_window == "7d"


async def test_the_groq_emulator_refuses_what_groq_refuses(groq: EmulatorServer) -> None:
    async with openai.AsyncOpenAI(base_url=groq.base_url, api_key="t", max_retries=0) as client:
        uploaded = await client.files.create(file=("x.jsonl", b"{}\n"), purpose="batch")
        with pytest.raises(openai.BadRequestError, match="endpoint"):
            await client.batches.create(
                input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
            )
        with pytest.raises(openai.BadRequestError, match="completion_window"):
            await client.batches.create(
                input_file_id=uploaded.id,
                endpoint="/v1/chat/completions",
                completion_window="8d",  # type: ignore[arg-type]
            )


async def test_the_azure_emulator_serves_under_openai_and_never_expires() -> None:
    emulator = Emulator(profile=AZURE_OPENAI, in_progress_s=0.3, expire_after_s=0.05)
    with EmulatorServer(emulator, port=0) as server:
        assert server.base_url.endswith("/openai/v1")
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="t") as client:
            adapter = OpenAIBatch(client, profile=AZURE_OPENAI)
            results = await finish(adapter, await adapter.submit([chat("late")]))
        assert results[0]["choices"][0]["message"]["content"] == "Echo: late"
        assert emulator.stats()["batches_by_status"]["completed"] == 1
