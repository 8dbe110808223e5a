"""The status routes and the provider webhook routes, a Starlette app for `langgraph.json`'s
`http.app`.

They run in the server process: the store is the one graphs get (`langgraph.config.
get_store()`, which the server makes available to custom routes), and the bridge's state is
read with the in-process client, as the deployment (under custom auth the request's user
may not see the bridge's thread). Both can be swapped for tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.store.base import BaseStore
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from batch_bridge import _client
from batch_bridge._constants import bridge_thread_id, check_bridge_name
from batch_bridge.errors import ConfigError
from batch_bridge.http._page import PAGE
from batch_bridge.http._status import bridge_status
from batch_bridge.http._webhooks import Waker, platform_wake, webhook_counts, webhook_routes

__all__ = ["STATUS_PREFIX", "StateReader", "StoreGetter", "status_app", "status_routes"]

STATUS_PREFIX = "/batch-bridge"
"""Where the routes live: the page at `/batch-bridge/`, the JSON at
`/batch-bridge/status.json?bridge=NAME`."""

StoreGetter = Callable[[], BaseStore]
StateReader = Callable[[str], Awaitable[dict[str, Any] | None]]
NO_CACHE = {"Cache-Control": "no-store"}


def platform_store() -> BaseStore:
    from langgraph.config import get_store

    return get_store()


async def platform_state(bridge: str) -> dict[str, Any] | None:
    """The bridge thread's values; None before its first tick."""
    from langgraph_sdk.errors import NotFoundError

    client = _client.client_for(None)
    try:
        found = await _client.as_deployment(client.threads.get_state(bridge_thread_id(bridge)))
    except NotFoundError:
        return None
    values = found.get("values") if isinstance(found, dict) else None
    return values if isinstance(values, dict) else None


def status_routes(
    *, store: StoreGetter = platform_store, state: StateReader = platform_state
) -> list[BaseRoute]:
    """The page and its JSON, to add to an app of your own if the deployment has one."""

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE, headers=NO_CACHE)

    async def status_json(request: Request) -> Response:
        try:
            bridge = check_bridge_name(request.query_params.get("bridge", "bridge"))
        except ConfigError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400, headers=NO_CACHE)
        data = await bridge_status(store(), bridge, await state(bridge))
        data["webhooks"] = await webhook_counts(store())
        return JSONResponse(data, headers=NO_CACHE)

    return [
        Route(f"{STATUS_PREFIX}/", page, methods=["GET"]),
        Route(STATUS_PREFIX, page, methods=["GET"]),
        Route(f"{STATUS_PREFIX}/status.json", status_json, methods=["GET"]),
    ]


def status_app(
    *,
    store: StoreGetter = platform_store,
    state: StateReader = platform_state,
    wake: Waker = platform_wake,
) -> Starlette:
    """A Starlette app serving the status routes and `POST /batch-bridge/webhooks/{provider}`
    (the URL to register with the provider; see `batch_bridge.http._webhooks`)."""
    routes = status_routes(store=store, state=state)
    return Starlette(routes=[*routes, *webhook_routes(STATUS_PREFIX, store, wake=wake)])
