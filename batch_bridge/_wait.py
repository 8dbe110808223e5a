"""The caller's side: park an item with the bridge and sleep as an interrupt until it is done.

Everything before `interrupt()` runs again each time the node re-executes (its own resume, a
sibling's resume, a retry), so the only side effect here is a put-if-absent keyed by the
interrupt id, which is stable across replays.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from langgraph.config import get_config
from langgraph.errors import GraphInterrupt
from langgraph.types import interrupt

from batch_bridge import _client
from batch_bridge._bridge import needs_wake
from batch_bridge._constants import (
    BRIDGE_URL_ENV,
    CALLBACK_URL_ENV,
    SERVER_URL_ENV,
    TICK_MARKER,
    WAIT_KIND,
    check_bridge_name,
    item_key,
    meta_namespace,
    queue_namespace,
)
from batch_bridge._results import is_envelope, unwrap
from batch_bridge.errors import ConfigError, WaitOutsideGraphError

__all__ = ["wait", "wait_sync"]


def _running_config() -> dict[str, Any]:
    try:
        return get_config()  # type: ignore[return-value]
    except RuntimeError:
        raise WaitOutsideGraphError() from None


def _check_item(item: Any) -> None:
    try:
        json.dumps(item)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"The item sent to the bridge must be JSON-serialisable (it is stored and sent to "
            f"another graph): {exc}"
        ) from exc


def _record(config: dict[str, Any], interrupt_id: str, item: Any, resume_url: str | None) -> dict:
    conf = config["configurable"]
    return {
        "item": item,
        "thread_id": conf["thread_id"],
        "interrupt_id": interrupt_id,
        "assistant_id": conf.get("assistant_id") or conf.get("graph_id"),
        "graph_id": conf.get("graph_id"),
        "resume_url": resume_url,
        "created_at": time.time(),
    }


def _remote_target(url: str | None) -> tuple[str | None, str | None]:
    """(bridge URL, callback URL) for a bridge on another deployment; (None, None) if local."""
    bridge_url = url or os.environ.get(BRIDGE_URL_ENV)
    if not bridge_url:
        return None, None
    callback = os.environ.get(CALLBACK_URL_ENV) or os.environ.get(SERVER_URL_ENV)
    if not callback:
        raise ConfigError(
            f"The bridge at {bridge_url} cannot resume this thread: set {CALLBACK_URL_ENV} to "
            "this deployment's URL."
        )
    return bridge_url, callback


def _answer(value: Any) -> Any:
    return unwrap(value) if is_envelope(value) else value


def _question(item: Any, batcher: str) -> dict[str, Any]:
    return {"kind": WAIT_KIND, "batcher": batcher, "item": item}


def _bridge_name(batcher: Any) -> str:
    return check_bridge_name(getattr(batcher, "name", batcher))


async def wait(item: Any, *, batcher: Any = "bridge", url: str | None = None) -> Any:
    """Send `item` to the bridge graph `batcher` and return its own result.

    The calling thread is interrupted until the bridge resumes it, and the node then runs
    again from the top: code before `wait()` repeats, so keep it free of side effects.
    A failed item raises `BatchItemError` (or `BatchFailedError`) with the provider's message.
    `batcher` is the bridge's graph name (or a `Batcher`); `url` (or BATCH_BRIDGE_URL)
    names a bridge on another deployment.
    """
    config = _running_config()
    batcher = _bridge_name(batcher)
    _check_item(item)
    try:
        return _answer(interrupt(_question(item, batcher)))
    except GraphInterrupt as exc:
        await _enqueue(config, exc.args[0][0].id, item, batcher, url)
        raise


async def _enqueue(
    config: dict[str, Any], interrupt_id: str, item: Any, batcher: str, url: str | None
) -> None:
    """Put-if-absent the item's record, then wake the bridge unless a tick will read it."""
    bridge_url, callback = _remote_target(url)
    queue = _client.BridgeQueue(batcher, bridge_url)
    namespace, key = (
        queue_namespace(batcher),
        item_key(config["configurable"]["thread_id"], interrupt_id),
    )
    if await queue.get(namespace, key) is not None:
        return
    await queue.put(namespace, key, _record(config, interrupt_id, item, callback))
    if not needs_wake(await queue.get(meta_namespace(batcher), TICK_MARKER), time.time()):
        return
    try:
        await queue.wake()
    except ConfigError:
        await queue.delete(namespace, key)
        raise


def wait_sync(item: Any, *, batcher: Any = "bridge", url: str | None = None) -> Any:
    """`wait()` for sync nodes: same contract, blocking calls instead of awaits."""
    config = _running_config()
    batcher = _bridge_name(batcher)
    _check_item(item)
    try:
        return _answer(interrupt(_question(item, batcher)))
    except GraphInterrupt as exc:
        _enqueue_sync(config, exc.args[0][0].id, item, batcher, url)
        raise


def _enqueue_sync(
    config: dict[str, Any], interrupt_id: str, item: Any, batcher: str, url: str | None
) -> None:
    bridge_url, callback = _remote_target(url)
    queue = _client.SyncBridgeQueue(batcher, bridge_url)
    namespace, key = (
        queue_namespace(batcher),
        item_key(config["configurable"]["thread_id"], interrupt_id),
    )
    if queue.get(namespace, key) is not None:
        return
    queue.put(namespace, key, _record(config, interrupt_id, item, callback))
    if not needs_wake(queue.get(meta_namespace(batcher), TICK_MARKER), time.time()):
        return
    try:
        queue.wake()
    except ConfigError:
        queue.delete(namespace, key)
        raise
