"""The base of the drop-in clients (`wrap_openai`, `wrap_anthropic`): SDK look-alikes whose
create calls suspend the calling graph node and are answered through a bridge."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, Generic, TypeAlias, TypeVar

from batch_bridge.types import max_wait_seconds

__all__ = ["Delegate", "DropIn", "WaitFunc", "request_body", "wait_for"]

WaitFunc: TypeAlias = Callable[..., Awaitable[Any]]

_REFUSED_OPTIONS = ("extra_headers", "extra_query")


def request_body(
    kwargs: Mapping[str, Any], *, omitted: tuple[type, ...], api: str
) -> dict[str, Any]:
    """The batch request body of a drop-in client's create call: what the SDK would send.

    Options that change how the SDK sends (headers, query, timeout) have no place in a
    batch line and raise, as does `stream=True`; `extra_body` is merged as the SDK does.
    """
    if kwargs.get("stream"):
        raise TypeError(
            f"stream=True cannot go through {api}; call the unwrapped client for streaming"
        )
    refused = [name for name in _REFUSED_OPTIONS if kwargs.get(name)]
    if refused:
        raise TypeError(f"{', '.join(refused)} cannot be sent with a batched request")
    body = {
        name: value
        for name, value in kwargs.items()
        if name not in ("extra_body", "timeout", "stream", *_REFUSED_OPTIONS)
        and not isinstance(value, omitted)
    }
    body.update(kwargs.get("extra_body") or {})
    return body


async def wait_for(
    item: Any, *, batcher: str, wait: WaitFunc | None, max_wait: float | None = None
) -> Any:
    """Send one item through `batcher` from inside a graph node; `wait` stands in for tests."""
    deadline = {} if max_wait is None else {"max_wait": max_wait}
    if wait is not None:
        return await wait(item, batcher=batcher, **deadline)
    from batch_bridge._wait import wait as bridge_wait

    return await bridge_wait(item, batcher=batcher, max_wait=max_wait)


_C = TypeVar("_C")


class DropIn(Generic[_C]):
    """Base of the drop-in clients: the real client is made on first use (so wrapping
    needs no API key) and answers everything the drop-in does not batch."""

    def __init__(
        self,
        client: _C | None,
        *,
        batcher: str,
        wait: WaitFunc | None,
        max_wait: float | timedelta | None = None,
    ) -> None:
        self._client = client
        self._batcher = batcher
        self._wait = wait
        self._max_wait = max_wait_seconds(max_wait)

    def _new_client(self) -> _C:
        raise NotImplementedError

    @property
    def client(self) -> _C:
        """The wrapped client."""
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.client, name)

    async def _send(self, item: Any) -> Any:
        return await wait_for(item, batcher=self._batcher, wait=self._wait, max_wait=self._max_wait)


class Delegate:
    """A namespace of a drop-in client (`chat`, `messages`, ...): what it does not define
    comes from the same namespace of the real client."""

    def __init__(self, owner: DropIn[Any], path: tuple[str, ...]) -> None:
        self._owner = owner
        self._path = path

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        target: Any = self._owner.client
        for step in self._path:
            target = getattr(target, step)
        return getattr(target, name)
