"""Every `bash` block of the README and of `docs/*.md`, run as written, so they cannot drift.

A block is preceded by a marker saying how to judge it:
`<!-- readme-test: exits -->` (runs from the repository root and exits 0),
`<!-- readme-test: serves URL -->` (starts something that must answer URL, then is stopped),
`<!-- readme-test: in-ci -->` (each line is run verbatim by `.ci/run`, which CI executes),
`<!-- readme-test: options -->` (long commands such as benchmarks, or Docker's: each line,
its comment dropped, is run with `--help` appended and must exit 0, and its help must name
every option the line uses, so the script and its options exist),
`<!-- readme-test: collects -->` (pytest commands: each line, with `--collect-only`, must
collect tests without error),
`<!-- readme-test: exits-with-bridge -->` (exits 0 while `langgraph dev` serves the root
config's bridge at `$BATCH_BRIDGE_URL`).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from batch_bridge.testing import DevServer
from tests.conftest import ROOT

BLOCK = re.compile(r"<!-- readme-test: (?P<how>[^>]*?) -->\s*```bash\n(?P<code>.*?)```", re.S)
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PUBLIC = [
    "batch_bridge",
    "batch_bridge.providers.openai",
    "batch_bridge.providers.anthropic",
    "batch_bridge.providers.gemini",
    "batch_bridge.integrations.langchain",
    "batch_bridge.testing",
    "batch_bridge.http",
]


def blocks() -> list[tuple[str, str, str]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        marked = [(page.name, m["how"].strip(), m["code"]) for m in BLOCK.finditer(text)]
        assert text.count("```bash") == len(marked), f"{page.name}: a bash block has no marker"
        found += marked
    return found


def shell_env() -> dict[str, str]:
    """The environment the README assumes: the installed package's scripts on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def serve(code: str, url: str, log: Path) -> None:
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["bash", "-c", code],
            cwd=ROOT,
            env=shell_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, f"exited early:\n{log.read_text()[-3000:]}"
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"{url} never answered:\n{log.read_text()[-3000:]}")
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def lines(code: str) -> list[str]:
    """Each command of a block, its comment dropped."""
    return [line.split("  #", 1)[0].strip() for line in code.strip().splitlines()]


def check_options(code: str) -> None:
    for command in lines(code):
        done = subprocess.run(
            ["bash", "-c", command + " --help"],
            cwd=ROOT,
            env=shell_env(),
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 0, command + "\n" + done.stderr.decode()[-3000:]
        text = done.stdout.decode()
        flags = [word.split("=")[0] for word in shlex.split(command) if word.startswith("-")]
        assert all(flag in text for flag in flags), f"{command}: not all of {flags} in its help"


def check_collects(code: str) -> None:
    for command in lines(code):
        done = subprocess.run(
            ["bash", "-c", command + " --collect-only -p no:cacheprovider"],
            cwd=ROOT,
            env=shell_env(),
            capture_output=True,
            timeout=300,
        )
        out = done.stdout.decode()
        assert done.returncode == 0 and " collected" in out, command + "\n" + out[-3000:]


def exits_with_bridge(code: str, workdir: Path) -> None:
    """Runs `code` while the root config's bridge (and its status routes) is served, at
    `$BATCH_BRIDGE_URL`."""
    config = json.loads((ROOT / "langgraph.json").read_text())
    env = {"OPENAI_API_KEY": "emulator", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    served = DevServer(workdir, config["graphs"], base_dir=ROOT, env=env, http=config.get("http"))
    with served as server:
        done = subprocess.run(
            ["bash", "-c", code],
            cwd=ROOT,
            env={**shell_env(), "BATCH_BRIDGE_URL": server.url},
            capture_output=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stdout.decode()[-3000:] + done.stderr.decode()[-3000:]


def test_api_at_a_glance_names_every_public_name() -> None:
    text = (ROOT / "README.md").read_text()
    glance = text[text.index("## API at a glance") :].split("\n## ", 1)[0]
    for module in PUBLIC:
        missing = [n for n in importlib.import_module(module).__all__ if f"`{n}" not in glance]
        assert not missing, f"README's API at a glance leaves out {module}: {missing}"


@pytest.mark.parametrize(
    ("page", "how", "code"), blocks(), ids=lambda v: str(v).split("\n")[0][:40]
)
def test_readme_block(page: str, how: str, code: str, tmp_path: Path) -> None:
    if how == "in-ci":
        ci = (ROOT / ".ci" / "run").read_text()
        for line in code.strip().splitlines():
            assert all(part.strip() in ci for part in line.split("&&")), line
    elif how == "exits":
        done = subprocess.run(
            ["bash", "-c", code], cwd=ROOT, env=shell_env(), capture_output=True, timeout=600
        )
        assert done.returncode == 0, done.stdout.decode()[-3000:] + done.stderr.decode()[-3000:]
    elif how == "options":
        check_options(code)
    elif how == "collects":
        check_collects(code)
    elif how == "exits-with-bridge":
        exits_with_bridge(code, tmp_path)
    elif how.startswith("serves "):
        serve(code, how.removeprefix("serves ").strip(), tmp_path / "block.log")
    else:
        raise AssertionError(f"unknown readme-test marker {how!r}")
