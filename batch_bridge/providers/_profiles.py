"""What differs between services that serve OpenAI's Batch API shape, as plain settings.

`OpenAIBatch(profile=GROQ)` checks its settings and items against the profile, so a setting
the service refuses fails when the adapter is built, and a request it cannot run fails
alone at submit, before anything is uploaded. The emulator takes the same profiles, so
tests run against the service's documented limits. Kept free of any SDK.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from batch_bridge.providers._packing import ENDPOINTS

__all__ = ["AZURE_OPENAI", "GROQ", "OPENAI", "PROFILES", "TOGETHER", "BatchProfile", "window_hours"]

_WINDOW = re.compile(r"([1-9][0-9]*)([hd])")


def window_hours(window: str) -> int | None:
    """`"24h"` → 24, `"7d"` → 168; None for anything else."""
    match = _WINDOW.fullmatch(window) if isinstance(window, str) else None
    if match is None:
        return None
    return int(match[1]) * (24 if match[2] == "d" else 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchProfile:
    """One service's Batch API: where it lives, what it accepts, and its file limits."""

    name: str
    endpoints: tuple[str, ...] = ENDPOINTS
    """Batch endpoints the service runs; an item for another fails alone at submit."""
    min_window_h: int = 24
    max_window_h: int = 24
    """The `completion_window` values accepted, in hours (`"24h"`, `"48h"`, `"7d"`)."""
    max_requests_per_file: int = 50_000
    max_bytes_per_file: int = 200 * 1024 * 1024
    expires: bool = True
    file_lifetimes: bool = False
    """Takes `expires_after` on uploads and `output_expires_after` on batch creation."""
    """Whether a batch not done within its window ends `expired` (its rows then resubmitted);
    Azure lets such a batch run on instead."""
    path_prefix: str = ""
    """Put before `/v1` in the service's URLs (`/openai` at Azure)."""

    def __post_init__(self) -> None:
        unknown = set(self.endpoints) - set(ENDPOINTS)
        if not self.endpoints or unknown:
            raise ValueError(f"profile endpoints must be some of {ENDPOINTS}, got {self.endpoints}")
        if not 1 <= self.min_window_h <= self.max_window_h:
            raise ValueError(f"profile windows must be 1 <= min <= max hours: {self!r}")

    def window_problem(self, window: str) -> str | None:
        """Why the service refuses this `completion_window`, or None."""
        hours = window_hours(window)
        if hours is not None and self.min_window_h <= hours <= self.max_window_h:
            return None
        if self.min_window_h == self.max_window_h:
            accepted = f"only '{self.min_window_h}h'"
        else:
            accepted = f"'{self.min_window_h}h' to '{self.max_window_h}h' (or days: '7d')"
        return f"{self.name} accepts completion_window {accepted}, got {window!r}"

    def endpoint_problem(self, url: str) -> str | None:
        """Why the service refuses batch requests to this endpoint, or None."""
        if url in self.endpoints:
            return None
        return f"{self.name} batches run only {', '.join(self.endpoints)}, not {url}"


OPENAI = BatchProfile(name="OpenAI", file_lifetimes=True)
AZURE_OPENAI = BatchProfile(name="Azure OpenAI", expires=False, path_prefix="/openai")
"""`model` is the global-batch deployment's name; its enqueued-token quota is per deployment."""
GROQ = BatchProfile(name="Groq", endpoints=("/v1/chat/completions",), max_window_h=7 * 24)
TOGETHER = BatchProfile(
    name="Together", endpoints=("/v1/chat/completions",), max_bytes_per_file=100 * 1024 * 1024
)
"""A fixed, best-effort 24 h window."""

PROFILES: dict[str, BatchProfile] = {
    "openai": OPENAI,
    "azure": AZURE_OPENAI,
    "groq": GROQ,
    "together": TOGETHER,
}
"""The presets by short name, as the emulator's command line takes them."""
