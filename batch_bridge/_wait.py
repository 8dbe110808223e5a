"""The caller's side: record an item in the bridge's ledger and sleep as an interrupt.

Everything before `interrupt()` runs again each time the node re-executes (its own resume, a
sibling's resume, a worker's retry), so the only side effect here is a put-if-absent in the
ledger keyed by the interrupt id, which is stable across replays. The record lives until its
delivery is confirmed, so no replay ever enqueues the same item twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Generator
from datetime import timedelta
from typing import Any, Literal

from langgraph.config import get_config
from langgraph.errors import GraphInterrupt
from langgraph.types import interrupt

from batch_bridge import _client
from batch_bridge._constants import (
    BRIDGE_URL_ENV,
    CALLBACK_URL_ENV,
    SERVER_URL_ENV,
    WAIT_KIND,
    check_bridge_name,
)
from batch_bridge._marker import TICK_MARKER, needs_wake, wake_early
from batch_bridge._preflight import check_bridge, check_bridge_sync
from batch_bridge._results import is_envelope, unwrap
from batch_bridge._store import (
    ALIASES,
    ITEMS,
    META,
    ItemRecord,
    RecordError,
    alias_value,
    check_storable,
    digest,
    namespace,
    parse_alias,
)
from batch_bridge._trust import require_shared_secret
from batch_bridge.errors import ConfigError, WaitOutsideGraphError
from batch_bridge.types import max_wait_seconds

__all__ = ["wait", "wait_sync"]


def _running_config() -> dict[str, Any]:
    try:
        return get_config()  # type: ignore[return-value]
    except RuntimeError:
        raise WaitOutsideGraphError() from None


def _check_item(item: Any) -> str:
    """Refuse, before the interrupt, an item the platform could not store; return its digest."""
    try:
        item_digest = digest(item)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"The item sent to the bridge must be JSON-serialisable (it is stored and sent to "
            f"another graph): {exc}"
        ) from exc
    check_storable(item, "The item sent to the bridge")
    return item_digest


def _record(
    config: dict[str, Any],
    interrupt_id: str,
    item: Any,
    item_digest: str,
    resume_url: str | None,
    max_wait_s: float | None = None,
) -> ItemRecord:
    conf = config["configurable"]
    now = time.time()
    return ItemRecord(
        thread_id=conf["thread_id"],
        interrupt_id=interrupt_id,
        assistant_id=conf.get("assistant_id") or conf.get("graph_id"),
        graph_id=conf.get("graph_id"),
        resume_url=resume_url,
        item=item,
        digest=item_digest,
        created_at=now,
        alias=_replay_alias(config, item_digest),
        deadline_at=None if max_wait_s is None else now + max_wait_s,
    )


def _replay_alias(config: dict[str, Any], item_digest: str) -> str:
    """The call's identity when a worker retry re-creates the checkpoint and so the interrupt id.

    A run killed before its checkpoint was saved is retried from the one before, which gets
    a new id, hence new task and interrupt ids; what stays is the run, the step, the node's
    place in the graph (subgraph names, `Send` index), how many interrupts it had answered,
    and the item.
    """
    conf = config["configurable"]
    meta = config.get("metadata") or {}
    scratchpad = conf.get("__pregel_scratchpad")
    namespace_path = "|".join(
        part.split(":")[0] for part in str(conf.get("checkpoint_ns") or "").split("|")
    )
    parts = [
        conf["thread_id"],
        conf.get("run_id") or meta.get("run_id"),
        meta.get("langgraph_step"),
        namespace_path,
        meta.get("langgraph_path"),
        len(getattr(scratchpad, "resume", None) or []),
        item_digest,
    ]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


Key = tuple[tuple[str, ...], str]
Reads = tuple[Literal["get"], list[Key]]
Writes = tuple[Literal["put"], list[tuple[tuple[str, ...], str, dict[str, Any]]]]
Steps = Generator[Reads | Writes, Any, str]


def _enqueue_steps(new: ItemRecord, bridge: str) -> Steps:
    """The put-if-absent protocol, free of I/O so async and sync callers share it.

    Yields store reads (answered with one value per key, read at once) and writes (the
    item never durable before its alias, so a retried run always finds the record its
    first try wrote). Returns the key of the record that answers this call, which the
    interrupt carries as its `ref` (the bridge resumes the interrupt with that ref).
    """
    items, aliases = namespace(bridge, ITEMS), namespace(bridge, ALIASES)
    existing, aliased = yield ("get", [(items, new.key), (aliases, new.alias or "")])
    if existing is not None:
        record = _plan(existing, new.key, new)
        if record is not None:
            yield ("put", [(items, record.key, record.to_value())])
        return new.key
    target = parse_alias(aliased)
    if target is not None and target != new.key:
        (earlier,) = yield ("get", [(items, target)])
        if earlier is not None:
            record = _plan(earlier, target, new)
            if record is not None:
                yield ("put", [(items, target, record.to_value())])
            return target
    yield (
        "put",
        [(aliases, new.alias or "", alias_value(new.key)), (items, new.key, new.to_value())],
    )
    return new.key


def _plan(existing: Any, key: str, new: ItemRecord) -> ItemRecord | None:
    """What to write given what the ledger holds under `key`: the put-if-absent rule.

    A replayed node finds its record and writes nothing, whatever stage the item reached.
    A still queued record is refreshed if the item changed (nothing was sent yet); an item
    that changed after it was sent is a bug in the node (code before `wait()` must compute
    the same item each time), reported as such. An undeliverable or dropped result whose
    thread waits again is armed for delivery once more.
    """
    try:
        old = ItemRecord.from_value(key, existing)
    except RecordError:
        return new if key == new.key else None
    if old.digest != new.digest:
        if old.status == "queued" and key == new.key:
            return new
        raise ConfigError(
            f"wait() in thread {new.thread_id!r} was given a different item than on the "
            f"node's earlier run, after the first was already sent (status {old.status!r}): "
            "code before wait() must compute the same item every time the node runs."
        )
    if old.status in ("undeliverable", "dropped") and old.result is not None:
        old.status, old.attempts, old.failures = "result", 0, 0
        old.result_at = old.next_attempt_at = time.time()
        return old
    return None


def _remote_target(url: str | None) -> tuple[str | None, str | None]:
    """(bridge URL, callback URL) for a bridge on another deployment; (None, None) if local."""
    bridge_url = url or os.environ.get(BRIDGE_URL_ENV)
    if not bridge_url:
        return None, None
    require_shared_secret(bridge_url)
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
    return {"kind": WAIT_KIND, "batcher": batcher, "digest": item_digest}


def _bridge_name(batcher: Any) -> str:
    return check_bridge_name(getattr(batcher, "name", batcher))


async def wait(
    item: Any,
    *,
    batcher: Any = "bridge",
    url: str | None = None,
    max_wait: float | timedelta | None = None,
) -> Any:
    """Send `item` to the bridge graph `batcher` and return its own result.

    The calling thread is interrupted until the bridge resumes it, and the node then runs
    again from the top: code before `wait()` repeats, so keep it free of side effects and
    make it compute the same item each time.
    A failed item raises `BatchItemError` (or `BatchFailedError`) with the provider's message.
    `batcher` is the bridge's graph name (or a `Batcher`); `url` (or BATCH_BRIDGE_URL)
    names a bridge on another deployment; if that bridge's trust notice says it would
    refuse this caller, `ConfigError` names the setting to fix before the thread sleeps.
    `max_wait` (seconds or a timedelta) is how long the item may wait for its batch: past
    it the bridge answers it through the provider's normal API (`Bridge(fallback=)`).
    """
    config = _running_config()
    batcher = _bridge_name(batcher)
    deadline = max_wait_seconds(max_wait)
    item_digest = _check_item(item)
    question = _question(item, batcher, item_digest)
    try:
        return _answer(interrupt(question))
    except GraphInterrupt as exc:
        question["ref"] = await _enqueue(
            config, exc.args[0][0].id, item, item_digest, batcher, url, deadline
        )
        raise


async def _enqueue(
    config: dict[str, Any],
    interrupt_id: str,
    item: Any,
    item_digest: str,
    batcher: str,
    url: str | None,
    max_wait_s: float | None = None,
) -> str:
    """Check that a remote bridge would resume this caller (cached), record the item once,
    then wake the bridge unless a tick is sure to read it."""
    bridge_url, callback = _remote_target(url)
    queue = _client.BridgeQueue(batcher, bridge_url)
    if bridge_url is not None and callback is not None:
        await check_bridge(queue, batcher, bridge_url, callback)
    new = _record(config, interrupt_id, item, item_digest, callback, max_wait_s)
    steps = _enqueue_steps(new, batcher)
    wrote, answer = False, None
    try:
        while True:
            step = steps.send(answer)
            if step[0] == "get":
                answer = await queue.get_many(step[1])
            else:
                await queue.put_many(step[1])
                wrote, answer = True, None
    except StopIteration as done:
        ref: str = done.value
    marker = await queue.get(namespace(batcher, META), TICK_MARKER) if wrote else None
    if not wrote or not needs_wake(marker, time.time(), new.deadline_at):
        return ref
    try:
        await queue.wake(early=wake_early(marker, new.deadline_at))
    except ConfigError:
        await queue.delete(namespace(batcher, ITEMS), ref)
        raise
    return ref


def wait_sync(
    item: Any,
    *,
    batcher: Any = "bridge",
    url: str | None = None,
    max_wait: float | timedelta | None = None,
) -> Any:
    """`wait()` for sync nodes: same contract, blocking calls instead of awaits."""
    config = _running_config()
    batcher = _bridge_name(batcher)
    deadline = max_wait_seconds(max_wait)
    item_digest = _check_item(item)
    question = _question(item, batcher, item_digest)
    try:
        return _answer(interrupt(question))
    except GraphInterrupt as exc:
        question["ref"] = _enqueue_sync(
            config, exc.args[0][0].id, item, item_digest, batcher, url, deadline
        )
        raise


def _enqueue_sync(
    config: dict[str, Any],
    interrupt_id: str,
    item: Any,
    item_digest: str,
    batcher: str,
    url: str | None,
    max_wait_s: float | None = None,
) -> str:
    bridge_url, callback = _remote_target(url)
    queue = _client.SyncBridgeQueue(batcher, bridge_url)
    if bridge_url is not None and callback is not None:
        check_bridge_sync(queue, batcher, bridge_url, callback)
    new = _record(config, interrupt_id, item, item_digest, callback, max_wait_s)
    steps = _enqueue_steps(new, batcher)
    wrote, answer = False, None
    try:
        while True:
            step = steps.send(answer)
            if step[0] == "get":
                answer = [queue.get(ns, key) for ns, key in step[1]]
            else:
                for ns, key, value in step[1]:
                    queue.put(ns, key, value)
                wrote, answer = True, None
    except StopIteration as done:
        ref: str = done.value
    marker = queue.get(namespace(batcher, META), TICK_MARKER) if wrote else None
    if not wrote or not needs_wake(marker, time.time(), new.deadline_at):
        return ref
    try:
        queue.wake(early=wake_early(marker, new.deadline_at))
    except ConfigError:
        queue.delete(namespace(batcher, ITEMS), ref)
        raise
    return ref
