"""Gemini's batch webhooks (Standard Webhooks, checked by the `standardwebhooks` library):
a verified `batch.succeeded` about a held job makes its batch due and wakes the bridge once;
a forged, stale, replayed or stray one changes nothing. The emulator signs its Gemini
events so the route takes them, and the index holds the job names a Gemini handle names."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from google import genai
from google.genai import types
from langgraph.store.memory import InMemoryStore

from batch_bridge import _hints
from batch_bridge.http._webhooks import receive_webhook, verify_gemini, webhook_counts
from batch_bridge.providers._handles import provider_ids
from batch_bridge.providers.gemini import GeminiBatch
from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.testing._webhooks import new_secret, sign_webhook

from .test_webhooks import Wakes, held_batch

SECRET = new_secret()
JOB = "batches/abc123"


def event(job: str = JOB, kind: str = "batch.succeeded", field: str = "id") -> bytes:
    stamp = datetime.now(UTC).isoformat()
    return json.dumps({"type": kind, "version": "v1", "timestamp": stamp, "data": {field: job}})


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> InMemoryStore:
    monkeypatch.setenv("GEMINI_WEBHOOK_SECRET", SECRET)
    return InMemoryStore()


async def deliver(store: InMemoryStore, wakes: Wakes, body: Any, **sign: Any) -> Any:
    body = body.encode() if isinstance(body, str) else body
    headers = sign_webhook(sign.pop("secret", SECRET), body, **sign)
    return await receive_webhook("gemini", body, headers, store=store, wake=wakes)


@pytest.mark.parametrize(
    ("job", "field"), [(JOB, "id"), (JOB, "name"), ("abc123", "id")], ids=["id", "name", "bare"]
)
async def test_a_verified_batch_event_makes_its_job_due_and_wakes_its_bridge(store, job, field):
    ledger, wakes = await held_batch(store, JOB), Wakes()
    status, answer = await deliver(store, wakes, event(job, field=field))
    assert (status, answer["outcome"], answer["batch_id"]) == (200, "accepted", "bb_1")
    (header,) = await ledger.headers()
    assert header.next_poll_at <= time.time() and ledger.hinted == {"bb_1"}
    assert wakes.bridges == ["bridge"]
    assert (await webhook_counts(store))["gemini"]["accepted"] == 1


@pytest.mark.parametrize("kind", ["batch.failed", "batch.expired", "batch.cancelled"])
async def test_every_end_of_a_job_wakes_the_bridge(store, kind):
    await held_batch(store, JOB)
    status, answer = await deliver(store, Wakes(), event(kind=kind))
    assert (status, answer["outcome"]) == (200, "accepted")


@pytest.mark.parametrize(
    ("tamper", "status", "outcome"),
    [
        ({"secret": new_secret()}, 401, "bad_signature"),
        ({"timestamp": int(datetime.now(UTC).timestamp()) - 600}, 401, "bad_signature"),
        ({"job": "batches/nobody"}, 404, "unknown_batch"),
    ],
    ids=["forged", "stale", "unknown"],
)
async def test_a_forged_stale_or_stray_event_changes_nothing(store, tamper, status, outcome):
    ledger, wakes = await held_batch(store, JOB), Wakes()
    got, answer = await deliver(store, wakes, event(tamper.pop("job", JOB)), **tamper)
    assert (got, answer["outcome"]) == (status, outcome)
    assert wakes.bridges == [] and not await store.asearch(ledger.ns(_hints.HINTS))
    assert (await webhook_counts(store))["gemini"][outcome] == 1


async def test_a_replayed_delivery_is_refused(store):
    ledger, wakes = await held_batch(store, JOB), Wakes()
    body = event().encode()
    headers = sign_webhook(SECRET, body)
    first = await receive_webhook("gemini", body, headers, store=store, wake=wakes)
    await store.adelete(ledger.ns(_hints.HINTS), "bb_1")
    again = await receive_webhook("gemini", body, headers, store=store, wake=wakes)
    assert (first[0], again[0], again[1]["outcome"]) == (200, 409, "replayed")
    assert wakes.bridges == ["bridge"] and not await store.asearch(ledger.ns(_hints.HINTS))


@pytest.mark.parametrize("kind", ["video.generated", "interaction.completed"])
async def test_other_events_are_acknowledged_and_ignored(store, kind):
    ledger, wakes = await held_batch(store, JOB), Wakes()
    status, answer = await deliver(store, wakes, event("operations/x", kind=kind))
    assert (status, answer["outcome"], answer["type"]) == (200, "ignored", kind)
    assert wakes.bridges == [] and not await store.asearch(ledger.ns(_hints.HINTS))


async def test_without_a_usable_secret_the_route_refuses(store, monkeypatch):
    await held_batch(store, JOB)
    monkeypatch.delenv("GEMINI_WEBHOOK_SECRET")
    status, answer = await deliver(store, Wakes(), event())
    assert (status, answer["outcome"]) == (404, "not_configured")
    monkeypatch.setenv("GEMINI_WEBHOOK_SECRET", "whsec_")
    status, answer = await deliver(store, Wakes(), event())
    assert (status, answer["outcome"]) == (404, "not_configured")


async def test_an_openai_secret_does_not_open_the_gemini_route(store, monkeypatch):
    monkeypatch.delenv("GEMINI_WEBHOOK_SECRET")
    monkeypatch.setenv("OPENAI_WEBHOOK_SECRET", SECRET)
    await held_batch(store, JOB)
    status, answer = await deliver(store, Wakes(), event())
    assert (status, answer["outcome"]) == (404, "not_configured")


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    emulator = Emulator(
        in_progress_s=0.05, gemini_webhook_url="http://127.0.0.1:9/", gemini_webhook_secret=SECRET
    )
    with EmulatorServer(emulator, port=0) as running:
        yield running


async def test_the_emulator_signs_a_gemini_event_as_each_job_ends(server, monkeypatch):
    """The job name the route reads off the emulator's event is the one the adapter's handle
    names, so the index finds it."""
    monkeypatch.setenv("GEMINI_WEBHOOK_SECRET", SECRET)
    options = types.HttpOptions(base_url=server.gemini_base_url)
    adapter = GeminiBatch(genai.Client(api_key="test", http_options=options), retry_backoff_s=0)
    item = {"model": "gemini-emulated", "contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    handle = await adapter.submit([item])
    (job,) = provider_ids(handle)
    sent = server.emulator.gemini.webhooks.sent

    async def delivered() -> dict[str, Any]:
        while not any(d["batch_id"] == job for d in sent):
            await asyncio.sleep(0.02)
        return next(d for d in sent if d["batch_id"] == job)

    delivery = await asyncio.wait_for(delivered(), 5)
    verified = verify_gemini(delivery["body"], delivery["headers"])
    assert (verified.type, verified.provider_batch_id) == ("batch.succeeded", job)
    assert job.startswith("batches/") and server.emulator.stats()["gemini"]["webhooks_sent"] >= 1
    with pytest.raises(Exception, match="signature refused"):
        verify_gemini(delivery["body"] + b" ", delivery["headers"])
