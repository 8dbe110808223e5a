"""`batch-bridge`: run the demo, serve the emulator, set up the bridge's cron.

One click group; each subcommand's `--help` lists its own options. Expected failures (a bad
option value, an unreachable URL, an unknown bridge, a schedule the server refuses) end as
one line on stderr, never a traceback: exit code 2 for usage errors, 1 for the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from pathlib import Path
from typing import Any, Literal, NamedTuple

try:
    import click
    import rich  # noqa: F401
except ImportError:  # the console script exists in every install; its parts come with [cli]
    raise SystemExit(
        "batch-bridge needs its command-line parts: pip install 'batch-bridge[cli]'"
    ) from None
import httpx
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import APIStatusError, NotFoundError, UnprocessableEntityError

from batch_bridge._constants import bridge_thread_id
from batch_bridge.demo import (
    DEFAULT_MODELS,
    PRICES_PER_MTOK,
    DemoError,
    DemoSettings,
    run_demo,
)
from batch_bridge.testing.__main__ import main as emulator

__all__ = ["CLI_CRON_TAG", "CronResult", "apply_cron", "main"]

CLI_CRON_TAG = "batch_bridge_cli"
"""Metadata key (value true) on the crons this command creates: the only ones it replaces."""


@click.group()
@click.version_option(package_name="batch-bridge", prog_name="batch-bridge")
def main() -> None:
    """BatchBridge: provider batch APIs as ordinary awaits inside LangGraph."""


main.add_command(emulator, name="emulator")


def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number of seconds.", ctx, param)
    return value


def _seconds(*, zero_ok: bool) -> click.FloatRange:
    return click.FloatRange(min=0.0, min_open=not zero_ok)


@main.command()
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="Agent threads to run, one question each.",
)
@click.option(
    "--provider",
    type=click.Choice(sorted(DEFAULT_MODELS)),
    default="openai",
    show_default=True,
    help="Whose batch API the bridge uses (OpenAIBatch or AnthropicBatch); both emulated.",
)
@click.option(
    "--model",
    type=click.Choice(sorted(PRICES_PER_MTOK)),
    default=None,
    help="Model the agents ask for; the summary prices its tokens. Default: "
    + ", ".join(f"{model} ({provider})" for provider, model in DEFAULT_MODELS.items())
    + ".",
)
@click.option(
    "--max-batch-size",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Items in one provider batch at most.",
)
@click.option(
    "--max-batch-age",
    "max_batch_age_s",
    type=_seconds(zero_ok=False),
    callback=_finite,
    default=2.0,
    show_default=True,
    help="Seconds before a partial batch is flushed.",
)
@click.option(
    "--poll-interval",
    "poll_interval_s",
    type=_seconds(zero_ok=False),
    callback=_finite,
    default=1.0,
    show_default=True,
    help="Seconds between the bridge's polls of a running batch.",
)
@click.option(
    "--provider-latency",
    "provider_latency_s",
    type=_seconds(zero_ok=True),
    callback=_finite,
    default=3.0,
    show_default=True,
    help="Seconds the emulated provider takes per batch.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=_seconds(zero_ok=False),
    callback=_finite,
    default=600.0,
    show_default=True,
    help="Seconds to wait for every agent to answer once the server is up.",
)
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=Path("langgraph.json"),
    show_default=True,
    help="The langgraph.json that registers the graphs 'bridge' and 'agent'.",
)
def demo(**options: Any) -> None:
    """Run many agent threads through the bridge and the offline Batch API emulator.

    Starts the emulator and `langgraph dev`, shows live progress and ends with a summary
    (batches, waits, tokens, savings). Needs no key and no network. If it fails, the
    server's log is kept and its path printed.
    """
    settings = DemoSettings(**options)
    try:
        summary = run_demo(settings)
    except DemoError as exc:
        kept = f"; server log kept at {exc.server_log}" if exc.server_log else ""
        raise click.ClickException(f"{str(exc).rstrip('.')}{kept}") from exc
    missing = settings.threads - summary.succeeded
    if missing > 0:
        kept = f"; server log kept at {summary.server_log}" if summary.server_log else ""
        click.echo(f"{missing} of {settings.threads} agents did not answer{kept}", err=True)
        click.get_current_context().exit(1)


def _url(ctx: click.Context, param: click.Parameter, value: str) -> str:
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


def _schedule(ctx: click.Context, param: click.Parameter, value: str) -> str:
    fields = value.split()
    if len(fields) not in (5, 6):
        raise click.BadParameter(
            f"{value!r} has {len(fields)} fields; a cron schedule has 5 (minute hour day "
            'month weekday, e.g. "*/5 * * * *") or 6 with seconds last ("* * * * * */30").',
            ctx,
            param,
        )
    return " ".join(fields)


class CronResult(NamedTuple):
    """What `apply_cron` did."""

    action: Literal["created", "kept", "replaced"]
    cron_id: str
    """The cron in place now."""
    removed: tuple[str, ...] = ()
    """The CLI crons deleted: the ones replaced, or duplicates of the kept one."""
    previous_schedule: str | None = None
    """The replaced cron's schedule."""

    def describe(self, *, bridge: str, schedule: str, flush: bool) -> str:
        what = f"on bridge {bridge!r}: schedule {schedule!r}, flush {'on' if flush else 'off'}"
        removed = ", ".join(self.removed)
        if self.action == "replaced":
            was = f" (was {self.previous_schedule!r})" if self.previous_schedule else ""
            return f"replaced cron {removed} by {self.cron_id} {what}{was}"
        extra = f"; removed duplicate cron {removed}" if self.removed else ""
        return f"{self.action} cron {self.cron_id} {what}{extra}"


