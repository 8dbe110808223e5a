"""Option types and callbacks the commands share: a refused value is one line, exit code 2."""

from __future__ import annotations

import math

import click
import httpx

__all__ = [
    "bridge_name",
    "check_finite",
    "check_schedule",
    "check_url",
    "deployment_url",
    "seconds",
]


def check_finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number of seconds.", ctx, param)
    return value


def seconds(*, zero_ok: bool) -> click.FloatRange:
    return click.FloatRange(min=0.0, min_open=not zero_ok)


def check_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise click.BadParameter(f"{value!r} is not a URL ({exc}).", ctx, param) from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise click.BadParameter(
            f"{value!r} is not an http(s) URL such as https://my-deployment.example.com.",
            ctx,
            param,
        )
    return value.rstrip("/")


def check_schedule(ctx: click.Context, param: click.Parameter, value: str) -> str:
    fields = value.split()
    if len(fields) not in (5, 6):
        raise click.BadParameter(
            f"{value!r} has {len(fields)} fields; a cron schedule has 5 (minute hour day "
            'month weekday, e.g. "*/5 * * * *") or 6 with seconds last ("* * * * * */30").',
            ctx,
            param,
        )
    return " ".join(fields)


deployment_url = click.option(
    "--url",
    envvar="BATCH_BRIDGE_URL",
    required=True,
    callback=check_url,
    help="The deployment that runs the bridge (default: $BATCH_BRIDGE_URL). Its API key "
    "is read from LANGGRAPH_API_KEY or LANGSMITH_API_KEY.",
)
"""`--url`: the deployment that runs the bridge, for every command that talks to one."""

bridge_name = click.option(
    "--bridge", default="bridge", show_default=True, help="The bridge's graph name."
)
