"""The bridge's durable records: one ledger record per item, one header per batch.

Everything the bridge knows lives here, in the platform store, so that any worker can pick
up where a killed one stopped. An item's record is written once by its caller (put-if-absent
keyed `<thread_id>:<interrupt_id>`) and lives until its delivery is confirmed:

    queued -> batched -> result -> delivered | undeliverable | dropped
    queued | batched -> fallback -> result        (its deadline passed: `bridge/fallback.py`)

A queued item whose caller no longer waits (thread deleted, run cancelled) is withdrawn:
its record is deleted before any batch holds it. A result whose caller no longer waits is
`dropped`: kept (a caller that waits again gets it without a second bill), then purged.
`batched` items are `submitted` once their batch header says so (the header, not each of
thousands of item records, is rewritten on every submit and poll). A batch header moves

    forming -> submitting -> submitted -> (deleted once every item has its result)

Records are parsed strictly: anything malformed is moved to a quarantine namespace and
counted, never acted on and never allowed to crash a tick.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import orjson

from batch_bridge import _trust
from batch_bridge._constants import NAMESPACE_ROOT
from batch_bridge._packed import unpack

ItemStatus = Literal[
    "queued", "batched", "fallback", "result", "delivered", "undeliverable", "dropped"
]
BatchStatus = Literal["forming", "submitting", "submitted"]

ITEMS, BATCHES, MEMBERS, META = "items", "batches", "members", "meta"
ALIASES, QUARANTINE, HANDLES, TRIES = "aliases", "quarantine", "handles", "tries"
ITEM_KIND = "batch_bridge.item"
BATCH_KIND = "batch_bridge.batch"
MEMBERS_KIND = "batch_bridge.members"
HANDLE_KIND = "batch_bridge.handle"
ALIAS_KIND = "batch_bridge.alias"
TRIES_KIND = "batch_bridge.tries"
_INT64 = (-(2**63), 2**63 - 1)


class RecordError(ValueError):
    """A store record does not have the shape or signature the bridge writes; it is
    quarantined."""


class SignatureError(RecordError):
    """A record whose signature does not verify: forged, altered, or signed with another
    key (a caller deployment with another BATCH_BRIDGE_SECRET)."""


def verified(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecordError("not a record")
    if not _trust.verify(value):
        raise SignatureError("its signature does not verify (forged, altered, or another secret)")
    return _trust.unsigned(value)


def handle_digest(handle: Any) -> str:
    return hashlib.sha256(orjson.dumps(handle, option=orjson.OPT_SORT_KEYS)).hexdigest()


def members_value(keys: list[str], slots: list[int] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": MEMBERS_KIND, "keys": keys}
    if slots is not None:
        body["slots"] = slots
    return _trust.sign(body)


def parse_members(value: Any) -> list[str]:
    return parse_membership(value)[0]


def parse_membership(value: Any) -> tuple[list[str], list[int] | None]:
    """A batch's member keys and, for a deduplicating bridge, each key's slot: the index of
    the provider request that answers it (keys with the same item share one)."""
    body, keys = _signed_keys(value, MEMBERS_KIND, "member")
    slots = body.get("slots")
    if slots is None:
        return keys, None
    if (
        not isinstance(slots, list)
        or len(slots) != len(keys)
        or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in slots)
    ):
        raise RecordError("member slots must be one index per key")
    return keys, slots


def tries_value(keys: list[str]) -> dict[str, Any]:
    return _trust.sign({"kind": TRIES_KIND, "keys": keys})


def parse_tries(value: Any) -> list[str]:
    """The item keys a page of resumes was about to try (`bridge/deliver.py`)."""
    return _signed_keys(value, TRIES_KIND, "tried")[1]


def _signed_keys(value: Any, kind: str, what: str) -> tuple[dict[str, Any], list[str]]:
    body = verified(value)
    keys = body.get("keys")
    if body.get("kind") != kind or not isinstance(keys, list):
        raise RecordError(f"not a list of {what} keys")
    if not all(isinstance(k, str) for k in keys):
        raise RecordError(f"{what} keys must be strings")
    return body, keys


def alias_value(key: str) -> dict[str, Any]:
    return _trust.sign({"kind": ALIAS_KIND, "key": key})


def parse_alias(value: Any) -> str | None:
    """The record key an alias points to; None for anything unsigned or malformed."""
    try:
        body = verified(value)
    except RecordError:
        return None
    key = body.get("key")
    return key if body.get("kind") == ALIAS_KIND and isinstance(key, str) else None


def namespace(bridge: str, part: str) -> tuple[str, ...]:
    return (NAMESPACE_ROOT, bridge, part)


def item_key(thread_id: str, interrupt_id: str) -> str:
    return f"{thread_id}:{interrupt_id}"


def check_storable(value: Any, what: str) -> None:
    """Refuse what the PostgreSQL store or the JSON stream cannot carry, naming where it is.

    `json.dumps` accepts NaN, infinities and integers of any size; the platform does not
    (the caller would see "An internal error occurred" or, worse, the bridge would loop).
    """

    def walk(node: Any, path: str) -> None:
        if node is None or isinstance(node, bool):
            return
        if isinstance(node, int):
            if not _INT64[0] <= node <= _INT64[1]:
                raise ValueError(f"{what} holds an integer beyond 64 bits at {path}")
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise ValueError(f"{what} holds {node!r} at {path}; JSON has no NaN or infinity")
        elif isinstance(node, str):
            if "\x00" in node:
                raise ValueError(f"{what} holds a NUL character (\\u0000) at {path}")
        elif isinstance(node, dict):
            for key, child in node.items():
                if not isinstance(key, str):
                    raise ValueError(f"{what} has a non-string key {key!r} at {path}")
                if "\x00" in key:
                    raise ValueError(f"{what} has a key with a NUL character at {path}")
                walk(child, f"{path}.{key}")
        elif isinstance(node, list | tuple):
            for i, child in enumerate(node):
                walk(child, f"{path}[{i}]")
        else:
            raise ValueError(f"{what} holds a {type(node).__name__} at {path}, which is not JSON")

    walk(value, "$")


def digest(item: Any) -> str:
    """A stable fingerprint of an item; the caller's interrupt carries it, so delivery can
    check that a thread waits on this very item and not on another with the same id."""
    text = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _want(value: dict[str, Any], name: str, kinds: type | tuple[type, ...], optional: bool) -> Any:
    if name not in value:
        if optional:
            return None
        raise RecordError(f"missing field {name!r}")
    got = value[name]
    if got is None and optional:
        return None
    if isinstance(got, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise RecordError(f"field {name!r} is a bool")
    if not isinstance(got, kinds):
        raise RecordError(f"field {name!r} is {type(got).__name__}")
    return got


def _shared(text: str | None) -> Any:
    """One copy of a string most records repeat (their thread, graph, deployment): a
    queue read of 50,000 records made 200,000 copies of a handful of them."""
    return None if text is None else sys.intern(text)


def _fields(record: Any) -> dict[str, Any]:
    """A record's fields, shallow: `dataclasses.asdict` deep-copies every payload and result,
    which was an eighth of the server's time when 20,000 results were recorded at once."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


