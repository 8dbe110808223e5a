"""An in-process fake batch provider, for tests of graphs that wait on a bridge.

```python
from batch_bridge import Bridge
from batch_bridge.testing import FakeProvider

fake = FakeProvider(lambda item: f"done {item}", delay=0.5)
bridge = Bridge(submit=fake.submit, poll=fake.poll, max_batch_size=10)
...
assert fake.submitted_batches == 1 and fake.submitted_items == 3
```
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["FakeProvider"]


def echo(item: Any) -> Any:
    """The default answer: the item itself, wrapped so a test can tell it came back."""
    return {"echo": item}


class FakeProvider:
    """A provider that answers offline, at once or after `delay` seconds, the same way on
    every run: `Bridge(submit=fake.submit, poll=fake.poll)`.

    Tests of code that waits on a bridge need a provider they control: no network, no key,
    deterministic answers, and a record of what was sent. `answer(item)` gives each item's
    result; an exception it returns fails only that item. `batches`, `submitted_batches` and
    `submitted_items` say what was submitted; `polls` counts this process's polls.

    By default batches live in this object, which is enough for unit tests, scripts and
    `langgraph dev` (one process). A deployment with several worker processes, or one whose
    workers are killed, must share them: give `directory`, and each batch is a JSON file
    there (written atomically), so any process can poll any handle, and the counters count
    every process's submissions. Items must then be JSON-serialisable, as they are when
    they came through a bridge.

    Subclasses may override `delay_for` (how long a batch runs) and `results` (what a
    finished batch returns, e.g. a whole-batch failure) for their own faults.
    """

    def __init__(
        self,
        answer: Callable[[Any], Any] = echo,
        *,
        delay: float = 0.0,
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        if delay < 0:
            raise ValueError(f"delay must not be negative, got {delay!r}")
        self.answer = answer
        self.delay = float(delay)
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.polls = 0
        self._lock = threading.Lock()  # a sync submit runs in a worker thread
        self._memory: dict[str, tuple[float, list[Any]]] = {}

    def submit(self, items: list[Any]) -> str:
        """Record the batch; its handle is a fresh id, valid in any process that shares
        `directory`."""
        handle = f"fake_{uuid.uuid4().hex[:12]}"
        record = (time.time(), list(items))
        if self.directory is None:
            with self._lock:
                self._memory[handle] = record
        else:
            path = self.directory / f"{handle}.json"
            tmp = path.with_name(f".{handle}.tmp")
            tmp.write_text(json.dumps({"submitted_at": record[0], "items": record[1]}))
            os.replace(tmp, path)
        return handle

    async def poll(self, handle: str) -> Sequence[Any] | BaseException | None:
        """None while the batch runs, then `results(handle, items)`. An unknown handle
        raises KeyError, as a provider would answer 404."""
        with self._lock:
            self.polls += 1
        submitted_at, items = self._record(handle)
        if time.time() - submitted_at < self.delay_for(items):
            return None
        return self.results(handle, items)

    def delay_for(self, items: list[Any]) -> float:
        """Seconds from submit until the batch is done."""
        return self.delay

    def results(self, handle: str, items: list[Any]) -> Sequence[Any] | BaseException:
        """A finished batch's answer: one result per item, in submission order."""
        return [self.answer(item) for item in items]

    @property
    def batches(self) -> dict[str, list[Any]]:
        """Every submitted batch's items by handle, in submission order."""
        if self.directory is None:
            with self._lock:
                return {handle: items for handle, (_, items) in self._memory.items()}
        records = []
        for path in self.directory.glob("fake_*.json"):
            data = json.loads(path.read_text())
            records.append((data["submitted_at"], path.stem, data["items"]))
        return {handle: items for _, handle, items in sorted(records)}

    @property
    def submitted_batches(self) -> int:
        return len(self.batches)

    @property
    def submitted_items(self) -> int:
        return sum(len(items) for items in self.batches.values())

    def _record(self, handle: str) -> tuple[float, list[Any]]:
        if not (isinstance(handle, str) and handle.startswith("fake_") and handle[5:].isalnum()):
            raise KeyError(f"not a FakeProvider handle: {handle!r}")
        if self.directory is None:
            with self._lock:
                if handle in self._memory:
                    return self._memory[handle]
        else:
            path = self.directory / f"{handle}.json"
            if path.exists():
                data = json.loads(path.read_text())
                return float(data["submitted_at"]), list(data["items"])
        raise KeyError(f"FakeProvider knows no batch {handle!r}")
