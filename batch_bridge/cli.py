"""`batch-bridge`: run the demo, serve the emulator, set up the bridge's cron."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click


@click.group()
def main() -> None:
    """BatchBridge: provider batch APIs as ordinary awaits inside LangGraph."""


@main.command()
@click.option("--threads", default=300, show_default=True, help="Agent threads to run.")
@click.option("--model", default="gpt-4o-mini", show_default=True)
@click.option("--max-batch-size", default=100, show_default=True)
@click.option(
    "--max-batch-age",
    "max_batch_age_s",
    default=2.0,
    show_default=True,
    help="Seconds before a partial batch is flushed.",
)
@click.option("--poll-interval", "poll_interval_s", default=1.0, show_default=True)
@click.option(
    "--provider-latency",
    "provider_latency_s",
    default=3.0,
    show_default=True,
    help="Seconds the emulated provider takes per batch.",
)
@click.option(
    "--config",
    type=click.Path(exists=True, path_type=Path),
    default=Path("langgraph.json"),
    show_default=True,
)
def demo(**options: object) -> None:
    """Many agent threads through the bridge and the offline Batch API emulator."""
    from batch_bridge.demo import DemoSettings, run_demo

    summary = run_demo(DemoSettings(**options))  # type: ignore[arg-type]
    if summary.failed or summary.succeeded < summary.threads:
        raise SystemExit(1)


@main.command()
@click.option(
    "--url", envvar="BATCH_BRIDGE_URL", required=True, help="The deployment that runs the bridge."
)
@click.option("--bridge", default="bridge", show_default=True, help="The bridge's graph name.")
@click.option(
    "--schedule",
    default="*/1 * * * *",
    show_default=True,
    help='Cron schedule; six fields, seconds last, for seconds: "* * * * * */10".',
)
@click.option(
    "--flush/--no-flush",
    default=False,
    show_default=True,
    help="Also force every pending item out on each firing.",
)
def cron(url: str, bridge: str, schedule: str, flush: bool) -> None:
    """Create the bridge's safety-net cron (idempotent: an equal cron is reused)."""
    from langgraph_sdk import get_client

    from batch_bridge import ensure_cron

    cron_id = asyncio.run(
        ensure_cron(get_client(url=url), bridge=bridge, schedule=schedule, flush=flush)
    )
    click.echo(cron_id)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def emulator(ctx: click.Context) -> None:
    """Serve the offline OpenAI Batch API emulator (options: `--help`)."""
    from batch_bridge.testing.__main__ import main as serve

    serve.main(args=ctx.args, standalone_mode=True)
