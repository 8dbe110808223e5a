"""The console commands as a user runs them: the demo end to end (and failing), the emulator's
two entry points, and the cron set-up against a real `langgraph dev`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from batch_bridge import bridge_thread_id, delete_crons, ensure_cron, usage
from batch_bridge.cli import CLI_CRON_TAG
from batch_bridge.testing.devserver import DevServer, free_port
from tests.conftest import ROOT

CLI = str(Path(sys.executable).with_name("batch-bridge"))
STATUS_PAGE = re.compile(
    r"^status page: (http://127\.0\.0\.1:\d+)/batch-bridge/\?bridge=bridge$", re.M
)
SAVED = re.compile(r"│ saved\s+│ \$(\d+\.\d+) \(50%\)")
SHOWN = re.compile(r"it shows (\d+) finished batch(?:es)?, saved \$(\d+\.\d+)")
CRON_LINE = re.compile(r"^(created|kept) cron (\S+) on bridge|^replaced cron (\S+) by (\S+) on")


def run(*args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def one_error_line(done: subprocess.CompletedProcess[str], *, usage: bool = False) -> str:
    """The one `Error:` line, last on stderr; alone there unless it is a usage error."""
    assert "Traceback" not in done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], done.stderr
    assert usage or len(lines) == 1, done.stderr
    return errors[0]


def test_demo_runs_agents_through_the_emulator_and_prints_a_summary():
    done = run("demo", "--threads", "20", "--provider-latency", "0.5", timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "20 (20 ok, 0 failed)" in out
    for label in ("provider batches", "wait p50 / p95", "tokens in / out", "saved"):
        assert label in out
    assert "one answer (batch_bridge.result)" in out and "Echo:" in out
    stages = ["starting emulator", "starting server", "creating threads", "done"]
    positions = [out.find(stage) for stage in stages]
    assert -1 not in positions and positions == sorted(positions), out
    assert "log:" not in out and "server log" not in out + done.stderr  # nothing kept on success
    # It ends pointing at the status page, with the page's figures: the run's batches, and
    # the savings of the bridge's usage record (the table's figure), non-zero.
    assert STATUS_PAGE.search(out), out
    saved, shown = SAVED.search(out), SHOWN.search(out)
    assert saved and shown, out
    batches = re.search(r"│ provider batches\s+│ (\d+)", out)
    assert batches and int(shown[1]) == int(batches[1]) >= 1
    assert shown[2] == saved[1] and float(saved[1]) > 0
    assert "batch-bridge demo --keep-serving" in out and "batch-bridge status --url" in out


def _lines(stream: Any) -> queue.Queue[str]:
    """The stream's lines as they come, read by a thread (a pipe read blocks)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    return lines


def _read_until(lines: queue.Queue[str], marker: str, timeout_s: float) -> str:
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while not any(marker in line for line in seen):
        try:
            seen.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
        except queue.Empty:
            raise AssertionError(f"no {marker!r} in {timeout_s}s:\n{''.join(seen)}") from None
    return "".join(seen)


def _drain(lines: queue.Queue[str]) -> str:
    """What is left on the stream once it went quiet for a second."""
    rest: list[str] = []
    with contextlib.suppress(queue.Empty):
        while True:
            rest.append(lines.get(timeout=1))
    return "".join(rest)


_CTRL_C_ARRIVES = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)
"""Runs the command with SIGINT as a terminal's Ctrl-C finds it: a shell that started the
tests in the background leaves SIGINT ignored, and an ignored signal stays ignored across
exec (the demo then never hears the test's Ctrl-C)."""


