"""Dedup (`Bridge(dedupe=True)`): identical items of one flush share one provider request.

A batch's member list keeps every key; its slots say which provider request answers each
key (the first key of a slot is its leader, the others ride on it). Slots are written with
the member list before any record is claimed, so a re-run of form, submit or finish sees
the same grouping: nothing is submitted twice and no rider is lost. A key whose record left
the batch before the submit is dropped and the slots are renumbered; after the submit the
slots never change, so a caller who stops waiting (leader or rider) affects no other.
"""

from __future__ import annotations

from collections.abc import Sequence

from batch_bridge._store import ItemRecord


def group(records: Sequence[ItemRecord], size: int) -> list[list[ItemRecord]]:
    """Chunks of at most `size` distinct items, identical items in the same chunk next to
    their first, in arrival order of the first."""
    by_digest: dict[str, list[ItemRecord]] = {}
    for record in records:
        by_digest.setdefault(record.digest, []).append(record)
    groups = list(by_digest.values())
    return [[r for same in groups[i : i + size] for r in same] for i in range(0, len(groups), size)]


def slots_of(records: Sequence[ItemRecord]) -> list[int]:
    """Each record's provider request: the first record with its digest opens a new one."""
    first: dict[str, int] = {}
    return [first.setdefault(r.digest, len(first)) for r in records]


def kept(slots: list[int], keep: Sequence[bool]) -> list[int]:
    """The slots of the kept keys, renumbered in order so the requests stay dense."""
    renumbered: dict[int, int] = {}
    pairs = zip(slots, keep, strict=True)
    return [renumbered.setdefault(s, len(renumbered)) for s, k in pairs if k]


def leaders(slots: list[int]) -> list[int]:
    """The position of each slot's first key, in slot order: the items to submit."""
    first: dict[int, int] = {}
    for position, slot in enumerate(slots):
        first.setdefault(slot, position)
    return [first[s] for s in sorted(first)]
