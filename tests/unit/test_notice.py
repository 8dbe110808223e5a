"""The trust notice: the caller's decision, its cache, and what the bridge publishes and shows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from langgraph.store.memory import InMemoryStore

from batch_bridge import _notice, _preflight, _trust
from batch_bridge._config import Reliability
from batch_bridge._notice import REFUSED_KEY, REFUSED_URL, judge, trust_notice
from batch_bridge._store import ITEMS, META, QUARANTINE, Ledger, namespace
from batch_bridge.bridge.calls import Provider
from batch_bridge.bridge.tick import Tick
from batch_bridge.errors import ConfigError
from batch_bridge.types import FlushPolicy

from .fakes import Clock, FakeClient, FakeProvider
from .test_tick import make_tick, queued

BRIDGE_KEY = b"shared-secret"
BRIDGE = "https://bridge.example.com"
CALLER = "https://callers.example.com/"


def decide(value: Any, key: bytes = BRIDGE_KEY, callback: str = CALLER) -> _notice.Verdict:
    return judge(value, callback_url=callback, bridge_url=BRIDGE, key=key)


def published(patterns: list[str], source: str = "configured") -> dict[str, Any]:
    return trust_notice(patterns, BRIDGE_KEY, source)


def test_a_caller_the_bridge_allows_is_allowed():
    assert decide(published(["https://callers.example.com"])).state == "allowed"
    assert decide(published(["https://*.example.com"])).state == "allowed"


def test_a_missing_url_is_refused_with_the_setting_and_the_url_to_add():
    verdict = decide(published(["http://127.0.0.1:*"]))
    assert verdict.state == "refused"
    assert verdict.message == (
        f"The bridge at {BRIDGE} will not resume callers at https://callers.example.com: that "
        "URL is not on its BATCH_BRIDGE_CALLBACK_URLS (which allows http://127.0.0.1:*). Add "
        "https://callers.example.com to BATCH_BRIDGE_CALLBACK_URLS on the bridge's deployment."
    )
    assert "allows nothing" in decide(published([])).message


def test_another_secret_is_refused_naming_batch_bridge_secret():
    verdict = decide(published([CALLER]), key=b"another secret")
    assert verdict.state == "refused"
    assert verdict.message == (
        f"The bridge at {BRIDGE} signs records with another key than this deployment's "
        "BATCH_BRIDGE_SECRET, so it would refuse every item sent from here: set "
        "BATCH_BRIDGE_SECRET to the same value on both deployments."
    )
    unset = decide(published([CALLER], source="local file"), key=b"another secret")
    assert "(the bridge has none set: it signs with its local file key)" in unset.message


def test_no_notice_yet_lets_the_call_go_ahead():
    assert decide(None).state == "unknown"
    assert decide({"kind": "something else"}).state == "unknown"
    assert decide("not a record").state == "unknown"


def test_a_forged_notice_never_lets_a_refused_caller_through():
    genuine = published(["http://127.0.0.1:*"])
    widened = {**genuine, "callback_urls": ["*"]}  # the key check copied, the list altered
    assert decide(widened).state == "unknown"
    unsigned = {k: v for k, v in widened.items() if k != "sig"}
    assert decide(unsigned).state == "unknown"
    own_key = trust_notice(["*"], b"the forger's key", "configured")  # signed, another key
    assert decide(own_key).state == "refused"
    assert "BATCH_BRIDGE_SECRET" in decide(own_key).message


def test_the_key_check_is_not_the_key():
    notice = published([])
    assert BRIDGE_KEY.decode() not in str(notice)
    assert notice["key_check"] == _notice.key_check(BRIDGE_KEY) != _notice.key_check(b"x")


class Reads:
    """The caller's queue as `check_bridge` reads it; counts reads."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.reads: list[tuple[tuple[str, ...], str]] = []

    async def get(self, ns: tuple[str, ...], key: str) -> Any:
        self.reads.append((ns, key))
        return self.value

    def get_sync(self, ns: tuple[str, ...], key: str) -> Any:
        self.reads.append((ns, key))
        return self.value


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    _preflight._seen.clear()
    yield
    _preflight._seen.clear()


def caller_notice(patterns: list[str]) -> dict[str, Any]:
    """A notice signed with the secret the unit tests' caller holds (see conftest)."""
    return trust_notice(patterns, _trust.secret(), "configured")


