"""The main job: many agent threads through the bridge and the offline Batch API emulator.

Starts the emulator and a `langgraph dev` server with this project's langgraph.json, starts
one agent thread per question, shows live progress from the first second (stages: starting
emulator, starting server, creating threads, waiting for batches, delivering, done), and
ends with a summary of batches, waits, tokens and what the Batch API's half price saved
(the bridge's own usage record), and the URL of the status page that shows the same.
When the demo fails, the server's log is copied to a file that outlives it.

Rooms: `_settings` (settings, summary, error, models), `_run` (servers, threads,
collection), `_view` (stages, live progress, summary table), and `anthropic_graph` (the
graphs `--provider anthropic` registers by path).
"""

from batch_bridge.demo._run import log_cause, run_demo
from batch_bridge.demo._settings import (
    CHAT_MODELS,
    DEFAULT_MODELS,
    DemoError,
    DemoSettings,
    DemoSummary,
)
from batch_bridge.demo._view import Snapshot, describe, render

__all__ = [
    "CHAT_MODELS",
    "DEFAULT_MODELS",
    "DemoError",
    "DemoSettings",
    "DemoSummary",
    "Snapshot",
    "describe",
    "log_cause",
    "render",
    "run_demo",
]
