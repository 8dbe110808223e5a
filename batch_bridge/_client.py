"""The platform client: every call BatchBridge makes to the LangGraph API lives here."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import time
from collections.abc import Awaitable
from datetime import datetime
from typing import Any, TypeVar

from langgraph.config import get_store
from langgraph.store.base import BaseStore
from langgraph.store.base.batch import AsyncBatchedBaseStore
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.client import LangGraphClient, SyncLangGraphClient
from langgraph_sdk.errors import ConflictError, NotFoundError, UnprocessableEntityError

from batch_bridge import _trust
from batch_bridge._constants import SERVER_URL_ENV, bridge_thread_id
from batch_bridge._marker import HINT_SOON_S, TICK_MARKER, hint_needs_tick, tick_marker
from batch_bridge._store import META, namespace
from batch_bridge.errors import ConfigError, PlatformError

log = logging.getLogger("batch_bridge")

SCHEDULE_SLACK_S = 1.0
"""A waiting run due this much after the tick needed still counts (runs start in whole
seconds)."""

T = TypeVar("T")
_clients: dict[str | None, LangGraphClient] = {}
_sync_clients: dict[str, SyncLangGraphClient] = {}


async def as_deployment(work: Awaitable[T]) -> T:
    """Await `work` as the deployment itself, not as the user whose run we are in.

    In process, the LangGraph server authorises calls as the user of the current run (custom
    auth would then file the bridge's thread under that user, and hide other users' threads
    from it). The bridge and the wake-up call act for the deployment: they run in a copy of
    the context with the server's auth context cleared.
    """
    context = contextvars.copy_context()
    try:
        from langgraph_api.utils import AuthContext
    except ImportError:  # not inside a LangGraph server: nothing to clear
        return await work
    context.run(AuthContext.set, None)
    return await asyncio.create_task(_awaited(work), context=context)


async def _awaited(work: Awaitable[T]) -> T:
    return await work


def client_for(url: str | None) -> LangGraphClient:
    """An SDK client per URL; `None` is the in-process client of the server we run in."""
    if url not in _clients:
        _clients[url] = get_client(url=url)
    return _clients[url]


_callback_clients: dict[str, LangGraphClient] = {}


def callback_client(url: str | None) -> LangGraphClient:
    """The client the bridge resumes callers with: in process for its own deployment, else
    only for an allow-listed URL, with the key configured for it (never the environment's
    default key, which would go to any URL a record names)."""
    if url is None:
        return client_for(None)
    api_key = _trust.callback_api_key(url)
    if url not in _callback_clients:
        _callback_clients[url] = get_client(url=url, api_key=api_key)
    return _callback_clients[url]


def sync_client_for(url: str | None) -> SyncLangGraphClient:
    """Sync nodes cannot use the in-process transport: they call the server's own URL."""
    resolved = url or os.environ.get(SERVER_URL_ENV)
    if not resolved:
        raise ConfigError(
            f"A sync node needs the server's own URL to reach the bridge; set {SERVER_URL_ENV} "
            "(langgraph dev sets it) or call `await batcher.asubmit(item)` from an async node."
        )
    if resolved not in _sync_clients:
        _sync_clients[resolved] = get_sync_client(url=resolved)
    return _sync_clients[resolved]


def _missing_bridge(bridge: str, url: str | None) -> ConfigError:
    where = f"the deployment at {url}" if url else "this deployment"
    return ConfigError(
        f"No bridge graph named {bridge!r} on {where}: register it in langgraph.json "
        f'(e.g. "{bridge}": "./graphs/bridge.py:bridge") or point BATCH_BRIDGE_URL at the '
        "deployment that has it."
    )


def _kick_kwargs(bridge: str) -> dict[str, Any]:
    return {
        "thread_id": bridge_thread_id(bridge),
        "assistant_id": bridge,
        "input": {},
        "multitask_strategy": "reject",
        "if_not_exists": "create",
    }


async def kick(
    client: LangGraphClient, bridge: str, url: str | None, *, early: bool = False
) -> None:
    """Make sure a tick will run after this item was recorded.

    A `reject` run starts a tick on an idle bridge; a 409 means a tick is running or
    scheduled. A running tick may already have read the queue, so unless a run is waiting
    on the thread we queue one behind it: at most a few extra cheap ticks, never a lost item.
    `early`: the item's deadline comes before the scheduled tick, so a run is queued now
    whatever waits (the platform starts the earliest due run first).
    """
    kwargs = _kick_kwargs(bridge)
    try:
        await client.runs.create(**kwargs)
    except ConflictError:
        if early or not await run_waiting(client, bridge):
            await client.runs.create(**{**kwargs, "multitask_strategy": "enqueue"})
    except (NotFoundError, UnprocessableEntityError) as exc:
        raise _missing_bridge(bridge, url) from exc


