"""The `batch-bridge` command without servers: help, version, refused values, the cron rule,
the demo's stages and its error lines (`tests/e2e/test_cli.py` runs them for real)."""

from __future__ import annotations

import asyncio
import io
from importlib.metadata import version
from pathlib import Path
from typing import Any, cast

import click
import httpx
import pytest
from click.testing import CliRunner, Result
from langgraph_sdk.client import LangGraphClient
from rich.console import Console

from batch_bridge import bridge_thread_id
from batch_bridge._prices import DEFAULT_PRICES
from batch_bridge.cli import CLI_CRON_TAG, CronResult, apply_cron, main
from batch_bridge.cli import cron as cli_cron
from batch_bridge.cli import demo as cli_demo
from batch_bridge.demo import DemoError, DemoSummary, Snapshot, describe, log_cause, render
from batch_bridge.testing.__main__ import main as emulator_main


def invoke(*args: str) -> Result:
    return CliRunner(env={"BATCH_BRIDGE_URL": None}).invoke(main, list(args))


def assert_one_error_line(result: Result, exit_code: int) -> str:
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert result.output.rstrip().splitlines()[-1] == errors[0]
    return errors[0]


@pytest.mark.parametrize("name", sorted(main.commands))
def test_each_subcommand_help_lists_its_own_options_with_help_text(name: str) -> None:
    command = main.commands[name]
    result = invoke(name, "--help")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: main {name} [OPTIONS]")
    options = [p for p in command.params if isinstance(p, click.Option)]
    assert len(options) >= 3
    for option in options:
        assert option.help, f"{name} {option.opts} has no help text"
        for flag in option.opts + option.secondary_opts:
            assert flag in result.output, f"{flag} missing from `{name} --help`"


def test_subcommands_and_their_key_options() -> None:
    assert set(main.commands) == {"cancel", "cron", "demo", "emulator", "status"}
    demo = invoke("demo", "--help").output
    for flag in ("--threads", "--max-batch-size", "--max-batch-age", "--poll-interval"):
        assert flag in demo
    assert "--provider-latency" in demo and "--timeout" in demo
    cron = invoke("cron", "--help").output
    for flag in ("--url", "--bridge", "--schedule", "--flush / --no-flush"):
        assert flag in cron
    cancel = invoke("cancel", "--help").output
    for flag in ("--url", "--bridge", "--batch"):
        assert flag in cancel
    emulator = invoke("emulator", "--help").output
    for flag in ("--port", "--in-progress-s", "--error-rate", "--retry-after-s"):
        assert flag in emulator
    status = invoke("status", "--help").output
    for flag in ("--url", "--bridge", "--json", "--token"):
        assert flag in status


def test_emulator_subcommand_is_the_module_command() -> None:
    assert main.commands["emulator"] is emulator_main


def test_version_comes_from_the_installed_distribution() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"batch-bridge, version {version('batch-bridge')}"


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["demo", "--threads", "0"], "--threads"),
        (["demo", "--threads", "many"], "--threads"),
        (["demo", "--max-batch-size", "0"], "--max-batch-size"),
        (["demo", "--max-batch-age", "0"], "--max-batch-age"),
        (["demo", "--poll-interval", "-1"], "--poll-interval"),
        (["demo", "--provider-latency", "nan"], "--provider-latency"),
        (["demo", "--timeout", "inf"], "--timeout"),
        (["demo", "--model", "gpt-9"], "--model"),
        (["demo", "--config", "/no/such/langgraph.json"], "--config"),
        (["cron"], "--url"),
        (["cron", "--url", "ftp://example.com"], "--url"),
        (["cron", "--url", "http://127.0.0.1:1", "--schedule", "* * *"], "--schedule"),
        (["status"], "--url"),
        (["status", "--url", "not a url"], "--url"),
        (["emulator", "--error-rate", "2"], "error_rate"),
        (["emulator", "--in-progress-s", "-1"], "in_progress_s"),
        (["emulator", "--max-file-bytes", "1.5"], "--max-file-bytes"),
        (["emulator", "--port", "70000"], "--port"),
        (["demo", "--no-such-option"], "--no-such-option"),
    ],
)
def test_bad_values_are_one_line_and_exit_code_2(args: list[str], names: str) -> None:
    line = assert_one_error_line(invoke(*args), 2)
    assert names in line


