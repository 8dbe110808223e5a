"""Bridges with different flush rules, one per test concern, on an in-process fake provider.

Items are strings or dicts. A dict with "fail" fails only that item with its message; a dict
with "fail_batch" fails its whole batch; one with "reject_submit" makes submit raise; one
with "wrong_length" makes poll return one result too many; one with "latency" holds its batch
that many seconds. Results carry the batch id and size so tests can see how items were
batched. `langgraph dev` runs one process, so the provider keeps its batches in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from batch_bridge import Batcher, BatchItemError, Bridge
from batch_bridge.testing import FakeProvider

LATENCY_S = 0.5


def _flag(item: Any, key: str) -> Any:
    return item.get(key) if isinstance(item, dict) else None


class FlaggedProvider(FakeProvider):
    """The fake provider, with the faults the items' flags ask for."""

    def submit(self, items: list[Any]) -> str:
        if any(_flag(i, "reject_submit") for i in items):
            raise ConnectionError("provider unreachable")
        return super().submit(items)

    def delay_for(self, items: list[Any]) -> float:
        return max([self.delay] + [_flag(i, "latency") or 0 for i in items])

    def results(self, handle: str, items: list[Any]) -> Sequence[Any] | BaseException:
        if any(_flag(i, "fail_batch") for i in items):
            return RuntimeError(f"provider rejected batch {handle}")
        results: list[Any] = [
            BatchItemError(_flag(i, "fail"))
            if _flag(i, "fail")
            else {"echo": i, "batch_id": handle, "batch_size": len(items)}
            for i in items
        ]
        if any(_flag(i, "wrong_length") for i in items):
            results.append({"echo": "extra"})
        return results


provider = FlaggedProvider(delay=LATENCY_S)
submit, poll = provider.submit, provider.poll

bridge = Bridge(
    submit=submit, poll=poll, max_batch_size=10, max_batch_age=timedelta(seconds=2), poll_interval=1
)
bridge_size = Bridge(
    submit=submit,
    poll=poll,
    max_batch_size=3,
    max_batch_age=None,
    poll_interval=1,
    name="bridge_size",
)
bridge_age = Bridge(
    submit=submit,
    poll=poll,
    max_batch_size=1000,
    max_batch_age=timedelta(seconds=3),
    poll_interval=1,
    name="bridge_age",
)


bridge_fresh = Bridge(
    submit=submit,
    poll=poll,
    max_batch_size=10,
    max_batch_age=timedelta(seconds=1),
    poll_interval=1,
    name="bridge_fresh",
)
"""Run first by a caller it refuses (tests/e2e/test_misconfig.py): no trust notice yet."""


def release_on_go(items: list[Any], last_flushed: datetime) -> bool:
    return "go" in items


bridge_custom = Bridge(
    submit=submit,
    poll=poll,
    max_batch_size=1000,
    max_batch_age=None,
    should_flush=release_on_go,
    poll_interval=1,
    name="bridge_custom",
)
bridge_cron = Bridge(
    submit=submit,
    poll=poll,
    max_batch_size=1_000_000,
    max_batch_age=None,
    poll_interval=1,
    name="bridge_cron",
)
# Bridges whose queue counts as "too large to read every pass" from its first item: they
# flush only through the size probe and the age of the oldest item they saw.
bridge_big_size = Bridge(
    submit=submit,
    poll=poll,
    max_batch_size=4,
    max_batch_age=None,
    poll_interval=1,
    name="bridge_big_size",
)
bridge_big_age = Bridge(
    submit=submit,
    poll=poll,
    max_batch_size=1000,
    max_batch_age=5,
    poll_interval=1,
    name="bridge_big_age",
)
for _big in (bridge_big_size, bridge_big_age):
    _big.policy = replace(_big.policy, read_queue_up_to=0)
bridge_sync = Batcher(
    submit,
    poll,
    max_batch_size=4,
    max_batch_age=timedelta(seconds=1),
    name="bridge_sync",
    poll_interval=1,
)
