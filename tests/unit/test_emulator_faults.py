"""The emulator's "this route answers status S for the next K calls" knob: `--fault` on the
command line of a standalone emulator, `add_fault` (or `POST /_emulator/faults`) at run time."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import openai
import pytest
from click.testing import CliRunner

from batch_bridge.testing.__main__ import main

RETRIEVE = "GET /v1/batches/{batch_id}"


@pytest.fixture
def standalone() -> Iterator[str]:
    """A standalone emulator whose first two retrieves answer 408, then one 409; its base_url."""
    args = ["--port", "0", "--fault", RETRIEVE, "408", "2", "--fault", RETRIEVE, "409", "1"]
    process = subprocess.Popen(
        [sys.executable, "-m", "batch_bridge.testing", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "base_url=" in line, line
        yield line.strip().split("base_url=", 1)[1]
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_faults_given_at_start_answer_the_route_then_let_it_through(standalone: str) -> None:
    async with openai.AsyncOpenAI(base_url=standalone, api_key="t", max_retries=0) as sdk:
        uploaded = await sdk.files.create(file=("in.jsonl", b""), purpose="batch")
        batch = await sdk.batches.create(
            completion_window="24h", endpoint="/v1/chat/completions", input_file_id=uploaded.id
        )
        statuses = []
        for _ in range(3):
            with pytest.raises(openai.APIStatusError) as caught:
                await sdk.batches.retrieve(batch.id)
            statuses.append(caught.value.status_code)
        assert statuses == [408, 408, 409]
        assert (await sdk.batches.retrieve(batch.id)).id == batch.id


@pytest.mark.parametrize(
    ("fault", "named"),
    [
        (["GET /v1/nowhere", "408", "1"], "unknown emulator route"),
        ([RETRIEVE, "404", "1"], "fault status must be one of"),
        ([RETRIEVE, "408", "0"], "fault times must be a positive int"),
    ],
)
def test_a_bad_fault_is_refused_before_serving(fault: list[str], named: str) -> None:
    refused = CliRunner().invoke(main, ["--port", "0", "--fault", *fault])
    assert refused.exit_code == 2 and named in refused.output, refused.output


def test_the_soak_counts_the_fault_calls_still_queued() -> None:
    from batch_bridge.testing import Emulator, EmulatorServer
    from tests.support.soak_tally import faults_left

    server = EmulatorServer(Emulator())
    server.emulator.add_fault(RETRIEVE, times=2, status=503)
    server.emulator.add_fault("POST /v1/batches", times=1, status=500, after=True)
    assert faults_left(server) == 3
    server.emulator.clear_faults()
    assert faults_left(server) == 0
