"""Script mode (`Batcher.submit` outside a graph) runs the bridge's own batch life cycle."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from batch_bridge import Batcher, BatchFailedError


def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


class Provider:
    """A provider whose polls raise `failures` times before answering (forever if None)."""

    def __init__(self, failures: int | None) -> None:
        self.failures = failures
        self.submitted: list[list[Any]] = []
        self.polls = 0
        self.cancelled: list[Any] = []
        self.released: list[Any] = []

    def submit(self, items: list[Any]) -> Any:
        self.submitted.append(list(items))
        return ("handle", len(self.submitted))  # a tuple: script mode needs no JSON handle

    def poll(self, handle: Any) -> Any:
        self.polls += 1
        if self.failures is None or self.polls <= self.failures:
            raise ConnectionError("provider unreachable")
        return [f"done {item}" for item in self.submitted[handle[1] - 1]]

    def cancel(self, handle: Any) -> None:
        self.cancelled.append(handle)

    def release(self, handle: Any) -> None:
        self.released.append(handle)


def batcher(provider: Provider, **kw: Any) -> Batcher:
    return Batcher(
        provider.submit,
        provider.poll,
        max_batch_size=2,
        max_batch_age=0.05,
        poll_interval=0.05,
        cancel=provider.cancel,
        release=provider.release,
        **kw,
    )


def test_a_raised_poll_error_is_polled_again_within_the_horizon_then_released():
    provider = Provider(failures=2)

    assert batcher(provider).submit("a") == "done a"

    assert provider.polls == 3 and provider.submitted == [["a"]]
    eventually(lambda: provider.released == [("handle", 1)])
    assert provider.cancelled == []


def test_polling_that_fails_past_the_horizon_fails_the_batch_and_cancels_it():
    provider = Provider(failures=None)

    with pytest.raises(BatchFailedError, match="polling failed for"):
        batcher(provider, poll_error_horizon=0.3).submit("a")

    assert provider.polls >= 2
    assert provider.cancelled == [("handle", 1)]
    eventually(lambda: provider.released == [("handle", 1)])


def test_items_need_not_be_json_in_a_script():
    provider = Provider(failures=0)
    item = object()
    assert batcher(provider).submit(item) == f"done {item}"
    assert provider.submitted == [[item]]
