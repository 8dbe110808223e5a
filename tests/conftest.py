"""Shared fixtures: a real `langgraph dev` server factory and polling helpers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
E2E_GRAPHS = ROOT / "tests" / "e2e" / "graphs"
LANGGRAPH = str(Path(sys.executable).with_name("langgraph"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DevServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_dev_server(
    workdir: Path, graphs: dict[str, str], env: dict[str, str] | None = None, jobs: int = 10
) -> DevServer:
    """`langgraph dev` in `workdir` (its state and log stay there, outside the source tree)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = {"dependencies": [str(ROOT)], "graphs": graphs}
    (workdir / "langgraph.json").write_text(json.dumps(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / "server.log"
    process = subprocess.Popen(
        [
            LANGGRAPH,
            "dev",
            "--config",
            str(workdir / "langgraph.json"),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--no-browser",
            "--no-reload",
            "--n-jobs-per-worker",
            str(jobs),
        ],
        cwd=workdir,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "LANGGRAPH_API_URL": url, **(env or {})},
    )
    server = DevServer(url, process, log_path)
    deadline = time.time() + 120
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"langgraph dev exited early:\n{server.log()[-4000:]}")
        try:
            if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"langgraph dev did not answer in 120 s:\n{server.log()[-4000:]}")


def e2e_graphs() -> dict[str, str]:
    bridges = str(E2E_GRAPHS / "bridges.py")
    callers = str(E2E_GRAPHS / "callers.py")
    names = ["bridge", "bridge_size", "bridge_age", "bridge_custom", "bridge_cron", "bridge_sync"]
    graphs = {name: f"{bridges}:{name}" for name in names}
    for name in ["agent", "parallel", "fanout", "sequential", "sync_agent", "bad"]:
        graphs[name] = f"{callers}:{name}"
    return graphs


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    server = start_dev_server(tmp_path_factory.mktemp("dev"), e2e_graphs())
    yield server
    server.stop()
