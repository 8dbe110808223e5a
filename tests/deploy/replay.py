"""A LangGraph Platform image build, replayed without Docker.

`langgraph dockerfile` writes the same Dockerfile that `langgraph build`, `langgraph up` and
the platform's own build use. `generate` runs it and reads what the image would install and
serve; `Replay` stands in for the image: a fresh virtual environment with langgraph-api (the
base image's layer), then the Dockerfile's requirement lines under that layer's pins (our
approximation of `/api/constraints.txt`), then each local package copied to its `/deps/`
place and installed with `pip install -e .`, as the image's loop does. Graphs are then
imported from their `/deps/` paths the way langgraph-api imports them, in a subprocess of
that environment, so a module that needs a package the config does not install fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

BIN = Path(sys.executable).parent
CONSTRAINTS = "-c /api/constraints.txt "
INSTALL = re.compile(
    r"^RUN (?:PIP_CONFIG_FILE=\S+ )?PYTHONDONTWRITEBYTECODE=1 "
    r"(?:uv pip install --system|pip install) --no-cache-dir -c /api/constraints\.txt (?P<args>.+)$"
)
ADD = re.compile(r"^ADD (?P<src>\S+) (?P<dest>/deps/\S+)$")
COPY = re.compile(r"^COPY --from=(?P<context>\S+) \. (?P<dest>/deps/\S+)$")
ENV = re.compile(r"^ENV (?P<name>\w+)='(?P<value>.*)'$")
CONTEXTS = re.compile(r"--build-context (?P<pairs>[^`\s]+)")
# Steps after the installs that the replay needs not repeat: restoring langgraph-api over
# anything a dependency overwrote, and removing the build tools from the image.
TAIL = ("RUN mkdir -p /api/", "--no-deps -e /api", "RUN pip uninstall", "RUN rm -rf", "RUN uv pip")
TRANSIENT = shutil.ignore_patterns(
    ".venv", ".git", "__pycache__", "*.egg-info", ".*_cache", ".langgraph_api", "node_modules"
)
# A deployment sets its provider keys; modules that build a client at import time need one.
DEPLOYMENT_ENV = {"OPENAI_API_KEY": "sk-deploy-test", "ANTHROPIC_API_KEY": "sk-deploy-test"}


@dataclass(frozen=True)
class Build:
    """What a generated Dockerfile installs and serves."""

    config: Path
    requirements: tuple[str, ...]
    """The words the image's shell hands the installer, in order."""
    packages: tuple[tuple[str, Path], ...]
    """Each local package: its `/deps/...` place in the image and its source on this machine."""
    graphs: dict[str, str] = field(hash=False)
    """`LANGSERVE_GRAPHS`: graph id to `/deps/...py:attribute`."""
    auth: str | None
    workdir: str | None
    http_app: str | None = None
    """`LANGGRAPH_HTTP`'s app: a `/deps/...py:attribute` path or a `module:attribute`."""


