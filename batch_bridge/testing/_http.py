"""The OpenAI-shaped HTTP of the emulator: error answers, request checks, list pages."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from batch_bridge.testing._synth import error_body

__all__ = [
    "EXCEPTION_HANDLERS",
    "ApiError",
    "json_object",
    "metadata",
    "page",
    "reply",
    "required_str",
]

_MAX_METADATA_KEYS = 16


class ApiError(Exception):
    """Answered as the OpenAI error JSON with the given HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type_: str = "invalid_request_error",
    ):
        super().__init__(message)
        self.status = status
        self.body = error_body(message, type_=type_, param=param, code=code)


def reply(payload: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(payload, status, headers={"x-request-id": "req_" + uuid.uuid4().hex})


async def json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


def required_str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise ApiError(400, f"Missing required parameter: '{name}'.", param=name)
    if not isinstance(value, str):
        raise ApiError(400, f"Invalid type for '{name}': expected a string.", param=name)
    return value


def metadata(raw: Any) -> dict[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or len(raw) > _MAX_METADATA_KEYS:
        raise ApiError(400, "metadata must be an object of at most 16 pairs.", param="metadata")
    for key, value in raw.items():
        if len(key) > 64 or not isinstance(value, str) or len(value) > 512:
            message = f"Invalid metadata pair {key!r}: string keys <= 64, string values <= 512."
            raise ApiError(400, message, param="metadata")
    return dict(raw)


def _limit(request: Request, maximum: int, default: int) -> int:
    raw = request.query_params.get("limit", str(default))
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= maximum:
        raise ApiError(400, f"Invalid limit {raw!r}: expected 1 to {maximum}.", param="limit")
    return limit


def page(
    items: list[dict[str, Any]], request: Request, *, maximum: int, default: int = 20
) -> dict[str, Any]:
    """A cursor page over newest-first items, the way the list endpoints page."""
    limit = _limit(request, maximum, default)
    after = request.query_params.get("after")
    if after:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    data = items[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(items) > limit,
    }


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return reply(exc.body, exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (404, 405):
        message = f"Invalid URL ({request.method} {request.url.path})"
    else:
        message = str(exc.detail)
    return reply(error_body(message), exc.status_code)


async def _server_error(request: Request, exc: Exception) -> Response:
    body = error_body(f"The emulator failed: {exc!r}", type_="server_error", code="server_error")
    return reply(body, 500)


EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    ApiError: _api_error,
    HTTPException: _http_error,
    Exception: _server_error,
}
"""The emulator's answers to what its handlers raise, as OpenAI words them."""
