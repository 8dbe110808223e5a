"""OpenAI's parts: one input file of one endpoint and model each, and the budget that
decides which waiting parts may start."""

from __future__ import annotations

from typing import Literal

from batch_bridge.providers import _handles
from batch_bridge.providers._base import Gate
from batch_bridge.providers._handles import Handle, Part
from batch_bridge.providers.openai._settings import OpenAISettings

__all__ = ["Budget", "new_part"]


def new_part(
    *,
    url: str,
    model: str,
    ids: list[int],
    tokens: int,
    file: str,
    attempt: int,
    origin: int,
    state: Literal["waiting", "failed"] = "waiting",
    not_before: int = 0,
    error: str = "",
    code: str = "",
) -> Part:
    """A part record (see `new_part`) with one input file of one endpoint and model.

    `gate` = 1 makes a waiting part start only once no other part of its model runs.
    `origin` and `attempt` name the part's input file and tag its batch, and no two
    batches of one handle share the pair; `err` is the ended batch's error file.
    """
    return _handles.new_part(
        ids=ids,
        attempt=attempt,
        origin=origin,
        state=state,
        not_before=not_before,
        error=error,
        code=code,
        url=url,
        model=model,
        tokens=tokens,
        file=file,
        gate=0,
        err="",
    )


class Budget(Gate):
    """First come first served per model: a part starts while its model's enqueued tokens
    stay within the budget (or nothing of the model runs), and a gated part (one refused
    for the token limit) only once nothing of its model runs. A model whose next part
    may not start blocks its later parts too."""

    def __init__(self, state: Handle, settings: OpenAISettings) -> None:
        self._settings = settings
        self._enqueued: dict[str, int] = {}
        self._blocked: set[str] = set()
        for part in state["parts"]:
            if part["state"] == "running":
                self._add(part)

    def _add(self, part: Part) -> None:
        model = part["model"]
        self._enqueued[model] = self._enqueued.get(model, 0) + part["tokens"]

    def admits(self, part: Part) -> bool:
        model = part["model"]
        if model in self._blocked:
            return False
        budget = self._settings.budget(model)
        used = self._enqueued.get(model, 0)
        if used and (part["gate"] or (budget is not None and used + part["tokens"] > budget)):
            self._blocked.add(model)
            return False
        return True

    def started(self, part: Part) -> None:
        self._add(part)
