"""The price table and the token counts of a result: what an item cost, pure functions only.

A result is a provider's response body (OpenAI chat completion, response or embeddings
list; Anthropic Message; Gemini `GenerateContentResponse` as `GeminiBatch` returns it, with
`usage_metadata` and `model_version`). Its `usage` times the table's price for its `model`
gives what the item cost at batch price and what the normal API would have charged. A result without
a recognisable `usage` has no cost; a model the table does not know is counted in tokens
with no price. Prices are never guessed: a model name matches a table entry exactly, or as
that entry plus a dated snapshot suffix ("gpt-4o-mini-2024-07-18", "claude-haiku-4-5-20251001").

The table is the shipped defaults, then the JSON file named by `BATCH_BRIDGE_PRICES`, then
`Bridge(prices=...)`; a later one wins per model.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

from batch_bridge.errors import ConfigError

__all__ = [
    "DEFAULT_PRICES",
    "DEFAULT_TABLE",
    "PRICES_AS_OF",
    "PRICES_ENV",
    "ModelPrice",
    "PriceTable",
    "TokenUsage",
    "extract_usage",
    "load_prices",
]

PRICES_ENV = "BATCH_BRIDGE_PRICES"
"""Names a JSON file `{model: {"input": ..., "output": ..., ...}}` that overrides defaults."""
PRICES_AS_OF = "2025-11-24"
"""The date the default list prices were taken from the providers' published price pages."""
_SNAPSHOT = re.compile(r"^(?P<base>.+)-(?:\d{4}-\d{2}-\d{2}|\d{8})$")


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelPrice:
    """A model's normal-API list prices in USD per million tokens, and its batch discount."""

    input: float
    """Uncached input tokens."""
    output: float
    cached_input: float | None = None
    """Input read from the prompt cache; None: billed as `input`."""
    cache_write: float | None = None
    """Input written to the prompt cache (Anthropic, 5-minute cache); None: billed as `input`."""
    batch_ratio: float = 0.5
    """Batch price over normal price; both OpenAI and Anthropic batch APIs charge half."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in ("cached_input", "cache_write"):
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"ModelPrice.{f.name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"ModelPrice.{f.name} must be finite and >= 0, got {value!r}")

    @classmethod
    def coerce(cls, model: str, value: Any) -> ModelPrice:
        """A `ModelPrice`, or a mapping of its fields (as in the JSON file)."""
        if isinstance(value, ModelPrice):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"The price of {model!r} must be a ModelPrice or a mapping with 'input' and "
                f"'output' (USD per million tokens), got {type(value).__name__}"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown or "input" not in value or "output" not in value:
            raise ConfigError(
                f"The price of {model!r} needs 'input' and 'output' and takes only "
                f"{sorted(known)}; got {sorted(value)}"
            )
        return cls(**dict(value))

    def cost_usd(self, usage: TokenUsage) -> tuple[float, float]:
        """(batch price, normal-API price) of `usage`, in USD."""
        cached = self.input if self.cached_input is None else self.cached_input
        write = self.input if self.cache_write is None else self.cache_write
        normal = (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_read_tokens * cached
            + usage.cache_write_tokens * write
        ) / 1_000_000
        return normal * self.batch_ratio, normal


def _p(
    input: float, output: float, cached: float | None = None, write: float | None = None
) -> ModelPrice:
    return ModelPrice(input=input, output=output, cached_input=cached, cache_write=write)


DEFAULT_PRICES: Mapping[str, ModelPrice] = {
    # OpenAI: input, output, cached input (the Batch API halves all of them)
    "gpt-5": _p(1.25, 10.00, 0.125),
    "gpt-5-mini": _p(0.25, 2.00, 0.025),
    "gpt-5-nano": _p(0.05, 0.40, 0.005),
    "gpt-4.1": _p(2.00, 8.00, 0.50),
    "gpt-4.1-mini": _p(0.40, 1.60, 0.10),
    "gpt-4.1-nano": _p(0.10, 0.40, 0.025),
    "gpt-4o": _p(2.50, 10.00, 1.25),
    "gpt-4o-mini": _p(0.15, 0.60, 0.075),
    "o3": _p(2.00, 8.00, 0.50),
    "o4-mini": _p(1.10, 4.40, 0.275),
    "text-embedding-3-small": _p(0.02, 0.0),
    "text-embedding-3-large": _p(0.13, 0.0),
    "text-embedding-ada-002": _p(0.10, 0.0),
    # Anthropic: input, output, cache read, 5-minute cache write (Message Batches halve all)
    "claude-opus-4-7": _p(5.00, 25.00, 0.50, 6.25),
    "claude-opus-4-6": _p(5.00, 25.00, 0.50, 6.25),
    "claude-opus-4-5": _p(5.00, 25.00, 0.50, 6.25),
    "claude-opus-4-1": _p(15.00, 75.00, 1.50, 18.75),
    "claude-opus-4-0": _p(15.00, 75.00, 1.50, 18.75),
    "claude-opus-4": _p(15.00, 75.00, 1.50, 18.75),
    "claude-sonnet-4-6": _p(3.00, 15.00, 0.30, 3.75),
    "claude-sonnet-4-5": _p(3.00, 15.00, 0.30, 3.75),
    "claude-sonnet-4-0": _p(3.00, 15.00, 0.30, 3.75),
    "claude-sonnet-4": _p(3.00, 15.00, 0.30, 3.75),
    "claude-haiku-4-5": _p(1.00, 5.00, 0.10, 1.25),
    "claude-3-5-haiku": _p(0.80, 4.00, 0.08, 1.00),
    # Google, Gemini Developer API paid tier, text input (Batch Mode halves both); other
    # Gemini models are left unpriced (counted in tokens) until checked against that page
    "gemini-2.5-flash": _p(0.30, 2.50),
}
"""List prices per million tokens as published on `PRICES_AS_OF` (standard context length;
Anthropic's long-context rates above 200K input tokens are not modelled)."""


class TokenUsage(NamedTuple):
    """A result's tokens, split by how each is billed (the four counts do not overlap)."""

    model: str
    input_tokens: int
    """Input tokens billed at the input price (cache reads and writes excluded)."""
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


def _count(node: Any, *path: str) -> int | None:
    """The count at `path` (0 when absent), or None when it is not a count."""
    for name in path:
        if node is None:
            return 0
        if not isinstance(node, Mapping):
            return None
        node = node.get(name)
    if node is None:
        return 0
    if isinstance(node, bool) or not isinstance(node, int) or node < 0:
        return None
    return node


def _gemini_usage(result: Mapping[str, Any]) -> TokenUsage | None:
    """A Gemini response's tokens: the prompt count includes cached tokens; thinking tokens
    are billed as output."""
    usage = result["usage_metadata"]
    model = result.get("model_version")
    model = model if isinstance(model, str) and model else "unknown"
    prompt, cached = (
        _count(usage, "prompt_token_count"),
        _count(usage, "cached_content_token_count"),
    )
    out, thoughts = _count(usage, "candidates_token_count"), _count(usage, "thoughts_token_count")
    if prompt is None or cached is None or out is None or thoughts is None or cached > prompt:
        return None
    return TokenUsage(model, prompt - cached, out + thoughts, cached)


def extract_usage(result: Any) -> TokenUsage | None:
    """The tokens of a provider response body, or None when it carries no usage we know."""
    if isinstance(result, Mapping) and isinstance(result.get("usage_metadata"), Mapping):
        return _gemini_usage(result)
    if not isinstance(result, Mapping) or not isinstance(result.get("usage"), Mapping):
        return None
    usage = result["usage"]
    model = result.get("model")
    model = model if isinstance(model, str) and model else "unknown"
    if "prompt_tokens" in usage:  # OpenAI chat completions and embeddings
        prompt, out = _count(usage, "prompt_tokens"), _count(usage, "completion_tokens")
        cached = _count(usage, "prompt_tokens_details", "cached_tokens")
        if prompt is None or out is None or cached is None or cached > prompt:
            return None
        return TokenUsage(model, prompt - cached, out, cached)
    if "input_tokens" not in usage:
        return None
    given, out = _count(usage, "input_tokens"), _count(usage, "output_tokens")
    if given is None or out is None:
        return None
    if "input_tokens_details" in usage or result.get("object") == "response":  # OpenAI
        cached = _count(usage, "input_tokens_details", "cached_tokens")
        if cached is None or cached > given:
            return None
        return TokenUsage(model, given - cached, out, cached)
    read = _count(usage, "cache_read_input_tokens")  # Anthropic: input excludes the cache
    write = _count(usage, "cache_creation_input_tokens")
    if read is None or write is None:
        return None
    return TokenUsage(model, given, out, read, write)


class PriceTable:
    """Prices by model name: exact first, then the name without a dated snapshot suffix."""

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self.prices = dict(prices)

    def __repr__(self) -> str:
        return f"PriceTable({len(self.prices)} models)"

    def price(self, model: str) -> ModelPrice | None:
        found = self.prices.get(model)
        if found is None and (snapshot := _SNAPSHOT.match(model)):
            found = self.prices.get(snapshot["base"])
        return found

    def cost(self, result: Any) -> dict[str, Any] | None:
        """A result's usage record (tokens, and USD at batch and normal price or None)."""
        usage = extract_usage(result)
        if usage is None:
            return None
        record: dict[str, Any] = usage._asdict()
        price = self.price(usage.model)
        batch, normal = price.cost_usd(usage) if price is not None else (None, None)
        record["batch_usd"], record["normal_usd"] = batch, normal
        return record


DEFAULT_TABLE = PriceTable(DEFAULT_PRICES)
"""The shipped prices alone (what a bridge built without `prices=` and no file uses)."""


def _read_file(path: str) -> Mapping[str, Any]:
    try:
        loaded = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{PRICES_ENV}={path!r} could not be read as a JSON price table: {exc}"
        ) from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{PRICES_ENV}={path!r} must hold a JSON object of model -> prices")
    return loaded


def load_prices(overrides: Mapping[str, Any] | None = None) -> PriceTable:
    """Defaults, then the file named by `BATCH_BRIDGE_PRICES`, then `overrides`."""
    table = dict(DEFAULT_PRICES)
    path = os.environ.get(PRICES_ENV)
    for layer in (_read_file(path) if path else {}, overrides or {}):
        if not isinstance(layer, Mapping):
            raise ConfigError(f"prices must be a mapping of model -> prices, got {layer!r}")
        for model, value in layer.items():
            if not isinstance(model, str) or not model:
                raise ConfigError(f"A price table key must be a model name, got {model!r}")
            table[model] = ModelPrice.coerce(model, value)
    return PriceTable(table)
