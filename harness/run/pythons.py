"""Finding the interpreters a run names (harness.scenario.interpreters): each candidate probed
with `-c` before it is trusted (a pyenv shim may exit 127), from the running interpreter, the
project's .pythons/ (`make python-ft`), PATH, pyenv's versions and uv's, or the path given."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.keys import python_key, running_python
from harness.scenario.interpreters import MAX_INTERPRETERS, Spec, parse_spec

PROBE_TIMEOUT_S = 15.0
_NAME = re.compile(r"python3\.(\d+)(t?)")
_PROBE = """import json, platform, sys, sysconfig
print(json.dumps({"version": platform.python_version(),
  "implementation": platform.python_implementation(),
  "minor": sys.version_info[1], "major": sys.version_info[0],
  "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
  "config_args": sysconfig.get_config_var("CONFIG_ARGS") or "",
  "compiler": platform.python_compiler()}))"""


@dataclass(frozen=True)
class Interpreter:
    """A found interpreter, as a cell runs under it."""

    spec: str  # as named (`3.12`, `ft-gil`); "" for the running one by default
    tag: str  # the `python` key: `3.12`, `3.13t`, `3.13t-gil`
    executable: str  # as found (the running one: the runner's own venv's python)
    version: str  # `3.13.15`
    free_threaded: bool  # a free-threaded build (the GIL may still be on)
    gil: bool  # PYTHON_GIL=1: a free-threaded build made to hold the GIL
    config_args: str  # how it was built (./configure's arguments)
    compiler: str
    running: bool  # the runner's own: its cells need no worker environment

    @property
    def identity(self) -> tuple[str, bool]:
        return os.path.realpath(self.executable), self.gil

    def environ(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment its processes start with: PYTHON_GIL as the spec says, whatever
        the caller's shell had (a cell's GIL is the axis, not an accident)."""
        env = dict(os.environ if base is None else base)
        env.pop("PYTHON_GIL", None)
        if self.gil:
            env["PYTHON_GIL"] = "1"
        return env

    def facts(self) -> dict:
        """For the run metadata."""
        return asdict(self)


def running() -> Interpreter:
    free = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    return Interpreter("", running_python(), sys.executable,
                       platform.python_version(), free, False,
                       sysconfig.get_config_var("CONFIG_ARGS") or "",
                       platform.python_compiler(), True)


def project_root() -> Path:
    """Where .pythons/ and .venv-cells/ live: the checkout the package runs from, else a
    cache folder of the user's."""
    here = Path(__file__).resolve().parents[2]
    if (here / "pyproject.toml").exists():
        return here
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache) / "harness"


class Finder:
    """Probes candidates once each (a probe is a process start)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or project_root()
        self._probed: dict[str, dict | None] = {}

    def probe(self, path: str) -> dict | None:
        """What the interpreter says of itself, or None when it cannot run."""
        if path not in self._probed:
            self._probed[path] = _probe(path)
        return self._probed[path]

    def own(self) -> list[str]:
        """The project's builds (`make python-ft`), newest first."""
        found = [str(p) for p in (self.root / ".pythons").glob("*/bin/python3.*")
                 if _NAME.fullmatch(p.name)]
        return sorted(found, key=_version_order, reverse=True)

    def candidates(self, minor: int) -> Iterator[str]:
        """Every place an interpreter of 3.`minor` may be, in the order they are tried."""
        yield sys.executable
        yield from self.own()
        for suffix in ("", "t"):
            if found := shutil.which(f"python3.{minor}{suffix}"):
                yield found
        for folder in _version_dirs():
            for path in sorted(folder.glob(f"*/bin/python3.{minor}*"), key=_version_order,
                               reverse=True):
                if _NAME.fullmatch(path.name):
                    yield str(path)

    def resolve(self, spec: Spec, where: str) -> Interpreter | None:
        """The interpreter `spec` names; None when an optional one is absent; HarnessError
        (exit 2) when a required one is."""
        if spec.current:
            return replace(running(), spec=spec.name)
        if spec.path is not None:
            path = os.path.abspath(os.path.expanduser(spec.path))
            facts = self.probe(path)
            if facts is None:
                return _absent(spec, where, f"{spec.path} does not run as a Python "
                                            "interpreter")
            if facts["implementation"] != "CPython" or facts["minor"] < 11:
                return _absent(spec, where, f"{spec.path} is {facts['implementation']} "
                                            f"{facts['version']} (cells need CPython >= 3.11)")
            return _interpreter(spec, path, facts)
        pool = self.own() if spec.own else self.candidates(int(spec.version.split(".")[1]))
        for path in pool:
            facts = self.probe(path)
            if facts is None or facts["implementation"] != "CPython":
                continue
            if spec.own and facts["free_threaded"]:
                return _interpreter(spec, path, facts)
            if not spec.own and (f"3.{facts['minor']}" == spec.version
                                 and facts["free_threaded"] == spec.free_threaded):
                return _interpreter(spec, path, facts)
        if spec.own:
            return _absent(spec, where, "no free-threaded build in .pythons/ (make python-ft "
                                        "builds one)")
        return _absent(spec, where, f"no Python {spec.name} found (looked at the running "
                                    "one, .pythons/, PATH, pyenv and uv)")


