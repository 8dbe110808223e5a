"""Every `bash` block of the README, run exactly as written, so the README cannot drift.

A block is preceded by a marker saying how to judge it:
`<!-- readme-test: exits -->` (runs from the repository root and exits 0),
`<!-- readme-test: serves URL -->` (starts something that must answer URL, then is stopped),
`<!-- readme-test: in-ci -->` (each line is run verbatim by `.ci/run`, which CI executes),
`<!-- readme-test: options -->` (long commands such as benchmarks: each line, its comment
dropped, is run with `--help` appended and must exit 0, so the script and its options exist).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT

BLOCK = re.compile(r"<!-- readme-test: (?P<how>[^>]*?) -->\s*```bash\n(?P<code>.*?)```", re.S)


def blocks() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    found = [(m["how"].strip(), m["code"]) for m in BLOCK.finditer(text)]
    assert text.count("```bash") == len(found), "every bash block needs a readme-test marker"
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


@pytest.mark.parametrize(("how", "code"), blocks(), ids=lambda v: str(v).split("\n")[0][:40])
def test_readme_block(how: str, code: str, tmp_path: Path) -> None:
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
        for line in code.strip().splitlines():
            command = line.split("#", 1)[0].strip() + " --help"
            done = subprocess.run(
                ["bash", "-c", command], cwd=ROOT, env=shell_env(), capture_output=True, timeout=60
            )
            assert done.returncode == 0, command + "\n" + done.stderr.decode()[-3000:]
    elif how.startswith("serves "):
        serve(code, how.removeprefix("serves ").strip(), tmp_path / "block.log")
    else:
        raise AssertionError(f"unknown readme-test marker {how!r}")
