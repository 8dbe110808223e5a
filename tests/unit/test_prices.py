"""The price table and token extraction: pure functions, tested through tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batch_bridge import ConfigError, ModelPrice
from batch_bridge._prices import (
    DEFAULT_PRICES,
    DEFAULT_TABLE,
    PRICES_ENV,
    TokenUsage,
    extract_usage,
    load_prices,
)
from batch_bridge._usage import add_costs, fold, merge, summary

CHAT = {
    "object": "chat.completion",
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [],
    "usage": {
        "prompt_tokens": 1000,
        "completion_tokens": 200,
        "total_tokens": 1200,
        "prompt_tokens_details": {"cached_tokens": 400},
    },
}
RESPONSE = {
    "object": "response",
    "model": "gpt-4.1",
    "usage": {
        "input_tokens": 50,
        "input_tokens_details": {"cached_tokens": 10},
        "output_tokens": 7,
        "total_tokens": 57,
    },
}
EMBEDDINGS = {"object": "list", "model": "text-embedding-3-small", "usage": {"prompt_tokens": 9}}
MESSAGE = {
    "type": "message",
    "model": "claude-haiku-4-5-20251001",
    "usage": {
        "input_tokens": 30,
        "output_tokens": 5,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 1000,
    },
}


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (CHAT, TokenUsage("gpt-4o-mini-2024-07-18", 600, 200, 400, 0)),
        (RESPONSE, TokenUsage("gpt-4.1", 40, 7, 10, 0)),
        (EMBEDDINGS, TokenUsage("text-embedding-3-small", 9, 0, 0, 0)),
        (MESSAGE, TokenUsage("claude-haiku-4-5-20251001", 30, 5, 1000, 100)),
        ({"usage": {"prompt_tokens": 3, "completion_tokens": 1}}, TokenUsage("unknown", 3, 1)),
        ("Echo: a plain string", None),
        ({"answer": 42}, None),
        ({"usage": "lots"}, None),
        ({"usage": {"tokens": 5}}, None),
        ({"model": "gpt-4o", "usage": {"prompt_tokens": -1}}, None),
        ({"model": "gpt-4o", "usage": {"prompt_tokens": True}}, None),
        ({"model": "gpt-4o", "usage": {"prompt_tokens": 1.5}}, None),
        ({"model": "gpt-4o", "usage": {"prompt_tokens": 2, "completion_tokens": "3"}}, None),
        (
            {"model": "gpt-4o", "usage": {"prompt_tokens": 2, "prompt_tokens_details": {}}},
            TokenUsage("gpt-4o", 2, 0),
        ),
        (
            {
                "model": "x",
                "usage": {"prompt_tokens": 2, "prompt_tokens_details": {"cached_tokens": 3}},
            },
            None,
        ),
        (None, None),
    ],
)
def test_extract_usage(result: Any, expected: TokenUsage | None) -> None:
    assert extract_usage(result) == expected


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-haiku-4-5", "claude-haiku-4-5"),
        ("gpt-4o-audio-preview", None),  # not a dated snapshot of gpt-4o: no guess
        ("gpt-4o-mini-tts", None),
        ("ft:gpt-4o-mini-2024-07-18:org::abc", None),
        ("gpt-4o-2024-08", None),
        ("my-own-model", None),
        ("unknown", None),
    ],
)
def test_model_names_match_exactly_or_as_a_dated_snapshot(model: str, expected: str | None) -> None:
    found = DEFAULT_TABLE.price(model)
    assert found is (None if expected is None else DEFAULT_PRICES[expected])


@pytest.mark.parametrize(
    ("result", "batch_usd", "normal_usd"),
    [
        # gpt-4o-mini: 600 x 0.15 + 200 x 0.60 + 400 cached x 0.075, per million
        (CHAT, 0.00012, 0.00024),
        # gpt-4.1: 40 x 2.00 + 7 x 8.00 + 10 x 0.50
        (RESPONSE, 0.0000705, 0.000141),
        (EMBEDDINGS, 0.00000009, 0.00000018),
        # claude-haiku-4-5: 30 x 1 + 5 x 5 + 1000 x 0.10 + 100 x 1.25
        (MESSAGE, 0.00014, 0.00028),
    ],
)
def test_cost_at_batch_and_normal_price(result: Any, batch_usd: float, normal_usd: float) -> None:
    cost = DEFAULT_TABLE.cost(result)
    assert cost is not None
    assert cost["batch_usd"] == pytest.approx(batch_usd)
    assert cost["normal_usd"] == pytest.approx(normal_usd)


def test_an_unknown_model_is_counted_in_tokens_with_no_price() -> None:
    result = {"model": "my-own-model", "usage": {"prompt_tokens": 10, "completion_tokens": 4}}
    cost = DEFAULT_TABLE.cost(result)
    assert cost == {
        "model": "my-own-model",
        "input_tokens": 10,
        "output_tokens": 4,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "batch_usd": None,
        "normal_usd": None,
    }
    by_model: dict[str, Any] = {}
    add_costs(by_model, [cost, DEFAULT_TABLE.cost(CHAT)])
    total = summary("bridge", "t1", by_model)
    assert total["unpriced_models"] == ["my-own-model"]
    assert total["by_model"]["my-own-model"]["batch_usd"] is None
    assert total["by_model"]["my-own-model"]["input_tokens"] == 10
    assert total["items"] == 2
    assert total["batch_usd"] == pytest.approx(0.00012)
    assert total["saved_usd"] == pytest.approx(0.00012)
    assert json.loads(json.dumps(total)) == total


def test_a_result_without_usage_has_no_cost() -> None:
    assert DEFAULT_TABLE.cost("Echo: hi") is None


def test_overrides_layer_defaults_then_the_file_then_the_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "my-own-model": {"input": 1.0, "output": 2.0},
                "gpt-4o": {"input": 9.0, "output": 9.0, "batch_ratio": 0.6},
            }
        )
    )
    monkeypatch.setenv(PRICES_ENV, str(path))
    table = load_prices({"gpt-4o": ModelPrice(input=4.0, output=8.0)})
    assert table.price("my-own-model") == ModelPrice(input=1.0, output=2.0)
    assert table.price("gpt-4o-2024-08-06") == ModelPrice(input=4.0, output=8.0)
    assert table.price("gpt-4o-mini") == DEFAULT_PRICES["gpt-4o-mini"]
    cost = table.cost({"model": "my-own-model", "usage": {"prompt_tokens": 10**6}})
    assert cost is not None and (cost["batch_usd"], cost["normal_usd"]) == (0.5, 1.0)


@pytest.mark.parametrize(
    ("file_text", "overrides", "message"),
    [
        ("not json", None, "could not be read"),
        ("[1, 2]", None, "JSON object"),
        (None, {"m": {"input": 1.0}}, "needs 'input' and 'output'"),
        (None, {"m": {"input": 1.0, "output": 1.0, "currency": 1}}, "takes only"),
        (None, {"m": {"input": -1.0, "output": 1.0}}, "finite and >= 0"),
        (None, {"m": {"input": "cheap", "output": 1.0}}, "must be a number"),
        (None, {"m": [1.0, 2.0]}, "must be a ModelPrice or a mapping"),
        (None, {"": {"input": 1.0, "output": 1.0}}, "must be a model name"),
    ],
)
def test_a_bad_price_table_fails_at_construction(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    file_text: str | None,
    overrides: dict[str, Any] | None,
    message: str,
) -> None:
    if file_text is not None:
        path = tmp_path / "prices.json"
        path.write_text(file_text)
        monkeypatch.setenv(PRICES_ENV, str(path))
    else:
        monkeypatch.delenv(PRICES_ENV, raising=False)
    with pytest.raises(ConfigError, match=message):
        load_prices(overrides)


def test_fold_adds_each_batch_once_even_when_run_again() -> None:
    cost = DEFAULT_TABLE.cost(CHAT)
    assert cost is not None
    by_model: dict[str, Any] = {}
    add_costs(by_model, [cost])
    aggregates = {"bb_1": {"by_model": by_model}}
    first = fold({}, aggregates)
    again = fold(first, aggregates)  # the aggregate outlived a crash before its deletion
    assert again["by_model"] == first["by_model"]
    assert first["by_model"]["gpt-4o-mini-2024-07-18"]["items"] == 1
    later = fold(again, {"bb_2": {"by_model": by_model}})
    assert later["by_model"]["gpt-4o-mini-2024-07-18"]["items"] == 2
    merged: dict[str, Any] = {}
    merge(merged, {"m": "junk", "n": {"items": 1, "batch_usd": "x"}})
    assert merged["n"]["items"] == 1 and merged["n"]["batch_usd"] is None
