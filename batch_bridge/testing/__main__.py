"""`batch-bridge emulator` (also `python -m batch_bridge.testing`): serve the emulator.

Handy for pointing a LangGraph dev server or a notebook at a fake OpenAI. Both entry points
run this one click command. Every knob is an option (`--in-progress-s 1.0`) generated from
`Knobs`: its type, its field docstring as help, and `Knobs`' own validation, so the two
never drift apart.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import itertools
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

import click
import uvicorn

from batch_bridge.providers._profiles import PROFILES
from batch_bridge.testing._knobs import METADATA_PREFIX, SERVER_KNOBS, Knobs, knob_types
from batch_bridge.testing.emulator import Emulator
from batch_bridge.testing.server import bind_socket, server_config

__all__ = ["main"]


@functools.cache
def knob_docs() -> Mapping[str, str]:
    """Each knob's attribute docstring, read from the source of `Knobs` ({} without it)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(Knobs)))
    except (OSError, TypeError, SyntaxError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for field, doc in itertools.pairwise(body):
        if (
            isinstance(field, ast.AnnAssign)
            and isinstance(field.target, ast.Name)
            and isinstance(doc, ast.Expr)
            and isinstance(doc.value, ast.Constant)
            and isinstance(doc.value.value, str)
        ):
            docs[field.target.id] = " ".join(doc.value.value.split())
    return docs


def _check_knob(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Refuse a bad value with `Knobs`' own rule and message, naming the option."""
    if value is not None and param.name is not None:
        try:
            Knobs(**{param.name: value})
        except (TypeError, ValueError) as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc
    return value


def _knob_help(name: str, default: Any) -> str:
    doc = knob_docs().get(name, "").rstrip(".")
    shown = "none" if default is None else default
    if name in SERVER_KNOBS:  # its docstring starts "Server-wide:"
        scope = "" if doc else "; server-wide"
    else:
        scope = f"; per batch: metadata {METADATA_PREFIX}{name}"
    return f"{doc}. Default {shown}{scope}." if doc else f"Default {shown}{scope}."


def _knob_options(command: Callable[..., Any]) -> Callable[..., Any]:
    defaults = {field.name: field.default for field in dataclasses.fields(Knobs)}
    for name, kind in reversed(list(knob_types().items())):
        option = click.option(
            "--" + name.replace("_", "-"),
            name,
            type=kind,
            default=None,
            callback=_check_knob,
            help=_knob_help(name, defaults[name]),
        )
        command = option(command)
    return command


@click.command(name="emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port; 0 picks a free one.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    help="uvicorn's log level.",
)
@click.option(
    "--profile",
    default="openai",
    show_default=True,
    type=click.Choice(sorted(PROFILES)),
    help="The service to behave like: its endpoints, completion windows, file limits, "
    "expiry and URL prefix (azure: /openai/v1).",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    nargs=3,
    type=(str, int, int),
    metavar="ROUTE STATUS TIMES",
    help="The next TIMES calls of ROUTE (e.g. 'GET /v1/batches/{batch_id}') answer STATUS "
    "(408, 409, 429, 500, 502, 503, 504; 0 drops the connection) without acting; "
    "repeatable, queued per route. While running: POST /_emulator/faults.",
)
@click.option(
    "--webhook-url",
    default=None,
    metavar="URL",
    help="Post a signed batch.completed/failed/expired/cancelled event here as each batch "
    "ends, e.g. http://127.0.0.1:2024/batch-bridge/webhooks/openai (needs --webhook-secret).",
)
@click.option(
    "--webhook-secret",
    default=None,
    envvar="OPENAI_WEBHOOK_SECRET",
    metavar="whsec_...",
    help="The signing secret (default: $OPENAI_WEBHOOK_SECRET), as the bridge's deployment has it.",
)
@_knob_options
def main(
    host: str,
    port: int,
    log_level: str,
    profile: str,
    faults: tuple[tuple[str, int, int], ...],
    webhook_url: str | None,
    webhook_secret: str | None,
    **knobs: float | None,
) -> None:
    """Serve the offline OpenAI Batch API emulator until interrupted.

    Point the `openai` SDK at it with OPENAI_BASE_URL=http://HOST:PORT/v1 (any API key).
    Each knob below sets the server's default; a batch overrides one with its metadata.
    """
    try:
        chosen: dict[str, Any] = {k: v for k, v in knobs.items() if v is not None}
        if webhook_url and not webhook_secret:
            raise ValueError("--webhook-url needs --webhook-secret (or OPENAI_WEBHOOK_SECRET)")
        emulator = Emulator(
            profile=PROFILES[profile],
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            **chosen,
        )
        for route, status, times in faults:
            emulator.add_fault(route, status=status, times=times)
    except (TypeError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port "
            "(0 picks a free one)."
        ) from exc
    shown = f"[{host}]" if ":" in host else host
    base_url = f"http://{shown}:{sock.getsockname()[1]}{emulator.profile.path_prefix}/v1"
    click.echo(f"{emulator.profile.name} emulator listening; base_url={base_url}")
    uvicorn.Server(server_config(emulator, log_level=log_level)).run(sockets=[sock])


if __name__ == "__main__":
    main()
