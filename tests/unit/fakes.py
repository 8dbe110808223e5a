"""In-process stand-ins for what a tick is handed: a platform client, a clock, a provider."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from langgraph_sdk.errors import ConflictError, UnprocessableEntityError

from batch_bridge._store import ItemRecord, digest


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeThreads:
    threads: dict[str, dict[str, Any]] = field(default_factory=dict)
    searches: int = 0
    fail: Exception | None = None

    async def search(
        self, *, ids: list[str], limit: int, select: list[str] | None = None
    ) -> list[dict[str, Any]]:
        self.searches += 1
        if self.fail is not None:
            raise self.fail
        found = [self.threads[t] for t in ids if t in self.threads][:limit]
        return [{k: t[k] for k in select if k in t} for t in found] if select else found

    async def create(self, **kwargs: Any) -> dict[str, Any]:
        return {"thread_id": kwargs.get("thread_id")}

    def waiting(self, record: ItemRecord, *, status: str = "interrupted", item: Any = None) -> None:
        """Make `record`'s thread wait on it (on another item when `item` is given)."""
        value = {"ref": record.key, "digest": record.digest if item is None else digest(item)}
        thread = self.threads.setdefault(
            record.thread_id, {"thread_id": record.thread_id, "interrupts": {}}
        )
        thread["status"] = status
        waits = {"id": f"int-{record.interrupt_id}", "value": value}
        thread["interrupts"][f"task-{record.interrupt_id}"] = [waits]


@dataclass
class FakeRuns:
    threads: FakeThreads
    resumes: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    scheduled: list[float] = field(default_factory=list)
    refuse: Exception | None = None

    async def list(self, thread_id: str, **kwargs: Any) -> list[dict[str, Any]]:
        return []

    async def create(self, thread_id: str, assistant_id: str, **kwargs: Any) -> dict[str, Any]:
        command = kwargs.get("command")
        if command is None:
            self.scheduled.append(float(kwargs.get("after_seconds") or 0))
            return {}
        if self.refuse is not None:
            raise self.refuse
        self.resumes.append((thread_id, assistant_id, command["resume"]))
        thread = self.threads.threads[thread_id]
        thread["status"], thread["interrupts"] = "busy", {}  # resumed: no longer waiting
        return {}


@dataclass
class FakeCrons:
    created: list[str] = field(default_factory=list)

    async def search(self, **kwargs: Any) -> list[dict[str, Any]]:
        return []

    async def create_for_thread(self, thread_id: str, assistant_id: str, **kw: Any) -> Any:
        self.created.append(kw["schedule"])
        return {"cron_id": f"cron-{len(self.created)}"}


class FakeClient:
    """The parts of the LangGraph SDK client a tick and delivery use."""

    def __init__(self) -> None:
        self.threads = FakeThreads()
        self.runs = FakeRuns(self.threads)
        self.crons = FakeCrons()

    def client_for(self, url: str | None) -> FakeClient:
        return self


def conflict() -> ConflictError:
    request = httpx.Request("POST", "http://caller/runs")
    response = httpx.Response(409, request=request)
    return ConflictError("busy", response=response, body=None)


def unprocessable() -> UnprocessableEntityError:
    """What a server answers to a field it does not know (`select` before it existed)."""
    request = httpx.Request("POST", "http://caller/threads/search")
    response = httpx.Response(422, request=request)
    return UnprocessableEntityError("select", response=response, body=None)


@dataclass
class FakeProvider:
    """Records every call; answers polls from a script (default: results at once)."""

    answers: list[Any] = field(default_factory=list)
    submitted: list[list[Any]] = field(default_factory=list)
    polled: list[Any] = field(default_factory=list)
    cancelled: list[Any] = field(default_factory=list)
    released: list[Any] = field(default_factory=list)

    def submit(self, items: list[Any]) -> str:
        self.submitted.append(list(items))
        return f"handle-{len(self.submitted)}"

    def poll(self, handle: str) -> Any:
        self.polled.append(handle)
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        items = self.submitted[int(handle.split("-")[1]) - 1]
        return [f"done {item}" for item in items]

    def cancel(self, handle: str) -> None:
        self.cancelled.append(handle)

    def release(self, handle: str) -> None:
        self.released.append(handle)
