"""The Gemini section's Python example in docs/providers.md runs as written (offline, against
the emulator), so it cannot drift from the adapter."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT


def test_the_gemini_example_runs_and_prints_each_answer(capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "docs" / "providers.md").read_text()
    section = text[text.index("## Gemini") : text.index("## Your own provider")]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)

    exec(compile(code, "docs/providers.md (Gemini)", "exec"), {"__name__": "__main__"})

    assert capsys.readouterr().out.splitlines() == ["Echo: Say hi", "Echo: Say bye"]
