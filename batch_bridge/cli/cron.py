"""`batch-bridge cron`: a cron on a deployment that starts the bridge's tick on a schedule."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Literal, NamedTuple

import click
import httpx
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import APIStatusError, NotFoundError, UnprocessableEntityError

from batch_bridge._constants import bridge_thread_id
from batch_bridge.cli._options import bridge_name, check_schedule, deployment_url

__all__ = ["CLI_CRON_TAG", "CronResult", "apply_cron", "cron"]

CLI_CRON_TAG = "batch_bridge_cli"
"""Metadata key (value true) on the crons this command creates: the only ones it replaces."""


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


@click.command()
@deployment_url
@bridge_name
@click.option(
    "--schedule",
    default="*/1 * * * *",
    show_default=True,
    callback=check_schedule,
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
