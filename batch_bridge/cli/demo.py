"""`batch-bridge demo`: the options, and the demo's failures as one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from batch_bridge.cli._options import check_finite, seconds
from batch_bridge.demo import CHAT_MODELS, DEFAULT_MODELS, DemoError, DemoSettings, run_demo

__all__ = ["demo"]


@click.command()
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
    help="Whose batch API the bridge uses (OpenAIBatch, AnthropicBatch or GeminiBatch); "
    "all emulated.",
)
@click.option(
    "--model",
    type=click.Choice(CHAT_MODELS),
    default=None,
    help="Model the agents ask for (a chat model of the price table); the bridge prices "
    "its tokens. Default: "
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
    type=seconds(zero_ok=False),
    callback=check_finite,
    default=2.0,
    show_default=True,
    help="Seconds before a partial batch is flushed.",
)
@click.option(
    "--poll-interval",
    "poll_interval_s",
    type=seconds(zero_ok=False),
    callback=check_finite,
    default=1.0,
    show_default=True,
    help="Seconds between the bridge's polls of a running batch.",
)
@click.option(
    "--provider-latency",
    "provider_latency_s",
    type=seconds(zero_ok=True),
    callback=check_finite,
    default=3.0,
    show_default=True,
    help="Seconds the emulated provider takes per batch.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=seconds(zero_ok=False),
    callback=check_finite,
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
@click.option(
    "--keep-serving",
    is_flag=True,
    default=False,
    help="After the summary, keep the server and its status page up until Ctrl-C.",
)
def demo(**options: Any) -> None:
    """Run many agent threads through the bridge and the offline Batch API emulator.

    Starts the emulator and `langgraph dev`, shows live progress and ends with a summary
    (batches, waits, tokens, savings) and the URL of the status page showing the run's
    batches and savings (--keep-serving keeps it up). Needs no key and no network. If it
    fails, the server's log is kept and its path printed.
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
