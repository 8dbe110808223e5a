"""The deployed bridge: OpenAI's Batch API behind `wait()`, tuned by environment variables.

OPENAI_API_KEY / OPENAI_BASE_URL reach the provider (only this deployment needs the key);
BATCH_BRIDGE_MAX_BATCH_SIZE, BATCH_BRIDGE_MAX_BATCH_AGE_S and BATCH_BRIDGE_POLL_INTERVAL_S
set the flush rule and the poll cadence.
"""

from __future__ import annotations

import os

from batch_bridge import Bridge
from batch_bridge.providers.openai import OpenAIBatch

provider = OpenAIBatch(retry_backoff_s=float(os.environ.get("BATCH_BRIDGE_RETRY_BACKOFF_S", "60")))

bridge = Bridge(
    submit=provider.submit,  # takes the bridge's batch id as its idempotency key
    poll=provider.poll,
    cancel=provider.cancel,
    max_batch_size=int(os.environ.get("BATCH_BRIDGE_MAX_BATCH_SIZE", "50000")),
    max_batch_age=float(os.environ.get("BATCH_BRIDGE_MAX_BATCH_AGE_S", "60")),
    poll_interval=float(os.environ.get("BATCH_BRIDGE_POLL_INTERVAL_S", "30")),
)
