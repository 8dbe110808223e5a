"""`OpenAIBatch`'s settings, checked once, when the adapter is built."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from batch_bridge.errors import ConfigError
from batch_bridge.providers._profiles import OPENAI, BatchProfile
from batch_bridge.providers._settings import Settings, check_non_negative, check_positive_ints
from batch_bridge.providers.openai._lookup import MAX_USER_METADATA

__all__ = ["OpenAISettings"]

DEFAULT_FILE_LIFETIME_S = 7 * 86400
"""Input and output files expire at the provider a week after they are made: far beyond a
batch's 24 h window and the bridge's reading of the output (`release` deletes them at once
when it runs), so a crashed or removed bridge leaves nothing for the default 30 days."""
MIN_FILE_LIFETIME_S, MAX_FILE_LIFETIME_S = 3600, 30 * 86400


@dataclass(frozen=True, kw_only=True)
class OpenAISettings(Settings):
    """See `OpenAIBatch`. File limits default to the profile's, and may not exceed them."""

    profile: BatchProfile = OPENAI
    completion_window: str = "24h"
    max_requests_per_file: int = None  # type: ignore[assignment]
    max_bytes_per_file: int = None  # type: ignore[assignment]
    enqueued_token_budget: int | dict[str, int] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    lookback_s: float = 48 * 3600.0
    file_lifetime_s: int | None = DEFAULT_FILE_LIFETIME_S

    def __post_init__(self) -> None:
        profile = self.profile
        if not isinstance(profile, BatchProfile):
            raise ConfigError(f"profile must be a BatchProfile such as GROQ, got {profile!r}")
        if self.max_requests_per_file is None:
            self._set("max_requests_per_file", profile.max_requests_per_file)
        if self.max_bytes_per_file is None:
            self._set("max_bytes_per_file", profile.max_bytes_per_file)
        check_positive_ints(
            max_requests_per_file=self.max_requests_per_file,
            max_bytes_per_file=self.max_bytes_per_file,
            max_attempts=self.max_attempts,
        )
        for name, limit in (
            ("max_requests_per_file", profile.max_requests_per_file),
            ("max_bytes_per_file", profile.max_bytes_per_file),
        ):
            value = getattr(self, name)
            if value > limit:
                raise ConfigError(f"{name} is {value}, over {profile.name}'s limit of {limit}")
        window_problem = profile.window_problem(self.completion_window)
        if window_problem is not None:
            raise ConfigError(window_problem)
        self._check_budget()
        check_non_negative(lookback_s=self.lookback_s)
        self._check_metadata()
        self._check_lifetime()
        self._set("lookback_s", float(self.lookback_s))
        super().__post_init__()

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _check_budget(self) -> None:
        budget = self.enqueued_token_budget
        if isinstance(budget, Mapping):
            self._set("enqueued_token_budget", dict(budget))
        for value in budget.values() if isinstance(budget, Mapping) else [budget]:
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(
                    "enqueued_token_budget must be a positive int or a {model: int} mapping, "
                    f"got {budget!r}"
                )

    def _check_metadata(self) -> None:
        metadata = self.metadata if self.metadata is not None else {}
        if len(metadata) > MAX_USER_METADATA or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise ConfigError(
                f"metadata must map str to str, at most {MAX_USER_METADATA} keys (the adapter "
                f"adds three), got {metadata!r}"
            )
        self._set("metadata", dict(metadata))

    def _check_lifetime(self) -> None:
        life = self.file_lifetime_s
        if life is not None and (
            isinstance(life, bool)
            or not isinstance(life, int)
            or not MIN_FILE_LIFETIME_S <= life <= MAX_FILE_LIFETIME_S
        ):
            raise ConfigError(
                f"file_lifetime_s must be whole seconds from {MIN_FILE_LIFETIME_S} (1 hour) to "
                f"{MAX_FILE_LIFETIME_S} (30 days), or None, got {life!r}"
            )

    def expires_after(self) -> dict[str, Any] | None:
        """The provider's expiry policy for input and output files; None where the service
        takes none (or `file_lifetime_s=None`: its default, 30 days for batch files)."""
        if self.file_lifetime_s is None or not self.profile.file_lifetimes:
            return None
        return {"anchor": "created_at", "seconds": self.file_lifetime_s}

    def budget(self, model: str) -> int | None:
        """The enqueued-token budget of one model, None for no limit."""
        if isinstance(self.enqueued_token_budget, dict):
            return self.enqueued_token_budget.get(model)
        return self.enqueued_token_budget