def test_status_of_an_unreachable_deployment_is_one_line_exit_code_1() -> None:
    line = assert_one_error_line(invoke("status", "--url", "http://127.0.0.1:1"), 1)
    assert line.startswith("Error: cannot reach http://127.0.0.1:1")


def test_the_module_entry_point_names_itself_in_errors() -> None:
    result = CliRunner().invoke(emulator_main, ["--port", "-1"], prog_name="batch-bridge emulator")
    assert "Try 'batch-bridge emulator --help'" in result.output


def test_demo_error_is_one_line_with_the_kept_log(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kept = tmp_path / ("a-rather-long-directory-name-" * 4) / "batch-bridge-demo-x.log"

    def failing(settings: Any) -> DemoSummary:
        raise DemoError("langgraph dev did not start: GraphLoadError: boom.", server_log=kept)

    monkeypatch.setattr(cli_demo, "run_demo", failing)
    line = assert_one_error_line(invoke("demo"), 1)
    reason = "langgraph dev did not start: GraphLoadError: boom"
    assert line == f"Error: {reason}; server log kept at {kept}"


def test_demo_with_unanswered_agents_exits_1_and_names_the_log(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    summary = DemoSummary(5, 3, 0, 1, 1.0, 1.0, 1.0, 0, 0, 0.0, 0.0, unfinished=2, server_log=log)
    monkeypatch.setattr(cli_demo, "run_demo", lambda settings: summary)
    result = invoke("demo", "--threads", "5")
    assert result.exit_code == 1
    assert result.output.strip() == f"2 of 5 agents did not answer; server log kept at {log}"


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ('{"graphs": {"bridge": "graphs/bridge.py:bridge"}}', "has no graph 'agent'"),
        ('{"graphs": ["bridge", "agent"]}', 'has no "graphs" map'),
        ("{", "cannot read"),
    ],
)
def test_demo_with_an_unusable_config_is_one_line(tmp_path: Path, config: str, reason: str) -> None:
    path = tmp_path / "langgraph.json"
    path.write_text(config)
    line = assert_one_error_line(invoke("demo", "--config", str(path)), 1)
    assert reason in line


SUMMARY = DemoSummary(7, 7, 0, 1, 1.0, 1.0, 1.0, 0, 0, 0.0, 0.0)


def test_demo_passes_every_option_to_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    def record(settings: Any) -> DemoSummary:
        seen.append(settings)
        return SUMMARY

    monkeypatch.setattr(cli_demo, "run_demo", record)
    args = ["--threads", "7", "--max-batch-size", "3", "--max-batch-age", "0.5"]
    args += ["--poll-interval", "0.25", "--provider-latency", "0", "--timeout", "30"]
    result = invoke("demo", *args, "--model", "gpt-4o")
    assert result.exit_code == 0, result.output
    (settings,) = seen
    assert (settings.threads, settings.max_batch_size, settings.model) == (7, 3, "gpt-4o")
    assert (settings.max_batch_age_s, settings.poll_interval_s) == (0.5, 0.25)
    assert (settings.provider_latency_s, settings.timeout_s) == (0.0, 30.0)
    assert (settings.provider, settings.model_name) == ("openai", "gpt-4o")
    assert settings.keep_serving is False
    assert invoke("demo", "--threads", "7", "--keep-serving").exit_code == 0
    assert seen[-1].keep_serving is True


def test_demo_models_are_the_chat_models_of_the_one_price_table() -> None:
    (model,) = [p for p in cli_demo.demo.params if p.name == "model"]
    assert isinstance(model.type, click.Choice)
    chat = {name for name in DEFAULT_PRICES if "embedding" not in name}
    assert set(model.type.choices) == chat
    assert {"gpt-4o-mini", "claude-haiku-4-5", "gpt-5"} <= chat
    line = assert_one_error_line(invoke("demo", "--model", "text-embedding-3-small"), 2)
    assert "--model" in line


def test_demo_provider_picks_its_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(cli_demo, "run_demo", lambda settings: seen.append(settings) or SUMMARY)
    assert invoke("demo", "--threads", "7", "--provider", "anthropic").exit_code == 0
    assert invoke("demo", "--threads", "7").exit_code == 0
    assert [(s.provider, s.model_name) for s in seen] == [
        ("anthropic", "claude-haiku-4-5"),
        ("openai", "gpt-4o-mini"),
    ]
    line = assert_one_error_line(invoke("demo", "--provider", "mistral"), 2)
    assert "--provider" in line


