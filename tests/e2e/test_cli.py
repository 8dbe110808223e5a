"""The console commands as a user runs them: the demo end to end, and the cron set-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from langgraph_sdk import get_client

from batch_bridge import bridge_thread_id, delete_crons
from tests.conftest import ROOT

CLI = str(Path(sys.executable).with_name("batch-bridge"))


def test_demo_runs_agents_through_the_emulator_and_prints_a_summary():
    done = subprocess.run(
        [CLI, "demo", "--threads", "20", "--provider-latency", "0.5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "20 (20 ok, 0 failed)" in out
    for label in ("provider batches", "wait p50 / p95", "tokens in / out", "saved"):
        assert label in out


async def test_cron_command_is_idempotent(dev_server):
    def create() -> str:
        done = subprocess.run(
            [
                CLI,
                "cron",
                "--url",
                dev_server.url,
                "--bridge",
                "bridge_age",
                "--schedule",
                "0 0 1 1 *",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout.strip()

    first, second = create(), create()
    assert first and first == second
    client = get_client(url=dev_server.url)
    crons = await client.crons.search(thread_id=bridge_thread_id("bridge_age"), limit=100)
    assert [c["schedule"] for c in crons].count("0 0 1 1 *") == 1
    await delete_crons(client, bridge="bridge_age")
