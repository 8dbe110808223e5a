"""What the bridge's items cost, recorded durably and summed per caller thread and per bridge.

When `Batches.finish` records results, each caller thread gets one usage record per batch,
keyed by the batch id, in a namespace per caller thread (`usage/<thread_id>`): its per-model
sums over the thread's members of that batch. A thread of a hundred parallel calls costs one
write, not a hundred. A re-run of `finish` after a crash sums the same members again (those
recorded before it and those it records) and overwrites the record, so nothing is added
twice. An item answered by the normal API after its deadline has a record of its own, keyed
by its item key. Both outlive the item records (`Reliability.usage_retention_s`), so a
thread's sum survives the purge of delivered items.

The bridge's totals come from one aggregate per batch (`usage_batches/<batch_id>`, written
once, before the items' results) that the tick folds into a running total in `meta`; the
total names the aggregates it folded, so a fold re-run after a crash skips them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypedDict

from langgraph_sdk.errors import NotFoundError

from batch_bridge._constants import NAMESPACE_ROOT, STORE_PAGE
from batch_bridge._prices import PRICES_AS_OF
from batch_bridge._records import META

__all__ = ["ModelUsage", "UsageSummary", "usage"]

USAGE, USAGE_BATCHES, USAGE_TOTALS = "usage", "usage_batches", "usage_totals"
USAGE_KIND: Literal["batch_bridge.usage"] = "batch_bridge.usage"
_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
_USD = ("batch_usd", "normal_usd", "saved_usd")


class ModelUsage(TypedDict):
    """One model's tokens and cost; the USD sums are None when none of its items had a price."""

    items: int
    input_tokens: int
    """Uncached input tokens (cache reads and writes are counted apart)."""
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    batch_usd: float | None
    """What the items cost at batch price."""
    normal_usd: float | None
    """What they would have cost on the provider's normal API."""
    saved_usd: float | None
    unpriced_items: int
    """Items of this model the price table had no price for (counted in tokens only)."""
    fallback_items: int
    """Items answered by the provider's normal API after their `max_wait` (counted at the
    price paid: `batch_usd` is what they cost, at batch price only on OpenAI's flex tier)."""


class UsageSummary(TypedDict):
    """Tokens and cost of a caller thread's items (or of a whole bridge), JSON-safe."""

    kind: Literal["batch_bridge.usage"]
    bridge: str
    thread_id: str | None
    """None for a bridge's totals."""
    items: int
    """Results with a usage; results without one (a generic bridge's) have no cost."""
    fallback_items: int
    """Of those, items answered by the normal API once their deadline passed (`max_wait`)."""
    batch_usd: float
    """Sum over priced items only; see `unpriced_models`."""
    normal_usd: float
    saved_usd: float
    by_model: dict[str, ModelUsage]
    unpriced_models: list[str]
    """Models with items the price table has no price for: counted in tokens, no price."""
    prices_as_of: str
    """The date of the shipped default prices (overrides may differ)."""


def thread_label(thread_id: str) -> str:
    """A thread id as a namespace label (labels may not contain '.')."""
    return thread_id.replace(".", "%2E")


def usage_namespace(bridge: str, thread_id: str | None = None) -> tuple[str, ...]:
    base = (NAMESPACE_ROOT, bridge, USAGE)
    return base if thread_id is None else (*base, thread_label(thread_id))


def batch_usage_key(batch_id: str, page: int) -> str:
    """The key of one page's share of a batch's usage (`finish` writes a batch by pages)."""
    return batch_id if page == 0 else f"{batch_id}#{page}"


def batch_of_usage_key(key: str) -> str:
    return key.partition("#")[0]


def item_usage(
    cost: Mapping[str, Any], thread_id: str, batch_id: str | None, at: float
) -> dict[str, Any]:
    """The per-item usage record (the item record's `usage`, plus where and when)."""
    return {"kind": USAGE_KIND, "thread_id": thread_id, "batch_id": batch_id, "at": at, **cost}


def thread_share(
    by_model: dict[str, ModelUsage], thread_id: str, batch_id: str, at: float
) -> dict[str, Any]:
    """A caller thread's usage record for one batch: its members' per-model sums."""
    return {
        "kind": USAGE_KIND,
        "thread_id": thread_id,
        "batch_id": batch_id,
        "at": at,
        "by_model": by_model,
    }


def add_records(by_model: dict[str, ModelUsage], values: Iterable[Any]) -> None:
    """Add stored usage records of both shapes: a thread's share of a batch, an item's own."""
    for value in values:
        if not isinstance(value, Mapping):
            continue
        share = value.get("by_model")
        if isinstance(share, Mapping):
            merge(by_model, share)
        else:
            add_costs(by_model, [value])


