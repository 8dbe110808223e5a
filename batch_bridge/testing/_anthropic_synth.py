"""What the emulated Messages API answers: a `Message` echoing the last user text, or
calling a tool, and Anthropic's error envelope (see `_anthropic` for the routes)."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from typing import Any

from batch_bridge.testing._synth import (
    digest,
    estimate_tokens,
    has_fail_marker,
    status_marker,
    tool_arguments,
    tool_call_id,
)

__all__ = ["check_params", "error", "error_type", "synthesize_message"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error(kind: str, message: str) -> dict[str, Any]:
    """The `ErrorResponse` envelope every Anthropic endpoint (and errored row) uses."""
    return {
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": "req_" + uuid.uuid4().hex[:24],
    }


@functools.cache
def _params_validator() -> Callable[[Any], Any] | None:
    """The installed SDK's `MessageCreateParamsNonStreaming`, as a pydantic validator."""
    try:
        import pydantic
        from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
    except ImportError:  # pragma: no cover - the anthropic extra is not installed
        return None
    return pydantic.TypeAdapter(MessageCreateParamsNonStreaming).validate_python


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (block.get("text") for block in content if isinstance(block, dict))
        return " ".join(part for part in parts if isinstance(part, str))
    return ""


def _tool_results(message: dict[str, Any]) -> list[str] | None:
    """The texts of the message's `tool_result` blocks, or None when it holds none."""
    content = message.get("content")
    if not isinstance(content, list):
        return None
    results = [
        _text(block.get("content"))
        for block in content
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]
    return results or None


def _tool_to_call(params: dict[str, Any]) -> dict[str, Any] | None:
    """The client tool a reply calls: the one `tool_choice` names, else the first."""
    tools = params.get("tools")
    choice = params.get("tool_choice")
    kind = choice.get("type") if isinstance(choice, dict) else None
    if not isinstance(tools, list) or kind == "none":
        return None
    custom = [tool for tool in tools if isinstance(tool, dict) and "input_schema" in tool]
    if kind == "tool" and isinstance(choice, dict):
        custom = [tool for tool in custom if tool.get("name") == choice.get("name")]
    return custom[0] if custom else None


def _content(params: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str]:
    """The reply's content blocks, stop reason, and the text its output tokens count."""
    messages = params["messages"]
    last = messages[-1]
    results = _tool_results(last) if last.get("role") == "user" else None
    tool = _tool_to_call(params) if last.get("role") == "user" and results is None else None
    if tool is not None:
        name = str(tool.get("name"))
        arguments = tool_arguments(tool.get("input_schema"), _text(last.get("content")))
        block = {
            "type": "tool_use",
            "id": tool_call_id("toolu_", messages, name, arguments),
            "name": name,
            "input": arguments,
        }
        return [block], "tool_use", json.dumps(arguments)
    if results is not None:
        reply = "Echo: " + " ".join(results)
    else:
        users = [m for m in messages if m.get("role") == "user"]
        reply = "Echo: " + (_text(users[-1].get("content")) if users else "")
    return [{"type": "text", "text": reply, "citations": None}], "end_turn", reply


def check_params(params: Any) -> str | None:
    """Why these Messages API params are invalid, or None; checked by the installed types."""
    if not isinstance(params, dict):
        return "params: Input should be an object"
    if params.get("stream"):
        return "stream: batch requests and the emulator do not stream"
    validate = _params_validator()
    if validate is not None:
        try:
            validate(params)
        except ValueError as exc:  # pydantic.ValidationError is a ValueError
            return str(exc).splitlines()[0] + ": " + "; ".join(str(exc).splitlines()[1:3])
    messages = params.get("messages")
    if not isinstance(params.get("model"), str) or not params["model"]:
        return "model: Field required"
    if isinstance(params.get("max_tokens"), bool) or not isinstance(params.get("max_tokens"), int):
        return "max_tokens: Field required"
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for number, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{number}.role: Input should be 'user' or 'assistant'"
    return None


def synthesize_message(params: Any, *, key: str = "") -> tuple[int, dict[str, Any]]:
    """The status and body `POST /v1/messages` answers: a `Message` echoing the last user
    text, or calling a tool (see `_anthropic`'s module docstring)."""
    problem = check_params(params)
    if problem is not None:
        return 400, error("invalid_request_error", problem)
    if has_fail_marker(params):
        message = f"Internal server error while processing request {key or 'sync'!r}."
        return 500, error("api_error", message)
    if (status := status_marker(params)) is not None:
        message = f"Emulated error status {status} requested by a [[status:{status}]] marker."
        return status, error(error_type(status), message)
    messages = params["messages"]
    content, stop_reason, output = _content(params)
    prompt = estimate_tokens("".join(_text(m.get("content")) for m in messages))
    seed = key + "\x1f" + json.dumps(params, sort_keys=True, default=str)
    return 200, {
        "id": "msg_" + digest("message", seed)[:24],
        "type": "message",
        "role": "assistant",
        "model": params["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": prompt,
            "output_tokens": estimate_tokens(output),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "service_tier": "batch" if key else "standard",
        },
    }
