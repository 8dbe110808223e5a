"""Every `langgraph.json` in the repository builds an image whose graphs load (no Docker).

Configs are found by walking the repository, so one added later is covered too. For each,
`langgraph dockerfile` must succeed, and its install steps, replayed in a fresh virtual
environment, must give every graph in `LANGSERVE_GRAPHS` (and the app of `LANGGRAPH_HTTP`)
what it imports. Configs with the same requirements and local packages share one replay;
every replay starts from a copy of one base layer (langgraph-api, as in the base image).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.deploy.replay import BaseLayer, Build, Replay, generate

SKIP_DIRS = {"node_modules", "__pycache__", "build", "dist"}


def configs() -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
        found += [Path(folder) / name for name in files if name == "langgraph.json"]
    return found


class Replays:
    """One replay per distinct set of requirements and local packages."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base: BaseLayer | None = None
        self.built: dict[tuple[tuple[str, ...], tuple[tuple[str, Path], ...]], Replay] = {}

    def for_build(self, build: Build) -> Replay:
        key = (build.requirements, build.packages)
        if key not in self.built:
            if self.base is None:
                self.base = BaseLayer(self.root / "base")
            replay = Replay(self.root / f"replay{len(self.built)}", *key)
            replay.build(self.base)
            self.built[key] = replay
        return self.built[key]


@pytest.fixture(scope="module")
def replays(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replays]:
    root = tmp_path_factory.mktemp("images")
    yield Replays(root)
    shutil.rmtree(root)  # some 200 MB a virtual environment


def write_config(folder: Path, dependencies: list[str]) -> Path:
    """A config in `folder` serving the repository's bridge and agent, like the root one."""
    up = os.path.relpath(ROOT, folder)
    config = folder / "langgraph.json"
    graphs = {"bridge": f"{up}/graphs/bridge.py:bridge", "agent": f"{up}/graphs/agent.py:graph"}
    config.write_text(json.dumps({"dependencies": [up, *dependencies], "graphs": graphs}))
    return config


def test_the_walk_finds_every_config() -> None:
    found = {path.relative_to(ROOT).as_posix() for path in configs()}
    assert {"langgraph.json", "examples/langgraph.json", "examples/auth/langgraph.json"} <= found


@pytest.mark.parametrize("config", configs(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_config_builds_and_its_graphs_load(config: Path, replays: Replays, tmp_path: Path) -> None:
    build = generate(config, tmp_path)
    settings = json.loads(config.read_text())
    assert set(build.graphs) == set(settings["graphs"])
    assert (build.http_app is None) == ("http" not in settings)
    assert replays.for_build(build).load(build) == {}


def test_an_http_app_that_is_not_installed_fails(replays: Replays, tmp_path: Path) -> None:
    config = write_config(tmp_path, ["openai~=3.57"])
    settings = json.loads(config.read_text())
    config.write_text(json.dumps({**settings, "http": {"app": "batch_bridge.nowhere:app"}}))
    build = generate(config, tmp_path)
    failures = replays.for_build(build).load(build)
    assert set(failures) == {"http app"}
    assert "No module named 'batch_bridge.nowhere'" in failures["http app"]


def test_a_graph_whose_import_is_not_installed_fails(replays: Replays, tmp_path: Path) -> None:
    build = generate(write_config(tmp_path, []), tmp_path)
    failures = replays.for_build(build).load(build)
    assert set(failures) == {"graph bridge", "graph agent"}
    assert all("No module named 'openai'" in text for text in failures.values())


def test_a_requirement_the_shell_would_redirect_fails(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=re.escape("redirected 'openai>=3.57'")):
        generate(write_config(tmp_path, ["openai>=3.57"]), tmp_path)