def kick_sync(
    client: SyncLangGraphClient, bridge: str, url: str | None, *, early: bool = False
) -> None:
    kwargs = _kick_kwargs(bridge)
    try:
        client.runs.create(**kwargs)
    except ConflictError:
        pending = client.runs.list(kwargs["thread_id"], status="pending", limit=10)
        if early or not _starts_within(pending, HINT_SOON_S):
            client.runs.create(**{**kwargs, "multitask_strategy": "enqueue"})
    except (NotFoundError, UnprocessableEntityError) as exc:
        raise _missing_bridge(bridge, url) from exc


async def run_waiting(client: LangGraphClient, bridge: str, within_s: float = HINT_SOON_S) -> bool:
    """Whether a run queued on the bridge's thread is due within `within_s` seconds.

    A run created with `after_seconds` (a scheduled tick) is due at its `created_at`: one due
    much later (a caller's deadline comes first, or a webhook bridge's 15-minute safety poll)
    does not stand in for a tick needed sooner."""
    thread_id = bridge_thread_id(bridge)
    return _starts_within(await client.runs.list(thread_id, status="pending", limit=10), within_s)


def _starts_within(pending: list[Any], within_s: float) -> bool:
    horizon = time.time() + within_s
    return any(_due_at(run) <= horizon for run in pending)


def _due_at(run: Any) -> float:
    """When a pending run may start; an unreadable time counts as now."""
    try:
        return datetime.fromisoformat(str(run["created_at"])).timestamp()
    except (KeyError, TypeError, ValueError):
        return 0.0


async def schedule_tick(client: LangGraphClient, bridge: str, delay_s: float) -> bool:
    """Queue the next tick on the bridge's thread unless a run waiting there is due by then."""
    thread_id = bridge_thread_id(bridge)
    if await run_waiting(client, bridge, delay_s + SCHEDULE_SLACK_S):
        return False
    await client.runs.create(
        thread_id,
        bridge,
        input={},
        after_seconds=int(delay_s),
        multitask_strategy="enqueue",
    )
    return True


async def tick_for_hint(client: LangGraphClient, store: BaseStore, bridge: str) -> bool:
    """Start a tick at once for a batch a webhook made due, unless one will read it anyway
    (`hint_needs_tick`); returns whether one was started."""
    thread_id = bridge_thread_id(bridge)
    stored = await store.aget(namespace(bridge, META), TICK_MARKER)
    try:
        pending = await client.runs.list(thread_id, status="pending", limit=10)
    except NotFoundError:
        pending = []
    starts = [_due_at(run) for run in pending]
    if not hint_needs_tick(None if stored is None else stored.value, starts, time.time()):
        return False
    await client.runs.create(
        thread_id, bridge, input={}, multitask_strategy="enqueue", if_not_exists="create"
    )
    return True


async def resume(
    client: LangGraphClient, thread_id: str, assistant_id: str, answers: dict[str, Any]
) -> None:
    """Resume one caller thread; always a {interrupt_id: value} map (a scalar breaks on 2+)."""
    await client.runs.create(
        thread_id,
        assistant_id,
        command={"resume": answers},
        multitask_strategy="reject",
    )


