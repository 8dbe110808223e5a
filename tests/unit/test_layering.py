"""The data flows one way: the caller side and the providers never import the bridge."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "batch_bridge"
CALLER_SIDE = [
    "_wait.py",
    "_marker.py",
    "_notice.py",
    "_preflight.py",
    "_results.py",
    "_client.py",
    "integrations",
    "providers",
]


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def caller_side_files() -> list[Path]:
    files: list[Path] = []
    for name in CALLER_SIDE:
        target = PACKAGE / name
        files.extend(sorted(target.rglob("*.py")) if target.is_dir() else [target])
    return files


@pytest.mark.parametrize("path", caller_side_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_caller_side_imports_nothing_of_the_bridge(path: Path) -> None:
    bridge = sorted(m for m in imported_modules(path) if m.startswith("batch_bridge.bridge"))
    assert not bridge, f"{path.name} imports the bridge: {bridge}"


def test_the_library_runs_no_installer() -> None:
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if any(word in p.read_text() for word in ("apt-get", '"pip"', "'pip'", "ensurepip"))
    ]
    assert not offenders
