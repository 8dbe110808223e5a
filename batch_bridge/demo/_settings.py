"""What a demo run is given and what it reports: settings, summary, error, models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from batch_bridge._prices import DEFAULT_PRICES

__all__ = [
    "CHAT_MODELS",
    "DEFAULT_MODELS",
    "DemoError",
    "DemoSettings",
    "DemoSummary",
]

CHAT_MODELS = tuple(sorted(m for m in DEFAULT_PRICES if "embedding" not in m))
"""The models `--model` offers: the chat models of the one price table (`_prices`)."""
DEFAULT_MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-haiku-4-5",
    "gemini": "gemini-2.5-flash",
}
"""The model the agents ask for when `--model` is not given, per `--provider`."""


class DemoError(Exception):
    """The demo could not run to its end; `server_log` is a kept copy of the server's log."""

    def __init__(self, message: str, *, server_log: Path | None = None) -> None:
        super().__init__(message)
        self.server_log = server_log


@dataclass(frozen=True, kw_only=True)
class DemoSettings:
    threads: int = 300
    """Agent threads, one question each."""
    provider: Literal["openai", "anthropic", "gemini"] = "openai"
    """Whose batch API the bridge uses: `OpenAIBatch` and `wrap_openai`, `AnthropicBatch`
    and `wrap_anthropic`, or `GeminiBatch` and `wrap_gemini`; the emulator serves all."""
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
    keep_serving: bool = False
    """After the summary, keep `langgraph dev` and its status page up until Ctrl-C."""

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
    """From the bridge's durable usage record (`batch_bridge.usage`), like the batch cost."""
    cost_batch_usd: float
    unfinished: int = 0
    """Threads still waiting or running when the demo stopped (--timeout)."""
    server_log: Path | None = None
    """A kept copy of the server's log when not every agent answered, else None."""
    sample_answer: str | None = None
    """One thread's answer, read as a client would, with `batch_bridge.result`."""
    saved_usd: float | None = None
    """The usage record's own savings; None: normal minus batch cost."""
    status_url: str | None = None
    """The status page of the run's bridge (served while the demo's server is up)."""
    status_batches: int | None = None
    """Finished batches the status page showed at the end (None: it did not answer)."""
    status_saved_usd: float | None = None
    """Savings the status page showed at the end, summed over its models."""

    @property
    def savings_usd(self) -> float:
        if self.saved_usd is not None:
            return self.saved_usd
        return self.cost_normal_usd - self.cost_batch_usd
