"""Custom auth for a deployment whose users share one bridge.

Each user sees and resumes only their own threads, and their store operations land in a
namespace of their own, so no user can read another's items or results, nor write the
bridge's records. The bridge and `wait()` act in process, as the deployment itself (a
service identity that custom auth does not apply to).

Tokens come from `EXAMPLE_USER_TOKENS` ("user:token,user:token"); use your identity
provider instead in a real deployment.
"""

from __future__ import annotations

import hmac
import os

from langgraph_sdk import Auth

auth = Auth()


def _tokens() -> dict[str, str]:
    pairs = os.environ.get("EXAMPLE_USER_TOKENS", "alice:alice-token,bob:bob-token")
    return {token: user for user, _, token in (p.partition(":") for p in pairs.split(",") if p)}


@auth.authenticate
async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
    scheme, _, token = (authorization or "").partition(" ")
    for known, user in _tokens().items():
        if scheme.lower() == "bearer" and hmac.compare_digest(known, token):
            return {"identity": user}
    raise Auth.exceptions.HTTPException(status_code=401, detail="unknown or missing token")


@auth.on.threads.create
async def own_new_threads(
    ctx: Auth.types.AuthContext, value: Auth.types.on.threads.create.value
) -> None:
    value.setdefault("metadata", {})["owner"] = ctx.user.identity


@auth.on.threads
async def only_own_threads(ctx: Auth.types.AuthContext, value: dict) -> Auth.types.FilterType:
    return {"owner": ctx.user.identity}


@auth.on.store
async def own_namespace(ctx: Auth.types.AuthContext, value: dict) -> None:
    """Every namespace a user names is inside their own: ("batch_bridge", ...) included."""
    value["namespace"] = (ctx.user.identity, *tuple(value.get("namespace") or ()))


@auth.on.crons
async def no_crons(ctx: Auth.types.AuthContext, value: dict) -> bool:
    return False
