"""Custom routes for the bridge's deployment: a read-only status page and its JSON.

Register the app in `langgraph.json` (`"http": {"app": "batch_bridge.http:app"}`), then open
`/batch-bridge/` on the deployment, or read `/batch-bridge/status.json?bridge=NAME`
(`batch-bridge status --url URL` prints the same). Needs Starlette, which every LangGraph
server has.
"""

import contextlib

from batch_bridge.http._app import STATUS_PREFIX, status_app, status_routes
from batch_bridge.http._status import bridge_status

__all__ = ["STATUS_PREFIX", "app", "bridge_status", "status_app", "status_routes"]

app = status_app()
"""The status routes, ready for `langgraph.json`: `"http": {"app": "batch_bridge.http:app"}`."""

for _name in ("bridge_status", "status_app", "status_routes"):
    with contextlib.suppress(AttributeError, TypeError):
        globals()[_name].__module__ = "batch_bridge.http"
