"""Run stock `langgraph-api` on PostgreSQL + Redis with several worker processes.

`langgraph dev` runs one process on the in-memory runtime, and a SIGKILL loses its
checkpoints: crash recovery (a killed worker's run is re-run by another, so nodes run at
least once) and several workers sharing one database can only be tested here. This starts a
fresh PostgreSQL cluster, a Redis and `workers` uvicorn processes of `langgraph_api.server`
with `langgraph-runtime-pg` (LANGGRAPH_RUNTIME_EDITION=pg). Data and logs live in `workdir`.
Every process it starts is stopped by `stop()`, by a failed `start()` and at interpreter exit.

Install what it needs first: `python -m tests.support.install` (see there).

```python
with ProdEngine(tmp_path, {"agent": "graphs/agent.py:graph"}, workers=2) as engine:
    client = get_client(url=engine.url)
```
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from batch_bridge.testing.devserver import free_port

REPO = Path(__file__).resolve().parents[2]

__all__ = ["ProdEngine"]

# What `langgraph dev` hands uvicorn: without it the runtime's own (structlog) lines are lost.
_LOG_CONFIG = {
    "version": 1,
    "incremental": False,
    "disable_existing_loggers": False,
    "formatters": {"simple": {"class": "langgraph_api.logging.Formatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "simple",
            "stream": "ext://sys.stdout",
        }
    },
    "root": {"handlers": ["console"]},
}
PG_BIN = Path(os.environ.get("BATCH_BRIDGE_PG_BIN", "/usr/lib/postgresql/15/bin"))
DATABASE = "langgraph"


def _absolute(spec: str, base: Path) -> str:
    path, _, variable = spec.rpartition(":")
    return f"{(base / path).resolve()}:{variable}"


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the process and its children: each process started here leads its own session."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _stop_process(process: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    """Send `sig`, escalate to SIGKILL after `timeout`, reap the process, then SIGKILL whatever
    is left in its group (PostgreSQL backends, for one)."""
    if process is None:
        return
    if process.poll() is None:
        _signal_group(process, sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()
    _signal_group(process, signal.SIGKILL)


class ProdEngine:
    """PostgreSQL + Redis + `workers` langgraph-api processes on one database; a context
    manager.

    `graphs` maps graph names to `path.py:variable` specs; relative paths are resolved
    against `base_dir`. `jobs` is N_JOBS_PER_WORKER (job slots per worker). `heartbeat_s` is
    LG_BG_JOB_HEARTBEAT: a killed worker's run is re-run by another worker once its heartbeat
    key expires (2 heartbeats, at least 4 s) and a sweep notices; measured 6-11 s at 3 s, 4 s at
    1 s. The platform default of 120 s would make crash tests take minutes. `env` is added to
    every worker's environment and wins over the engine's own settings.
    """

    def __init__(
        self,
        workdir: Path,
        graphs: dict[str, str],
        *,
        workers: int = 2,
        env: dict[str, str] | None = None,
        jobs: int = 10,
        heartbeat_s: int = 3,
        base_dir: Path | None = None,
        start_timeout_s: float = 120.0,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workdir = Path(workdir).resolve()
        base = Path(base_dir or Path.cwd()).resolve()
        self.graphs = {name: _absolute(spec, base) for name, spec in graphs.items()}
        self.workers = workers
        self.env = env or {}
        self.jobs = jobs
        self.heartbeat_s = heartbeat_s
        self.start_timeout_s = start_timeout_s
        ports: set[int] = set()
        while len(ports) < workers + 2:  # free_port may hand out a port twice in a row
            ports.add(free_port())
        self.pg_port, self.redis_port, *self.ports = sorted(ports)
        self.urls = [f"http://127.0.0.1:{port}" for port in self.ports]
        self.database_uri = f"postgresql://postgres@127.0.0.1:{self.pg_port}/{DATABASE}"
        self.redis_uri = f"redis://127.0.0.1:{self.redis_port}/0"
        self.pg_log_path = self.workdir / "postgres.log"
        self.redis_log_path = self.workdir / "redis.log"
        self.timings: dict[str, float] = {}
        self._postgres: subprocess.Popen[bytes] | None = None
        self._redis: subprocess.Popen[bytes] | None = None
        self._workers: list[subprocess.Popen[bytes] | None] = [None] * workers
        self._pg_data: Path | None = None
        self._pg_tmp: Path | None = None  # a data dir outside workdir, removed on stop

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def pids(self) -> list[int | None]:
        """Worker process ids; None for a worker that is not running."""
        return [p.pid if p is not None and p.poll() is None else None for p in self._workers]

    @property
    def service_pids(self) -> list[int]:
        """PostgreSQL's and Redis's processes as started (their children hold the work)."""
        return [p.pid for p in (self._postgres, self._redis) if p is not None and p.poll() is None]

    def log_path(self, i: int) -> Path:
        return self.workdir / f"worker-{i}.log"

    def log(self, i: int) -> str:
        path = self.log_path(i)
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> ProdEngine:
        atexit.register(self.stop)
        began = time.monotonic()
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            for i in range(self.workers):
                self.log_path(i).unlink(missing_ok=True)
            self._start_postgres()
            self.timings["postgres_s"] = time.monotonic() - began
            mark = time.monotonic()
            self._start_redis()
            self.timings["redis_s"] = time.monotonic() - mark
            for i in range(self.workers):  # one by one: the first runs the migrations
                mark = time.monotonic()
                self._start_worker(i)
                self.timings[f"worker_{i}_s"] = time.monotonic() - mark
        except BaseException:
            self.stop()
            raise
        self.timings["total_s"] = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop workers, then Redis, then PostgreSQL; escalate to SIGKILL when slow."""
        atexit.unregister(self.stop)
        try:
            for i in range(self.workers):
                # A worker with a busy job slot waits up to BG_JOB_SHUTDOWN_GRACE_PERIOD_SECS.
                _stop_process(self._workers[i], signal.SIGTERM, timeout=10)
                self._workers[i] = None
        finally:
            try:
                _stop_process(self._redis, signal.SIGTERM, timeout=10)
                self._redis = None
            finally:
                _stop_process(self._postgres, signal.SIGINT, timeout=20)  # fast shutdown
                self._postgres = None
                if self._pg_tmp is not None:
                    shutil.rmtree(self._pg_tmp, ignore_errors=True)
                    self._pg_tmp = None

    def kill(self, i: int) -> None:
        """SIGKILL worker `i`, as a crash would: its running runs stay `running` until their
        heartbeat expires and another worker's sweep re-queues them."""
        process = self._workers[i]
        if process is None:
            return
        _signal_group(process, signal.SIGKILL)
        process.wait()
        self._workers[i] = None  # its pid may be reused: never signal it again

    def restart(self, i: int) -> None:
        """Start worker `i` again on its port (stopping it first if it still runs)."""
        _stop_process(self._workers[i], signal.SIGTERM, timeout=10)
        self._workers[i] = None
        self._start_worker(i)

    # PostgreSQL

    def _as_postgres(self) -> dict[str, Any]:
        """Popen arguments that drop root to the `postgres` user: PostgreSQL refuses root."""
        if os.geteuid() != 0:
            return {}
        return {"user": "postgres", "group": "postgres", "extra_groups": []}

    def _data_dir(self) -> Path:
        """`workdir/postgres`, unless the postgres user cannot reach workdir (pytest's
        temporary directories are 0700 root): then a temporary directory it owns."""
        data = self.workdir / "postgres"
        if os.geteuid() == 0:
            reachable = subprocess.run(
                ["test", "-x", str(self.workdir)], **self._as_postgres(), check=False
            )
            if reachable.returncode != 0:
                self._pg_tmp = Path(tempfile.mkdtemp(prefix="batch-bridge-pg-"))
                data = self._pg_tmp / "data"
        shutil.rmtree(data, ignore_errors=True)  # a fresh cluster every start
        data.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
            if self._pg_tmp is not None:
                shutil.chown(self._pg_tmp, "postgres", "postgres")
        data.chmod(0o700)
        return data

    def _pg_address(self) -> list[str]:
        return ["-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres"]

    def _start_postgres(self) -> None:
        self._pg_data = data = self._data_dir()
        with self.pg_log_path.open("wb") as log:
            initdb = subprocess.run(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(data),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                **self._as_postgres(),
                check=False,
            )
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{_tail(self.pg_log_path)}")
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\nlisten_addresses = '127.0.0.1'\n"
                f"port = {self.pg_port}\n"
                "max_connections = 300\n"
                "unix_socket_directories = ''\n"  # TCP only: no socket path length limits
            )
        with self.pg_log_path.open("ab") as log:
            self._postgres = subprocess.Popen(
                [str(PG_BIN / "postgres"), "-D", str(data)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._as_postgres(),
            )
        isready = [str(PG_BIN / "pg_isready"), "-q", *self._pg_address()]
        self._wait(
            "PostgreSQL",
            self._postgres,
            lambda: subprocess.run(isready, check=False).returncode == 0,
            self.pg_log_path,
        )
        created = subprocess.run(
            [str(PG_BIN / "createdb"), *self._pg_address(), DATABASE],
            capture_output=True,
            text=True,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(f"createdb failed: {created.stderr}")

    # Redis

    def _redis_pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _start_redis(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not on PATH: run `python -m tests.support.install`")
        with self.redis_log_path.open("wb") as log:
            self._redis = subprocess.Popen(
                [
                    server,
                    *("--bind", "127.0.0.1", "--port", str(self.redis_port)),
                    *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait("Redis", self._redis, self._redis_pong, self.redis_log_path)

    # Workers

    def worker_env(self, i: int) -> dict[str, str]:
        return {
            **os.environ,
            "LANGGRAPH_RUNTIME_EDITION": "pg",
            "DATABASE_URI": self.database_uri,
            "REDIS_URI": self.redis_uri,
            "LANGSERVE_GRAPHS": json.dumps(self.graphs),
            "LG_BG_JOB_HEARTBEAT": str(self.heartbeat_s),
            "LANGGRAPH_API_URL": self.urls[i],
            "LANGSMITH_TRACING": "false",
            "N_JOBS_PER_WORKER": str(self.jobs),
            "ALLOW_PRIVATE_NETWORK": "true",  # as `langgraph dev` sets it
            "LOG_COLOR": "false",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            **self.env,
        }

    @property
    def asgi_app(self) -> str:
        """The stock app; with custom routes, behind the lifespan fix of `pgapp`."""
        return (
            "tests.support.pgapp:app"
            if "LANGGRAPH_HTTP" in self.env
            else "langgraph_api.server:app"
        )

    def _start_worker(self, i: int) -> None:
        log_config = self.workdir / "logging.json"
        log_config.write_text(json.dumps(_LOG_CONFIG))
        with self.log_path(i).open("ab") as log:  # appended: a restart keeps the crash's log
            process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "uvicorn", self.asgi_app),
                    *("--host", "127.0.0.1", "--port", str(self.ports[i])),
                    *("--no-access-log", "--log-config", str(log_config)),
                ],
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.worker_env(i),
                start_new_session=True,
            )
        self._workers[i] = process
        url = self.urls[i]

        def ok() -> bool:
            try:
                return httpx.get(f"{url}/ok", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        self._wait(f"worker {i}", process, ok, self.log_path(i))

    def _wait(
        self,
        name: str,
        process: subprocess.Popen[bytes],
        ready: Callable[[], bool],
        log: Path,
    ) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited early ({process.returncode}):\n{_tail(log)}")
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not come up in {self.start_timeout_s}s:\n{_tail(log)}")

    def __enter__(self) -> ProdEngine:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
