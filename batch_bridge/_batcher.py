"""`Batcher` and `Bridge`: the flush policy plus submit/poll, usable three ways.

Registered in langgraph.json, an instance is the bridge graph. Called inside a graph node on
a LangGraph server, `submit` interrupts the thread and the bridge resumes it. Called anywhere
else, `submit` batches in-process with the same rules.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

from langgraph.config import get_config
from langgraph.graph.state import CompiledStateGraph

from batch_bridge._bridge import build_bridge_graph
from batch_bridge._constants import check_bridge_name
from batch_bridge._local import LocalRunner
from batch_bridge._wait import wait, wait_sync
from batch_bridge.types import FlushPolicy, PollFunc, ShouldFlushFunc, SubmitFunc

__all__ = ["Batcher", "Bridge"]

_DEFAULT_AGE = timedelta(minutes=1)
_DEFAULT_POLL = timedelta(seconds=30)


def _in_server_graph() -> bool:
    """True inside a node whose graph has a checkpointer (interrupts need one)."""
    try:
        config = get_config()
    except RuntimeError:
        return False
    return config.get("configurable", {}).get("__pregel_checkpointer") is not None


class Batcher:
    """Collects items, flushes them as batches through `submit_func`, polls `poll_func`.

    `submit_func(items) -> batch_id` and `poll_func(batch_id)` may be sync or async. Poll
    returns None while the batch runs, results in submission order when done, or an
    exception (returned or raised) when the whole batch failed; an exception inside the
    results fails only that item.
    """

    def __init__(
        self,
        submit_func: SubmitFunc,
        poll_func: PollFunc,
        max_batch_size: int = 50_000,
        max_batch_age: timedelta | float | None = _DEFAULT_AGE,
        should_flush_func: ShouldFlushFunc | None = None,
        name: str = "bridge",
        poll_interval: timedelta | float = _DEFAULT_POLL,
    ) -> None:
        if not callable(submit_func) or not callable(poll_func):
            raise TypeError("submit_func and poll_func must be callables (sync or async).")
        self.submit_func = submit_func
        self.poll_func = poll_func
        self.name = check_bridge_name(name)
        self.policy = FlushPolicy.coerce(
            max_batch_size=max_batch_size,
            max_batch_age=max_batch_age,
            should_flush=should_flush_func,
            poll_interval=poll_interval,
        )
        self._graph: CompiledStateGraph | None = None
        self._runner: LocalRunner | None = None
        self._runner_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, policy={self.policy!r})"

    @property
    def graph(self) -> CompiledStateGraph:
        """The bridge graph; built once because the server asks for it on every run."""
        if self._graph is None:
            self._graph = build_bridge_graph(
                self.submit_func, self.poll_func, self.policy, self.name
            )
        return self._graph

    def __call__(self) -> CompiledStateGraph:
        return self.graph

    def _local(self) -> LocalRunner:
        with self._runner_lock:
            if self._runner is None:
                self._runner = LocalRunner(self.submit_func, self.poll_func, self.policy, self.name)
            return self._runner

    def submit(self, item: Any) -> Any:
        """Return `item`'s result: in a sync graph node via the bridge, elsewhere in-process.

        In a node the thread is interrupted and the node re-runs from the top on resume.
        """
        if _in_server_graph():
            return wait_sync(item, batcher=self.name)
        return self._local().submit(item).result()

    async def asubmit(self, item: Any) -> Any:
        """Awaitable `submit`, for async nodes and async scripts."""
        if _in_server_graph():
            return await wait(item, batcher=self.name)
        return await asyncio.wrap_future(self._local().submit(item))


class Bridge(Batcher):
    """A bridge graph from `submit`/`poll` callables: `bridge = Bridge(submit=..., poll=...)`.

    Register it in langgraph.json under the name callers pass to `wait(..., batcher=NAME)`.
    """

    def __init__(
        self,
        *,
        submit: SubmitFunc,
        poll: PollFunc,
        max_batch_size: int = 50_000,
        max_batch_age: timedelta | float | None = _DEFAULT_AGE,
        should_flush: ShouldFlushFunc | None = None,
        name: str = "bridge",
        poll_interval: timedelta | float = _DEFAULT_POLL,
    ) -> None:
        super().__init__(
            submit,
            poll,
            max_batch_size=max_batch_size,
            max_batch_age=max_batch_age,
            should_flush_func=should_flush,
            name=name,
            poll_interval=poll_interval,
        )
