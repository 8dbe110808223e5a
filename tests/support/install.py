"""Install what the production-like engine (`tests.support.prodengine`) needs, if missing.

Run from the repository root, in the project's environment: `python -m tests.support.install`.
It installs langgraph-runtime-pg and langgraph-checkpoint-postgres into this interpreter's
environment with `--no-deps` (the runtime pins langgraph-api==0.11.1, which would downgrade
the installed one), their ordinary dependencies (the `prod` extra of pyproject.toml) and,
as root on Debian, Redis through `apt-get update && apt-get install -y redis-server`.
PostgreSQL 15 must already be on the machine. It lives here, not in the library: the
installed package never runs pip or apt-get.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys

from tests.support.prodengine import PG_BIN

__all__ = [
    "CHECKPOINT_POSTGRES_VERSION",
    "PROD_REQUIREMENTS",
    "RUNTIME_PG_VERSION",
    "ensure_prod_engine_installed",
]

# langgraph-runtime-pg pins langgraph-api==0.11.1 (end of life); with the installed
# langgraph-api 0.16.7 it works when installed without its dependencies.
RUNTIME_PG_VERSION = "0.11.1.post1"
CHECKPOINT_POSTGRES_VERSION = "3.1.0"
# The runtime's ordinary dependencies; keep in sync with the `prod` extra in pyproject.toml.
PROD_REQUIREMENTS = [
    "alembic>=1.14",
    "asyncpg>=0.29",
    "psycopg[binary]>=3.3.4",
    "psycopg-pool>=3.2",
    "redis>=5.0",
    "sqlalchemy[asyncio]>=2.0.51",
]
_PROD_MODULES = [
    "langgraph_runtime_pg",
    "langgraph.checkpoint.postgres",
    "alembic",
    "asyncpg",
    "psycopg",
    "psycopg_pool",
    "redis",
    "sqlalchemy",
]


def _missing_modules() -> list[str]:
    missing = []
    for name in _PROD_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except ModuleNotFoundError:  # a parent package is missing
            missing.append(name)
    return missing


def _run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(cmd)}` failed ({done.returncode}):\n{done.stdout[-2000:]}"
            f"\n{done.stderr[-2000:]}"
        )


def _install_python_parts() -> None:
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    _run([*pip, *PROD_REQUIREMENTS])
    _run(
        [
            *pip,
            "--no-deps",
            f"langgraph-runtime-pg=={RUNTIME_PG_VERSION}",
            f"langgraph-checkpoint-postgres=={CHECKPOINT_POSTGRES_VERSION}",
        ]
    )
    importlib.invalidate_caches()
    if missing := _missing_modules():
        raise RuntimeError(f"still not importable after pip install: {missing}")


def _install_redis() -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(
            "redis-server is not on PATH; install it (e.g. `apt-get install -y "
            "redis-server` as root) and try again"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update"], env=env)
    _run(["apt-get", "install", "-y", "redis-server"], env=env)


def ensure_prod_engine_installed() -> None:
    """Install what `ProdEngine` needs and is missing; raise when PostgreSQL is absent."""
    if _missing_modules():
        _install_python_parts()
    if shutil.which("redis-server") is None:
        _install_redis()
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(
            f"PostgreSQL binaries not found in {PG_BIN}; install PostgreSQL 15 or set "
            "BATCH_BRIDGE_PG_BIN to the directory holding initdb and postgres"
        )


if __name__ == "__main__":
    ensure_prod_engine_installed()
    print("production engine ready: langgraph-runtime-pg, redis-server, PostgreSQL")