@dataclass(slots=True, kw_only=True)
class ItemRecord:
    """One caller's item, from enqueue until its delivery is confirmed."""

    thread_id: str
    interrupt_id: str
    assistant_id: str
    graph_id: str | None
    resume_url: str | None
    """Where the caller's deployment lives; None when it is the bridge's own."""
    item: Any
    digest: str
    created_at: float
    status: ItemStatus = "queued"
    batch_id: str | None = None
    position: int | None = None
    """The item's index in its batch, which is its index in the poll's result list."""
    result: dict[str, Any] | None = None
    """The resume envelope (value or named error) once the provider answered."""
    result_at: float | None = None
    usage: dict[str, Any] | None = None
    """The result's tokens and cost (`PriceTable.cost`), recorded with the result; None when
    the result carries no usage."""
    attempts: int = 0
    """Resumes tried; it is saved before each try, so after a crash `attempts > 0` with the
    thread no longer waiting means the resume went through."""
    alias: str | None = None
    """The call's replay identity (see `_wait._replay_alias`), kept in `aliases` too."""
    failures: int = 0
    """Refused resumes and unreadable threads in a row; sets the backoff."""
    next_attempt_at: float = 0.0
    last_error: str | None = None
    deadline_at: float | None = None
    """When the caller stops waiting for the batch (`max_wait`) and the bridge calls the
    provider's normal API instead; None: no deadline of its own (the bridge's default)."""
    fallback_at: float | None = None
    """When the bridge first decided to call the normal API for it; recorded before the call."""
    fallback_calls: int = 0
    """Normal-API calls started for it (recorded before each), so a retry is bounded."""
    updated_at: float = field(default_factory=time.time)

    @property
    def key(self) -> str:
        return item_key(self.thread_id, self.interrupt_id)

    def to_value(self) -> dict[str, Any]:
        """The signed store value."""
        value = _fields(self)
        value["item"] = unpack(self.item)
        value["kind"] = ITEM_KIND
        return _trust.sign(value)

    @classmethod
    def from_value(cls, key: str, value: Any) -> ItemRecord:
        value = verified(value)
        if value.get("kind") != ITEM_KIND:
            raise RecordError("not an item record")
        status = _want(value, "status", str, False)
        if status not in get_args(ItemStatus):
            raise RecordError(f"unknown status {status!r}")
        number = (int, float)
        record = cls(
            thread_id=_shared(_want(value, "thread_id", str, False)),
            interrupt_id=_want(value, "interrupt_id", str, False),
            assistant_id=_shared(_want(value, "assistant_id", str, False)),
            graph_id=_shared(_want(value, "graph_id", str, True)),
            resume_url=_shared(_want(value, "resume_url", str, True)),
            item=value.get("item"),
            digest=_want(value, "digest", str, False),
            created_at=float(_want(value, "created_at", number, False)),
            status=status,
            batch_id=_want(value, "batch_id", str, True),
            position=_want(value, "position", int, True),
            result=_want(value, "result", dict, True),
            result_at=_want(value, "result_at", number, True),
            usage=_want(value, "usage", dict, True),
            attempts=_want(value, "attempts", int, True) or 0,
            failures=_want(value, "failures", int, True) or 0,
            alias=_want(value, "alias", str, True),
            next_attempt_at=float(_want(value, "next_attempt_at", number, True) or 0.0),
            last_error=_want(value, "last_error", str, True),
            deadline_at=_want(value, "deadline_at", number, True),
            fallback_at=_want(value, "fallback_at", number, True),
            fallback_calls=_want(value, "fallback_calls", int, True) or 0,
            updated_at=float(_want(value, "updated_at", number, True) or 0.0),
        )
        if record.key != key:
            raise RecordError(f"stored under {key!r} but names {record.key!r}")
        if status == "batched" and record.batch_id is None:
            raise RecordError("status 'batched' without a batch_id")
        if status == "result" and record.batch_id is None and record.fallback_at is None:
            raise RecordError("status 'result' without a batch_id")
        if status == "fallback" and record.fallback_at is None:
            raise RecordError("status 'fallback' without fallback_at")
        if status == "result" and record.result is None:
            raise RecordError("status 'result' without a result")
        return record


