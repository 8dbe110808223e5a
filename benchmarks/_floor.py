"""The platform's floor beside the bridge: the same caller threads and the same number of
interrupts (`floor` / `floor_fanout` of bench_graphs.py), resumed directly by the driver.

No bridge, no ledger, no provider: what is left is LangGraph's own cost of interrupting and
resuming those threads, the physical limit of any design built on its interrupts.
"""

from __future__ import annotations

import asyncio
from typing import Any

PAGE = 1000


class Resumer:
    """Resumes each floor thread once, as soon as all its interrupts are pending."""

    def __init__(self, client: Any, tag: str, per_thread: int, gate: int = 20) -> None:
        self.client = client
        self.tag = tag
        self.per_thread = per_thread
        self.gate = asyncio.Semaphore(gate)
        self.done: set[str] = set()

    async def fresh(self) -> int:
        """Resume the threads that wait on all their interrupts; returns how many.

        Many-call threads are judged by their interrupts, whatever their status: on the
        PostgreSQL runtime a run ending in a hundred interrupts now and then leaves its
        thread `idle`, not `interrupted` (see `bench_scale.tally`)."""
        ready: list[tuple[str, list[str]]] = []
        offset = 0
        while True:
            page = await self.client.threads.search(
                metadata={"bench": self.tag},
                status="interrupted" if self.per_thread == 1 else None,
                limit=PAGE,
                offset=offset,
                select=["thread_id", "status", "interrupts"]
                if self.per_thread > 1
                else ["thread_id"],
            )
            offset += len(page)
            for thread in page:
                ids = [
                    i["id"] for found in (thread.get("interrupts") or {}).values() for i in found
                ]
                if thread["thread_id"] in self.done or thread.get("status") == "busy":
                    continue
                if self.per_thread == 1 or len(ids) >= self.per_thread:
                    ready.append((thread["thread_id"], ids))
            if len(page) < PAGE:
                break
        self.done.update(t for t, _ in ready)
        await asyncio.gather(*(self._resume(t, ids) for t, ids in ready))
        return len(ready)

    async def _resume(self, thread_id: str, ids: list[str]) -> None:
        graph = "floor" if self.per_thread == 1 else "floor_fanout"
        answer: Any = "ok" if self.per_thread == 1 else dict.fromkeys(ids, "ok")
        async with self.gate:
            await self.client.runs.create(thread_id, graph, command={"resume": answer})
