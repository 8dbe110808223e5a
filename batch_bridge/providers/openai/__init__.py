"""OpenAI Batch API adapter: `OpenAIBatch` for the bridge, and `wrap_openai`, a drop-in client.

The adapter lives in `_adapter` (settings in `_settings`, retries of creating calls in
`_retries`, the look for earlier batches in `_lookup`, result rows in `_rows`), the drop-in
client in `_client`, the profiles of OpenAI-compatible services (`GROQ`, ...) in
`providers._profiles`; this package is their public face, and fails early, naming the
extra, without the `openai` SDK.
"""

from __future__ import annotations

try:
    import openai  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "batch_bridge.providers.openai needs the openai SDK: pip install 'batch-bridge[openai]'"
    ) from exc

from batch_bridge.providers._profiles import AZURE_OPENAI, GROQ, OPENAI, TOGETHER, BatchProfile
from batch_bridge.providers.openai._adapter import OpenAIBatch
from batch_bridge.providers.openai._client import BatchedAsyncOpenAI, wrap_openai

__all__ = [
    "AZURE_OPENAI",
    "GROQ",
    "OPENAI",
    "TOGETHER",
    "BatchProfile",
    "BatchedAsyncOpenAI",
    "OpenAIBatch",
    "wrap_openai",
]
