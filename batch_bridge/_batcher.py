"""`Bridge` (and `Batcher`, its seed name): the flush policy plus submit/poll, three ways.

Registered in langgraph.json, an instance is the bridge graph. Called inside a graph node on
a LangGraph server, `submit` interrupts the thread and the bridge resumes it. Called anywhere
else, `submit` runs the same batch life cycle in-process (`bridge.local`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from langgraph.config import get_config
from langgraph.graph.state import CompiledStateGraph

from batch_bridge._config import (
    DEFAULT_DELIVERY_HORIZON_S,
    DEFAULT_FIRST_POLL_S,
    DEFAULT_MAX_BATCH_AGE_S,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_POLL_INTERVAL_S,
    DEFAULT_POLL_BACKOFF_S,
    DEFAULT_POLL_ERROR_HORIZON_S,
    DEFAULT_PROVIDER_TIMEOUT_S,
    DEFAULT_SAFETY_CRON,
    DEFAULT_SAFETY_POLL_S,
    DEFAULT_USAGE_RETENTION_S,
    DeliveryPolicy,
    PollSchedule,
    Reliability,
)
from batch_bridge._constants import check_bridge_name
from batch_bridge._prices import ModelPrice, load_prices
from batch_bridge._usage import UsageSummary
from batch_bridge._wait import wait, wait_sync
from batch_bridge.bridge.calls import CancelFunc, Provider, accepts_idempotency_key
from batch_bridge.bridge.graph import build_bridge_graph
from batch_bridge.bridge.local import LocalRunner
from batch_bridge.types import (
    FallbackFunc,
    FlushPolicy,
    PollFunc,
    ShouldFlushFunc,
    SubmitFunc,
    _seconds,
    max_wait_seconds,
)

__all__ = ["Batcher", "Bridge"]

_DEFAULT_AGE = timedelta(seconds=DEFAULT_MAX_BATCH_AGE_S)
_DEFAULT_FIRST_POLL = timedelta(seconds=DEFAULT_FIRST_POLL_S)
_DEFAULT_BACKOFF = timedelta(seconds=DEFAULT_POLL_BACKOFF_S)
_DEFAULT_MAX_POLL = timedelta(seconds=DEFAULT_MAX_POLL_INTERVAL_S)
_DEFAULT_SAFETY_POLL = timedelta(seconds=DEFAULT_SAFETY_POLL_S)
_DEFAULT_TIMEOUT = timedelta(seconds=DEFAULT_PROVIDER_TIMEOUT_S)
_DEFAULT_HORIZON = timedelta(seconds=DEFAULT_DELIVERY_HORIZON_S)
_DEFAULT_POLL_ERRORS = timedelta(seconds=DEFAULT_POLL_ERROR_HORIZON_S)
_DEFAULT_USAGE_RETENTION = timedelta(seconds=DEFAULT_USAGE_RETENTION_S)


def _positive(value: timedelta | float, name: str) -> float:
    seconds = _seconds(value, name)
    if not seconds:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return seconds


def _reliability(
    provider_timeout: timedelta | float,
    delivery_horizon: timedelta | float,
    poll_error_horizon: timedelta | float,
    safety_cron: str | None,
) -> Reliability:
    if safety_cron is not None and (not isinstance(safety_cron, str) or not safety_cron.strip()):
        raise ValueError(f"safety_cron must be a cron schedule or None, got {safety_cron!r}")
    return Reliability(
        provider_timeout_s=_positive(provider_timeout, "provider_timeout"),
        poll_error_horizon_s=_positive(poll_error_horizon, "poll_error_horizon"),
        delivery=DeliveryPolicy(horizon_s=_positive(delivery_horizon, "delivery_horizon")),
        safety_cron=safety_cron,
    )


def _poll_schedule(
    first_poll: timedelta | float,
    poll_backoff: timedelta | float,
    max_poll_interval: timedelta | float,
    webhooks: bool,
    safety_poll: timedelta | float,
) -> PollSchedule:
    if not isinstance(webhooks, bool):
        raise TypeError(f"webhooks must be True or False, got {webhooks!r}")
    first = _seconds(first_poll, "first_poll")
    start = _positive(poll_backoff, "poll_backoff")
    most = _positive(max_poll_interval, "max_poll_interval")
    if most < start:
        raise ValueError(
            f"max_poll_interval ({most:g}s) must be at least poll_backoff ({start:g}s)"
        )
    safety = _positive(safety_poll, "safety_poll")
    return PollSchedule(
        first_s=first or 0.0, start_s=start, max_s=most, safety_s=safety if webhooks else None
    )


def _in_server_graph() -> bool:
    """True inside a node whose graph has a checkpointer (interrupts need one)."""
    try:
        config = get_config()
    except RuntimeError:
        return False
    return config.get("configurable", {}).get("__pregel_checkpointer") is not None


def _check_hooks(**hooks: Any) -> None:
    if not callable(hooks.pop("submit")) or not callable(hooks.pop("poll")):
        raise TypeError("submit and poll must be callables (sync or async).")
    for hook, func in hooks.items():
        if func is not None and not callable(func):
            raise TypeError(f"{hook} must be a callable (sync or async) or None.")


class Bridge:
    """A bridge: the flush rule plus the provider's submit/poll, usable three ways.

    `submit(items) -> handle` and `poll(handle)` may be sync or async; the handle is whatever
    the provider needs to find the batch again (JSON for the bridge graph). Poll returns None
    while the batch runs, results in submission order when done, or an exception (returned)
    when the whole batch failed; an exception inside the results fails only that item.

    A `submit` that accepts an `idempotency_key` keyword gets the bridge's batch id and must
    return the same batch for the same key: then a submit retried after a crash is exactly
    once (`OpenAIBatch` does this). Without it a crash mid-submit may submit twice.
    `cancel(handle)` stops a batch the bridge gives up on or an operator cancels
    (`cancel_batch`), and may return the handle to poll from then on; `release(handle)`
    deletes the provider's copies once the results are recorded (the adapters' `release`).
    Polling: without `poll_interval`, a running batch is polled `first_poll` after its
    submit, then `poll_backoff` later, each gap 1.5 times the one before up to
    `max_poll_interval`; with `webhooks=True` (the deployment receives the provider's
    webhooks, `batch_bridge.http`), every `safety_poll` after the first poll instead.
    A `poll_interval` is a fixed cadence that overrides both.
    `provider_timeout` bounds every provider call; `delivery_horizon` is how long refused
    resumes are retried;
    `poll_error_horizon` how long raised poll errors count as transient; `safety_cron` is the
    schedule of the cron the bridge creates on its own thread (None: none).
    `prices` (model -> `ModelPrice` or its fields, USD per million tokens) adds to or
    replaces the shipped price table and the JSON file named by `BATCH_BRIDGE_PRICES`;
    `usage_retention` is how long per-item cost records (per-thread sums) are kept.
    `dedupe=True` sends identical items flushed together to the provider once and gives
    each caller its own copy of the result (off by default: sampling may differ per call).
    `fallback(item)` answers one item through the provider's normal API (the adapters'
    `fallback`) once it has waited `max_wait` (seconds or a timedelta; a caller's own
    `wait(..., max_wait=)` wins) without its batch answering; see docs/reliability.md.

    Register it in langgraph.json under the name callers pass to `wait(..., batcher=NAME)`.
    """

    def __init__(
        self,
        *,
        submit: SubmitFunc,
        poll: PollFunc,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_batch_age: timedelta | float | None = _DEFAULT_AGE,
        should_flush: ShouldFlushFunc | None = None,
        name: str = "bridge",
        poll_interval: timedelta | float | None = None,
        cancel: CancelFunc | None = None,
        provider_timeout: timedelta | float = _DEFAULT_TIMEOUT,
        delivery_horizon: timedelta | float = _DEFAULT_HORIZON,
        poll_error_horizon: timedelta | float = _DEFAULT_POLL_ERRORS,
        safety_cron: str | None = DEFAULT_SAFETY_CRON,
        release: CancelFunc | None = None,
        prices: Mapping[str, ModelPrice | Mapping[str, float]] | None = None,
        usage_retention: timedelta | float = _DEFAULT_USAGE_RETENTION,
        dedupe: bool = False,
        max_wait: timedelta | float | None = None,
        fallback: FallbackFunc | None = None,
        first_poll: timedelta | float = _DEFAULT_FIRST_POLL,
        poll_backoff: timedelta | float = _DEFAULT_BACKOFF,
        max_poll_interval: timedelta | float = _DEFAULT_MAX_POLL,
        webhooks: bool = False,
        safety_poll: timedelta | float = _DEFAULT_SAFETY_POLL,
    ) -> None:
        _check_hooks(submit=submit, poll=poll, cancel=cancel, release=release, fallback=fallback)
        self.submit_func = submit
        self.poll_func = poll
        keyed = accepts_idempotency_key(submit)
        self.provider = Provider(submit, poll, cancel, keyed, release=release, fallback=fallback)
        self.reliability = dataclasses.replace(
            _reliability(provider_timeout, delivery_horizon, poll_error_horizon, safety_cron),
            usage_retention_s=_positive(usage_retention, "usage_retention"),
        )
        self.prices = load_prices(prices)
        self.name = check_bridge_name(name)
        if not isinstance(dedupe, bool):
            raise TypeError(f"dedupe must be True or False, got {dedupe!r}")
        schedule = _poll_schedule(
            first_poll, poll_backoff, max_poll_interval, webhooks, safety_poll
        )
        self.policy = dataclasses.replace(
            FlushPolicy.coerce(
                max_batch_size=max_batch_size,
                max_batch_age=max_batch_age,
                should_flush=should_flush,
                poll_interval=poll_interval,
            ),
            dedupe=dedupe,
            max_wait_s=max_wait_seconds(max_wait),
            polling=None if poll_interval is not None else schedule,
        )
        self._graph: CompiledStateGraph[Any, Any, Any, Any] | None = None
        self._runner: LocalRunner | None = None
        self._runner_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, policy={self.policy!r})"

    @property
    def graph(self) -> CompiledStateGraph[Any, Any, Any, Any]:
        """The bridge graph; built once because the server asks for it on every run."""
        if self._graph is None:
            self._graph = build_bridge_graph(
                self.provider, self.policy, self.reliability, self.name, self.prices
            )
        return self._graph

    def __call__(self) -> CompiledStateGraph[Any, Any, Any, Any]:
        return self.graph

    def _local(self) -> LocalRunner:
        with self._runner_lock:
            if self._runner is None:
                self._runner = LocalRunner(
                    self.provider, self.policy, self.reliability, self.name, self.prices
                )
            return self._runner

    def usage(self) -> UsageSummary:
        """Script mode: tokens and cost of every result this process's bridge recorded.

        On a server, read them with `batch_bridge.usage(client, thread_id, bridge=NAME)`."""
        return self._local().usage()

    def submit(self, item: Any, *, max_wait: timedelta | float | None = None) -> Any:
        """Return `item`'s result: in a sync graph node via the bridge, elsewhere in-process.

        In a node the thread is interrupted and the node re-runs from the top on resume.
        `max_wait` overrides the bridge's for this item.
        """
        if _in_server_graph():
            return wait_sync(item, batcher=self.name, max_wait=max_wait)
        return self._local().submit(item, max_wait_seconds(max_wait)).result()

    async def asubmit(self, item: Any, *, max_wait: timedelta | float | None = None) -> Any:
        """Awaitable `submit`, for async nodes and async scripts."""
        if _in_server_graph():
            return await wait(item, batcher=self.name, max_wait=max_wait)
        return await asyncio.wrap_future(self._local().submit(item, max_wait_seconds(max_wait)))


class Batcher(Bridge):
    """`Bridge` under the seed's name and positional arguments:
    `Batcher(submit_func, poll_func, max_batch_size, max_batch_age, should_flush_func, name,
    poll_interval)`; further `Bridge` options (cancel, timeouts, safety_cron) by keyword."""

    def __init__(
        self,
        submit_func: SubmitFunc,
        poll_func: PollFunc,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_batch_age: timedelta | float | None = _DEFAULT_AGE,
        should_flush_func: ShouldFlushFunc | None = None,
        name: str = "bridge",
        poll_interval: timedelta | float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            submit=submit_func,
            poll=poll_func,
            max_batch_size=max_batch_size,
            max_batch_age=max_batch_age,
            should_flush=should_flush_func,
            name=name,
            poll_interval=poll_interval,
            **options,
        )
