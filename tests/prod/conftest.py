"""Fixtures every production-engine test module shares; each module starts its own engine
(its `engine` fixture), which these use."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.prodengine import ProdEngine


@pytest.fixture(scope="module")
def fault_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where tests arm the kill points of `graphs/faults.py`; the workers read it."""
    path = tmp_path_factory.mktemp("faults")
    path.chmod(0o777)
    return path


@pytest.fixture
async def reviver(engine: ProdEngine) -> AsyncIterator[list[int]]:
    """Restart any worker that died, as the platform would; yields the restart log."""
    restarted: list[int] = []

    async def loop() -> None:
        while True:
            for i, pid in enumerate(engine.pids):
                if pid is None:
                    await asyncio.to_thread(engine.restart, i)
                    restarted.append(i)
            await asyncio.sleep(0.2)

    task = asyncio.create_task(loop())
    yield restarted
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    for i, pid in enumerate(engine.pids):
        if pid is None:
            engine.restart(i)
