"""Gemini Batch Mode: `GeminiBatch` for the bridge, and `wrap_gemini`, a drop-in client.

The adapter lives in `_adapter` (settings in `_settings`, the SDK calls and their errors in
`_api`, requests and result rows in `_rows`), the drop-in client in `_client`; this package
is their public face, and fails early, naming the extra, without the `google-genai` SDK.
"""

from __future__ import annotations

try:
    from google import genai  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "batch_bridge.providers.gemini needs the google-genai SDK: "
        "pip install 'batch-bridge[gemini]'"
    ) from exc

from batch_bridge.providers.gemini._adapter import GeminiBatch
from batch_bridge.providers.gemini._client import BatchedGemini, wrap_gemini

__all__ = ["BatchedGemini", "GeminiBatch", "wrap_gemini"]
