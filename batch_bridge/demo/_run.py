"""The demo's run: the emulator and `langgraph dev`, the agent threads, the summary.

Starts the emulator and a `langgraph dev` server with this project's langgraph.json, starts
one agent thread per question, follows them until each has answered (or --timeout), and
collects batches, waits, tokens and cost. When the demo fails, the server's log is copied to
a file that outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.schema import ThreadStatus
from rich.console import Console

from batch_bridge._client import result
from batch_bridge._constants import bridge_thread_id
from batch_bridge._usage import usage
from batch_bridge.demo._settings import DemoError, DemoSettings, DemoSummary
from batch_bridge.demo._view import Display, Snapshot, describe, render
from batch_bridge.testing import Emulator, EmulatorServer
from batch_bridge.testing.devserver import DevServer

__all__ = ["log_cause", "run_demo"]

_ANTHROPIC_GRAPH = Path(__file__).with_name("anthropic_graph.py")
ANTHROPIC_GRAPHS = {"bridge": f"{_ANTHROPIC_GRAPH}:bridge", "agent": f"{_ANTHROPIC_GRAPH}:graph"}
"""With `--provider anthropic`, these replace the config's `bridge` and `agent`."""
_GEMINI_GRAPH = Path(__file__).with_name("gemini_graph.py")
GEMINI_GRAPHS = {"bridge": f"{_GEMINI_GRAPH}:bridge", "agent": f"{_GEMINI_GRAPH}:graph"}
"""With `--provider gemini`, these replace the config's `bridge` and `agent`."""
REQUIRED_GRAPHS = ("bridge", "agent")
"""The graphs the demo runs: `bridge` (the bridge) and `agent` (the caller)."""
BRIDGE = "bridge"
STATUS_WAIT_S = 15.0
"""Seconds the end of the run waits for the status page to show the bridge's last tick."""


def _graphs(config: Path) -> tuple[dict[str, str], Path]:
    try:
        spec = json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DemoError(f"cannot read {str(config)!r}: {exc}") from exc
    graphs = spec.get("graphs") if isinstance(spec, dict) else None
    missing = [name for name in REQUIRED_GRAPHS if name not in (graphs or {})]
    if not isinstance(graphs, dict) or missing:
        what = f"no graph {missing[0]!r}" if isinstance(graphs, dict) else 'no "graphs" map'
        raise DemoError(
            f"{str(config)!r} has {what}; the demo needs the graphs 'bridge' and 'agent' "
            "(run it from the repository root, or pass --config)"
        )
    return {str(k): str(v) for k, v in graphs.items()}, config.resolve().parent


async def _counts(client: LangGraphClient, run_tag: str) -> dict[str, int]:
    statuses: tuple[ThreadStatus, ...] = ("idle", "error")
    counts = await asyncio.gather(
        *(client.threads.count(metadata={"demo": run_tag}, status=s) for s in statuses)
    )
    return dict(zip(statuses, counts, strict=True))


async def _waiting(client: LangGraphClient, run_tag: str) -> set[str]:
    """The ids of the demo's threads interrupted now: their callers wait on the bridge."""
    ids: set[str] = set()
    offset = 0
    while True:
        page = await client.threads.search(
            metadata={"demo": run_tag},
            status="interrupted",
            select=["thread_id"],
            limit=500,
            offset=offset,
        )
        ids.update(str(t["thread_id"]) for t in page)
        offset += len(page)
        if len(page) < 500:
            return ids


async def _bridge_summary(client: LangGraphClient) -> dict[str, Any]:
    try:
        state = await client.threads.get_state(bridge_thread_id(BRIDGE))
    except Exception:  # no tick has run yet, so the bridge's thread has no state
        return {}
    values = state.get("values")
    return values if isinstance(values, dict) else {}


async def _start_threads(
    client: LangGraphClient, settings: DemoSettings, run_tag: str, created: Callable[[], None]
) -> None:
    gate = asyncio.Semaphore(20)

    async def one(i: int) -> None:
        question = f"Question {i}: what is {i} squared?"
        async with gate:
            # One call creates the thread (tagged with the run's metadata) and its run, so no
            # thread is ever seen `idle` before its run started.
            await client.runs.create(
                str(uuid.uuid4()),
                "agent",
                input={"question": question},
                metadata={"demo": run_tag},
                if_not_exists="create",
            )
            created()

    await asyncio.gather(*(one(i) for i in range(settings.threads)))


def _timestamp(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value)).timestamp()


