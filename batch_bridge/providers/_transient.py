"""The one rule, shared by every adapter, of which provider answers are transient.

Transient: 408, 409, 429, any 5xx, a connection error or a timeout. About a batch that
exists (retrieve, file or result download, list, cancel) such an answer means "ask again
later": the poll returns as if the batch were still running (or raises, and the bridge
counts it against `poll_error_horizon`), a cancel or release raises so it is tried again.
It is never a reason to resubmit the batch or to fail its items. Only a terminal state at
the provider changes a batch's fate: failed, expired, cancelled, or a 400/404 about that
batch or its files (`is_refusal`). Kept free of any SDK: each adapter passes its SDK module.
"""

from __future__ import annotations

from types import ModuleType

__all__ = ["TRANSIENT_STATUSES", "is_refusal", "is_transient", "transient_status"]

TRANSIENT_STATUSES = frozenset({408, 409, 429})
"""Besides every 5xx."""
REFUSAL_STATUSES = frozenset({400, 404})


def transient_status(status: int) -> bool:
    """Whether a later call may get a different answer than this HTTP status."""
    return status in TRANSIENT_STATUSES or status >= 500


def is_transient(exc: BaseException, sdk: ModuleType) -> bool:
    """A connection error or timeout (`APITimeoutError` is an `APIConnectionError`), or a
    transient status, raised by `sdk` (the `openai` or `anthropic` module)."""
    if isinstance(exc, sdk.APIConnectionError):
        return True
    return isinstance(exc, sdk.APIStatusError) and transient_status(exc.status_code)


def is_refusal(exc: BaseException, sdk: ModuleType) -> bool:
    """A 400 or 404 about a batch or its files: the provider's final word on it."""
    return isinstance(exc, sdk.APIStatusError) and exc.status_code in REFUSAL_STATUSES