async def test_demo_keep_serving_serves_the_page_until_ctrl_c():
    args = ["demo", "--threads", "6", "--provider-latency", "0.5", "--keep-serving"]
    demo = subprocess.Popen(
        [sys.executable, "-c", _CTRL_C_ARRIVES, CLI, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = _lines(demo.stdout)
        out = _read_until(lines, "serving the status page until Ctrl-C", timeout_s=300)
        page = STATUS_PAGE.search(out)
        saved, shown = SAVED.search(out), SHOWN.search(out)
        assert page and saved and shown, out
        assert "--keep-serving`" not in out  # no hint to run with the flag it runs with
        url = page[1]
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(timeout=10) as http:
            while True:  # it answers as long as the command runs
                with contextlib.suppress(httpx.HTTPError):
                    answer = await http.get(f"{url}/batch-bridge/", params={"bridge": "bridge"})
                    if answer.status_code == 200:
                        break
                assert time.monotonic() < deadline, "the status page never answered"
                await asyncio.sleep(0.2)
            assert "<html" in answer.text.lower()
            status = (await http.get(f"{url}/batch-bridge/status.json")).json()
        recorded = await usage(get_client(url=url), bridge="bridge")
        assert f"{recorded['saved_usd']:.6f}" == saved[1] == shown[2]
        assert recorded["saved_usd"] > 0 and recorded["items"] == 6
        page_saved = sum(m["saved_usd"] or 0 for m in status["usage"].values())
        assert abs(page_saved - recorded["saved_usd"]) < 1e-9
        assert len(status["finished"]) == int(shown[1]) >= 1
        assert all(b["outcome"] == "completed" for b in status["finished"])
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0
        rest = _read_until(lines, "stopped (Ctrl-C)", timeout_s=10) + _drain(lines)
        assert "Traceback" not in out + rest and "Error" not in rest, rest
        with pytest.raises(httpx.HTTPError):  # the server went with the command
            httpx.get(f"{url}/ok", timeout=2)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()


def test_demo_through_anthropic_message_batches_needs_no_key():
    done = run("demo", "--provider", "anthropic", "--threads", "12", timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "12 (12 ok, 0 failed)" in done.stdout
    assert "anthropic emulator at" in done.stdout and "Echo:" in done.stdout


def test_demo_through_gemini_batch_mode_needs_no_key_and_prices_its_tokens():
    done = run("demo", "--provider", "gemini", "--threads", "8", timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "8 (8 ok, 0 failed)" in done.stdout
    assert "gemini emulator at" in done.stdout and "Echo:" in done.stdout
    assert "(50%)" in done.stdout  # gemini-2.5-flash is priced: Batch Mode halves it


def test_demo_whose_server_cannot_start_names_the_cause_and_keeps_the_log(tmp_path):
    config = tmp_path / "langgraph.json"
    graphs = {"bridge": f"{ROOT}/graphs/bridge.py:no_such_bridge", "agent": "graphs/agent.py:graph"}
    config.write_text(json.dumps({"graphs": graphs}))
    done = run("demo", "--threads", "3", "--config", str(config))
    assert done.returncode == 1
    line = one_error_line(done)
    assert line.startswith("Error: langgraph dev did not start: GraphLoadError: ")
    assert "no_such_bridge" in line
    kept = Path(line.rpartition("; server log kept at ")[2])
    try:
        assert kept.is_file() and "no_such_bridge" in kept.read_text(errors="replace")
    finally:
        kept.unlink(missing_ok=True)


def test_demo_that_times_out_keeps_the_log():
    done = run("demo", "--threads", "3", "--provider-latency", "60", "--timeout", "1")
    assert done.returncode == 1
    assert "3 (0 ok, 0 failed, 3 unfinished)" in done.stdout
    assert "gave up after 1s" in done.stdout
    message = done.stderr.strip()
    assert message.startswith("3 of 3 agents did not answer; server log kept at "), message
    kept = Path(message.rpartition(" kept at ")[2])
    try:
        assert kept.is_file() and kept.stat().st_size > 0
    finally:
        kept.unlink(missing_ok=True)


def test_emulator_command_and_module_are_the_same_command():
    module = subprocess.run(
        [sys.executable, "-m", "batch_bridge.testing", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    command = run("emulator", "--help")
    assert command.returncode == 0
    assert command.stdout.startswith("Usage: batch-bridge emulator [OPTIONS]")
    assert module.stdout.startswith("Usage: python -m batch_bridge.testing [OPTIONS]")
    assert command.stdout.partition("\n")[2] == module.stdout.partition("\n")[2]
    assert "--in-progress-s" in command.stdout and "--hang-creates-s" in command.stdout
    refused = run("emulator", "--error-rate", "2")
    assert refused.returncode == 2
    assert "Try 'batch-bridge emulator --help'" in refused.stderr
    line = one_error_line(refused, usage=True)
    assert line.endswith("knob error_rate must be between 0 and 1, got 2.0")


def test_version():
    done = run("--version")
    assert done.returncode == 0 and re.fullmatch(r"batch-bridge, version \S+\n", done.stdout)


def test_cron_against_an_unreachable_url_is_one_line():
    url = f"http://127.0.0.1:{free_port()}"
    done = run("cron", "--url", url, "--schedule", "0 0 1 1 *")
    assert done.returncode == 1
    assert one_error_line(done).startswith(f"Error: cannot reach {url}: ")


async def test_cron_keeps_the_same_schedule_and_replaces_a_changed_one(dev_server: DevServer):
    client = get_client(url=dev_server.url)
    await delete_crons(client, bridge="bridge_age")
    # Not made by the CLI (like the bridge's own safety cron): left alone, even when equal.
    foreign = await ensure_cron(client, bridge="bridge_age", schedule="0 0 1 1 *")

    def cron(schedule: str, *flags: str) -> re.Match[str]:
        args = ["--url", dev_server.url, "--bridge", "bridge_age", "--schedule", schedule]
        done = run("cron", *args, *flags)
        assert done.returncode == 0, done.stderr
        match = CRON_LINE.match(done.stdout)
        assert match and done.stdout.count("\n") == 1, done.stdout
        return match

    try:
        created = cron("0 0 1 1 *")
        assert created[1] == "created" and created[2] != foreign
        kept = cron("0 0 1 1 *")
        assert (kept[1], kept[2]) == ("kept", created[2])
        replaced = cron("0 0 2 1 *")
        assert replaced[3] == created[2] and replaced[4] not in (created[2], foreign)
        flushing = cron("0 0 3 1 *", "--flush")
        assert flushing[1] == "created"

        crons = await client.crons.search(thread_id=bridge_thread_id("bridge_age"), limit=100)
        seen = {
            (
                c["cron_id"],
                c["schedule"],
                c["payload"]["input"]["flush"],
                bool((c.get("metadata") or {}).get(CLI_CRON_TAG)),
            )
            for c in crons
        }
        assert seen == {
            (foreign, "0 0 1 1 *", False, False),
            (replaced[4], "0 0 2 1 *", False, True),
            (flushing[2], "0 0 3 1 *", True, True),
        }

        args = ["--url", dev_server.url, "--bridge", "bridge_age", "--schedule", "61 0 1 1 *"]
        refused = run("cron", *args)
        assert refused.returncode == 1
        assert "refused schedule '61 0 1 1 *'" in one_error_line(refused)
        after = await client.crons.search(thread_id=bridge_thread_id("bridge_age"), limit=100)
        assert {c["cron_id"] for c in after} == {c[0] for c in seen}  # nothing changed
    finally:
        await delete_crons(client, bridge="bridge_age")


def test_cron_for_an_unknown_bridge_is_one_line(dev_server: DevServer):
    done = run("cron", "--url", dev_server.url, "--bridge", "no_such_bridge")
    assert done.returncode == 1
    assert "no graph 'no_such_bridge'" in one_error_line(done)
