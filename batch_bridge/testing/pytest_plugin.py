"""Pytest fixtures for your own tests, registered automatically when BatchBridge is installed.

- `batch_api_emulator`: an OpenAI Batch API emulator on a free loopback port (per session).
- `openai_env`: points OPENAI_BASE_URL / OPENAI_API_KEY at it for one test, so code that
  builds `AsyncOpenAI()` from the environment (and servers it starts) talks to the emulator.
- `anthropic_env`: the same for ANTHROPIC_BASE_URL / ANTHROPIC_API_KEY and `AsyncAnthropic()`.
- `gemini_env`: the same for GOOGLE_GEMINI_BASE_URL / GEMINI_API_KEY and `genai.Client()`.
- `fake_provider`: a fresh in-process `FakeProvider` for one test
  (`Bridge(submit=fake_provider.submit, poll=fake_provider.poll)`), echoing each item at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the emulator needs the [testing] extra: import it only when used
    from batch_bridge.testing.fake import FakeProvider
    from batch_bridge.testing.server import EmulatorServer


@pytest.fixture(scope="session")
def batch_api_emulator() -> Iterator[EmulatorServer]:
    from batch_bridge.testing.emulator import Emulator
    from batch_bridge.testing.server import EmulatorServer

    with EmulatorServer(Emulator(in_progress_s=1.0)) as server:
        yield server


@pytest.fixture
def openai_env(
    batch_api_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> EmulatorServer:
    monkeypatch.setenv("OPENAI_BASE_URL", batch_api_emulator.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "emulator")
    return batch_api_emulator


@pytest.fixture
def anthropic_env(
    batch_api_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> EmulatorServer:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", batch_api_emulator.anthropic_base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "emulator")
    return batch_api_emulator


@pytest.fixture
def gemini_env(
    batch_api_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> EmulatorServer:
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)  # it would win over GEMINI_API_KEY
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", batch_api_emulator.gemini_base_url)
    monkeypatch.setenv("GEMINI_API_KEY", "emulator")
    return batch_api_emulator


@pytest.fixture
def fake_provider() -> FakeProvider:
    from batch_bridge.testing.fake import FakeProvider

    return FakeProvider()
