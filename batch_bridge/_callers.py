"""Reading caller threads: the owner check before a batch and delivery after it share this.

Callers are grouped by the deployment that holds their thread (`resume_url`, None for the
bridge's own) and read in pages of `THREAD_PAGE` threads, one search each. What a thread
says about one ledger record is a `Verdict`: the bridge submits or resumes only when the
thread waits on that very record with that very item (same digest).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from langgraph_sdk.errors import BadRequestError, UnprocessableEntityError
from langgraph_sdk.schema import ThreadSelectField

from batch_bridge._store import ItemRecord

THREAD_PAGE = 100
"""Caller threads read with one search (and, in delivery, their tries recorded with one write)."""

ClientFor = Callable[[str | None], Any]
"""The platform client for a caller deployment's URL (None: the bridge's own); raises
`ConfigError` for a URL the bridge may not call."""

Threads = dict[str, list[ItemRecord]]
"""Records by caller thread id."""


def waiting_calls(thread: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    """Record key (the `ref` a waiting call carries) -> (pending interrupt id, item digest).

    Matching by ref rather than by interrupt id covers a caller whose run was retried after
    a crash: its interrupt id changed, but its call found and kept the same record.
    """
    waiting: dict[str, tuple[str, str | None]] = {}
    for interrupts in (thread.get("interrupts") or {}).values():
        for pending in interrupts or []:
            value = pending.get("value")
            if isinstance(value, dict) and isinstance(value.get("ref"), str):
                waiting[value["ref"]] = (pending["id"], value.get("digest"))
    return waiting


def by_caller(records: Iterable[ItemRecord]) -> dict[str | None, Threads]:
    """Records grouped by caller deployment URL, then by thread (arrival order kept)."""
    groups: dict[str | None, Threads] = defaultdict(lambda: defaultdict(list))
    for record in records:
        groups[record.resume_url][record.thread_id].append(record)
    return groups


def pages(threads: Threads) -> Iterator[Threads]:
    """The threads in pages of `THREAD_PAGE`, each read with one search."""
    ids = list(threads)
    for start in range(0, len(ids), THREAD_PAGE):
        yield {t: threads[t] for t in ids[start : start + THREAD_PAGE]}


THREAD_FIELDS: list[ThreadSelectField] = ["thread_id", "status", "interrupts"]
"""What a verdict reads: not the threads' values, which the server would decode and send."""


async def read_threads(client: Any, thread_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The threads that exist among `thread_ids` (at most a page), by id. A caller
    deployment too old to select fields is read whole."""
    try:
        found = await client.threads.search(
            ids=thread_ids, limit=len(thread_ids), select=THREAD_FIELDS
        )
    except (BadRequestError, UnprocessableEntityError):
        found = await client.threads.search(ids=thread_ids, limit=len(thread_ids))
    return {t["thread_id"]: dict(t) for t in found}


Seen = Literal["waits", "other_item", "busy", "missing", "not_waiting"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a caller thread says about one record."""

    seen: Seen
    """`waits`: on this record with this item; `other_item`: on this record with another
    item (digest mismatch); `busy`: not waiting on it, but its run is still going (it may
    be saving its interrupt, or it was just resumed); `missing`: no such thread;
    `not_waiting`: the thread is there, idle or done, and does not wait on it."""
    interrupt_id: str | None = None
    status: str | None = None
    """The thread's status, as the platform reports it."""


def verdicts(records: list[ItemRecord], thread: dict[str, Any] | None) -> list[Verdict]:
    """What one thread says about each of its records; its interrupts are read once, not
    once per record (a thread of a hundred parallel calls has a hundred of each)."""
    if thread is None:
        return [Verdict("missing")] * len(records)
    status = thread.get("status")
    waiting = waiting_calls(thread)
    found: list[Verdict] = []
    for record in records:
        if record.key in waiting:
            interrupt_id, digest = waiting[record.key]
            seen: Seen = "waits" if digest == record.digest else "other_item"
            found.append(Verdict(seen, interrupt_id, status))
        else:
            found.append(Verdict("busy" if status == "busy" else "not_waiting", None, status))
    return found
