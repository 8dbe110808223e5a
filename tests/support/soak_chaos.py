"""The soak's chaos machinery: the supervisor that kills and restarts workers, the record of
what it did, and SDK clients that survive killed workers."""

from __future__ import annotations

import asyncio
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from rich.console import Console

from tests.support.prodengine import ProdEngine

__all__ = ["Chaos", "Clients", "Event", "NoWorker", "Supervisor", "console"]

console = Console(log_time_format="%H:%M:%S", width=None if sys.stdout.isatty() else 150)


class NoWorker(RuntimeError):
    pass


@dataclass
class Event:
    """One chaos action; kills carry the times recovery is measured from."""

    at: float  # monotonic, when the action happened (for a self-kill: when it was noticed)
    kind: str  # "kill" | "killpoint" | "fault" | "arm"
    detail: str
    worker: int | None = None
    back_at: float | None = None  # the killed worker answers /ok again
    tick_s: float | None = None
    resume_s: float | None = None


@dataclass
class Chaos:
    """Everything the chaos loop and the supervisor did, for the report."""

    t0: float
    events: list[Event] = field(default_factory=list)
    armed: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    fault_times: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, event: Event) -> Event:
        with self.lock:
            self.events.append(event)
        return event


class Supervisor:
    """Restarts dead workers, as the platform would; owns every kill and restart.

    One thread per worker; a chaos kill holds the worker down for 1-3 s before the restart.
    A worker that died by itself (a kill point) is restarted at once and logged as such.
    """

    def __init__(self, engine: ProdEngine, chaos: Chaos, fault_dir: Path) -> None:
        self.engine, self.chaos, self.fault_dir = engine, chaos, fault_dir
        self.locks = [threading.Lock() for _ in range(engine.workers)]
        self.hold_until = [0.0] * engine.workers
        self.open: list[Event | None] = [None] * engine.workers
        self.last_pid: list[int | None] = list(engine.pids)
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._loop, args=(i,), daemon=True)
            for i in range(engine.workers)
        ]
        for thread in self.threads:
            thread.start()

    def alive(self) -> list[int]:
        return [i for i, pid in enumerate(self.engine.pids) if pid is not None]

    def kill(self, i: int, hold_s: float) -> Event | None:
        with self.locks[i]:
            if self.engine.pids[i] is None:
                return None
            self.hold_until[i] = time.monotonic() + hold_s
            self.engine.kill(i)
            event = Event(
                time.monotonic(),
                "kill",
                f"SIGKILL worker {i}, restart after {hold_s:.1f}s",
                worker=i,
            )
            self.open[i] = self.chaos.add(event)
            return event

    def _killed_at_point(self, pid: int | None) -> str:
        log = self.fault_dir / "fired.log"
        lines = log.read_text().split("\n") if log.exists() else []
        for line in reversed(lines):
            point, _, who = line.partition(" ")
            if who == str(pid):
                return point
        return "unknown cause"

    def _loop(self, i: int) -> None:
        while not self.stopping.is_set():
            with self.locks[i]:
                pid = self.engine.pids[i]
                if pid is not None:
                    self.last_pid[i] = pid
                elif time.monotonic() >= self.hold_until[i]:
                    event = self.open[i]
                    if event is None:  # died by itself
                        point = self._killed_at_point(self.last_pid[i])
                        event = self.chaos.add(
                            Event(
                                time.monotonic(),
                                "killpoint",
                                f"worker {i} died at {point}",
                                worker=i,
                            )
                        )
                    try:
                        self.engine.restart(i)
                    except Exception as exc:  # try again on the next turn
                        console.log(f"[red]restart of worker {i} failed: {exc!r}"[:300])
                        self.hold_until[i] = time.monotonic() + 1
                        self.open[i] = event
                        continue
                    event.back_at = time.monotonic()
                    self.open[i] = None
                    self.last_pid[i] = self.engine.pids[i]
            self.stopping.wait(0.2)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=180)


class Clients:
    """SDK clients per worker; calls go to a random live worker and are retried elsewhere."""

    def __init__(self, engine: ProdEngine) -> None:
        self.engine = engine
        timeout = (3.0, 60.0, 60.0, 10.0)  # connect, read, write, pool
        self.by_url = {url: get_client(url=url, timeout=timeout) for url in engine.urls}
        self.rng = random.Random()

    def live(self) -> LangGraphClient:
        urls = [u for u, pid in zip(self.engine.urls, self.engine.pids, strict=True) if pid]
        if not urls:
            raise NoWorker("no worker is running")
        return self.by_url[self.rng.choice(urls)]

    async def call(self, fn: Any, attempts: int = 60) -> Any:
        for _ in range(attempts - 1):
            try:
                return await fn(self.live())
            except Exception:
                await asyncio.sleep(0.5)
        return await fn(self.live())
