"""Anthropic Message Batches: `AnthropicBatch` for the bridge, and `wrap_anthropic`, a
drop-in client.

The adapter lives in `_adapter` (settings in `_settings`, requests and result rows in
`_rows`), the drop-in client in `_client`; this package is their public face, and fails
early, naming the extra, without the SDK.
"""

from __future__ import annotations

try:
    import anthropic  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "batch_bridge.providers.anthropic needs the anthropic SDK: "
        "pip install 'batch-bridge[anthropic]'"
    ) from exc

from batch_bridge.providers.anthropic._adapter import AnthropicBatch
from batch_bridge.providers.anthropic._client import BatchedAsyncAnthropic, wrap_anthropic

__all__ = ["AnthropicBatch", "BatchedAsyncAnthropic", "wrap_anthropic"]
