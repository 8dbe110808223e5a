"""The caller's check, before it sleeps, that a bridge on another deployment will resume it.

`wait()` reads the bridge's trust notice (`_notice`) through the SDK once per process per
`TRUST_CHECK_TTL_S` and raises a `ConfigError` naming the setting to fix when the bridge
would refuse its items. Where it cannot know (no notice yet, or one that does not verify)
it goes ahead as before, and the bridge shows what it refused in its state.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from batch_bridge import _notice, _trust
from batch_bridge._config import TRUST_CHECK_TTL_S
from batch_bridge._store import META, namespace
from batch_bridge.errors import ConfigError

log = logging.getLogger("batch_bridge")

_Key = tuple[str, str, str]
_seen: dict[_Key, tuple[float, _notice.Verdict]] = {}


class _Reads(Protocol):
    async def get(self, namespace: tuple[str, ...], key: str) -> Any: ...


class _SyncReads(Protocol):
    def get(self, namespace: tuple[str, ...], key: str) -> Any: ...


def _cached(key: _Key) -> _notice.Verdict | None:
    seen = _seen.get(key)
    if seen is None or time.monotonic() >= seen[0]:
        return None
    return seen[1]


def _settle(key: _Key, value: Any) -> _notice.Verdict:
    bridge_url, _, callback = key
    verdict = _notice.judge(
        value, callback_url=callback, bridge_url=bridge_url, key=_trust.secret()
    )
    _seen[key] = (time.monotonic() + TRUST_CHECK_TTL_S, verdict)
    return verdict


def _raise_if_refused(verdict: _notice.Verdict) -> None:
    if verdict.state == "refused":
        raise ConfigError(verdict.message)


async def check_bridge(queue: _Reads, bridge: str, bridge_url: str, callback: str) -> None:
    """Raise `ConfigError` if the bridge at `bridge_url` says it would refuse this caller."""
    key = (bridge_url, bridge, callback)
    verdict = _cached(key)
    if verdict is None:
        try:
            value = await queue.get(namespace(bridge, META), _notice.NOTICE_KEY)
        except Exception as exc:  # the put that follows reports an unreachable bridge
            log.warning("could not read the trust notice at %s: %r", bridge_url, exc)
            value = None
        verdict = _settle(key, value)
    _raise_if_refused(verdict)


def check_bridge_sync(queue: _SyncReads, bridge: str, bridge_url: str, callback: str) -> None:
    """`check_bridge` for sync nodes."""
    key = (bridge_url, bridge, callback)
    verdict = _cached(key)
    if verdict is None:
        try:
            value = queue.get(namespace(bridge, META), _notice.NOTICE_KEY)
        except Exception as exc:
            log.warning("could not read the trust notice at %s: %r", bridge_url, exc)
            value = None
        verdict = _settle(key, value)
    _raise_if_refused(verdict)
