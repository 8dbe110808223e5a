"""Errors raised by BatchBridge.

```
BatchBridgeError(RuntimeError)
├── ConfigError                 the bridge or a caller is set up wrongly
├── BatchItemError              one item failed; raised by wait() in the caller
│   └── BatchFailedError        the item's whole batch failed (or expired for good)
│       └── BatchCancelledError the batch was cancelled on request before the item finished
├── ProviderError               a provider call failed (status_code, retryable)
├── PlatformError               the LangGraph platform refused a call
└── UnknownBatchError           cancel_batch() named a batch the bridge does not hold
WaitOutsideGraphError(RuntimeError)   wait() used where no graph is running
```

Failures of one item never take the bridge down: they travel back to the waiting caller
inside the resume envelope and are raised there, by name, with the provider's message.
"""

from __future__ import annotations

__all__ = [
    "BatchBridgeError",
    "BatchCancelledError",
    "BatchFailedError",
    "BatchItemError",
    "ConfigError",
    "PlatformError",
    "ProviderError",
    "UnknownBatchError",
    "WaitOutsideGraphError",
]


class BatchBridgeError(RuntimeError):
    """Base class of every BatchBridge failure.

    A `RuntimeError` because the LangGraph server shows the message of built-in error
    families only ("An internal error occurred" otherwise), and retry policies skip it.
    """


class ConfigError(BatchBridgeError):
    """The bridge, a batcher or a caller is configured wrongly; fix the setting named."""


class BatchItemError(BatchBridgeError):
    """The provider (or the bridge) failed this item; the message is the provider's."""

    def __init__(self, message: str, *, item_id: str | None = None, code: str | None = None):
        super().__init__(message)
        self.item_id = item_id
        self.code = code


class BatchFailedError(BatchItemError):
    """The whole batch holding this item failed, expired or was cancelled for good."""


class BatchCancelledError(BatchFailedError):
    """An operator cancelled the item's batch (`cancel_batch`, `batch-bridge cancel`) before
    the provider finished this item; the message names the batch."""


class UnknownBatchError(BatchBridgeError, LookupError):
    """`cancel_batch` named a batch the bridge does not hold: finished, or never its own."""


class ProviderError(BatchBridgeError):
    """A call to the provider's API failed; `retryable` says whether trying again may help."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status_code: int | None = None,
        retryable: bool | None = None,
    ):
        super().__init__(message)
        self.provider = provider
        self.status_code = status_code
        if retryable is not None:
            self.retryable = retryable


class PlatformError(BatchBridgeError):
    """The LangGraph platform refused a call the bridge or a caller needed."""


class WaitOutsideGraphError(RuntimeError):
    """`wait()` needs a running LangGraph node (it interrupts the caller's thread)."""

    def __init__(self) -> None:
        super().__init__(
            "wait() must be called inside a node of a graph running on a LangGraph server "
            "(langgraph dev or LangGraph Platform); outside a graph use "
            "Batcher.submit(item) or await Batcher.asubmit(item) instead."
        )


_ERRORS_BY_NAME: dict[str, type[BatchBridgeError]] = {
    cls.__name__: cls
    for cls in (
        BatchBridgeError,
        BatchItemError,
        BatchFailedError,
        BatchCancelledError,
        ConfigError,
        ProviderError,
        PlatformError,
    )
}
"""Error classes a resume envelope may name; anything else arrives as BatchItemError."""
