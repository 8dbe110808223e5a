"""`batch-bridge`: run the demo, serve the emulator, set up the bridge's cron, show its status,
cancel a batch.

One click group; each subcommand's `--help` lists its own options. Expected failures (a bad
option value, an unreachable URL, an unknown bridge, a schedule the server refuses) end as
one line on stderr, never a traceback: exit code 2 for usage errors, 1 for the others.

One module a command (`demo.py`, `cron.py`, `status.py`; the emulator's lives in
`batch_bridge.testing`), shared option checks in `_options.py`. To add a command, write
its module with a `@click.command()` and append it to `COMMANDS`.
"""

from __future__ import annotations

try:
    import click
    import rich  # noqa: F401
except ImportError:  # the console script exists in every install; its parts come with [cli]
    raise SystemExit(
        "batch-bridge needs its command-line parts: pip install 'batch-bridge[cli]'"
    ) from None

from batch_bridge.cli import cancel, cron, demo, status
from batch_bridge.cli.cron import CLI_CRON_TAG, CronResult, apply_cron
from batch_bridge.testing.__main__ import main as emulator

__all__ = ["CLI_CRON_TAG", "COMMANDS", "CronResult", "apply_cron", "main"]

COMMANDS: dict[str, click.Command] = {
    "cancel": cancel.cancel,
    "cron": cron.cron,
    "demo": demo.demo,
    "emulator": emulator,
    "status": status.status,
}
"""Every subcommand of `batch-bridge`, by name."""


@click.group()
@click.version_option(package_name="batch-bridge", prog_name="batch-bridge")
def main() -> None:
    """BatchBridge: provider batch APIs as ordinary awaits inside LangGraph."""


for _name, _command in COMMANDS.items():
    main.add_command(_command, name=_name)
