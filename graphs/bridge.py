"""The deployed bridge: OpenAI's Batch API behind `wait()`, tuned by environment variables.

OPENAI_API_KEY / OPENAI_BASE_URL reach the provider (only this deployment needs the key);
BATCH_BRIDGE_MAX_BATCH_SIZE, BATCH_BRIDGE_MAX_BATCH_AGE_S, BATCH_BRIDGE_POLL_INTERVAL_S and
BATCH_BRIDGE_RETRY_BACKOFF_S set the flush rule, the poll cadence and the retry backoff;
BATCH_BRIDGE_MAX_WAIT_S, when set, is the deadline of callers that give none (past it an
item is answered by OpenAI's normal API, flex tier first).

BATCH_BRIDGE_PROFILE picks their defaults: "dev" (the default under `langgraph dev`) flushes
after 2 s and polls every second, so a local question is answered in seconds; "prod" (the
default elsewhere) waits up to a minute to fill batches, which is what saves money at a real
provider, and polls a batch 5 s after submit, then every 30 s growing by half up to 10
minutes (an empty BATCH_BRIDGE_POLL_INTERVAL_S). With OPENAI_WEBHOOK_SECRET set, the
deployment takes OpenAI's batch webhooks at /batch-bridge/webhooks/openai, and polls only
every 15 minutes as a safety net.
"""

from __future__ import annotations

import os

from batch_bridge import Bridge
from batch_bridge.providers.openai import OpenAIBatch

_local = os.environ.get("LANGGRAPH_RUNTIME_EDITION") == "inmem"
PROFILE = os.environ.get("BATCH_BRIDGE_PROFILE", "dev" if _local else "prod")
if PROFILE not in ("dev", "prod"):
    raise ValueError(f"BATCH_BRIDGE_PROFILE must be 'dev' or 'prod', got {PROFILE!r}")
DEFAULTS = {
    "dev": {"MAX_BATCH_AGE_S": "2", "POLL_INTERVAL_S": "1", "RETRY_BACKOFF_S": "2"},
    "prod": {"MAX_BATCH_AGE_S": "60", "POLL_INTERVAL_S": "", "RETRY_BACKOFF_S": "60"},
}[PROFILE]


def _setting(name: str) -> str:
    return os.environ.get(f"BATCH_BRIDGE_{name}", DEFAULTS[name])


provider = OpenAIBatch(retry_backoff_s=float(_setting("RETRY_BACKOFF_S")))
_size = os.environ.get("BATCH_BRIDGE_MAX_BATCH_SIZE")
_max_wait = os.environ.get("BATCH_BRIDGE_MAX_WAIT_S")
_poll = _setting("POLL_INTERVAL_S")

bridge = Bridge(
    submit=provider.submit,  # takes the bridge's batch id as its idempotency key
    poll=provider.poll,
    cancel=provider.cancel,
    release=provider.release,
    fallback=provider.fallback,  # callers that pass max_wait= get an answer by then
    max_batch_age=float(_setting("MAX_BATCH_AGE_S")),
    poll_interval=float(_poll) if _poll else None,  # None: back off
    max_wait=float(_max_wait) if _max_wait else None,
    webhooks=bool(os.environ.get("OPENAI_WEBHOOK_SECRET")),
    **({"max_batch_size": int(_size)} if _size else {}),  # else Bridge's default
)