def test_cron_unreachable_url_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    class Unreachable:
        def __getattr__(self, name: str) -> Any:
            return self

        async def search(self, **kwargs: Any) -> Any:
            raise httpx.ConnectError("All connection attempts failed")

    monkeypatch.setattr(cli_cron, "get_client", lambda url: Unreachable())
    line = assert_one_error_line(invoke("cron", "--url", "http://127.0.0.1:9/"), 1)
    assert line == (
        "Error: cannot reach http://127.0.0.1:9: All connection attempts failed; "
        "check --url (or BATCH_BRIDGE_URL)."
    )


# --- the cron rule, on an in-memory stand-in for the SDK's crons API --------------------------


class FakeDeployment:
    """Just enough of `LangGraphClient` for `apply_cron`: graphs, threads and crons."""

    def __init__(self, graphs: tuple[str, ...] = ("bridge",)) -> None:
        self.graphs = graphs
        self.table: dict[str, dict[str, Any]] = {}
        self.assistants = self
        self.threads = self
        self.crons = self

    async def search(self, *, graph_id: str | None = None, **kwargs: Any) -> list[Any]:
        if "thread_id" in kwargs:
            return [c for c in self.table.values() if c["thread_id"] == kwargs["thread_id"]]
        return [{"graph_id": graph_id}] if graph_id in self.graphs else []

    async def create(self, **kwargs: Any) -> dict[str, Any]:
        return {"thread_id": kwargs["thread_id"]}

    async def create_for_thread(
        self,
        thread_id: str,
        assistant_id: str,
        *,
        schedule: str,
        input: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        cron_id = f"cron-{len(self.table) + 1}"
        payload = {"input": input, "metadata": metadata or {}}
        self.table[cron_id] = {
            "cron_id": cron_id,
            "thread_id": thread_id,
            "schedule": schedule,
            "payload": payload,
            "metadata": metadata or {},
        }
        return self.table[cron_id]

    async def delete(self, cron_id: str) -> None:
        del self.table[cron_id]

    def apply(self, schedule: str, *, flush: bool = False, bridge: str = "bridge") -> CronResult:
        client = cast(LangGraphClient, self)
        return asyncio.run(apply_cron(client, bridge=bridge, schedule=schedule, flush=flush))

    def schedules(self) -> set[tuple[str, bool, bool]]:
        """(schedule, flush, made by the CLI) of every cron."""
        return {
            (c["schedule"], c["payload"]["input"]["flush"], bool(c["metadata"].get(CLI_CRON_TAG)))
            for c in self.table.values()
        }


def test_cron_created_kept_then_replaced_leaving_other_crons_alone() -> None:
    deployment = FakeDeployment()
    safety = asyncio.run(  # the bridge's own safety cron: same input, untagged
        deployment.create_for_thread(
            bridge_thread_id("bridge"), "bridge", schedule="* * * * *", input={"flush": False}
        )
    )

    created = deployment.apply("* * * * *")
    assert created.action == "created" and created.cron_id != safety["cron_id"]
    kept = deployment.apply("* * * * *")
    assert kept == CronResult("kept", created.cron_id)
    flushing = deployment.apply("*/5 * * * *", flush=True)
    assert flushing.action == "created"
    replaced = deployment.apply("*/2 * * * *")
    assert replaced == CronResult(
        "replaced", replaced.cron_id, (created.cron_id,), previous_schedule="* * * * *"
    )

    assert deployment.schedules() == {
        ("* * * * *", False, False),
        ("*/5 * * * *", True, True),
        ("*/2 * * * *", False, True),
    }


def test_cron_keeps_one_and_removes_duplicates_of_the_same_setting() -> None:
    deployment = FakeDeployment()
    first = deployment.apply("0 * * * *")
    tagged = {CLI_CRON_TAG: True}
    thread = bridge_thread_id("bridge")
    dup = asyncio.run(
        deployment.create_for_thread(
            thread, "bridge", schedule="0 * * * *", input={"flush": False}, metadata=tagged
        )
    )
    result = deployment.apply("0 * * * *")
    assert result == CronResult("kept", first.cron_id, (dup["cron_id"],))
    assert set(deployment.table) == {first.cron_id}


def test_cron_for_an_unknown_bridge_is_refused_before_any_write() -> None:
    deployment = FakeDeployment(graphs=("agent",))
    with pytest.raises(click.ClickException, match="no graph 'bridge'"):
        deployment.apply("* * * * *")
    assert deployment.table == {}


def test_cron_result_lines() -> None:
    where = {"bridge": "bridge", "schedule": "*/5 * * * *", "flush": True}
    assert CronResult("created", "c2").describe(**where) == (
        "created cron c2 on bridge 'bridge': schedule '*/5 * * * *', flush on"
    )
    assert CronResult("kept", "c2").describe(**where).startswith("kept cron c2 on bridge")
    line = CronResult("replaced", "c3", ("c2",), "* * * * *").describe(**where)
    assert line == (
        "replaced cron c2 by c3 on bridge 'bridge': schedule '*/5 * * * *', flush on "
        "(was '* * * * *')"
    )


# --- the demo's stages and its reading of the server log --------------------------------------


def snap(**counts: int) -> Snapshot:
    fields = dict.fromkeys(Snapshot._fields, 0)
    return Snapshot(**{**fields, **counts})


@pytest.mark.parametrize(
    ("snapshot", "stage", "detail"),
    [
        (snap(created=40), "creating threads", "created 40 of 100"),
        (
            snap(created=100, waiting=90, pending=30, in_flight=60, batches_in_flight=2),
            "waiting for batches",
            "waiting 90 · pending 30 · in flight 60 (2 batches)",
        ),
        (
            snap(created=100, waiting=5),
            "waiting for batches",
            "waiting 5 · pending 0 · in flight 0",
        ),
        (
            snap(created=100, waiting=100, delivering=100),
            "delivering",
            "resumed 0 · still waiting 100 · results to deliver 100",
        ),
        (
            snap(created=100, resumed=40, delivering=100, in_flight=50, batches_in_flight=1),
            "delivering",
            "resumed 40 · still waiting 60 · results to deliver 60 · in flight 50 (1 batch)",
        ),
        (
            snap(created=100, answered=70, failed=2, resumed=10),
            "delivering",
            "resumed 72 · still waiting 28",
        ),
        (snap(created=100, answered=98, failed=2), "done", "answered 98 · failed 2"),
    ],
)
def test_demo_stage_and_counts(snapshot: Snapshot, stage: str, detail: str) -> None:
    assert describe(snapshot, 100) == (stage, detail)


def rendered(summary: DemoSummary, *, serving: bool = False) -> str:
    out = io.StringIO()
    render(summary, Console(file=out, width=80), serving=serving)
    return out.getvalue()


def test_demo_summary_points_at_the_status_page_with_its_figures() -> None:
    url = "http://127.0.0.1:8123/batch-bridge/?bridge=bridge"
    summary = DemoSummary(
        *(7, 7, 0, 2, 1.0, 1.0, 1.0, 70, 70),
        cost_normal_usd=0.000042,
        cost_batch_usd=0.000021,
        saved_usd=0.000021,
        status_url=url,
        status_batches=2,
        status_saved_usd=0.000021,
    )
    out = rendered(summary)
    assert "$0.000021 (50%)" in out  # the usage record's own savings
    assert f"status page: {url}\n" in out
    assert "it shows 2 finished batches, saved $0.000021" in out
    assert "--keep-serving" in out and "batch-bridge status --url" in out
    serving = rendered(summary, serving=True)
    assert f"status page: {url}" in serving and "--keep-serving" not in serving


def test_demo_summary_without_a_price_or_a_page_says_so() -> None:
    out = rendered(DemoSummary(7, 7, 0, 1, 1.0, 1.0, 1.0, 5, 5, 0.0, 0.0))
    assert "saved" in out and "$0.000000" in out and "(" not in out.partition("saved")[2]
    assert "status page" not in out


def test_log_cause_finds_the_last_exception_line() -> None:
    log = (
        "\x1b[2m2026-01-01\x1b[0m info starting\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1\n'
        "langgraph_api.utils.errors.GraphLoadError: Failed to load graph 'bridge': "
        "max_batch_size must be a positive int, got 0\n"
        "\x1b[31merror\x1b[0m Application startup failed. Exiting.\n"
    )
    assert log_cause(log) == (
        "GraphLoadError: Failed to load graph 'bridge': "
        "max_batch_size must be a positive int, got 0"
    )
    dangling = "ValueError: no graph here. Please check that:"
    assert log_cause(dangling) == "ValueError: no graph here."
    assert log_cause("all good\n") is None
