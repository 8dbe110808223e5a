"""Every default and policy in one place: flush, reliability, delivery, and what paces a tick.

Read by the public constructors (`Bridge`, `Batcher`, `FlushPolicy.coerce`), by the bridge
graph and by script mode, so a default is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_MAX_BATCH_SIZE = 50_000
"""Items per batch (and the flush threshold); OpenAI's limit of requests per batch file."""
DEFAULT_MAX_BATCH_AGE_S = 60.0
DEFAULT_POLL_INTERVAL_S = 30.0
"""Between two checks of a queue a custom flush rule holds back; also the first backoff gap."""
DEFAULT_FIRST_POLL_S = 5.0
DEFAULT_POLL_BACKOFF_S = 30.0
DEFAULT_POLL_BACKOFF_FACTOR = 1.5
DEFAULT_MAX_POLL_INTERVAL_S = 600.0
DEFAULT_SAFETY_POLL_S = 900.0
"""With webhooks, the slow poll that still finds a batch whose webhook was lost."""
DEFAULT_READ_QUEUE_UP_TO = 1000
DEFAULT_PROVIDER_TIMEOUT_S = 600.0
DEFAULT_POLL_ERROR_HORIZON_S = 3600.0
DEFAULT_DELIVERY_HORIZON_S = 6 * 3600.0
DEFAULT_SAFETY_CRON = "* * * * *"
"""Every minute: the safety cron the bridge creates on its own thread."""
DEFAULT_CONCURRENCY = 20
"""Provider calls (and resume runs) one tick has out at once."""
TRUST_CHECK_TTL_S = 60.0
"""How long a caller process keeps what it learnt from a remote bridge's trust notice: one
store read per bridge per this many seconds, whatever the number of calls."""

# What paces a tick. A run takes passes (each a superstep) until nothing is due soon.
NEXT_PASS_WITHIN_S = 2.0
"""Work due within this many seconds is taken by the running tick's next pass, not a new run."""
MAX_PASSES_PER_RUN = 20
"""Passes per run (each a superstep; LangGraph's default recursion limit is 25)."""
BURST_LINGER_S = 0.25
"""After a pass that submitted or delivered, the run looks again this soon before it ends."""
CALLS_CHECK_EVERY_S = 1.0
"""While provider calls are out, a pass looks this often for batches that fell due."""
QUEUE_RECHECK_EVERY_S = 5.0
"""While provider calls are out, a pass reads the queue again this often (and flushes)."""
DEFERRED_RECHECK_S = 1.0
"""Items whose caller thread was busy (still saving its interrupt) are looked at this soon."""
QUEUED_ON_IDLE_RECHECK_S = 1.0
"""A tick that marked itself idle and then found queued items runs again this soon."""
FAILED_TICK_RETRY_S = 5.0
"""A tick that raised schedules the next one this soon."""
SAFETY_CRON_RECHECK_S = 600.0
"""How often a tick checks that its safety cron still exists."""
ORPHAN_SWEEP_EVERY_S = 60.0
"""How often a tick looks for items of vanished batches."""
PURGE_EVERY_S = 60.0
"""How often a tick looks for delivered records past their retention."""
USAGE_PURGE_EVERY_S = 3600.0
"""How often a tick looks for per-item usage records past their retention."""
DEFAULT_USAGE_RETENTION_S = 30 * 86400.0
"""Per-item usage records (what sums a caller thread's cost) are kept 30 days."""
BUSY_THREAD_RETRY_S = 1.0
"""A result for a busy caller thread (its run still going) is tried again this soon."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PollSchedule:
    """When a running batch is polled, without a fixed `poll_interval`: soon after submit,
    then less and less often (a batch that was not done in a minute rarely is in the next),
    or, when provider webhooks wake the bridge, only a slow safety poll."""

    first_s: float = DEFAULT_FIRST_POLL_S
    """The first poll comes this long after the submit (or a resubmission)."""
    start_s: float = DEFAULT_POLL_BACKOFF_S
    """The gap after the first poll; each later gap is `factor` times the one before."""
    factor: float = DEFAULT_POLL_BACKOFF_FACTOR
    max_s: float = DEFAULT_MAX_POLL_INTERVAL_S
    """No gap grows beyond this."""
    safety_s: float | None = None
    """Webhooks are configured: every gap after the first poll is this (None: back off)."""

    def gap(self, polls: int) -> float:
        """Seconds from poll number `polls` (1 is the first) to the next."""
        if self.safety_s is not None:
            return self.safety_s
        step = min(max(polls, 1) - 1, 64)  # past the cap long before; keeps the power finite
        return min(self.start_s * self.factor**step, self.max_s)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryPolicy:
    """How results reach waiting caller threads, and how long refused resumes are retried."""

    horizon_s: float = DEFAULT_DELIVERY_HORIZON_S
    """How long refused resumes are retried before the item is undeliverable."""
    backoff_s: float = 1.0
    """First wait after a refused resume; doubles each time."""
    backoff_cap_s: float = 300.0
    concurrency: int = DEFAULT_CONCURRENCY


@dataclass(frozen=True, slots=True, kw_only=True)
class Reliability:
    """How long the bridge keeps trying before it gives up, and on what."""

    provider_timeout_s: float = DEFAULT_PROVIDER_TIMEOUT_S
    """Every submit, poll and cancel call is abandoned after this long (and retried)."""
    max_submit_attempts: int = 3
    submit_backoff_s: float = 2.0
    poll_error_horizon_s: float = DEFAULT_POLL_ERROR_HORIZON_S
    """Raised poll errors count as transient this long; then the batch fails and is cancelled."""
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    retention_s: float = 3600.0
    """Delivered records are kept this long (so late replays of a node still find them)."""
    usage_retention_s: float = DEFAULT_USAGE_RETENTION_S
    """Per-item usage records are kept this long, so per-thread sums outlive the items."""
    safety_cron: str | None = DEFAULT_SAFETY_CRON
    """A platform cron on the bridge thread, created by the first tick: the tick that runs
    even when every scheduled run was lost. None disables it."""
    concurrency: int = DEFAULT_CONCURRENCY
