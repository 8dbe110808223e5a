"""`python -m batch_bridge.testing`: serve the emulator in the foreground.

Handy for pointing a LangGraph dev server or a notebook at a fake OpenAI. Every knob is
an option (`--in-progress-s 1.0`), generated from `Knobs` so the two never drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import click
import uvicorn

from batch_bridge.testing._knobs import METADATA_PREFIX, Knobs, knob_types
from batch_bridge.testing.emulator import Emulator
from batch_bridge.testing.server import bind_socket, server_config

__all__ = ["main"]


def _knob_options(command: Callable[..., Any]) -> Callable[..., Any]:
    defaults = {field.name: field.default for field in dataclasses.fields(Knobs)}
    for name, kind in reversed(list(knob_types().items())):
        option = click.option(
            "--" + name.replace("_", "-"),
            name,
            type=kind,
            default=None,
            help=f"Default {defaults[name]}; per batch: metadata {METADATA_PREFIX}{name}.",
        )
        command = option(command)
    return command


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8765, show_default=True, type=int, help="0 picks a free port.")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@_knob_options
def main(host: str, port: int, log_level: str, **knobs: float | None) -> None:
    """Serve the offline OpenAI Batch API emulator until interrupted."""
    try:
        chosen: dict[str, Any] = {k: v for k, v in knobs.items() if v is not None}
        emulator = Emulator(**chosen)
    except (TypeError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    sock = bind_socket(host, port)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"OpenAI emulator listening; base_url=http://{shown}:{sock.getsockname()[1]}/v1")
    uvicorn.Server(server_config(emulator, log_level=log_level)).run(sockets=[sock])


if __name__ == "__main__":
    main()