@dataclass(slots=True, kw_only=True)
class BatchHeader:
    """A batch's small, often rewritten part; its member keys are stored once, apart."""

    batch_id: str
    status: BatchStatus
    size: int
    created_at: float
    handle: Any = None
    """What the user's submit returned (the provider's handle); what poll receives. Stored
    apart (`Ledger.load_handle`): it can be large, and the header is rewritten every poll."""
    handle_digest: str | None = None
    """Digest of the stored handle: the handle is written again only when it changed."""
    submit_attempts: int = 0
    not_before: float = 0.0
    submitted_at: float | None = None
    next_poll_at: float = 0.0
    polls: int = 0
    """Polls since its provider batch was (re)submitted: sets the backoff's next gap."""
    poll_error_since: float | None = None
    last_error: str | None = None
    cancel_requested_at: float | None = None
    """When an operator asked to cancel it (`cancel_batch`); its callers then get
    `BatchCancelledError` for what the provider did not finish."""
    cancel_sent: bool = False
    """The provider took the cancel; until then each poll asks again."""
    deadline_at: float | None = None
    """The earliest deadline of the members still waiting on it: the tick wakes by then."""

    def to_value(self) -> dict[str, Any]:
        """The signed store value."""
        value = _fields(self)
        del value["handle"]
        value["kind"] = BATCH_KIND
        return _trust.sign(value)

    @classmethod
    def from_value(cls, key: str, value: Any) -> BatchHeader:
        value = verified(value)
        if value.get("kind") != BATCH_KIND:
            raise RecordError("not a batch record")
        status = _want(value, "status", str, False)
        if status not in get_args(BatchStatus):
            raise RecordError(f"unknown status {status!r}")
        number = (int, float)
        header = cls(
            batch_id=_want(value, "batch_id", str, False),
            status=status,
            size=_want(value, "size", int, False),
            created_at=float(_want(value, "created_at", number, False)),
            handle=value.get("handle"),
            handle_digest=_want(value, "handle_digest", str, True),
            submit_attempts=_want(value, "submit_attempts", int, True) or 0,
            not_before=float(_want(value, "not_before", number, True) or 0.0),
            submitted_at=_want(value, "submitted_at", number, True),
            next_poll_at=float(_want(value, "next_poll_at", number, True) or 0.0),
            polls=_want(value, "polls", int, True) or 0,
            poll_error_since=_want(value, "poll_error_since", number, True),
            last_error=_want(value, "last_error", str, True),
            cancel_requested_at=_want(value, "cancel_requested_at", number, True),
            cancel_sent=bool(_want(value, "cancel_sent", bool, True)),
            deadline_at=_want(value, "deadline_at", number, True),
        )
        if header.batch_id != key:
            raise RecordError(f"stored under {key!r} but names batch {header.batch_id!r}")
        return header
