"""`batch-bridge status`: the bridge's status page in the terminal, read from its JSON route."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import click
import httpx
from rich.console import Console
from rich.table import Table

from batch_bridge.cli._options import bridge_name, deployment_url
from batch_bridge.http._app import STATUS_PREFIX

__all__ = ["fetch_status", "render_status", "status"]

API_KEY_ENVS = ("LANGGRAPH_API_KEY", "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY")


def fetch_status(url: str, bridge: str, token: str | None = None) -> dict[str, Any]:
    """The deployment's `status.json` for `bridge`; `click.ClickException` when refused."""
    headers = {}
    key = next((os.environ[e] for e in API_KEY_ENVS if os.environ.get(e)), None)
    if key:
        headers["x-api-key"] = key
    if token:
        headers["Authorization"] = f"Bearer {token}"
    where = f"{url}{STATUS_PREFIX}/status.json"
    try:
        answer = httpx.get(where, params={"bridge": bridge}, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise click.ClickException(
            f"cannot reach {url}: {reason}; check --url (or BATCH_BRIDGE_URL)."
        ) from exc
    if answer.status_code == 404:
        raise click.ClickException(
            f'{where} is not served: add "http": {{"app": "batch_bridge.http:app"}} to '
            "the deployment's langgraph.json."
        )
    if answer.status_code in (401, 403):
        raise click.ClickException(
            f"{url} refused the request (HTTP {answer.status_code}): pass --token, or set "
            "LANGGRAPH_API_KEY for a platform deployment."
        )
    if answer.status_code != 200:
        raise click.ClickException(f"{where} answered HTTP {answer.status_code}: {answer.text}")
    data: dict[str, Any] = answer.json()
    return data


def _ago(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {round(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {round(seconds % 3600 / 60)} min"


def _text(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


Column = tuple[str, Callable[[Mapping[str, Any]], Any]]


def _table(title: str, columns: list[Column], rows: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for label, _ in columns:
        table.add_column(label)
    for row in rows:
        table.add_row(*(_text(show(row)) for _, show in columns))
    return table


def _field(name: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda row: row.get(name)


def render_status(data: Mapping[str, Any], console: Console) -> None:
    """The same sections as the page, as rich tables."""
    pending, now = data["pending"], data["generated_at"]
    console.print(f"[bold]BatchBridge status: {data['bridge']}[/bold]")
    console.print(
        f"pending {pending['count']} (oldest {_ago(pending['oldest_age_s'])}), "
        f"in flight {data['in_flight_count']}, being delivered {data['delivering']}, "
        f"on the normal API {data.get('falling_back', 0)}, "
        f"undeliverable {data['undeliverable']['count']}, "
        f"dropped {data['dropped']['count']}, "
        f"quarantined {data['quarantined']['count']}, ticks {data['ticks']} "
        f"(next in {_ago(data['next_tick_in_s'])})"
    )
    in_flight: list[Column] = [
        ("Batch", _field("batch_id")),
        ("Provider ids", _field("provider_ids")),
        ("Status", _field("status")),
        ("Done", _field("done")),
        ("Of", _field("total")),
        ("Age", lambda r: _ago(r.get("age_s"))),
        ("Next poll in", lambda r: _ago(r.get("next_poll_in_s"))),
        ("Last error", _field("last_error")),
    ]
    console.print(_table("Batches in flight", in_flight, data["in_flight"]))
    finished: list[Column] = [
        ("Batch", _field("batch_id")),
        ("Provider ids", _field("provider_ids")),
        ("Outcome", _field("outcome")),
        ("Ok", _field("ok")),
        ("Failed", _field("failed")),
        ("Duration", lambda r: _ago(r.get("duration_s"))),
        ("Finished", lambda r: f"{_ago(now - r['finished_at'])} ago"),
        ("Error", _field("error")),
    ]
    console.print(_table("Last finished batches", finished, data["finished"]))
    _render_usage(data.get("usage") or {}, console)
    totals: list[Column] = [("Counter", _field("name")), ("Value", _field("value"))]
    rows = [{"name": k, "value": v} for k, v in data["totals"].items()]
    console.print(_table("Totals", totals, rows))
    for name in ("undeliverable", "dropped", "quarantined"):
        records: list[Column] = [
            ("Record", _field("key")),
            ("Reason", _field("reason")),
            ("When", lambda r: f"{_ago(now - r['at'])} ago" if r.get("at") else "-"),
        ]
        console.print(_table(f"{name.capitalize()} (newest)", records, data[name]["newest"]))
    refused: list[Column] = [
        ("Caller URL", lambda r: r.get("url") or "this deployment"),
        ("Reason", _field("reason")),
        ("Items", _field("count")),
        ("Last", lambda r: f"{_ago(now - r['last_at'])} ago" if r.get("last_at") else "-"),
    ]
    console.print(_table("Refused callers", refused, data.get("refused") or []))
    console.print(f"Last error: {data.get('last_error') or 'none'}")


def _render_usage(usage: Mapping[str, Mapping[str, Any]], console: Console) -> None:
    if not usage:
        console.print("Tokens, cost and savings per model: no data")
        return
    fields = list(dict.fromkeys(f for figures in usage.values() for f in figures))
    columns: list[Column] = [("Model", _field("model")), *((f, _field(f)) for f in fields)]
    rows = [{"model": model, **figures} for model, figures in usage.items()]
    console.print(_table("Tokens, cost and savings per model", columns, rows))


@click.command()
@deployment_url
@bridge_name
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option(
    "--token",
    envvar="BATCH_BRIDGE_TOKEN",
    default=None,
    help="Bearer token for a deployment with custom auth (default: $BATCH_BRIDGE_TOKEN).",
)
def status(url: str, bridge: str, as_json: bool, token: str | None) -> None:
    """Show what the bridge is doing: pending items, batches in flight and finished,
    undeliverable and quarantined records, the last error, and usage per model.

    Reads the deployment's /batch-bridge/status.json, the data of its status page.
    """
    data = fetch_status(url, bridge, token)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    render_status(data, Console(width=max(100, Console().width)))
