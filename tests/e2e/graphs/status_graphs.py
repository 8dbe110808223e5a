"""Bridges for the status page's tests, over the emulator: one whose batches stay in flight
a while (the emulator's `in_progress_s` knob, per batch), one that holds its items pending."""

from __future__ import annotations

from batch_bridge import Bridge
from batch_bridge.providers.openai import OpenAIBatch

SLOW_S = "25"
"""Seconds the emulator keeps each of st_slow's batches in progress."""


def _bridge(name: str, *, in_progress_s: str = "0.2", **options: float) -> Bridge:
    provider = OpenAIBatch(
        retry_backoff_s=0,
        metadata={"test_bridge": name, "emulator_in_progress_s": in_progress_s},
    )
    return Bridge(
        submit=provider.submit,
        poll=provider.poll,
        release=provider.release,
        name=name,
        **{"max_batch_age": 1, "poll_interval": 1, **options},
    )


st_slow = _bridge("st_slow", in_progress_s=SLOW_S, max_batch_size=3)
st_hold = _bridge("st_hold", max_batch_age=3600, max_batch_size=1000)