def _empty() -> ModelUsage:
    return ModelUsage(
        items=0,
        input_tokens=0,
        output_tokens=0,
        cache_read_tokens=0,
        cache_write_tokens=0,
        batch_usd=None,
        normal_usd=None,
        saved_usd=None,
        unpriced_items=0,
        fallback_items=0,
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def add_costs(by_model: dict[str, ModelUsage], costs: Iterable[Mapping[str, Any]]) -> None:
    """Add item usage records (as `PriceTable.cost` makes them) into `by_model`."""
    for cost in costs:
        model = cost.get("model")
        if not isinstance(model, str):
            continue
        entry = by_model.setdefault(model, _empty())
        entry["items"] += 1
        entry["fallback_items"] += 1 if cost.get("fallback") else 0
        for name in _TOKENS:
            entry[name] += int(_number(cost.get(name)) or 0)  # type: ignore[literal-required]
        batch, normal = _number(cost.get("batch_usd")), _number(cost.get("normal_usd"))
        if batch is None or normal is None:
            entry["unpriced_items"] += 1
            continue
        entry["batch_usd"] = (entry["batch_usd"] or 0.0) + batch
        entry["normal_usd"] = (entry["normal_usd"] or 0.0) + normal
        entry["saved_usd"] = (entry["saved_usd"] or 0.0) + normal - batch


def merge(by_model: dict[str, ModelUsage], more: Mapping[str, Any]) -> None:
    """Add per-model sums (an aggregate's or a total's) into `by_model`; ignores junk."""
    for model, sums in more.items():
        if not isinstance(sums, Mapping):
            continue
        entry = by_model.setdefault(model, _empty())
        for name in ("items", "unpriced_items", "fallback_items", *_TOKENS):
            entry[name] += int(_number(sums.get(name)) or 0)  # type: ignore[literal-required]
        for name in _USD:
            value = _number(sums.get(name))
            if value is not None:
                entry[name] = (entry[name] or 0.0) + value  # type: ignore[literal-required]


def summary(bridge: str, thread_id: str | None, by_model: dict[str, ModelUsage]) -> UsageSummary:
    """The public record over per-model sums (USD rounded to a billionth of a dollar)."""
    for entry in by_model.values():
        for name in _USD:
            value = entry[name]  # type: ignore[literal-required]
            if value is not None:
                entry[name] = round(value, 9)  # type: ignore[literal-required]

    def total(name: str) -> float:
        values: list[float] = [e[name] or 0.0 for e in by_model.values()]  # type: ignore[literal-required]
        return round(sum(values), 9)

    return UsageSummary(
        kind=USAGE_KIND,
        bridge=bridge,
        thread_id=thread_id,
        items=sum(e["items"] for e in by_model.values()),
        fallback_items=sum(e.get("fallback_items", 0) for e in by_model.values()),
        batch_usd=total("batch_usd"),
        normal_usd=total("normal_usd"),
        saved_usd=total("saved_usd"),
        by_model=dict(sorted(by_model.items())),
        unpriced_models=sorted(m for m, e in by_model.items() if e["unpriced_items"]),
        prices_as_of=PRICES_AS_OF,
    )


def fold(totals: Mapping[str, Any], aggregates: Mapping[str, Any]) -> dict[str, Any]:
    """The new running total: `totals` plus every aggregate it has not folded yet.

    `folded` names every aggregate seen now; the caller deletes them after writing the total,
    so one still there after a crash is skipped by the next fold."""
    by_model: dict[str, ModelUsage] = {}
    merge(by_model, totals.get("by_model") or {})
    done = set(totals.get("folded") or ())
    for batch_id, value in aggregates.items():
        if batch_id not in done and isinstance(value, Mapping):
            merge(by_model, value.get("by_model") or {})
    return {"kind": USAGE_KIND, "by_model": by_model, "folded": sorted(aggregates)}


def bridge_totals(
    totals: Mapping[str, Any], aggregates: Mapping[str, Any]
) -> dict[str, ModelUsage]:
    """Per-model totals of a bridge, read at any moment: the total and its unfolded rest."""
    by_model: dict[str, ModelUsage] = fold(totals, aggregates)["by_model"]
    return by_model


async def _values(client: Any, namespace: tuple[str, ...]) -> dict[str, Any]:
    """Every record of a namespace by key, read in pages through the SDK."""
    found: dict[str, Any] = {}
    offset = 0
    while True:
        page = await client.store.search_items(list(namespace), limit=STORE_PAGE, offset=offset)
        items = page["items"]
        offset += len(items)
        for stored in items:
            found.setdefault(stored["key"], stored["value"])
        if len(items) < STORE_PAGE:
            return found


async def usage(
    client: Any, thread_id: str | None = None, *, bridge: str = "bridge"
) -> UsageSummary:
    """Tokens, batch cost, normal-API cost and savings of a caller thread's items (or, with
    no `thread_id`, of everything the bridge recorded), read from the bridge's deployment.

    `client` is a `langgraph_sdk` async client for the deployment the bridge runs on.
    """
    by_model: dict[str, ModelUsage] = {}
    if thread_id is not None:
        records = await _values(client, usage_namespace(bridge, thread_id))
        add_records(by_model, records.values())
        return summary(bridge, thread_id, by_model)
    try:
        stored = await client.store.get_item([NAMESPACE_ROOT, bridge, META], USAGE_TOTALS)
    except NotFoundError:
        stored = None
    totals = stored["value"] if stored else {}
    aggregates = await _values(client, (NAMESPACE_ROOT, bridge, USAGE_BATCHES))
    return summary(bridge, None, bridge_totals(totals, aggregates))
