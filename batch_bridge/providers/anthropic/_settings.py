"""`AnthropicBatch`'s settings, checked once, when the adapter is built."""

from __future__ import annotations

from dataclasses import dataclass

from batch_bridge.providers._settings import Settings, check_positive_ints

__all__ = ["AnthropicSettings"]


@dataclass(frozen=True, kw_only=True)
class AnthropicSettings(Settings):
    """See `AnthropicBatch`; the limits default to the API's (100,000 requests, 256 MB)."""

    max_requests_per_batch: int = 100_000
    max_bytes_per_batch: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        check_positive_ints(
            max_requests_per_batch=self.max_requests_per_batch,
            max_bytes_per_batch=self.max_bytes_per_batch,
        )
        super().__post_init__()
