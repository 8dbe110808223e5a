"""The status page on a real `langgraph dev` over the emulator: its JSON, the command, and the
page in a real headless Chromium, each read while batches are in flight and checked against
the bridge's records in the store and the provider's batches in the emulator."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from batch_bridge import _trust
from batch_bridge._records import ItemRecord, digest
from batch_bridge.testing import EmulatorServer
from tests.conftest import E2E_GRAPHS, ROOT, DevServer
from tests.e2e.helpers import finished, start, until

CLI = str(Path(sys.executable).with_name("batch-bridge"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SECRET = {"BATCH_BRIDGE_SECRET": "status-e2e-secret"}
SCREENSHOT_ENV = "BATCH_BRIDGE_STATUS_SCREENSHOT"
"""Set to a path (docs/status-page.png) to keep the browser test's screenshot there."""


@pytest.fixture(scope="module")
def server(
    batch_api_emulator: EmulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevServer]:
    spec = str(E2E_GRAPHS / "status_graphs.py")
    graphs = {name: f"{spec}:{name}" for name in ("st_slow", "st_hold")}
    graphs["st_agent"] = f"{E2E_GRAPHS / 'openai_graphs.py'}:agent"
    env = {"OPENAI_BASE_URL": batch_api_emulator.base_url, "OPENAI_API_KEY": "emulator"}
    dev = DevServer(
        tmp_path_factory.mktemp("status"),
        graphs,
        env={**env, **SECRET},
        http={"app": "batch_bridge.http:app"},
    ).start()
    yield dev
    dev.stop()