def _absent(spec: Spec, where: str, why: str) -> None:
    if spec.optional:
        return None
    raise HarnessError(f"{where}: {why}")


def _interpreter(spec: Spec, path: str, facts: dict) -> Interpreter:
    is_running = os.path.realpath(path) == os.path.realpath(sys.executable) and (
        facts["free_threaded"] == bool(sysconfig.get_config_var("Py_GIL_DISABLED")))
    return Interpreter(spec.name, python_key(facts["version"], facts["free_threaded"], spec.gil),
                       sys.executable if is_running else path, facts["version"],
                       facts["free_threaded"], spec.gil, facts["config_args"],
                       facts["compiler"], is_running)


def _probe(path: str) -> dict | None:
    if not os.access(path, os.X_OK) or os.path.isdir(path):
        return None
    env = dict(os.environ)
    env.pop("PYTHON_GIL", None)
    try:
        out = subprocess.run([path, "-c", _PROBE], capture_output=True, text=True, env=env,
                             timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL)
        return json.loads(out.stdout) if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None


def _version_order(path) -> tuple:
    """Sort key of an interpreter path by the version folder it is in (`3.12.1` > `3.9.18`)."""
    parts = Path(path).parts
    folder = parts[-3] if len(parts) >= 3 else ""
    return tuple(int(n) if n.isdigit() else 0 for n in re.findall(r"\d+", folder)), folder


def _version_dirs() -> list[Path]:
    """pyenv's and uv's folders of installed versions, when those tools are present."""
    found = []
    root = os.environ.get("PYENV_ROOT")
    if not root and shutil.which("pyenv"):
        root = _output(["pyenv", "root"])
    if root:
        found.append(Path(root) / "versions")
    if shutil.which("uv") and (uv := _output(["uv", "python", "dir"])):
        found.append(Path(uv))
    return [folder for folder in found if folder.is_dir()]


def _output(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _clash(found: list[Interpreter], interpreter: Interpreter, name: str) -> str | None:
    for other in found:
        if other.identity == interpreter.identity:
            return (f"{other.spec or 'the running interpreter'} and {name} are the same "
                    f"interpreter ({os.path.realpath(interpreter.executable)})")
        if other.tag == interpreter.tag:
            return (f"{other.spec} and {name} are two interpreters of Python "
                    f"{interpreter.tag}: name one of them by its path")
    return None


def resolve_all(texts, where: str, finder: Finder) -> tuple[list[Interpreter], list[str]]:
    """The interpreters named (the running one when none is), in order, and a line for each
    optional one that is absent. Two names for one interpreter, or two interpreters with one
    `python` key, are bad input."""
    if not texts:
        return [running()], []
    if len(texts) > MAX_INTERPRETERS:
        raise HarnessError(f"{where.format(i=MAX_INTERPRETERS, text=texts[MAX_INTERPRETERS])}: "
                           f"at most {MAX_INTERPRETERS} interpreters")
    found: list[Interpreter] = []
    notes: list[str] = []
    for i, text in enumerate(texts):
        label = where.format(i=i, text=text)
        try:
            spec = parse_spec(text)
        except ValueError as exc:
            raise HarnessError(f"{label}: {exc}") from None
        interpreter = finder.resolve(spec, label)
        if interpreter is None:
            notes.append(f"{spec.name}: absent, its cells are skipped ({label})")
            continue
        clash = _clash(found, interpreter, spec.name)
        if clash and spec.optional:  # e.g. `ft?` beside `current` when harness runs on ft
            notes.append(f"{spec.name}: {clash}: skipped ({label})")
            continue
        if clash:
            raise HarnessError(f"{label}: {clash}")
        found.append(interpreter)
    return found, notes
