"""OpenAI's parts: one input file of one endpoint and model each; the requests they are
built from, the rows an ended batch left unfinished sent again, and the budget that
decides which waiting parts may start."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from batch_bridge.providers import _handles
from batch_bridge.providers._handles import Handle, Part
from batch_bridge.providers._hooks import Gate, Unfinished
from batch_bridge.providers._packing import (
    Request,
    build_request,
    custom_id,
    estimate_tokens,
    file_name,
)
from batch_bridge.providers.openai._files import Files
from batch_bridge.providers.openai._lookup import Earlier
from batch_bridge.providers.openai._settings import OpenAISettings

__all__ = ["Budget", "build", "failed_part", "input_file_missing", "new_part", "resubmit"]


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


def build(
    items: Sequence[Any], key: str, settings: OpenAISettings
) -> tuple[list[list[Any]], list[Request]]:
    """Each item's request line, or why it fails alone: `[index, message, code]`."""
    pre: list[list[Any]] = []
    requests = []
    for index, item in enumerate(items):
        built = build_request(index, custom_id(key, index), item)
        if isinstance(built, str):
            pre.append([index, built, "invalid_request"])
        elif (refused := settings.profile.endpoint_problem(built.url)) is not None:
            pre.append([index, refused, "unsupported_endpoint"])
        elif built.size > settings.max_bytes_per_file:
            message = (
                f"OpenAI batch request is {built.size} bytes, over the "
                f"{settings.max_bytes_per_file}-byte file limit"
            )
            pre.append([index, message, "request_too_large"])
        else:
            requests.append(built)
    return pre, requests


def failed_part(part: Part, ids: list[int], error: str, code: str) -> Part:
    """These items of `part`, failed for good."""
    return new_part(
        url=part["url"],
        model=part["model"],
        origin=part["origin"],
        ids=ids,
        tokens=0,
        file="",
        attempt=part["attempt"],
        state="failed",
        error=error,
        code=code,
    )


def input_file_missing(part: Part, message: str) -> None:
    """Fail a part whose batch OpenAI will not create: its input file is gone (404)."""
    part.update(
        state="failed",
        error=f"OpenAI has no input file {part['file']} for this batch any "
        f"more (deleted, e.g. by cancel()): {message}",
        code="input_file_missing",
    )


async def resubmit(files: Files, rows: Unfinished) -> list[Part]:
    """The unfinished rows, read back from the part's input file, as a new file."""
    key, part, reason = rows.key, rows.part, rows.reason
    earlier: Earlier = rows.context
    ((code, ids),) = rows.missing.items()
    lines = await files.input_lines(part, key, ids)
    gone = "is gone (deleted, e.g. by cancel())" if lines is None else "no longer holds them"
    lines = lines or {}
    absent = [i for i in ids if i not in lines]
    note = f"{reason}, and its input file {part['file']} {gone}"
    parts = [failed_part(part, absent, note, code)] if absent else []
    kept = [i for i in ids if i in lines]
    if kept:
        attempt = part["attempt"] + 1
        content = "".join(lines[i] + "\n" for i in kept).encode()
        name = file_name(key, part["origin"], attempt)
        rest = new_part(
            url=part["url"],
            model=part["model"],
            origin=part["origin"],
            ids=kept,
            tokens=sum(estimate_tokens(lines[i]) for i in kept),
            file=await files.upload(earlier, name, content),
            attempt=attempt,
            not_before=rows.now,
            error=reason,
            code=code,
        )
        rest["batches"] = list(part["batches"])
        parts.append(rest)
    return parts


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
