"""Synthetic, deterministic model replies, shared by batch lines and the synchronous routes.

Replies echo the prompt so a test can tell which request produced which result, and
every body carries the fields the `openai` types require so SDK parsing is exercised.
Markers inside any string of a request body let a caller pick a failure per item.

Chat completions call tools, so an agent loop runs more than one model call: when the
request offers function `tools` (and `tool_choice` is not `"none"`) and the last message is
the user's, the reply is one call to the first tool (or the one `tool_choice` names), with
`finish_reason: "tool_calls"` and arguments from `tool_arguments` (each required string is
the user's text, numbers 1, booleans true). Its id comes from the conversation, the tool and
the arguments only, so the same request gets the same call batched or not. A last message
with `role: "tool"` is answered "Echo: <the tool's output>", like any other last message.
`/v1/responses` replies never call tools.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "ENDPOINTS",
    "InvalidRequest",
    "digest",
    "error_body",
    "estimate_tokens",
    "has_fail_marker",
    "prompt_tokens",
    "status_marker",
    "synthesize",
    "tool_arguments",
    "tool_call_id",
    "unit_interval",
]

FAIL_MARKER = "[[fail]]"
_STATUS_MARKER = re.compile(r"\[\[status:(\d{3})\]\]")
_EMBEDDING_DIMS = 8


class InvalidRequest(ValueError):
    """The request body is unusable; answered with a 400 `invalid_request_error`."""

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.param = param


def digest(*parts: str) -> str:
    """A stable hex digest, so ids and choices repeat across runs and processes."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def unit_interval(salt: str, key: str) -> float:
    """A deterministic number in [0, 1) for `key`; the salt keeps separate draws independent."""
    return int(digest(salt, key)[:16], 16) / 16**16


def estimate_tokens(text: str) -> int:
    """Roughly four characters per token, never less than one."""
    return max(1, math.ceil(len(text) / 4))