def _is_cli_cron(cron: Any, flush: bool) -> bool:
    payload = cron.get("payload") or {}
    metadata = cron.get("metadata") or payload.get("metadata") or {}
    return metadata.get(CLI_CRON_TAG) is True and payload.get("input") == {"flush": flush}


async def apply_cron(
    client: LangGraphClient, *, bridge: str, schedule: str, flush: bool
) -> CronResult:
    """Make the bridge's CLI cron for this `flush` setting fire on `schedule`.

    Only crons this command created (metadata `{CLI_CRON_TAG: true}`) with the same input
    `{"flush": flush}` are considered, so the bridge's own safety cron and crons made with
    `ensure_cron` are left alone. One with this schedule is kept; otherwise the new cron is
    created first and the old ones deleted after, so a refused schedule changes nothing.
    Raises `click.ClickException` for an unknown bridge; SDK and httpx errors pass through.
    """
    if not await client.assistants.search(graph_id=bridge, limit=1):
        raise click.ClickException(f"the deployment has no graph {bridge!r}; check --bridge")
    thread_id = bridge_thread_id(bridge)
    await client.threads.create(thread_id=thread_id, if_exists="do_nothing", graph_id=bridge)
    crons = await client.crons.search(thread_id=thread_id, limit=100)
    mine = [c for c in crons if _is_cli_cron(c, flush)]
    same = [c for c in mine if c.get("schedule") == schedule]
    if same:
        cron_id = str(same[0]["cron_id"])
    else:
        created = await client.crons.create_for_thread(
            thread_id,
            bridge,
            schedule=schedule,
            input={"flush": flush},
            metadata={CLI_CRON_TAG: True},
            multitask_strategy="enqueue",
        )
        cron_id = str(dict(created)["cron_id"])  # typed as a Run, but the API answers a cron
    removed = tuple(str(c["cron_id"]) for c in mine if str(c["cron_id"]) != cron_id)
    for old in removed:
        with contextlib.suppress(NotFoundError):  # deleted meanwhile: just as good
            await client.crons.delete(old)
    if same:
        return CronResult("kept", cron_id, removed)
    if mine:
        return CronResult("replaced", cron_id, removed, str(mine[0].get("schedule")))
    return CronResult("created", cron_id)


def _api_error(url: str, exc: APIStatusError) -> str:
    message = str(exc).strip() or exc.response.reason_phrase
    return f"{url} answered HTTP {exc.status_code}: {message}"


@main.command()
@click.option(
    "--url",
    envvar="BATCH_BRIDGE_URL",
    required=True,
    callback=_url,
    help="The deployment that runs the bridge (default: $BATCH_BRIDGE_URL). Its API key "
    "is read from LANGGRAPH_API_KEY or LANGSMITH_API_KEY.",
)
@click.option("--bridge", default="bridge", show_default=True, help="The bridge's graph name.")
@click.option(
    "--schedule",
    default="*/1 * * * *",
    show_default=True,
    callback=_schedule,
    help='Cron schedule in UTC; for seconds, six fields, seconds last: "* * * * * */10".',
)
@click.option(
    "--flush/--no-flush",
    default=False,
    show_default=True,
    help="Also force every pending item out on each firing.",
)
def cron(url: str, bridge: str, schedule: str, flush: bool) -> None:
    """Create or update a cron that starts the bridge's tick on a schedule.

    Idempotent: the cron this command made for this bridge and --flush setting is kept
    when its schedule is the same, and replaced when it differs. The bridge's own safety
    cron (every minute, created by its first tick) is never touched.
    """
    client = get_client(url=url)
    try:
        result = asyncio.run(apply_cron(client, bridge=bridge, schedule=schedule, flush=flush))
    except UnprocessableEntityError as exc:
        raise click.ClickException(f"{url} refused schedule {schedule!r}: {exc}") from exc
    except NotFoundError as exc:
        raise click.ClickException(f"no graph {bridge!r} at {url}: {exc}") from exc
    except APIStatusError as exc:
        raise click.ClickException(_api_error(url, exc)) from exc
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise click.ClickException(
            f"cannot reach {url}: {reason}; check --url (or BATCH_BRIDGE_URL)."
        ) from exc
    click.echo(result.describe(bridge=bridge, schedule=schedule, flush=flush))