def generate(config: Path, out: Path) -> Build:
    """Runs `langgraph dockerfile` for `config` and reads the Dockerfile it writes."""
    dockerfile = out / "Dockerfile"
    done = subprocess.run(
        [str(BIN / "langgraph"), "dockerfile", "-c", str(config), str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"langgraph dockerfile -c {config}:\n{done.stdout}{done.stderr}"
    contexts: dict[str, Path] = {}
    for found in CONTEXTS.finditer(done.stdout):
        for pair in found["pairs"].split(","):
            name, _, path = pair.partition("=")
            contexts[name] = Path(path)
    return _parse(config, dockerfile.read_text(), contexts)


def _steps(text: str) -> list[str]:
    """Dockerfile lines with their continuations joined."""
    return [line.strip() for line in text.replace("\\\n", " ").splitlines() if line.strip()]


def _parse(config: Path, text: str, contexts: dict[str, Path]) -> Build:
    requirements: list[str] = []
    packages: list[tuple[str, Path]] = []
    env: dict[str, str] = {}
    workdir = None
    for step in _steps(text):
        if step.startswith(("#", "FROM ")) or "for dep in /deps/*" in step:
            continue
        if step.startswith(TAIL) or TAIL[1] in step:
            continue
        if install := INSTALL.match(step):
            requirements += shell_words(install["args"])
        elif add := ADD.match(step):
            packages.append((add["dest"], (config.parent / add["src"]).resolve()))
        elif copy := COPY.match(step):
            assert copy["context"] in contexts, f"no build context named {copy['context']}"
            packages.append((copy["dest"], contexts[copy["context"]].resolve()))
        elif variable := ENV.match(step):
            env[variable["name"]] = variable["value"]
        elif step.startswith("WORKDIR "):
            workdir = step.removeprefix("WORKDIR ")
        else:
            raise AssertionError(f"a Dockerfile step the replay does not know: {step}")
    _check_requirements(config, requirements)
    auth = json.loads(env["LANGGRAPH_AUTH"])["path"] if "LANGGRAPH_AUTH" in env else None
    http = json.loads(env["LANGGRAPH_HTTP"]) if "LANGGRAPH_HTTP" in env else {}
    return Build(
        config=config,
        requirements=tuple(requirements),
        packages=tuple(packages),
        graphs=json.loads(env["LANGSERVE_GRAPHS"]),
        auth=auth,
        workdir=workdir,
        http_app=http.get("app"),
    )


def shell_words(args: str) -> list[str]:
    """The arguments `/bin/sh` passes for `args`, found by letting it parse them.

    The CLI writes requirement entries into the RUN line unquoted, so `openai>=3.57` reaches
    the installer as `openai` with its output redirected to a file named `=3.57`.
    """
    with tempfile.TemporaryDirectory() as scratch:
        done = subprocess.run(
            ["sh", "-c", f"printf '%s\\n' {args}"],
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=30,
        )
        stray = sorted(os.listdir(scratch))
    assert done.returncode == 0, f"the shell refused {args!r}: {done.stderr}"
    assert not stray, f"the shell redirected {args!r} into files {stray}"
    return done.stdout.splitlines()


def _check_requirements(config: Path, words: list[str]) -> None:
    written = [dep for dep in json.loads(config.read_text())["dependencies"] if dep[0] != "."]
    assert words == written, (
        f"{config}: the image would install {words}, not the requirements {written} as written"
        " (the CLI puts them in a shell command unquoted: write 'openai~=3.57', not '>=')"
    )


def _pip(python: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(python), "-m", "pip", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"pip {' '.join(args)}:\n{done.stdout}{done.stderr[-4000:]}"
    return done


class BaseLayer:
    """The base image's Python: langgraph-api at this machine's version, and its pins.

    The pins (every package of the layer at the version it got, from langgraph-api's
    metadata) approximate the image's `/api/constraints.txt`: a requirement that would move
    one of them fails the replay, as it would fail the image's install.
    """

    def __init__(self, root: Path) -> None:
        self.venv = root / "venv"
        self.constraints = root / "constraints.txt"
        subprocess.run([sys.executable, "-m", "venv", self.venv], check=True, timeout=120)
        python = self.venv / "bin" / "python"
        _pip(python, "install", "-q", f"langgraph-api=={metadata.version('langgraph-api')}")
        frozen = _pip(python, "freeze").stdout.splitlines()
        self.constraints.write_text("\n".join(line for line in frozen if "==" in line) + "\n")


class Replay:
    """A virtual environment standing in for one image: the base layer and the config's layers."""

    def __init__(
        self, root: Path, requirements: tuple[str, ...], packages: tuple[tuple[str, Path], ...]
    ) -> None:
        self.root = root
        self.python = root / "venv" / "bin" / "python"
        self.requirements = requirements
        self.packages = packages

    def host(self, container_path: str) -> Path:
        """Where a `/deps/...` path of the image lies in this replay."""
        return self.root / container_path.removeprefix("/")

    def build(self, base: BaseLayer) -> None:
        """The image's layers over a copy of the base: requirements, then local packages."""
        shutil.copytree(base.venv, self.root / "venv", symlinks=True)
        constraints = str(base.constraints)
        if self.requirements:
            _pip(self.python, "install", "-q", "-c", constraints, *self.requirements)
        self.host("/deps").mkdir(parents=True)
        for dest, source in self.packages:
            shutil.copytree(source, self.host(dest), ignore=TRANSIENT)
        for dep in sorted(self.host("/deps").iterdir()):
            _pip(self.python, "install", "-q", "-c", constraints, "-e", ".", cwd=dep)

    def load(self, build: Build) -> dict[str, str]:
        """Imports every graph (and the auth and http app objects) of `build`; the failures
        by name. A `module:attribute` app is imported as a module, as langgraph-api does."""
        targets = {f"graph {name}": (spec, "graph") for name, spec in build.graphs.items()}
        if build.auth:
            targets["auth"] = (build.auth, "auth")
        if build.http_app:
            targets["http app"] = (build.http_app, "http")
        for name, (spec, kind) in list(targets.items()):
            path, _, attribute = spec.rpartition(":")
            if path.startswith("/"):
                targets[name] = (f"{self.host(path)}:{attribute}", kind)
        env = {"PATH": f"{self.python.parent}{os.pathsep}{os.defpath}", **DEPLOYMENT_ENV}
        done = subprocess.run(
            [str(self.python), "-I", "-c", LOADER, json.dumps(targets)],
            cwd=self.host(build.workdir or "/deps"),
            env={**env, "HOME": str(self.root)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        failures: dict[str, str] = json.loads(done.stdout.splitlines()[-1])
        return failures


LOADER = """
import importlib.util, json, sys, traceback

def load(spec, kind):
    path, _, attribute = spec.rpartition(":")
    if not path.endswith(".py"):
        module = importlib.import_module(path)
    else:
        name = path.replace("/", "__").replace(".py", "").replace(" ", "_").lstrip(".")
        found = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(found)
        sys.modules[name] = module
        found.loader.exec_module(module)
    value = getattr(module, attribute)
    if kind == "http":
        from starlette.applications import Starlette
        assert isinstance(value, Starlette), f"{spec} is {type(value).__name__}, not Starlette"
    elif kind == "auth":
        from langgraph_sdk import Auth
        assert isinstance(value, Auth), f"{spec} is {type(value).__name__}, not Auth"
    else:
        from langgraph.graph import StateGraph
        from langgraph.pregel import Pregel
        ok = isinstance(value, (StateGraph, Pregel)) or callable(value)
        assert ok, f"{spec} is {type(value).__name__}, not a graph"

failures = {}
for target, (spec, kind) in json.loads(sys.argv[1]).items():
    try:
        load(spec, kind)
    except BaseException:
        failures[target] = traceback.format_exc(limit=-3)
print(json.dumps(failures))
"""
