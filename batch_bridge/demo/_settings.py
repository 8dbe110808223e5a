"""What a demo run is given and what it reports: settings, summary, error, prices."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "BATCH_DISCOUNT",
    "DEFAULT_MODELS",
    "PRICES_PER_MTOK",
    "DemoError",
    "DemoSettings",
    "DemoSummary",
]

PRICES_PER_MTOK = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-sonnet-4-5": (3.00, 15.00),
}
"""Normal (non-batch) USD prices per million input/output tokens; both batch APIs halve them."""
DEFAULT_MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}
"""The model the agents ask for when `--model` is not given, per `--provider`."""
BATCH_DISCOUNT = 0.5


class DemoError(Exception):
    """The demo could not run to its end; `server_log` is a kept copy of the server's log."""

    def __init__(self, message: str, *, server_log: Path | None = None) -> None:
        super().__init__(message)
        self.server_log = server_log


@dataclass(frozen=True, kw_only=True)
class DemoSettings:
    threads: int = 300
    """Agent threads, one question each."""
    provider: Literal["openai", "anthropic"] = "openai"
    """Whose batch API the bridge uses: `OpenAIBatch` and `wrap_openai`, or
    `AnthropicBatch` and `wrap_anthropic`; the emulator serves both."""
    model: str | None = None
    """None: the provider's default (`DEFAULT_MODELS`)."""
    max_batch_size: int = 100
    max_batch_age_s: float = 2.0
    """Seconds before a partial batch is flushed."""
    poll_interval_s: float = 1.0
    provider_latency_s: float = 3.0
    """Seconds the emulated provider keeps each batch `in_progress`."""
    config: Path = Path("langgraph.json")
    timeout_s: float = 600.0
    """Seconds to wait for every agent to answer, once the server is up."""

    @property
    def model_name(self) -> str:
        return self.model or DEFAULT_MODELS[self.provider]


@dataclass(frozen=True)
class DemoSummary:
    threads: int
    succeeded: int
    failed: int
    """Threads whose run ended without an answer (`error`, or `idle` with none)."""
    batches: int
    wall_s: float
    wait_p50_s: float
    wait_p95_s: float
    input_tokens: int
    output_tokens: int
    cost_normal_usd: float
    cost_batch_usd: float
    unfinished: int = 0
    """Threads still waiting or running when the demo stopped (--timeout)."""
    server_log: Path | None = None
    """A kept copy of the server's log when not every agent answered, else None."""
    sample_answer: str | None = None
    """One thread's answer, read as a client would, with `batch_bridge.result`."""

    @property
    def savings_usd(self) -> float:
        return self.cost_normal_usd - self.cost_batch_usd
