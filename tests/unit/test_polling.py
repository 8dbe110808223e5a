"""How often running batches are polled: the backoff schedule, the safety poll with
webhooks, and the fixed `poll_interval`, over a real tick with a clock the test moves."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from langgraph.store.memory import InMemoryStore

from batch_bridge import Bridge
from batch_bridge._config import PollSchedule
from batch_bridge._store import Ledger
from batch_bridge.types import Pending

from .fakes import Clock, FakeClient, FakeProvider
from .test_tick import make_tick, queued


def submit(items: list[Any]) -> str:
    return "h"


def poll(handle: Any) -> None:
    return None


@pytest.mark.parametrize(
    ("polls", "gap"),
    [(1, 30.0), (2, 45.0), (3, 67.5), (4, 101.25), (7, 341.71875), (8, 512.578125), (9, 600.0)],
)
def test_the_gap_grows_by_half_from_30_s_up_to_10_minutes(polls: int, gap: float) -> None:
    assert PollSchedule().gap(polls) == pytest.approx(gap)


def test_with_webhooks_every_gap_is_the_safety_poll() -> None:
    assert [PollSchedule(safety_s=900).gap(n) for n in (1, 2, 50)] == [900, 900, 900]
    assert PollSchedule().gap(10_000) == 600  # no overflow far past the cap


def test_bridge_backs_off_by_default_and_a_poll_interval_stays_fixed() -> None:
    policy = Bridge(submit=submit, poll=poll).policy
    assert policy.polling == PollSchedule()
    assert (policy.first_poll_in(), policy.poll_gap(1), policy.poll_gap(20)) == (5, 30, 600)
    fixed = Bridge(submit=submit, poll=poll, poll_interval=1).policy
    assert fixed.polling is None
    assert (fixed.first_poll_in(), fixed.poll_gap(1), fixed.poll_gap(20)) == (0, 1, 1)


def test_backoff_settings_are_settable_with_numbers_or_timedeltas() -> None:
    policy = Bridge(
        submit=submit,
        poll=poll,
        first_poll=timedelta(seconds=2),
        poll_backoff=10,
        max_poll_interval=timedelta(minutes=1),
    ).policy
    assert policy.polling == PollSchedule(first_s=2, start_s=10, max_s=60)
    hooked = Bridge(submit=submit, poll=poll, webhooks=True, safety_poll=timedelta(minutes=5))
    assert hooked.policy.polling == PollSchedule(safety_s=300)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"first_poll": -1}, ValueError, "first_poll must not be negative"),
        ({"poll_backoff": 0}, ValueError, "poll_backoff must be positive"),
        ({"max_poll_interval": "10m"}, TypeError, "max_poll_interval must be seconds"),
        ({"poll_backoff": 60, "max_poll_interval": 30}, ValueError, "at least poll_backoff"),
        ({"webhooks": "yes"}, TypeError, "webhooks must be True or False"),
        ({"safety_poll": 0}, ValueError, "safety_poll must be positive"),
    ],
)
def test_bad_poll_settings_name_the_field(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Bridge(submit=submit, poll=poll, **options)


async def ticks_polling(schedule: PollSchedule | None, answers: list[Any]) -> list[float]:
    """Gaps between the polls of one batch whose provider answers `answers` in turn; the
    clock jumps to each next poll."""
    store, client, clock = InMemoryStore(), FakeClient(), Clock()
    provider = FakeProvider(answers=list(answers))
    ledger = Ledger(store, "bridge")
    record = queued("t1", "x", clock.now - 10)
    await ledger.put_items([record])
    client.threads.waiting(record)
    submitted_at, polled_at = clock.now, []
    state: dict[str, Any] = {}
    for run in range(len(answers) + 2):
        polls = len(provider.polled)
        state = dict(
            await make_tick(store, client, clock, provider, polling=schedule).run(
                state,
                f"r{run}",  # type: ignore[arg-type]
            )
        )
        polled_at += [clock.now] * (len(provider.polled) - polls)
        headers = await ledger.headers()
        if not headers:
            break
        clock.now = headers[0].next_poll_at
    assert provider.polled and not await ledger.headers()
    times = [submitted_at, *polled_at]
    return [round(b - a, 3) for a, b in itertools.pairwise(times)]


async def test_a_tick_polls_soon_after_submit_then_backs_off() -> None:
    gaps = await ticks_polling(PollSchedule(), [None, None, None])
    assert gaps == [5, 30, 45, 67.5]


async def test_with_webhooks_a_tick_polls_soon_then_only_the_safety_poll() -> None:
    assert await ticks_polling(PollSchedule(safety_s=900), [None, None]) == [5, 900, 900]


async def test_a_fixed_interval_polls_at_once_then_every_interval() -> None:
    gaps = await ticks_polling(None, [None, None])  # FlushPolicy's poll_interval_s: 30
    assert gaps == [0, 30, 30]


async def test_a_resubmitted_provider_batch_is_polled_soon_again() -> None:
    gaps = await ticks_polling(PollSchedule(), [None, None, Pending("b2"), None, ["done"]])
    assert gaps == [5, 30, 45, 5, 30]
