"""Turns bridge items into batch-file request lines and packs them into provider files.

Kept free of any SDK so the packing rules (one endpoint and one model per file, request,
byte and token limits) and the names derived from a batch key can be reasoned about and
tested on their own.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "ENDPOINTS",
    "Chunk",
    "Request",
    "batch_key",
    "build_request",
    "compact",
    "custom_id",
    "estimate_tokens",
    "file_name",
    "file_pattern",
    "pack",
]

ENDPOINTS: tuple[str, ...] = ("/v1/chat/completions", "/v1/responses", "/v1/embeddings")
"""Batch endpoints the OpenAI adapter accepts."""

_VERBATIM_KEY = re.compile(r"[A-Za-z0-9_-]{1,40}")


def batch_key(idempotency_key: str | None) -> str:
    """The prefix of a batch's custom ids and file names: random, or a pure function of the key.

    A caller's key of at most 40 letters, digits, `_` and `-` (e.g. `bb_3f2a9c0d1e4b`) is used
    as it is; any other is hashed. Either way `custom_id(key, index)` stays within OpenAI's
    64 characters of `[a-zA-Z0-9_-]`.
    """
    if idempotency_key is None:
        return f"bb{uuid.uuid4().hex[:16]}"
    if not isinstance(idempotency_key, str):
        raise TypeError(f"idempotency_key must be a str, got {type(idempotency_key).__name__}")
    if _VERBATIM_KEY.fullmatch(idempotency_key):
        return idempotency_key
    return "bbk" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]


def custom_id(key: str, index: int) -> str:
    """The custom_id of the item at `index` of the bridge batch."""
    return f"{key}-{index}"


def file_name(key: str, origin: int, attempt: int) -> str:
    """The input file of part `origin` (attempt 0), or of its unfinished rows at `attempt`."""
    return f"{key}-{origin}.jsonl" if attempt == 0 else f"{key}-{origin}-r{attempt}.jsonl"


def file_pattern(key: str) -> re.Pattern[str]:
    """Matches every name `file_name` gives for `key`, and no name of another key."""
    return re.compile(re.escape(key) + r"-\d+(?:-r\d+)?\.jsonl")


def estimate_tokens(text: str) -> int:
    """Cheap, tokenizer-free upper-ish estimate used for the enqueued-token budget."""
    return -(-len(text) // 4)


@dataclass(slots=True)
class Request:
    """One item rendered as a batch-file line, with the sizes packing needs (not frozen: a
    frozen dataclass is built through `object.__setattr__`, 50,000 times per flush)."""

    index: int
    url: str
    model: str
    line: bytes
    """UTF-8 JSON, no newline."""

    @property
    def size(self) -> int:
        """Bytes this request takes in the file, newline included."""
        return len(self.line) + 1

    @property
    def tokens(self) -> int:
        """Estimated tokens this request adds to the model's enqueued total."""
        return -(-len(self.line) // 4)


@dataclass(slots=True)
class Chunk:
    """Requests that go to the provider as one input file and one batch."""

    url: str
    model: str
    requests: list[Request]

    @property
    def tokens(self) -> int:
        """Estimated enqueued tokens of the whole file."""
        return sum(r.tokens for r in self.requests)

    def content(self) -> bytes:
        """The JSONL file body."""
        return b"\n".join(r.line for r in self.requests) + b"\n" if self.requests else b""


def compact(data: bytes) -> bytes:
    """A right-sized copy of what `orjson.dumps` returned, to keep: orjson 3.13 returns
    bytes in a buffer of at least 4 kB, so 50,000 kept request lines of 200 bytes held
    195 MB (found in benchmarks/bench_scale.py's 50,000-request round)."""
    return bytes(memoryview(data))


def build_request(index: int, custom_id: str, item: Any) -> Request | str:
    """Validate one item and render its request line; a string return is the refusal reason.

    Refusals are per item so that one malformed call never sinks the rest of the batch.
    """
    if not isinstance(item, dict | Mapping):
        return f"OpenAI batch item must be a dict with 'url' and 'body', got {type(item).__name__}"
    url = item.get("url")
    if url not in ENDPOINTS:
        return f"OpenAI batch item url must be one of {', '.join(ENDPOINTS)}, got {url!r}"
    body = item.get("body")
    if not isinstance(body, dict | Mapping):
        return f"OpenAI batch item body must be a dict of request arguments, got {body!r}"
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return "OpenAI batch item body must name a 'model' (a non-empty string)"
    if body.get("stream"):
        return "OpenAI batch requests cannot stream; drop 'stream=True' from the body"
    line = {"custom_id": custom_id, "method": "POST", "url": url, "body": dict(body)}
    try:  # orjson: the JSON of 50,000 lines is most of a flush's CPU (benchmarks/RESULTS.md)
        text = compact(orjson.dumps(line))
    except TypeError:
        try:
            text = json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode()
        except (TypeError, ValueError) as exc:
            return f"OpenAI batch item body is not JSON-serialisable: {exc}"
    return Request(index=index, url=url, model=model, line=text)


def pack(
    requests: Iterable[Request],
    *,
    max_requests: int,
    max_bytes: int,
    token_budget: Callable[[str], int | None],
) -> list[Chunk]:
    """Group by (endpoint, model) in first-seen order, then split at each limit.

    A request larger than the token budget on its own still gets a chunk of its own (the
    adapter submits it when nothing else of that model is enqueued); requests larger than
    `max_bytes` must be refused before packing.
    """
    groups: dict[tuple[str, str], list[Request]] = {}
    for request in requests:
        groups.setdefault((request.url, request.model), []).append(request)
    chunks: list[Chunk] = []
    for (url, model), members in groups.items():
        budget = token_budget(model)
        current: list[Request] = []
        size = tokens = 0
        for request in members:
            full = current and (
                len(current) >= max_requests
                or size + request.size > max_bytes
                or (budget is not None and tokens + request.tokens > budget)
            )
            if full:
                chunks.append(Chunk(url, model, current))
                current, size, tokens = [], 0, 0
            current.append(request)
            size += request.size
            tokens += request.tokens
        if current:
            chunks.append(Chunk(url, model, current))
    return chunks
