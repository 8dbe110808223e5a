"""Settings checks the adapters share, and the frozen base of their settings records.

Each adapter validates its keyword arguments by building a frozen dataclass (a subclass of
`Settings`), so a bad value fails when the adapter is built, named, and `__init__` stays a
few lines. Kept free of any SDK.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from batch_bridge.errors import ConfigError

__all__ = ["Settings", "check_non_negative", "check_positive_ints", "check_timeout"]


def check_positive_ints(**values: object) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive int, got {value!r}")


def check_non_negative(**values: object) -> None:
    for name, value in values.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value < math.inf
        ):
            raise ConfigError(f"{name} must be a non-negative number, got {value!r}")


def check_timeout(timeout_s: object) -> float | None:
    """`timeout_s` as float seconds, or None for the SDK's own timeout."""
    if timeout_s is None:
        return None
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not 0 < timeout_s < math.inf
    ):
        raise ConfigError(
            f"timeout_s must be a positive number of seconds or None, got {timeout_s!r}"
        )
    return float(timeout_s)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What every adapter takes: attempts per part, their backoff, and time limits."""

    max_attempts: int = 3
    retry_backoff_s: float = 60.0
    timeout_s: float | None = 120.0
    """Per HTTP attempt; the SDK client's own retries come on top."""
    delete_results_after_s: float | None = 600.0

    def __post_init__(self) -> None:
        check_positive_ints(max_attempts=self.max_attempts)
        check_non_negative(retry_backoff_s=self.retry_backoff_s)
        if self.delete_results_after_s is not None:
            check_non_negative(delete_results_after_s=self.delete_results_after_s)
        object.__setattr__(self, "retry_backoff_s", float(self.retry_backoff_s))
        object.__setattr__(self, "timeout_s", check_timeout(self.timeout_s))
