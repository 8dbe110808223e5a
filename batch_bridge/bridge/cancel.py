"""Cancelling a batch on an operator's request (`cancel_batch`, `batch-bridge cancel`).

The request is a run on the bridge's own thread with input `{"cancel": [batch_id]}`, so the
platform serialises it with the ticks, and only a client the deployment lets start runs can
ask. The tick records the request in the batch header before it calls the provider, then
polls the batch on until it ends: finished rows reach their callers, the rest get
`BatchCancelledError`. A tick killed at any line leaves the request recorded; the next poll
asks the provider again, and delivery stays exactly once (it does not know about cancels).
"""

from __future__ import annotations

import logging
from typing import Literal

from batch_bridge._results import batch_failed
from batch_bridge._store import BatchHeader
from batch_bridge.bridge.batches import Batches

log = logging.getLogger("batch_bridge")

Outcome = Literal["cancelled", "cancelling", "unknown"]
"""`cancelled`: its callers have their answers now (it never reached the provider, or the
provider cannot cancel); `cancelling`: the provider was asked, callers are resumed once the
batch ends; `unknown`: the bridge holds no such batch (finished, or never its own)."""


class Cancels:
    """One tick's handling of cancel requests."""

    def __init__(self, batches: Batches) -> None:
        self.batches = batches
        self.ledger = batches.ledger

    async def run(self, batch_ids: list[str]) -> dict[str, Outcome]:
        headers = {h.batch_id: h for h in await self.ledger.headers()}
        outcomes: dict[str, Outcome] = {}
        for batch_id in dict.fromkeys(batch_ids):
            header = headers.get(batch_id)
            outcomes[batch_id] = "unknown" if header is None else await self.cancel(header)
        return outcomes

    async def cancel(self, header: BatchHeader) -> Outcome:
        if header.cancel_requested_at is None:
            log.warning("batch %s cancelled on request", header.batch_id)
            header.cancel_requested_at = self.batches.clock()
            if header.status != "submitted" or self.batches.provider.cancel is None:
                # Nothing at the provider yet, or nothing that can stop it: callers learn now
                # (a provider batch that cannot be stopped runs on, and is billed).
                await self.batches.finish(header, batch_failed("cancelled", header.size))
                return "cancelled"
            await self.ledger.put_header(header)  # durable before the provider call
        if not header.cancel_sent:  # a repeated request, or a tick killed mid-cancel
            await self.ledger.load_handle(header)
            await self.batches.send_cancel(header)
        return "cancelling"
