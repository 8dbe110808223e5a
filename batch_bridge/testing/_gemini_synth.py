"""What the emulated Gemini `generateContent` answers: a `GenerateContentResponse` echoing
the last user text, or calling a function, and Google's error envelope (see `_gemini` for
the routes).

A request offering `functionDeclarations` (and no `NONE` calling mode) whose last content
is the user's text is answered with one `functionCall` of the first function (or the first
of `allowedFunctionNames`), its arguments from `_synth.tool_arguments` and its id from the
conversation, the function and the arguments only: the same request gets the same call
batched or not. A last content holding `functionResponse` parts is answered
"Echo: <their string values>".
"""

from __future__ import annotations

import json
from typing import Any

from batch_bridge.testing._synth import (
    digest,
    estimate_tokens,
    has_fail_marker,
    status_marker,
    tool_arguments,
    tool_call_id,
)

__all__ = ["error", "status_name", "synthesize_content"]

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def status_name(code: int) -> str:
    """Google's canonical status name for an HTTP status."""
    return _STATUS_NAMES.get(code, "INTERNAL" if code >= 500 else "FAILED_PRECONDITION")


def error(code: int, message: str) -> dict[str, Any]:
    """The `{"error": {code, message, status}}` envelope every Google API answers with."""
    return {"error": {"code": code, "message": message, "status": status_name(code)}}


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _text(content: Any) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return ""
    texts = (part.get("text") for part in parts if isinstance(part, dict))
    return " ".join(text for text in texts if isinstance(text, str))


def _function_responses(content: Any) -> list[str] | None:
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return None
    found = [
        " ".join(_strings(part["functionResponse"].get("response")))
        for part in parts
        if isinstance(part, dict) and isinstance(part.get("functionResponse"), dict)
    ]
    return found or None


def _lower_types(schema: Any) -> Any:
    """Gemini's `Schema` spells types `STRING`, `OBJECT`...; JSON schema lower-case."""
    if isinstance(schema, list):
        return [_lower_types(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    lowered = {key: _lower_types(value) for key, value in schema.items()}
    if isinstance(lowered.get("type"), str):
        lowered["type"] = lowered["type"].lower()
    return lowered


def _function_to_call(request: dict[str, Any]) -> dict[str, Any] | None:
    config = (request.get("toolConfig") or {}).get("functionCallingConfig") or {}
    if str(config.get("mode", "")).upper() == "NONE":
        return None
    declarations = [
        declaration
        for tool in request.get("tools") or []
        if isinstance(tool, dict)
        for declaration in tool.get("functionDeclarations") or []
        if isinstance(declaration, dict)
    ]
    allowed = config.get("allowedFunctionNames")
    if isinstance(allowed, list) and allowed:
        declarations = [d for d in declarations if d.get("name") in allowed]
    return declarations[0] if declarations else None


def _reply_parts(request: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The reply's parts, and the text its output tokens count."""
    contents = request["contents"]
    last = contents[-1]
    results = _function_responses(last) if last.get("role", "user") == "user" else None
    function = _function_to_call(request) if results is None else None
    if function is not None:
        name = str(function.get("name"))
        schema = function.get("parametersJsonSchema") or _lower_types(function.get("parameters"))
        arguments = tool_arguments(schema, _text(last))
        call = {"id": tool_call_id("call_", contents, name, arguments), "name": name}
        return [{"functionCall": {**call, "args": arguments}}], json.dumps(arguments)
    if results is not None:
        reply = "Echo: " + " ".join(results)
    else:
        users = [c for c in contents if isinstance(c, dict) and c.get("role", "user") == "user"]
        reply = "Echo: " + (_text(users[-1]) if users else "")
    return [{"text": reply}], reply


def check_request(request: Any) -> str | None:
    """Why a `GenerateContentRequest` is unusable, or None."""
    if not isinstance(request, dict):
        return "request: must be an object"
    contents = request.get("contents")
    if not isinstance(contents, list) or not contents:
        return "contents is not specified"
    for number, content in enumerate(contents):
        if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
            return f"contents[{number}].parts: must be a list"
        if content.get("role", "user") not in ("user", "model"):
            return f"contents[{number}].role: must be 'user' or 'model'"
    return None


def synthesize_content(request: Any, model: str, *, key: str = "") -> tuple[int, dict[str, Any]]:
    """The status and body `models/{model}:generateContent` answers (see the module docstring)."""
    problem = check_request(request)
    if problem is not None:
        return 400, error(400, f"* GenerateContentRequest.{problem}")
    if has_fail_marker(request):
        return 500, error(500, f"Internal error while processing request {key or 'sync'!r}.")
    if (status := status_marker(request)) is not None:
        return status, error(status, f"Emulated error {status} requested by a marker.")
    parts, output = _reply_parts(request)
    prompt = estimate_tokens(" ".join(_strings(request["contents"])))
    completion = estimate_tokens(output)
    seed = key + "\x1f" + json.dumps(request, sort_keys=True, default=str)
    return 200, {
        "candidates": [
            {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {
            "promptTokenCount": prompt,
            "candidatesTokenCount": completion,
            "totalTokenCount": prompt + completion,
        },
        "modelVersion": model.removeprefix("models/"),
        "responseId": digest("response", seed)[:24],
    }
