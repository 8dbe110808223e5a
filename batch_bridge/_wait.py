"""The caller's side: record an item in the bridge's ledger and sleep as an interrupt.

Everything before `interrupt()` runs again each time the node re-executes (its own resume, a
sibling's resume, a worker's retry), so the only side effect here is a put-if-absent in the
ledger keyed by the interrupt id, which is stable across replays. The record lives until its
delivery is confirmed, so no replay ever enqueues the same item twice.
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
)
from batch_bridge._results import is_envelope, unwrap
from batch_bridge._store import (
    ITEMS,
    META,
    ItemRecord,
    RecordError,
    check_storable,
    digest,
    namespace,
)
from batch_bridge.errors import ConfigError, WaitOutsideGraphError

__all__ = ["wait", "wait_sync"]


def _running_config() -> dict[str, Any]:
    try:
        return get_config()  # type: ignore[return-value]
    except RuntimeError:
        raise WaitOutsideGraphError() from None


def _check_item(item: Any) -> str:
    """Refuse, before the interrupt, an item the platform could not store; return its digest."""
    try:
        json.dumps(item)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"The item sent to the bridge must be JSON-serialisable (it is stored and sent to "
            f"another graph): {exc}"
        ) from exc
    check_storable(item, "The item sent to the bridge")
    return digest(item)


def _record(
    config: dict[str, Any], interrupt_id: str, item: Any, item_digest: str, resume_url: str | None
) -> ItemRecord:
    conf = config["configurable"]
    return ItemRecord(
        thread_id=conf["thread_id"],
        interrupt_id=interrupt_id,
        assistant_id=conf.get("assistant_id") or conf.get("graph_id"),
        graph_id=conf.get("graph_id"),
        resume_url=resume_url,
        item=item,
        digest=item_digest,
        created_at=time.time(),
    )


def _plan(existing: Any, new: ItemRecord) -> ItemRecord | None:
    """What to write given what the ledger holds under the key: the put-if-absent rule.

    A replayed node finds its record and writes nothing, whatever stage the item reached.
    A still queued record is refreshed if the item changed (nothing was sent yet); an item
    that changed after it was sent is a bug in the node (code before `wait()` must compute
    the same item each time), reported as such. An undeliverable result whose thread waits
    again is armed for delivery once more.
    """
    if existing is None:
        return new
    try:
        old = ItemRecord.from_value(new.key, existing)
    except RecordError:
        return new
    if old.digest != new.digest:
        if old.status == "queued":
            return new
        raise ConfigError(
            f"wait() in thread {new.thread_id!r} was given a different item than on the "
            f"node's earlier run, after the first was already sent (status {old.status!r}): "
            "code before wait() must compute the same item every time the node runs."
        )
    if old.status == "undeliverable" and old.result is not None:
        old.status, old.attempts, old.failures = "result", 0, 0
        old.result_at = old.next_attempt_at = time.time()
        return old
    return None


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


def _question(item: Any, batcher: str, item_digest: str) -> dict[str, Any]:
    return {"kind": WAIT_KIND, "batcher": batcher, "digest": item_digest, "item": item}


def _bridge_name(batcher: Any) -> str:
    return check_bridge_name(getattr(batcher, "name", batcher))


async def wait(item: Any, *, batcher: Any = "bridge", url: str | None = None) -> Any:
    """Send `item` to the bridge graph `batcher` and return its own result.

    The calling thread is interrupted until the bridge resumes it, and the node then runs
    again from the top: code before `wait()` repeats, so keep it free of side effects and
    make it compute the same item each time.
    A failed item raises `BatchItemError` (or `BatchFailedError`) with the provider's message.
    `batcher` is the bridge's graph name (or a `Batcher`); `url` (or BATCH_BRIDGE_URL)
    names a bridge on another deployment.
    """
    config = _running_config()
    batcher = _bridge_name(batcher)
    item_digest = _check_item(item)
    try:
        return _answer(interrupt(_question(item, batcher, item_digest)))
    except GraphInterrupt as exc:
        await _enqueue(config, exc.args[0][0].id, item, item_digest, batcher, url)
        raise


async def _enqueue(
    config: dict[str, Any],
    interrupt_id: str,
    item: Any,
    item_digest: str,
    batcher: str,
    url: str | None,
) -> None:
    """Put-if-absent the item's ledger record, then wake the bridge unless a tick will read it."""
    bridge_url, callback = _remote_target(url)
    queue = _client.BridgeQueue(batcher, bridge_url)
    new = _record(config, interrupt_id, item, item_digest, callback)
    items = namespace(batcher, ITEMS)
    record = _plan(await queue.get(items, new.key), new)
    if record is None:
        return
    await queue.put(items, record.key, record.to_value())
    if not needs_wake(await queue.get(namespace(batcher, META), TICK_MARKER), time.time()):
        return
    try:
        await queue.wake()
    except ConfigError:
        await queue.delete(items, record.key)
        raise


def wait_sync(item: Any, *, batcher: Any = "bridge", url: str | None = None) -> Any:
    """`wait()` for sync nodes: same contract, blocking calls instead of awaits."""
    config = _running_config()
    batcher = _bridge_name(batcher)
    item_digest = _check_item(item)
    try:
        return _answer(interrupt(_question(item, batcher, item_digest)))
    except GraphInterrupt as exc:
        _enqueue_sync(config, exc.args[0][0].id, item, item_digest, batcher, url)
        raise


def _enqueue_sync(
    config: dict[str, Any],
    interrupt_id: str,
    item: Any,
    item_digest: str,
    batcher: str,
    url: str | None,
) -> None:
    bridge_url, callback = _remote_target(url)
    queue = _client.SyncBridgeQueue(batcher, bridge_url)
    new = _record(config, interrupt_id, item, item_digest, callback)
    items = namespace(batcher, ITEMS)
    record = _plan(queue.get(items, new.key), new)
    if record is None:
        return
    queue.put(items, record.key, record.to_value())
    if not needs_wake(queue.get(namespace(batcher, META), TICK_MARKER), time.time()):
        return
    try:
        queue.wake()
    except ConfigError:
        queue.delete(items, record.key)
        raise