async def _collect(
    client: LangGraphClient, run_tag: str, settings: DemoSettings, wall_s: float
) -> DemoSummary:
    threads: list[dict[str, Any]] = []
    while len(threads) < settings.threads:
        page = await client.threads.search(
            metadata={"demo": run_tag}, limit=500, offset=len(threads)
        )
        if not page:
            break
        threads.extend(dict(t) for t in page)
    ok = [t for t in threads if t["status"] == "idle" and (t.get("values") or {}).get("answer")]
    ended = [t for t in threads if t["status"] in ("idle", "error")]
    waits = sorted(_timestamp(t["updated_at"]) - _timestamp(t["created_at"]) for t in ended)
    tokens_in = sum(t["values"]["usage"].get("prompt_tokens", 0) for t in ok)
    tokens_out = sum(t["values"]["usage"].get("completion_tokens", 0) for t in ok)
    cost = await usage(client, bridge=BRIDGE)
    bridge = await _bridge_summary(client)
    sample = None
    if ok:  # what a client does to get an agent's answer (runs.wait returns at the interrupt)
        sample = str((await result(client, ok[0]["thread_id"], timeout_s=30)).get("answer"))
    return DemoSummary(
        threads=len(threads),
        succeeded=len(ok),
        failed=len(ended) - len(ok),
        unfinished=len(threads) - len(ended),
        batches=int(bridge.get("batches_submitted", 0)),
        wall_s=wall_s,
        wait_p50_s=statistics.median(waits) if waits else 0.0,
        wait_p95_s=waits[min(len(waits) - 1, int(len(waits) * 0.95))] if waits else 0.0,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cost_normal_usd=cost["normal_usd"],
        cost_batch_usd=cost["batch_usd"],
        saved_usd=cost["saved_usd"],
        sample_answer=sample,
    )


def _status_figures(status: dict[str, Any]) -> tuple[int, float]:
    """Finished batches and savings (summed over its models) as the status JSON shows them."""
    saved = sum(
        float(m.get("saved_usd") or 0.0)
        for m in (status.get("usage") or {}).values()
        if isinstance(m, dict)
    )
    return len(status.get("finished") or []), round(saved, 9)


async def _read_status(url: str, summary: DemoSummary) -> DemoSummary:
    """What the status page shows at the end: waits (a little) for the bridge's last tick to
    reach its state, so the page's savings are the usage record's."""
    json_url = f"{url}/batch-bridge/status.json"
    shown: tuple[int, float] | None = None
    deadline = time.monotonic() + STATUS_WAIT_S
    settling = summary.unfinished == 0  # else batches stay in flight: one look is enough
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            answer = await http.get(json_url, params={"bridge": BRIDGE})
            if answer.status_code == 200:
                status = answer.json()
                shown = _status_figures(status)
                settled = not status.get("in_flight_count")
                if settled and abs(shown[1] - summary.savings_usd) < 1e-9:
                    break
            if not settling or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    return dataclasses.replace(
        summary,
        status_url=f"{url}/batch-bridge/?bridge={BRIDGE}",
        status_batches=shown[0] if shown else None,
        status_saved_usd=shown[1] if shown else None,
    )


async def _drive(url: str, settings: DemoSettings, display: Display) -> DemoSummary:
    client = get_client(url=url)
    run_tag = uuid.uuid4().hex[:8]
    started = time.monotonic()
    created = 0

    def one_created() -> None:
        nonlocal created
        created += 1

    creating = asyncio.create_task(_start_threads(client, settings, run_tag, one_created))
    ever_waited: set[str] = set()
    try:
        while True:
            counts, waiting, bridge = await asyncio.gather(
                _counts(client, run_tag), _waiting(client, run_tag), _bridge_summary(client)
            )
            ever_waited |= waiting
            if creating.done():
                creating.result()  # a thread that could not be created ends the demo here
            in_flight = [b for b in bridge.get("in_flight", []) if isinstance(b, dict)]
            snapshot = Snapshot(
                created=created,
                answered=counts["idle"],
                failed=counts["error"],
                waiting=len(waiting),
                pending=int(bridge.get("pending", 0)),
                in_flight=sum(int(b.get("size", 0)) for b in in_flight),
                batches_in_flight=len(in_flight),
                delivering=int(bridge.get("delivering", 0)),
                resumed=max(len(ever_waited - waiting), int(bridge.get("items_delivered", 0))),
            )
            stage, detail = describe(snapshot, settings.threads)
            display.show(stage, detail, answered=snapshot.answered + snapshot.failed)
            if stage == "done":
                break
            if time.monotonic() - started > settings.timeout_s:
                display.note(f"gave up after {settings.timeout_s:g}s (--timeout)")
                break
            await asyncio.sleep(0.5)
    finally:
        creating.cancel()
        with contextlib.suppress(BaseException):
            await creating
    summary = await _collect(client, run_tag, settings, time.monotonic() - started)
    return await _read_status(url, summary)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_RAISED = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Za-z_]\w*(?:Error|Exception)): (.+)$")


