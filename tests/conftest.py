"""Shared fixtures: real `langgraph dev` and production-engine factories, polling helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from batch_bridge.testing.devserver import DevServer
from tests.support.install import ensure_prod_engine_installed
from tests.support.prodengine import ProdEngine

ROOT = Path(__file__).resolve().parent.parent
E2E_GRAPHS = ROOT / "tests" / "e2e" / "graphs"


def start_dev_server(
    workdir: Path, graphs: dict[str, str], env: dict[str, str] | None = None, jobs: int = 10
) -> DevServer:
    return DevServer(workdir, graphs, env=env, jobs=jobs).start()


def start_prod_engine(
    workdir: Path,
    graphs: dict[str, str],
    env: dict[str, str] | None = None,
    workers: int = 2,
) -> ProdEngine:
    """PostgreSQL + Redis + `workers` langgraph-api processes; installs what is missing."""
    ensure_prod_engine_installed()
    return ProdEngine(workdir, graphs, workers=workers, env=env).start()


def e2e_graphs() -> dict[str, str]:
    bridges = str(E2E_GRAPHS / "bridges.py")
    callers = str(E2E_GRAPHS / "callers.py")
    names = [
        "bridge",
        "bridge_size",
        "bridge_age",
        "bridge_custom",
        "bridge_cron",
        "bridge_sync",
        "bridge_big_size",
        "bridge_big_age",
        "bridge_fresh",
    ]
    graphs = {name: f"{bridges}:{name}" for name in names}
    for name in [
        "agent",
        "parallel",
        "fanout",
        "sequential",
        "sync_agent",
        "async_batcher_agent",
        "bad",
    ]:
        graphs[name] = f"{callers}:{name}"
    return graphs


SHARED_SECRET = {"BATCH_BRIDGE_SECRET": "e2e-shared-secret"}
"""Set on the bridge's server and on the callers' other deployment (tests/e2e/test_remote.py)."""


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    env = {**SHARED_SECRET, "BATCH_BRIDGE_CALLBACK_URLS": "http://127.0.0.1:*"}
    server = start_dev_server(tmp_path_factory.mktemp("dev"), e2e_graphs(), env=env)
    yield server
    server.stop()
