"""The trust boundary: which records the bridge may act on, and which URLs it may call.

The bridge resumes threads and calls URLs with the deployment's own credentials, on the say
of store records that any API client with store access could write. So:

- every record is signed with HMAC-SHA256 (`hmac`, standard library) under a secret only the
  deployments' servers hold, and the bridge verifies every record it reads; a record that
  fails is quarantined, counted and never acted on;
- the bridge calls only its own deployment (in process) and callback URLs on an allow-list
  from its configuration, with the credentials that configuration names for each; a URL
  that comes from a record is never given a key.

Where the secret comes from, in order: `BATCH_BRIDGE_SECRET` (required when callers and the
bridge are on different deployments: set the same value on both; recommended everywhere);
otherwise a key derived from settings only the deployment's servers hold (database and
Redis URIs with their passwords, LangSmith and licence keys), as strong as they are; under
`langgraph dev` (one process) a random key kept in a file beside the server's state.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import os
import secrets
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from batch_bridge.errors import ConfigError

SECRET_ENV = "BATCH_BRIDGE_SECRET"
CALLBACK_URLS_ENV = "BATCH_BRIDGE_CALLBACK_URLS"
"""Comma-separated callback origins the bridge may resume callers at; each may be a glob
(`https://*.example.com`) and may name the environment variable holding its API key after
a space (`https://callers.example.com LANGSMITH_API_KEY`)."""
_DEV_SECRET_FILE = Path(".langgraph_api") / "batch_bridge.secret"
_SIG = "sig"

_secret: bytes | None = None
_source = ""
_LOCAL_SIG = "in-process"
in_process_only: ContextVar[bool] = ContextVar("batch_bridge_in_process_only", default=False)
"""Set by script mode's own event loop: its records live in a store of this process that
nothing else can write, so they are not signed (and may hold items that are not JSON)."""


_SERVER_ONLY = ("DATABASE_URI", "REDIS_URI", "LANGSMITH_API_KEY", "LANGGRAPH_CLOUD_LICENSE_KEY")


def _derive() -> tuple[bytes, str]:
    explicit = os.environ.get(SECRET_ENV)
    if explicit:
        return explicit.encode(), "configured"
    if os.environ.get("LANGGRAPH_RUNTIME_EDITION") != "inmem":  # langgraph dev sets dummies
        material = [os.environ.get(name) or "" for name in _SERVER_ONLY]
        if any(material):
            text = "\n".join(["batch-bridge-record-key", *material])
            return hashlib.sha256(text.encode()).digest(), "derived"
    path = _DEV_SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x") as fresh:  # exclusive create: one key per server directory
            fresh.write(secrets.token_hex(32))
    except FileExistsError:
        pass
    return path.read_text().strip().encode(), "local file"


def secret() -> bytes:
    """The record-signing key of this process (see the module docstring)."""
    global _secret, _source
    if _secret is None:
        _secret, _source = _derive()
    return _secret


def key_source() -> str:
    """Where the key came from: "configured", "derived" or "local file" (shown in state)."""
    secret()
    return _source


def require_shared_secret(bridge_url: str) -> None:
    """Callers of a bridge on another deployment must share its secret explicitly."""
    if not os.environ.get(SECRET_ENV):
        raise ConfigError(
            f"The bridge at {bridge_url} only trusts records signed with its secret: set "
            f"{SECRET_ENV} to the same value on this deployment and on the bridge's."
        )


def _canonical(value: dict[str, Any]) -> bytes:
    unsigned = {k: v for k, v in value.items() if k != _SIG}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(value: dict[str, Any], key: bytes | None = None) -> dict[str, Any]:
    """The value with its signature; what is stored. `key` defaults to this process's."""
    if key is None and in_process_only.get():
        return {**value, _SIG: _LOCAL_SIG}
    mac = hmac.new(key or secret(), _canonical(value), hashlib.sha256).hexdigest()
    return {**value, _SIG: mac}


def verify(value: Any, key: bytes | None = None) -> bool:
    """Whether a stored value carries a valid signature over everything else in it."""
    if not isinstance(value, dict) or not isinstance(value.get(_SIG), str):
        return False
    if key is None and in_process_only.get():
        return bool(value[_SIG] == _LOCAL_SIG)
    try:
        expected = hmac.new(key or secret(), _canonical(value), hashlib.sha256).hexdigest()
    except (TypeError, ValueError):
        return False
    return hmac.compare_digest(expected, value[_SIG])


def unsigned(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k != _SIG}


def origin(url: str) -> str:
    """A URL as the allow-list compares it: scheme and host lower-cased, no trailing slash."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def allows(patterns: list[str], url: str) -> bool:
    """Whether an allow-list of origins or globs admits `url`."""
    return any(fnmatch.fnmatchcase(origin(url), pattern) for pattern in patterns)


@dataclass(frozen=True, slots=True)
class CallbackRule:
    pattern: str
    key_env: str | None


def callback_rules() -> list[CallbackRule]:
    rules = []
    for entry in os.environ.get(CALLBACK_URLS_ENV, "").split(","):
        words = entry.split()
        if words:
            rules.append(CallbackRule(origin(words[0]), words[1] if len(words) > 1 else None))
    return rules


def callback_api_key(url: str) -> str | None:
    """The API key configured for a callback URL; raises if the URL is not allowed at all.

    No rule, no call: a URL read from a record is never contacted, let alone given a key.
    """
    for rule in callback_rules():
        if allows([rule.pattern], url):
            return os.environ.get(rule.key_env) if rule.key_env else None
    raise ConfigError(
        f"callback URL {url!r} is not on the bridge's allow-list ({CALLBACK_URLS_ENV}); "
        "the bridge never calls a URL that only a store record names"
    )


if os.environ.get("LANGGRAPH_RUNTIME_EDITION") == "inmem":
    # Under `langgraph dev`, read or create the key file now, while graphs load: once runs
    # start, the server forbids blocking file I/O on its event loop.
    secret()