async def result(
    client: LangGraphClient,
    thread_id: str,
    *,
    timeout_s: float | None = None,
    poll_interval_s: float = 0.5,
) -> dict[str, Any]:
    """A thread's final values, once every `wait()` in it has been answered.

    `runs.wait` on a caller returns as soon as the thread is interrupted (status `success`,
    with `__interrupt__`); the answer arrives in a later run that the bridge starts. This
    waits for the thread itself to settle. Raises `PlatformError` with the run's error if the
    thread ended in error, `TimeoutError` after `timeout_s`.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        thread = await client.threads.get(thread_id)
        if thread["status"] == "idle":
            return dict(thread["values"] or {})
        if thread["status"] == "error":
            raise PlatformError(
                f"thread {thread_id!r} failed: {await _last_error(client, thread_id)}"
            )
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(
                f"thread {thread_id!r} still {thread['status']!r} after {timeout_s}s"
            )
        await asyncio.sleep(poll_interval_s)


async def _last_error(client: LangGraphClient, thread_id: str) -> str:
    for run in await client.runs.list(thread_id, limit=10):
        if run["status"] == "error":
            joined = await client.runs.join(thread_id, run["run_id"])
            error = joined.get("__error__") if isinstance(joined, dict) else None
            if isinstance(error, dict):
                return f"{error.get('error')}: {error.get('message')}"
    return "no error details recorded"


def _local_store() -> BaseStore:
    store = get_store()
    if store is None:
        raise ConfigError(
            "This graph run has no store, so wait() cannot reach a bridge: run the graph on a "
            "LangGraph server (langgraph dev or LangGraph Platform), or set BATCH_BRIDGE_URL "
            "to a deployment that runs the bridge."
        )
    return store


class BridgeQueue:
    """A caller's access to one bridge's store: in-process on the same deployment (about
    30x faster than HTTP), through the SDK when the bridge lives at `url`."""

    def __init__(self, bridge: str, url: str | None) -> None:
        self.bridge, self.url = bridge, url
        self.client = client_for(url)
        self.store = _local_store() if url is None else None

    async def get(self, namespace: tuple[str, ...], key: str) -> Any:
        if self.store is not None:
            stored = await self.store.aget(namespace, key)
            return None if stored is None else stored.value
        try:
            item = await self.client.store.get_item(namespace, key)
        except NotFoundError:
            return None
        return None if item is None else item["value"]

    async def put(self, namespace: tuple[str, ...], key: str, value: dict[str, Any]) -> None:
        if self.store is not None:
            await self.store.aput(namespace, key, value, index=False)
        else:
            await self.client.store.put_item(namespace, key, value, index=False)

    async def get_many(self, keys: list[tuple[tuple[str, ...], str]]) -> list[Any]:
        """Values of several records, read at once: in-process they join one store round
        trip, with the reads of every other call in the node's step."""
        return list(await asyncio.gather(*(self.get(ns, key) for ns, key in keys)))

    async def put_many(self, entries: list[tuple[tuple[str, ...], str, dict[str, Any]]]) -> None:
        """Write several records, none durable before the ones listed ahead of it.

        The platform's stores batch in a queue drained by one task, one batch at a time, so
        puts started together join one batch, in order: one statement on PostgreSQL, hence
        atomic. Any other store gets them one after the other."""
        if isinstance(self.store, AsyncBatchedBaseStore):
            await asyncio.gather(*(self.put(ns, key, value) for ns, key, value in entries))
            return
        for ns, key, value in entries:
            await self.put(ns, key, value)

    async def delete(self, namespace: tuple[str, ...], key: str) -> None:
        if self.store is not None:
            await self.store.adelete(namespace, key)
        else:
            await self.client.store.delete_item(namespace, key)

    async def wake(self, *, early: bool = False) -> None:
        """Make sure a run is pending on the bridge thread, then say so to later callers."""
        await as_deployment(kick(self.client, self.bridge, self.url, early=early))
        await self.put(
            namespace(self.bridge, META), TICK_MARKER, tick_marker("scheduled", time.time())
        )


class SyncBridgeQueue:
    """`BridgeQueue` for sync nodes."""

    def __init__(self, bridge: str, url: str | None) -> None:
        self.bridge, self.url = bridge, url
        self.store = _local_store() if url is None else None

    @property
    def client(self) -> SyncLangGraphClient:
        """Created on first use: most sync callers never need an API call."""
        return sync_client_for(self.url)

    def get(self, namespace: tuple[str, ...], key: str) -> Any:
        if self.store is not None:
            stored = self.store.get(namespace, key)
            return None if stored is None else stored.value
        try:
            item = self.client.store.get_item(namespace, key)
        except NotFoundError:
            return None
        return None if item is None else item["value"]

    def put(self, namespace: tuple[str, ...], key: str, value: dict[str, Any]) -> None:
        if self.store is not None:
            self.store.put(namespace, key, value, index=False)
        else:
            self.client.store.put_item(namespace, key, value, index=False)

    def delete(self, namespace: tuple[str, ...], key: str) -> None:
        if self.store is not None:
            self.store.delete(namespace, key)
        else:
            self.client.store.delete_item(namespace, key)

    def wake(self, *, early: bool = False) -> None:
        kick_sync(self.client, self.bridge, self.url, early=early)
        self.put(namespace(self.bridge, META), TICK_MARKER, tick_marker("scheduled", time.time()))