def log_cause(log: str) -> str | None:
    """The last exception line of a server log (`GraphLoadError: ...`), without its module."""
    lines = (_ANSI.sub("", line).strip() for line in log.splitlines())
    found = [m for m in map(_RAISED.match, lines) if m]
    if not found:
        return None
    message = re.sub(r"(?<=\.)\s+[^.]*:$", "", found[-1][2])  # drop a dangling "Check that:"
    return f"{found[-1][1]}: {message}"


def _keep_log(server: DevServer) -> Path | None:
    """Stop the server and copy its log to a file that outlives the demo's work directory."""
    server.stop()
    if not server.log_path.exists():
        return None
    fd, name = tempfile.mkstemp(prefix="batch-bridge-demo-", suffix=".log")
    with open(fd, "wb") as kept, server.log_path.open("rb") as log:
        shutil.copyfileobj(log, kept)
    return Path(name)


def _start(server: DevServer) -> None:
    """Start `langgraph dev`; when it exits or never answers, a `DemoError` names the cause."""
    try:
        server.start()
    except RuntimeError as exc:
        log = _keep_log(server)
        cause = log_cause(log.read_text(errors="replace")) if log else None
        reason = cause or str(exc).splitlines()[0]
        raise DemoError(f"langgraph dev did not start: {reason}", server_log=log) from exc


@contextlib.contextmanager
def _log_kept_on_error(server: DevServer) -> Iterator[None]:
    """A server gone mid-run becomes a `DemoError` naming the kept log; other errors (bugs)
    keep their traceback, with the log's path as a note."""
    try:
        yield
    except httpx.HTTPError as exc:  # the server went away or refused a call
        log = _keep_log(server)
        raise DemoError(f"the demo stopped: {type(exc).__name__}: {exc}", server_log=log) from exc
    except Exception as exc:
        log = _keep_log(server)
        if log is not None:
            exc.add_note(f"server log kept at {log}")
        raise


def _serve_until_interrupted(server: DevServer, console: Console) -> None:
    """--keep-serving: the page stays up until Ctrl-C (or until the server exits)."""
    console.print("serving the status page until Ctrl-C (--keep-serving)", highlight=False)
    try:
        while server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
        console.print("the server exited", highlight=False)
    except KeyboardInterrupt:
        console.print("stopped (Ctrl-C)", highlight=False)


def run_demo(settings: DemoSettings, console: Console | None = None) -> DemoSummary:
    """Run the demo and print its summary; raises `DemoError` when it cannot finish.

    With `keep_serving`, returns only after Ctrl-C, the status page served until then."""
    console = console or Console()
    graphs, base_dir = _graphs(settings.config)
    if settings.provider == "anthropic":
        graphs |= ANTHROPIC_GRAPHS
    elif settings.provider == "gemini":
        graphs |= GEMINI_GRAPHS
    with contextlib.ExitStack() as stack:  # unwinds: server, emulator, work directory
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="batch-bridge-demo-"))
        with Display(console, settings.threads) as display:
            display.show("starting emulator")
            emulator = Emulator(in_progress_s=settings.provider_latency_s)
            provider = stack.enter_context(EmulatorServer(emulator))
            env = {
                "OPENAI_BASE_URL": provider.base_url,
                "OPENAI_API_KEY": "emulator",
                "ANTHROPIC_BASE_URL": provider.anthropic_base_url,
                "ANTHROPIC_API_KEY": "emulator",
                "GOOGLE_GEMINI_BASE_URL": provider.gemini_base_url,
                "GEMINI_API_KEY": "emulator",
                "BATCH_BRIDGE_MAX_BATCH_SIZE": str(settings.max_batch_size),
                "BATCH_BRIDGE_MAX_BATCH_AGE_S": str(settings.max_batch_age_s),
                "BATCH_BRIDGE_POLL_INTERVAL_S": str(settings.poll_interval_s),
                "BATCH_BRIDGE_DEMO_MODEL": settings.model_name,
            }
            shown = {"openai": provider.base_url, "gemini": provider.gemini_base_url}.get(
                settings.provider, provider.url
            )
            display.show("starting server", f"{settings.provider} emulator at {shown}")
            status_routes = {"app": "batch_bridge.http:app"}
            server = DevServer(
                Path(workdir), graphs, base_dir=base_dir, env=env, http=status_routes
            )
            stack.callback(server.stop)
            _start(server)
            with _log_kept_on_error(server):
                page = f"status page at {server.url}/batch-bridge/"
                display.show("creating threads", f"langgraph dev at {server.url}, {page}")
                summary = asyncio.run(_drive(server.url, settings, display))
            if summary.succeeded < settings.threads:
                summary = dataclasses.replace(summary, server_log=_keep_log(server))
        render(summary, console, serving=settings.keep_serving)
        if settings.keep_serving and summary.server_log is None:
            _serve_until_interrupted(server, console)
    return summary
