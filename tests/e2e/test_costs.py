"""Cost and savings end to end: real `langgraph dev`, the real OpenAI and Anthropic SDKs
against the emulator. What `usage(client, thread_id)` reports must match the tokens each
caller thread received, priced by the table (with both overrides), and the bridge's totals
must be the sum over its threads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from langgraph_sdk import get_client

from batch_bridge import bridge_thread_id, usage
from batch_bridge._prices import PRICES_ENV
from batch_bridge.testing import EmulatorServer
from tests.conftest import E2E_GRAPHS, DevServer, start_dev_server
from tests.e2e.helpers import finished, start, until

FILE_PRICE = {"input": 3.0, "output": 4.0}
PRICES = {  # USD per million (input, output), as the bridges should see them
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o-mini-2024-07-18": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "argument-model": (1.0, 2.0),
    "file-model": (3.0, 4.0),
    "claude-haiku-4-5-20251001": (1.00, 5.00),
    "claude-sonnet-4-5": (3.00, 15.00),
}
THREADS = [
    [
        ("cost_oa", "gpt-4o-mini", "first question"),
        ("cost_oa", "gpt-4o-mini-2024-07-18", "a second, longer question about batches"),
        ("cost_oa", "argument-model", "third"),
    ],
    [
        ("cost_oa", "file-model", "priced from the file"),
        ("cost_oa", "mystery-model", "no price for me"),
    ],
    [("cost_oa", "gpt-4o", "one more")],
    [
        ("cost_an", "claude-haiku-4-5-20251001", "hello Claude"),
        ("cost_an", "claude-sonnet-4-5", "and again, a little longer"),
    ],
]


@pytest.fixture(scope="module")
def server(
    batch_api_emulator: EmulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevServer]:
    workdir = tmp_path_factory.mktemp("costs")
    prices = workdir / "prices.json"
    prices.write_text(json.dumps({"file-model": FILE_PRICE}))
    spec = str(E2E_GRAPHS / "cost_graphs.py")
    graphs = {name: f"{spec}:{name}" for name in ("cost_oa", "cost_an")}
    env = {
        "OPENAI_BASE_URL": batch_api_emulator.base_url,
        "OPENAI_API_KEY": "emulator",
        "ANTHROPIC_BASE_URL": batch_api_emulator.anthropic_base_url,
        "ANTHROPIC_API_KEY": "emulator",
        PRICES_ENV: str(prices),
    }
    dev = start_dev_server(workdir, graphs | {"cost_agent": f"{spec}:agent"}, env=env)
    yield dev
    dev.stop()


def expected_by_model(usages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model: items, tokens as the caller's SDK saw them, and their price (or None)."""
    by_model: dict[str, dict[str, Any]] = {}
    for seen in usages:
        entry = by_model.setdefault(
            seen["model"], {"items": 0, "input": 0, "output": 0, "normal_usd": None}
        )
        tokens_in = seen.get("prompt_tokens", seen.get("input_tokens"))
        tokens_out = seen.get("completion_tokens", seen.get("output_tokens"))
        entry["items"] += 1
        entry["input"] += tokens_in
        entry["output"] += tokens_out
        if seen["model"] in PRICES:
            price_in, price_out = PRICES[seen["model"]]
            cost = (tokens_in * price_in + tokens_out * price_out) / 1e6
            entry["normal_usd"] = (entry["normal_usd"] or 0.0) + cost
    return by_model


def assert_matches(report: dict[str, Any], usages: list[dict[str, Any]]) -> None:
    wanted = expected_by_model(usages)
    assert sorted(report["by_model"]) == sorted(wanted)
    for model, want in wanted.items():
        got = report["by_model"][model]
        assert got["items"] == want["items"], model
        assert got["input_tokens"] + got["cache_read_tokens"] == want["input"], model
        assert got["output_tokens"] == want["output"], model
        if want["normal_usd"] is None:
            assert got["normal_usd"] is got["batch_usd"] is None, model
            assert model in report["unpriced_models"]
        else:
            assert got["normal_usd"] == pytest.approx(want["normal_usd"]), model
            assert got["batch_usd"] == pytest.approx(want["normal_usd"] / 2), model
            assert got["saved_usd"] == pytest.approx(want["normal_usd"] / 2), model
    priced = sum(w["normal_usd"] or 0.0 for w in wanted.values())
    assert report["normal_usd"] == pytest.approx(priced)
    assert report["saved_usd"] == pytest.approx(priced / 2)
    assert report["items"] == len(usages)
    assert json.loads(json.dumps(report)) == report


async def test_usage_per_thread_matches_its_answers_and_bridge_totals_their_sum(server):
    client = get_client(url=server.url)
    inputs = [
        {"questions": [{"bridge": b, "model": m, "text": t} for b, m, t in questions]}
        for questions in THREADS
    ]
    threads = await start(client, "cost_agent", inputs)
    done = await finished(client, threads, timeout=120)
    assert [t["status"] for t in done] == ["idle"] * len(THREADS), server.log()[-3000:]

    usages = {t["thread_id"]: t["values"]["usages"] for t in done}
    for thread_id, questions in zip(threads, THREADS, strict=True):
        assert len(usages[thread_id]) == len(questions)
        report = await usage(client, thread_id, bridge=questions[0][0])
        assert report["thread_id"] == thread_id and report["bridge"] == questions[0][0]
        assert_matches(dict(report), usages[thread_id])
    assert (await usage(client, threads[1], bridge="cost_oa"))["unpriced_models"] == [
        "mystery-model"
    ]

    for bridge in ("cost_oa", "cost_an"):
        mine = [
            u for t, q in zip(threads, THREADS, strict=True) if q[0][0] == bridge for u in usages[t]
        ]

        async def totals(bridge: str = bridge, n: int = len(mine)) -> dict[str, Any] | None:
            state = await client.threads.get_state(bridge_thread_id(bridge))
            found = state["values"].get("usage")
            return found if found and found["items"] == n else None

        assert_matches(await until(totals, timeout=60), mine)  # the bridge's state
        assert_matches(dict(await usage(client, bridge=bridge)), mine)  # its durable records
