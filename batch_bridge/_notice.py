"""The trust notice: what a bridge publishes so that callers on another deployment can tell,
before they sleep, whether it will ever resume them.

The bridge writes one signed record in its `meta` namespace: the patterns of its
BATCH_BRIDGE_CALLBACK_URLS and a key check (an HMAC of a fixed text under its signing key,
never the key). A caller compares the key check with its own, verifies the signature with
its own BATCH_BRIDGE_SECRET, and matches its callback URL against the patterns. Both sides
speak this module; neither imports the other.

Anyone with store access can write this record. What a forgery can do:
- without the key it cannot sign, so patterns it adds are never believed: a record whose key
  check matches but whose signature fails counts as no notice (the caller goes ahead as it
  did before this check existed, and the bridge shows what it refused);
- it can make callers fail with the BATCH_BRIDGE_SECRET error (a key check that differs),
  which store writers could do anyway by deleting items; the bridge rewrites its notice on
  every tick;
- it never changes where items go: the caller takes no URL from it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import Any, Literal

from batch_bridge import _trust
from batch_bridge._trust import CALLBACK_URLS_ENV, SECRET_ENV

log = logging.getLogger("batch_bridge")

NOTICE_KEY = "trust"
"""The notice's key in the bridge's `meta` namespace."""
NOTICE_KIND = "batch_bridge.trust"
_KEY_CHECK_TEXT = b"batch-bridge key check v1"
_SOURCES = ("configured", "derived", "local file")

REFUSED_URL = f"callback URL not on {CALLBACK_URLS_ENV}"
REFUSED_KEY = f"signed with another key ({SECRET_ENV} differs, or forged)"
"""The reasons the bridge's state gives for an origin it refused (`refused_origins`)."""


def key_check(key: bytes) -> str:
    """A MAC of a fixed text: equal on two deployments exactly when their keys are equal."""
    return hmac.new(key, _KEY_CHECK_TEXT, hashlib.sha256).hexdigest()


def trust_notice(patterns: list[str], key: bytes, source: str) -> dict[str, Any]:
    """The signed store value. No timestamp: the same settings give the same value, so the
    bridge rewrites it only when it changed (or was tampered with)."""
    body = {
        "kind": NOTICE_KIND,
        "callback_urls": list(patterns),
        "key_check": key_check(key),
        "key_source": source,
    }
    return _trust.sign(body, key)


def current_notice() -> dict[str, Any]:
    """This deployment's notice, from its own configuration."""
    patterns = [rule.pattern for rule in _trust.callback_rules()]
    return trust_notice(patterns, _trust.secret(), _trust.key_source())


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a caller learns from a notice: "allowed", "unknown" (go ahead, as before), or
    "refused" with the message of the ConfigError to raise."""

    state: Literal["allowed", "unknown", "refused"]
    message: str = ""


UNKNOWN = Verdict("unknown")


def judge(value: Any, *, callback_url: str, bridge_url: str, key: bytes) -> Verdict:
    """The decision, free of I/O: `value` is what the bridge's store holds (None if nothing)."""
    if not isinstance(value, dict) or value.get("kind") != NOTICE_KIND:
        return UNKNOWN
    theirs = value.get("key_check")
    if not isinstance(theirs, str):
        return UNKNOWN
    if not hmac.compare_digest(theirs, key_check(key)):
        return Verdict("refused", wrong_secret_message(bridge_url, value.get("key_source")))
    if not _trust.verify(value, key):
        log.warning("the trust notice of the bridge at %s does not verify: ignored", bridge_url)
        return UNKNOWN
    patterns = value.get("callback_urls")
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        return UNKNOWN
    if _trust.allows(patterns, callback_url):
        return Verdict("allowed")
    return Verdict("refused", missing_url_message(bridge_url, callback_url, patterns))


def missing_url_message(bridge_url: str, callback_url: str, patterns: list[str]) -> str:
    listed = ", ".join(patterns) if patterns else "nothing"
    return (
        f"The bridge at {bridge_url} will not resume callers at {_trust.origin(callback_url)}: "
        f"that URL is not on its {CALLBACK_URLS_ENV} (which allows {listed}). Add "
        f"{_trust.origin(callback_url)} to {CALLBACK_URLS_ENV} on the bridge's deployment."
    )


def wrong_secret_message(bridge_url: str, source: Any) -> str:
    own = (
        f" (the bridge has none set: it signs with its {source} key)"
        if source in _SOURCES and source != "configured"
        else ""
    )
    return (
        f"The bridge at {bridge_url} signs records with another key than this deployment's "
        f"{SECRET_ENV}{own}, so it would refuse every item sent from here: set {SECRET_ENV} "
        "to the same value on both deployments."
    )
