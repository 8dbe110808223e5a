"""Operator calls on a bridge's thread: its crons, and cancelling one of its batches.

Each goes through the platform API with the client it is given, so only a client the
deployment lets start runs and crons can make them.
"""

from __future__ import annotations

from typing import Any

from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import NotFoundError, UnprocessableEntityError

from batch_bridge._client import _missing_bridge
from batch_bridge._config import DEFAULT_SAFETY_CRON
from batch_bridge._constants import bridge_thread_id
from batch_bridge.errors import PlatformError, UnknownBatchError

__all__ = ["cancel_batch", "delete_crons", "ensure_cron"]


async def ensure_cron(
    client: LangGraphClient,
    *,
    bridge: str = "bridge",
    schedule: str = DEFAULT_SAFETY_CRON,
    flush: bool = False,
    multitask_strategy: str = "enqueue",
) -> str:
    """Create the bridge's safety-net cron once; returns its id (an existing one if equal).

    A cron with `flush=True` also forces every pending item out on each firing; its runs
    queue behind a running or scheduled tick (`multitask_strategy="enqueue"`), where the
    bridge's own safety cron uses "reject": a tick is coming anyway.
    Seconds use the six-field, seconds-last form: "* * * * * */10" fires every 10 s.
    """
    thread_id = bridge_thread_id(bridge)
    await client.threads.create(thread_id=thread_id, if_exists="do_nothing", graph_id=bridge)
    payload = {"flush": flush}
    for cron in await client.crons.search(thread_id=thread_id, limit=100):
        if cron.get("schedule") == schedule and (cron.get("payload") or {}).get("input") == payload:
            return str(cron["cron_id"])
    created = await client.crons.create_for_thread(
        thread_id, bridge, schedule=schedule, input=payload, multitask_strategy=multitask_strategy
    )
    return str(dict(created)["cron_id"])  # typed as a Run, but the API answers a cron


async def cancel_batch(client: LangGraphClient, batch_id: str, *, bridge: str = "bridge") -> str:
    """Cancel one of the bridge's batches at the provider; returns `"cancelling"` or
    `"cancelled"`.

    Runs on the bridge's thread (input `{"cancel": [batch_id]}`), after any tick running
    there, so only a client this deployment lets start runs can ask. Rows the provider
    finished still reach their callers; the others get `BatchCancelledError` naming the
    batch: once the provider's batch ends (`"cancelling"`), or already (`"cancelled"`: it
    never reached the provider, or the provider cannot cancel). `batch_id` is the bridge's
    id (`bb_...`), as its state's `in_flight` shows. Raises `UnknownBatchError` when the
    bridge holds no such batch (finished already, or another bridge's), `ConfigError` when
    the deployment has no bridge graph `bridge`.
    """
    thread_id = bridge_thread_id(bridge)
    ask: dict[str, Any] = {"cancel": [batch_id]}
    try:
        run = await client.runs.create(
            thread_id,
            bridge,
            input=ask,
            multitask_strategy="enqueue",
            if_not_exists="create",
        )
    except (NotFoundError, UnprocessableEntityError) as exc:
        raise _missing_bridge(bridge, None) from exc
    values = await client.runs.join(thread_id, run["run_id"])
    record = (values or {}).get("last_cancel") if isinstance(values, dict) else None
    if not isinstance(record, dict) or record.get("run_id") != run["run_id"]:
        error = values.get("__error__") if isinstance(values, dict) else None
        raise PlatformError(f"bridge {bridge!r} did not take the cancel of {batch_id!r}: {error}")
    outcome = str(record["outcomes"].get(batch_id))
    if outcome == "unknown":
        raise UnknownBatchError(
            f"bridge {bridge!r} holds no batch {batch_id!r}: it finished already, or the id "
            "is not one of this bridge's (its state's in_flight lists the batches out)"
        )
    return outcome


async def delete_crons(client: LangGraphClient, *, bridge: str = "bridge") -> int:
    crons = await client.crons.search(thread_id=bridge_thread_id(bridge), limit=100)
    for cron in crons:
        await client.crons.delete(cron["cron_id"])
    return len(crons)
