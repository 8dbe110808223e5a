"""Run a real `langgraph dev` server in a subprocess, for tests and the demo.

Its state (`.langgraph_api/`) and log live in `workdir`, outside any watched source tree.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

__all__ = ["DevServer", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DevServer:
    """`langgraph dev --no-browser --no-reload` on a free port; a context manager.

    `graphs` maps graph names to `path.py:variable` specs; relative paths are resolved
    against `base_dir`. `jobs` is `--n-jobs-per-worker`: keep it above 1 because bridge
    ticks and caller runs wait on I/O. `auth` is a custom auth handler (`path.py:auth`);
    `http` is `langgraph.json`'s `http` section (its `app` a `path.py:app` or a module's
    `module:app`, such as `batch_bridge.http:app` for the status page).
    """

    def __init__(
        self,
        workdir: Path,
        graphs: dict[str, str],
        *,
        base_dir: Path | None = None,
        env: dict[str, str] | None = None,
        jobs: int = 10,
        start_timeout_s: float = 120.0,
        auth: str | None = None,
        http: dict[str, Any] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        base = Path(base_dir or Path.cwd()).resolve()
        self.graphs = {name: self._absolute(spec, base) for name, spec in graphs.items()}
        self.auth = None if auth is None else self._absolute(auth, base)
        self.http = dict(http or {})
        if ".py:" in self.http.get("app", ""):
            self.http["app"] = self._absolute(self.http["app"], base)
        self.env = env or {}
        self.jobs = jobs
        self.start_timeout_s = start_timeout_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def _absolute(spec: str, base: Path) -> str:
        path, _, variable = spec.rpartition(":")
        return f"{(base / path).resolve()}:{variable}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> DevServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "langgraph.json"
        settings: dict[str, object] = {"dependencies": ["."], "graphs": self.graphs}
        if self.auth is not None:
            settings["auth"] = {"path": self.auth}
        if self.http:
            settings["http"] = self.http
        config.write_text(json.dumps(settings))
        langgraph = str(Path(sys.executable).with_name("langgraph"))
        with self.log_path.open("wb") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [
                    langgraph,
                    "dev",
                    "--config",
                    str(config),
                    "--port",
                    str(self.port),
                    "--host",
                    "127.0.0.1",
                    "--no-browser",
                    "--no-reload",
                    "--n-jobs-per-worker",
                    str(self.jobs),
                ],
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "LANGGRAPH_API_URL": self.url, **self.env},
            )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"langgraph dev exited early:\n{self.log()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/ok", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"langgraph dev did not answer in {self.start_timeout_s}s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # like Ctrl-C: the server saves its state
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
