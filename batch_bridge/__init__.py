"""BatchBridge: provider batch APIs as ordinary awaits inside LangGraph graphs."""

import contextlib

from batch_bridge._batcher import Batcher, Bridge
from batch_bridge._client import result
from batch_bridge._constants import bridge_thread_id
from batch_bridge._operate import cancel_batch, delete_crons, ensure_cron
from batch_bridge._prices import ModelPrice
from batch_bridge._usage import ModelUsage, UsageSummary, usage
from batch_bridge._wait import wait, wait_sync
from batch_bridge.errors import (
    BatchBridgeError,
    BatchCancelledError,
    BatchFailedError,
    BatchItemError,
    ConfigError,
    PlatformError,
    ProviderError,
    UnknownBatchError,
    WaitOutsideGraphError,
)
from batch_bridge.types import FallbackAnswer, Pending

__all__ = [
    "BatchBridgeError",
    "BatchCancelledError",
    "BatchFailedError",
    "BatchItemError",
    "Batcher",
    "Bridge",
    "ConfigError",
    "FallbackAnswer",
    "ModelPrice",
    "ModelUsage",
    "Pending",
    "PlatformError",
    "ProviderError",
    "UnknownBatchError",
    "UsageSummary",
    "WaitOutsideGraphError",
    "bridge_thread_id",
    "cancel_batch",
    "delete_crons",
    "ensure_cron",
    "result",
    "usage",
    "wait",
    "wait_sync",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("batch_bridge."):
        with contextlib.suppress(AttributeError, TypeError):
            _obj.__module__ = "batch_bridge"
