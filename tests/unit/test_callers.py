"""What a caller thread of many parallel calls says about each of its records: read once per
thread, right for each record, and the owner check keeps only the verdicts."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.store.memory import InMemoryStore

from batch_bridge import _callers
from batch_bridge._store import Ledger
from batch_bridge.bridge.intake import CallerCheck

from .fakes import FakeClient
from .test_tick import queued

CALLS = 6


def one_thread(client: FakeClient) -> list[Any]:
    records = [queued("t", f"item {n}", 0.0, f".{n}") for n in range(CALLS)]
    for record in records[:4]:
        client.threads.waiting(record)
    client.threads.waiting(records[4], item="another item")
    return records  # the last one: the thread does not wait on it


def test_each_record_of_a_thread_gets_its_own_verdict():
    client = FakeClient()
    records = one_thread(client)

    found = _callers.verdicts(records, client.threads.threads["t"])

    assert [v.seen for v in found] == ["waits"] * 4 + ["other_item", "not_waiting"]
    assert [v.interrupt_id for v in found[:4]] == [f"int-{r.interrupt_id}" for r in records[:4]]
    assert _callers.verdicts(records[:2], None) == [_callers.Verdict("missing")] * 2


async def test_the_owner_check_reads_a_threads_interrupts_once_for_all_its_records(
    monkeypatch: pytest.MonkeyPatch,
):
    client = FakeClient()
    records = one_thread(client)
    reads: list[str] = []
    index = _callers.waiting_calls

    def counted(thread: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
        reads.append(thread["thread_id"])
        return index(thread)

    monkeypatch.setattr(_callers, "waiting_calls", counted)
    check = CallerCheck(Ledger(InMemoryStore(), "bridge"), client.client_for)

    ready, later = await check(records)

    assert [r.key for r in ready] == [r.key for r in records[:4]]
    assert later == [] and check.withdrawn == 1  # the call it no longer waits on
    assert reads == ["t"]
