"""The public FakeProvider: deterministic answers, counters, delay, and batches shared between
processes through a directory, as a deployment with several workers needs."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batch_bridge import Batcher, BatchItemError
from batch_bridge.testing import FakeProvider


async def test_answers_each_item_in_order_and_counts_what_was_sent():
    fake = FakeProvider()
    first = fake.submit(["a", "b"])
    second = fake.submit([{"x": 1}])
    assert first != second
    assert await fake.poll(second) == [{"echo": {"x": 1}}]
    assert await fake.poll(first) == [{"echo": "a"}, {"echo": "b"}]
    assert fake.batches == {first: ["a", "b"], second: [{"x": 1}]}
    assert (fake.submitted_batches, fake.submitted_items, fake.polls) == (2, 3, 2)


async def test_an_exception_from_answer_fails_only_that_item():
    fake = FakeProvider(lambda i: ValueError(f"bad {i}") if i.startswith("bad") else i.upper())
    results = await fake.poll(fake.submit(["ok", "bad x"]))
    assert isinstance(results, list)
    assert results[0] == "OK"
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad bad x"


async def test_a_batch_runs_for_delay_seconds():
    fake = FakeProvider(delay=0.3)
    began = time.monotonic()
    handle = fake.submit(["a"])
    assert await fake.poll(handle) is None
    while (results := await fake.poll(handle)) is None:
        await asyncio.sleep(0.02)
    assert results == [{"echo": "a"}]
    assert time.monotonic() - began >= 0.3


async def test_unknown_or_foreign_handles_raise_key_error(tmp_path: Path):
    for fake in (FakeProvider(), FakeProvider(directory=tmp_path)):
        with pytest.raises(KeyError, match="knows no batch"):
            await fake.poll("fake_0123456789ab")
        with pytest.raises(KeyError, match="not a FakeProvider handle"):
            await fake.poll("fake_../../etc/passwd")
    with pytest.raises(ValueError, match="delay"):
        FakeProvider(delay=-1)


async def test_a_directory_shares_batches_with_other_processes(tmp_path: Path):
    script = (
        "import sys; from batch_bridge.testing import FakeProvider; "
        "print(FakeProvider(directory=sys.argv[1]).submit(['from', 'there']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True
    )
    there = done.stdout.strip()
    here = FakeProvider(lambda i: f"done {i}", directory=tmp_path)
    mine = here.submit(["here"])
    assert await here.poll(there) == ["done from", "done there"]
    assert list(here.batches) == [there, mine]
    assert FakeProvider(directory=tmp_path).submitted_items == 3


def test_plugs_into_a_batcher_in_a_script():
    fake = FakeProvider(lambda i: BatchItemError("no") if i == "no" else f"done {i}")
    batcher = Batcher(fake.submit, fake.poll, max_batch_size=1, poll_interval=0.05)
    assert batcher.submit("yes") == "done yes"
    with pytest.raises(BatchItemError, match="no"):
        batcher.submit("no")
    assert fake.submitted_batches == 2


async def test_the_pytest_plugin_hands_each_test_a_fresh_one(fake_provider: FakeProvider):
    assert fake_provider.submitted_batches == 0
    assert await fake_provider.poll(fake_provider.submit(["a"])) == [{"echo": "a"}]