def error_body(
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """The JSON error envelope every OpenAI endpoint returns."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def has_fail_marker(body: Any) -> bool:
    """Whether `[[fail]]` appears in any string of the body."""
    return any(FAIL_MARKER in text for text in _strings(body))


def status_marker(body: Any) -> int | None:
    """The NNN of the first `[[status:NNN]]` (NNN >= 400) in any string of the body."""
    for text in _strings(body):
        for match in _STATUS_MARKER.finditer(text):
            if int(match.group(1)) >= 400:
                return int(match.group(1))
    return None


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (part.get("text") for part in content if isinstance(part, dict))
        return " ".join(part for part in parts if isinstance(part, str))
    return ""


def _messages(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = body.get(key)
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def _embedding_inputs(body: dict[str, Any]) -> list[str]:
    raw = body.get("input")
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(item, int) for item in raw):
        return [json.dumps(raw)]
    if isinstance(raw, list) and raw:
        return [item if isinstance(item, str) else json.dumps(item) for item in raw]
    raise InvalidRequest("'input' must be a non-empty string or list of strings.", param="input")


def prompt_tokens(endpoint: str, body: dict[str, Any]) -> int:
    """Estimated prompt tokens of one request, as counted against the enqueued-token limit."""
    if endpoint == "/v1/embeddings":
        try:
            return sum(estimate_tokens(text) for text in _embedding_inputs(body))
        except InvalidRequest:
            return 1
    key = "messages" if endpoint == "/v1/chat/completions" else "input"
    texts = [_content_text(message.get("content")) for message in _messages(body, key)]
    if isinstance(body.get("instructions"), str):
        texts.append(body["instructions"])
    return estimate_tokens("".join(texts))


def _schema_value(schema: Any, text: str) -> Any:
    """A value of the schema's type: `text` for strings, 1, true, [], or a nested object."""
    if not isinstance(schema, dict):
        return text
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for combinator in ("anyOf", "oneOf", "allOf"):
        options = schema.get(combinator)
        if isinstance(options, list):
            typed = [o for o in options if isinstance(o, dict) and o.get("type") != "null"]
            if typed:
                return _schema_value(typed[0], text)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object" or "properties" in schema:
        return tool_arguments(schema, text)
    if kind == "null":
        return None
    return text


def tool_arguments(schema: Any, text: str) -> dict[str, Any]:
    """The arguments an emulated model passes to a tool with this JSON schema.

    Only required properties are filled, in the schema's order: strings get `text` (the
    user's message), numbers 1, booleans true, arrays [], enums their first value.
    """
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return {}
    properties: dict[str, Any] = schema["properties"]
    required = schema.get("required")
    names = [n for n in required if n in properties] if isinstance(required, list) else []
    return {name: _schema_value(properties[name], text) for name in names}


def tool_call_id(prefix: str, conversation: Any, name: str, arguments: Any) -> str:
    """A tool call's id from what the call answers, never from a batch's custom_id."""
    seed = json.dumps([conversation, name, arguments], sort_keys=True, default=str)
    return prefix + digest("tool_call", seed)[:24]


def _function_to_call(body: dict[str, Any]) -> dict[str, Any] | None:
    """The function tool a chat reply calls: the one `tool_choice` names, else the first."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or choice == "none":
        return None
    functions = [
        tool["function"]
        for tool in tools
        if isinstance(tool, dict)
        and tool.get("type") == "function"
        and isinstance(tool.get("function"), dict)
    ]
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        named = choice["function"].get("name")
        functions = [f for f in functions if f.get("name") == named]
    return functions[0] if functions else None


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("you must provide a model parameter", param="model")
    return model


def _chat(body: dict[str, Any], key: str, now: int) -> dict[str, Any]:
    model = _model(body)
    messages = _messages(body, "messages")
    if not messages:
        raise InvalidRequest("Missing required parameter: 'messages'.", param="messages")
    last = messages[-1]
    text = _content_text(last.get("content"))
    function = _function_to_call(body) if last.get("role") == "user" else None
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "annotations": [],
    }
    if function is None:
        reply = "Echo: " + text
        message["content"] = reply
        finish_reason = "stop"
    else:
        name = str(function.get("name"))
        reply = json.dumps(tool_arguments(function.get("parameters"), text))
        call = {
            "id": tool_call_id("call_", messages, name, reply),
            "type": "function",
            "function": {"name": name, "arguments": reply},
        }
        message["tool_calls"] = [call]
        finish_reason = "tool_calls"
    requested = body.get("n")
    n: int = requested if isinstance(requested, int) and requested > 0 else 1
    prompt = prompt_tokens("/v1/chat/completions", body)
    completion = estimate_tokens(reply) * n
    return {
        "id": "chatcmpl-" + digest("chat", key)[:29],
        "object": "chat.completion",
        "created": now,
        "model": model,
        "choices": [
            {"index": i, "message": message, "logprobs": None, "finish_reason": finish_reason}
            for i in range(n)
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "system_fingerprint": "fp_emulator",
        "service_tier": _service_tier(body),
    }


SERVICE_TIERS = ("auto", "default", "flex", "priority", "scale")


def _service_tier(body: dict[str, Any]) -> str:
    """The tier that answered: the one asked for ("auto" answers on "default")."""
    tier = body.get("service_tier") or "auto"
    if tier in SERVICE_TIERS:
        return "default" if tier == "auto" else str(tier)
    choices = ", ".join(SERVICE_TIERS)
    message = f"Invalid value for 'service_tier': {tier!r}; one of {choices}."
    raise InvalidRequest(message, param="service_tier")


def _response(body: dict[str, Any], key: str, now: int) -> dict[str, Any]:
    model = _model(body)
    messages = _messages(body, "input")
    reply = "Echo: " + (_content_text(messages[-1].get("content")) if messages else "")
    prompt = prompt_tokens("/v1/responses", body)
    completion = estimate_tokens(reply)
    text = {"type": "output_text", "text": reply, "annotations": [], "logprobs": []}
    return {
        "id": "resp_" + digest("response", key)[:48],
        "object": "response",
        "created_at": now,
        "status": "completed",
        "model": model,
        "output": [
            {
                "type": "message",
                "id": "msg_" + digest("message", key)[:48],
                "status": "completed",
                "role": "assistant",
                "content": [text],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "metadata": body.get("metadata") or {},
        "temperature": body.get("temperature", 1.0),
        "top_p": body.get("top_p", 1.0),
        "max_output_tokens": body.get("max_output_tokens"),
        "previous_response_id": body.get("previous_response_id"),
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
        },
    }


def _vector(text: str, dims: int) -> list[float]:
    raw = b"".join(hashlib.sha256(f"{i}:{text}".encode()).digest() for i in range(dims // 8 + 1))
    values = [(byte - 127.5) / 127.5 for byte in raw[:dims]]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def _embeddings(body: dict[str, Any], key: str, now: int) -> dict[str, Any]:
    model = _model(body)
    texts = _embedding_inputs(body)
    dims = body.get("dimensions")
    dims = dims if isinstance(dims, int) and dims > 0 else _EMBEDDING_DIMS
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector: list[float] | str = _vector(text, dims)
        if as_base64:
            vector = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(estimate_tokens(text) for text in texts)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


_BUILDERS: dict[str, Callable[[dict[str, Any], str, int], dict[str, Any]]] = {
    "/v1/chat/completions": _chat,
    "/v1/responses": _response,
    "/v1/embeddings": _embeddings,
}

ENDPOINTS: frozenset[str] = frozenset(_BUILDERS)
"""The endpoints the emulator answers, as written in a batch's `endpoint` and line `url`."""


def synthesize(endpoint: str, body: Any, *, key: str = "") -> tuple[int, dict[str, Any]]:
    """The status code and JSON body a real endpoint would answer `body` with.

    `key` (a batch's custom_id, for instance) seeds the ids; markers in the body win over
    everything else, and a malformed body gets the 400 the real API would send.
    """
    if not isinstance(body, dict):
        return 400, error_body("The request body must be a JSON object.")
    if has_fail_marker(body):
        message = f"The server had an error while processing request {key or 'sync'!r}."
        return 500, error_body(message, type_="server_error", code="server_error")
    if (status := status_marker(body)) is not None:
        message = f"Emulated error status {status} requested by a [[status:{status}]] marker."
        kind = "server_error" if status >= 500 else "invalid_request_error"
        return status, error_body(message, type_=kind)
    seed = key + "\x1f" + json.dumps(body, sort_keys=True, default=str)
    try:
        return 200, _BUILDERS[endpoint](body, seed, int(time.time()))
    except InvalidRequest as exc:
        return 400, error_body(str(exc), param=exc.param)