async def test_a_well_configured_caller_reads_the_notice_once_per_ttl():
    queue = Reads(caller_notice([_trust.origin(CALLER)]))
    for _ in range(5):
        await _preflight.check_bridge(queue, "bridge", BRIDGE, CALLER)
    assert queue.reads == [(namespace("bridge", META), _notice.NOTICE_KEY)]
    await _preflight.check_bridge(queue, "other_bridge", BRIDGE, CALLER)
    assert len(queue.reads) == 2  # each bridge has its own notice


async def test_a_refused_caller_raises_each_time_from_one_read():
    queue = Reads(caller_notice(["http://127.0.0.1:*"]))
    for _ in range(3):
        with pytest.raises(ConfigError, match=r"Add https://callers\.example\.com to BATCH_BRIDGE"):
            await _preflight.check_bridge(queue, "bridge", BRIDGE, CALLER)
    assert len(queue.reads) == 1


def test_sync_callers_decide_the_same_way():
    queue = Reads(trust_notice([CALLER], b"the bridge's own key", "derived"))
    queue.get = queue.get_sync  # type: ignore[method-assign]
    with pytest.raises(ConfigError, match="it signs with its derived key"):
        _preflight.check_bridge_sync(queue, "bridge", BRIDGE, CALLER)  # type: ignore[arg-type]


async def test_an_unreadable_notice_lets_the_call_go_ahead():
    class Down:
        async def get(self, ns: tuple[str, ...], key: str) -> Any:
            raise OSError("connection refused")

    await _preflight.check_bridge(Down(), "bridge", BRIDGE, CALLER)


async def test_a_tick_publishes_its_notice_and_restores_it_after_a_forgery(monkeypatch):
    monkeypatch.setenv(_trust.CALLBACK_URLS_ENV, "https://callers.example.com KEY_VAR")
    store, client, clock, provider = InMemoryStore(), FakeClient(), Clock(), FakeProvider()
    state = await make_tick(store, client, clock, provider).run({}, "r1")
    stored = await store.aget(namespace("bridge", META), _notice.NOTICE_KEY)
    assert stored is not None and stored.value == _notice.current_notice()
    assert stored.value["callback_urls"] == ["https://callers.example.com"]
    assert decide(stored.value, key=_trust.secret()).state == "allowed"

    forged = {**stored.value, "callback_urls": ["*"]}
    await store.aput(namespace("bridge", META), _notice.NOTICE_KEY, forged)
    await make_tick(store, client, clock, provider).run(state, "r2")
    restored = await store.aget(namespace("bridge", META), _notice.NOTICE_KEY)
    assert restored is not None and restored.value == _notice.current_notice()


async def test_the_bridge_shows_refused_origins_with_counts_never_payloads(monkeypatch):
    monkeypatch.setenv(_trust.CALLBACK_URLS_ENV, "http://127.0.0.1:*")
    store, client, clock, provider = InMemoryStore(), FakeClient(), Clock(), FakeProvider()
    ledger = Ledger(store, "bridge")
    far = [
        replace(queued(f"t{i}", f"secret {i}", clock.now - 10), resume_url=CALLER) for i in (1, 2)
    ]
    await ledger.put_items(far)
    other_key = queued("t3", "secret 3", clock.now - 10)
    other_key.resume_url = "http://127.0.0.1:9/"
    body = {k: v for k, v in other_key.to_value().items() if k != "sig"}
    await store.aput(namespace("bridge", ITEMS), other_key.key, _trust.sign(body, b"other"))

    def client_for(url: str | None) -> FakeClient:
        if url is not None:
            _trust.callback_api_key(url)  # raises for a URL off the allow-list
        return client

    tick = Tick(
        "bridge",
        Provider(provider.submit, provider.poll, provider.cancel),
        FlushPolicy(max_batch_size=10, max_batch_age_s=5.0),
        Reliability(),
        store=store,
        client=client,
        client_for=client_for,
        clock=clock,
    )
    state = await tick.run({}, "r1")

    assert provider.submitted == []
    assert len(await ledger.search(QUARANTINE)) == 3
    shown = {(e["url"], e["reason"]): e["count"] for e in state["refused_origins"]}
    assert shown == {(CALLER, REFUSED_URL): 2, ("http://127.0.0.1:9/", REFUSED_KEY): 1}
    assert "secret" not in str(state["refused_origins"])

    state = await make_tick(store, client, clock, provider).run(state, "r2")
    assert {e["count"] for e in state["refused_origins"]} == {2, 1}  # kept across ticks
