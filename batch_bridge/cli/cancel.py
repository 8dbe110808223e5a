"""`batch-bridge cancel`: cancel one of the bridge's batches at the provider."""

from __future__ import annotations

import asyncio

import click
import httpx
from langgraph_sdk import get_client
from langgraph_sdk.errors import APIStatusError

from batch_bridge._operate import cancel_batch
from batch_bridge.cli._options import bridge_name, deployment_url
from batch_bridge.errors import BatchBridgeError

__all__ = ["cancel"]


@click.command()
@deployment_url
@bridge_name
@click.option(
    "--batch",
    "batch_id",
    required=True,
    help="The bridge's batch id (bb_...), as the bridge state's in_flight lists it.",
)
def cancel(url: str, bridge: str, batch_id: str) -> None:
    """Cancel a batch at the provider.

    Rows the provider finished still reach their callers; the others get
    BatchCancelledError naming the batch. Waits for the bridge to take the request (it runs
    after any tick in progress), not for the provider's batch to end.
    """
    client = get_client(url=url)
    try:
        outcome = asyncio.run(cancel_batch(client, batch_id, bridge=bridge))
    except BatchBridgeError as exc:
        raise click.ClickException(str(exc)) from exc
    except APIStatusError as exc:
        raise click.ClickException(f"{url} answered HTTP {exc.status_code}: {exc}") from exc
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise click.ClickException(
            f"cannot reach {url}: {reason}; check --url (or BATCH_BRIDGE_URL)."
        ) from exc
    if outcome == "cancelled":
        click.echo(f"cancelled batch {batch_id} on bridge {bridge!r}: its callers are resumed")
    else:
        click.echo(
            f"cancelling batch {batch_id} on bridge {bridge!r}: once the provider stops it, "
            "finished rows reach their callers and the others get BatchCancelledError"
        )