def status_of(server: DevServer, bridge: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{server.url}/batch-bridge/status.json", params={"bridge": bridge}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


async def all_in_flight(server: DevServer, bridge: str, items: int) -> dict[str, Any] | None:
    """The status once `items` items are in submitted batches, with their provider ids."""
    status = await asyncio.to_thread(status_of, server, bridge)
    batches = status["in_flight"]
    ready = all(b["status"] == "submitted" and b["provider_ids"] for b in batches)
    return status if ready and sum(b["size"] for b in batches) == items else None


async def records(client: LangGraphClient, bridge: str, part: str, **filter: str) -> list[Any]:
    found = await client.store.search_items(
        ("batch_bridge", bridge, part), filter=filter or None, limit=1000
    )
    return [item["value"] for item in found["items"]]


async def provider_ids(bridge: str) -> set[str]:
    provider = openai.AsyncOpenAI(max_retries=0)
    listed = [b async for b in provider.batches.list(limit=100)]
    return {b.id for b in listed if (b.metadata or {}).get("test_bridge") == bridge}


async def check_against_records(client: LangGraphClient, status: dict[str, Any]) -> None:
    """The in-flight batches shown are the bridge's batch headers and the provider's batches."""
    headers = await records(client, status["bridge"], "batches")
    assert {b["batch_id"]: b["size"] for b in status["in_flight"]} == {
        h["batch_id"]: h["size"] for h in headers
    }
    assert status["in_flight_count"] == len(headers)
    shown = {p for b in status["in_flight"] for p in b["provider_ids"]}
    assert shown <= await provider_ids(status["bridge"]) and len(shown) == len(headers)
    for batch in status["in_flight"]:
        assert (batch["done"], batch["total"]) == (0, batch["size"])
    batched = await records(client, status["bridge"], "items", status="batched")
    assert len(batched) == sum(b["size"] for b in status["in_flight"])


async def test_json_and_command_match_the_records_while_batches_are_in_flight(
    server: DevServer, openai_env: EmulatorServer
) -> None:
    client = get_client(url=server.url)
    held = await start(
        client, "st_agent", [{"text": f"held {i}", "bridge": "st_hold"} for i in range(5)]
    )
    slow = await start(
        client, "st_agent", [{"text": f"slow {i}", "bridge": "st_slow"} for i in range(7)]
    )

    status = await until(lambda: all_in_flight(server, "st_slow", 7), timeout=60)
    await check_against_records(client, status)
    assert len(status["in_flight"]) == 3 and status["pending"]["count"] == 0

    async def five_pending() -> dict[str, Any] | None:
        hold = await asyncio.to_thread(status_of, server, "st_hold")
        return hold if hold["pending"]["count"] == 5 else None

    hold = await until(five_pending)
    queued = await records(client, "st_hold", "items", status="queued")
    assert len(queued) == 5
    assert hold["pending"]["oldest_at"] == min(r["created_at"] for r in queued)
    assert hold["pending"]["oldest_age_s"] > 0 and hold["in_flight"] == []

    as_json = subprocess.run(
        [CLI, "status", "--url", server.url, "--bridge", "st_slow", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert as_json.returncode == 0, as_json.stderr
    shown = json.loads(as_json.stdout)
    assert {b["batch_id"] for b in shown["in_flight"]} == {
        b["batch_id"] for b in status["in_flight"]
    }
    table = subprocess.run(
        [CLI, "status", "--url", server.url, "--bridge", "st_hold"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert table.returncode == 0, table.stderr
    assert "pending 5 (oldest" in table.stdout and "Batches in flight" in table.stdout

    done = await finished(client, slow, timeout=180)
    assert all(t["status"] == "idle" for t in done)
    after = status_of(server, "st_slow")
    assert after["in_flight"] == [] and after["totals"]["items_delivered"] == 7
    ended = {f["batch_id"]: f for f in after["finished"]}
    assert set(ended) >= {b["batch_id"] for b in status["in_flight"]}
    for batch in status["in_flight"]:
        entry = ended[batch["batch_id"]]
        assert entry["outcome"] == "completed" and entry["ok"] == batch["size"]
        assert entry["provider_ids"] == batch["provider_ids"]
        assert entry["duration_s"] >= float(entry["finished_at"] - entry["submitted_at"])
    assert held  # still waiting: their bridge holds items for an hour


async def test_the_page_in_chromium_shows_the_records_and_refreshes_itself(
    server: DevServer, openai_env: EmulatorServer
) -> None:
    from playwright.async_api import async_playwright

    client = get_client(url=server.url)
    before = status_of(server, "st_slow")["totals"]["items_submitted"]
    slow = await start(
        client, "st_agent", [{"text": f"page {i}", "bridge": "st_slow"} for i in range(4)]
    )
    status = await until(lambda: all_in_flight(server, "st_slow", 4), timeout=60)
    ids = {b["batch_id"] for b in status["in_flight"]}

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        started = time.monotonic()
        await page.goto(f"{server.url}/batch-bridge/?bridge=st_slow&refresh=1")
        await page.wait_for_function("document.body.dataset.loads >= 1")
        print(f"page loaded and rendered in {time.monotonic() - started:.2f}s")
        assert await page.text_content("#bridge") == "st_slow"
        assert await page.text_content("#in-flight-count") == str(len(ids))
        rows = page.locator("#in-flight tr[data-batch-id]")
        assert {await r.get_attribute("data-batch-id") for r in await rows.all()} == ids
        await check_against_records(client, status)
        for batch in status["in_flight"]:
            row = page.locator(f'#in-flight tr[data-batch-id="{batch["batch_id"]}"]')
            assert await row.locator('td[data-field="done"]').text_content() == "0"
            assert await row.locator('td[data-field="total"]').text_content() == str(batch["size"])
            ids_cell = await row.locator('td[data-field="provider_ids"]').text_content()
            assert ids_cell == ", ".join(batch["provider_ids"])
        usage = (await page.text_content("#usage")) or ""
        assert (
            usage == "no data" if not status["usage"] else all(m in usage for m in status["usage"])
        )
        shot = os.environ.get(SCREENSHOT_ENV)
        await page.screenshot(path=str(ROOT / shot) if shot else None, full_page=True)

        loads = int(await page.evaluate("document.body.dataset.loads"))
        await page.wait_for_function(  # the same page, never reloaded, shows them finished
            "ids => ids.every(id => document.querySelector("
            "`#finished tr[data-batch-id='${id}'] td[data-field='outcome']`)"
            "?.textContent === 'completed')"
            " && document.getElementById('in-flight-count').textContent === '0'",
            arg=sorted(ids),
            timeout=120_000,
        )
        assert int(await page.evaluate("document.body.dataset.loads")) > loads
        submitted = await page.text_content('#totals tr:has(td:text-is("items_submitted")) td.num')
        assert submitted == str(before + 4)
        await browser.close()
    assert all(t["status"] == "idle" for t in await finished(client, slow))


async def test_the_json_stays_quick_with_ten_thousand_pending_items(
    server: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """10,000 signed queued records of a bridge no tick reads: the JSON counts them by
    page probes, and the page shows the count within seconds."""
    for name, value in SECRET.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(_trust, "_secret", None)
    client = get_client(url=server.url)
    ns = ("batch_bridge", "st_load", "items")
    now = time.time()

    async def put(start: int) -> None:
        for i in range(start, min(start + 500, 10_000)):
            item = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 200}]}
            record = ItemRecord(
                thread_id=f"t{i}",
                interrupt_id="i",
                assistant_id="agent",
                graph_id="agent",
                resume_url=None,
                item=item,
                digest=digest(item),
                created_at=now - 10_000 + i,
            )
            for attempt in range(5):  # a put is idempotent; the dev server may drop a
                try:  # kept-alive connection under this load (httpx.ReadError)
                    await client.store.put_item(ns, record.key, record.to_value(), index=False)
                    break
                except httpx.TransportError:
                    if attempt == 4:
                        raise

    await asyncio.gather(*(put(s) for s in range(0, 10_000, 500)))
    timings = []
    for _ in range(3):
        started = time.monotonic()
        status = await asyncio.to_thread(status_of, server, "st_load")
        timings.append(time.monotonic() - started)
    print(f"status.json with 10,000 pending items: {', '.join(f'{t:.2f}s' for t in timings)}")
    assert status["pending"]["count"] == 10_000
    assert status["pending"]["oldest_at"] == pytest.approx(now - 10_000)
    assert min(timings) < 5.0  # about 1-2 s on a busy 2-core machine
    assert await page_load_s(server, "st_load", "10000") < 10.0


async def page_load_s(server: DevServer, bridge: str, pending: str) -> float:
    """Seconds from navigation until Chromium shows `pending` as the pending count."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        started = time.monotonic()
        await page.goto(f"{server.url}/batch-bridge/?bridge={bridge}")
        await page.wait_for_function(
            "n => document.getElementById('pending-count').textContent === n", arg=pending
        )
        took = time.monotonic() - started
        await browser.close()
    print(f"page with {pending} pending items loaded and rendered in {took:.2f}s")
    return took
