"""The stock langgraph-api app for the production-engine workers, with custom routes.

With `LANGGRAPH_HTTP` set, langgraph-api 0.16.7 wraps the whole app, lifespan included, in
its `EnsureStoreAccessible` middleware, which asks the runtime for its store before the
lifespan has opened it. langgraph-runtime-pg 0.11.1 refuses (`Store requires
setup_store()/start_pool() first`), and uvicorn then runs the server with no lifespan at all
(no database pool). The in-memory runtime builds its store on demand, so `langgraph dev` never
sees this. Here the lifespan events go straight to the app's router, which runs the same
combined lifespan; every request still goes through the stock middleware.
"""

from __future__ import annotations

from langgraph_api.server import app as stock_app
from starlette.types import Receive, Scope, Send


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await stock_app.router(scope, receive, send)
        return
    await stock_app(scope, receive, send)
