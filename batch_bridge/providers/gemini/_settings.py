"""`GeminiBatch`'s settings, checked once, when the adapter is built."""

from __future__ import annotations

from dataclasses import dataclass

from batch_bridge.providers._settings import Settings, check_positive_ints

__all__ = ["GeminiSettings"]


@dataclass(frozen=True, kw_only=True)
class GeminiSettings(Settings):
    """See `GeminiBatch`. A batch goes inline up to `max_inline_bytes` (the API takes about
    20 MB of inline requests), else as an uploaded JSONL file (2 GB at most)."""

    max_requests_per_batch: int = 50_000
    max_bytes_per_batch: int = 2_000_000_000
    max_inline_bytes: int = 19_000_000
    lookup_pages: int = 5
    """Pages (100 batches each) the look for an earlier batch of the same name reads."""

    def __post_init__(self) -> None:
        check_positive_ints(
            max_requests_per_batch=self.max_requests_per_batch,
            max_bytes_per_batch=self.max_bytes_per_batch,
            max_inline_bytes=self.max_inline_bytes,
            lookup_pages=self.lookup_pages,
        )
        super().__post_init__()
