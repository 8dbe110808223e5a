"""Shared by the benchmark scripts: the machine line and sections of benchmarks/RESULTS.md."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import platform
import re
import resource
from importlib.metadata import version
from pathlib import Path
from typing import Any

from langgraph_sdk.client import LangGraphClient

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = """# Performance figures

Measured on this repository's machines by the scripts in `benchmarks/`; each section says
the command that wrote it. Tests check correctness; these figures are not asserted anywhere.
"""


def machine() -> str:
    packages = ", ".join(
        f"{name} {version(name)}"
        for name in ("langgraph", "langgraph-api", "langgraph-runtime-inmem", "openai")
    )
    return (
        f"{dt.date.today().isoformat()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.system()} {platform.machine()}; {packages}"
    )


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory of a running process (Linux `VmHWM`), in MB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else None


def cpu_seconds(roots: list[int]) -> float:
    """CPU time (user + system) of `roots` and every live descendant, plus what their
    reaped children used (PostgreSQL's backends come and go): from /proc, Linux only."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        times[pid] = sum(int(f) for f in fields[11:15]) / tick  # utime stime cutime cstime
    seen, todo = set(), [r for r in roots if r in times]
    while todo:
        pid = todo.pop()
        seen.add(pid)
        todo += [child for child, parent in parents.items() if parent == pid and child not in seen]
    return sum(times[pid] for pid in seen)


def own_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section `name` of RESULTS.md, leaving the others as they are."""
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)


async def start_callers(
    client: LangGraphClient, graph: str, tag: str, inputs: list[dict[str, Any]], gate: int = 20
) -> list[str]:
    """One thread per input, tagged `{"bench": tag}`, each with a run of `graph` started."""
    limit = asyncio.Semaphore(gate)

    async def one(value: dict[str, Any]) -> str:
        async with limit:
            thread = await client.threads.create(metadata={"bench": tag})
            await client.runs.create(thread["thread_id"], graph, input=value)
            return str(thread["thread_id"])

    return list(await asyncio.gather(*(one(v) for v in inputs)))
