"""A worker environment per interpreter (.venv-cells/<python>/): created on first use and
reused, it holds only what a cell imports (requirements/cell.txt, wheels only: nothing
compiles for minutes) and a copy of the harness package without its dependencies, refreshed
when the runner's sources change. The runner's own interpreter needs none: its cells run in
the runner's environment.

An optional library without a wheel for an interpreter is not an error: the cells that need
it are skipped there (`needs`), with a note."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.keys import BACKENDS
from harness.run.pythons import Interpreter

FOLDER = ".venv-cells"
STAMP = "harness-cells.json"
REQUIREMENTS = Path(__file__).resolve().parents[1] / "cell" / "requirements.txt"
INSTALL_TIMEOUT_S = 900.0
RETRY_S = 24 * 3600.0  # an optional library that did not install is tried again after this
# The import name of each optional requirement, and what needs it.
MODULES = {"aiohttp": "aiohttp", "uvloop": "uvloop", "httptools": "httptools",
           "asyncpg": "asyncpg", "psycopg[binary]": "psycopg"}
HTTP_WORKLOADS = ("io", "http", "pipeline")


@dataclass(frozen=True)
class Worker:
    """What cells under one interpreter start with: its python and what imports there."""

    interpreter: Interpreter
    python: str  # the executable cells run
    modules: frozenset[str] | None = None  # importable optional modules; None: all of them
    installed: dict[str, str] = field(default_factory=dict)  # distribution → version
    failed: dict[str, str] = field(default_factory=dict)  # module → why it did not install

    def missing(self, needed: tuple[str, ...]) -> list[str]:
        if self.modules is None:
            return []
        return [module for module in needed if module not in self.modules]

    def why(self, module: str) -> str:
        return self.failed.get(module, "not installed")


def needs(key, scenario) -> tuple[str, ...]:
    """The optional modules a cell imports: its backend's loop, its HTTP client, its
    database driver."""
    found = []
    workload = scenario.workload
    if key.backend == "uvloop":
        found.append("uvloop")
    loop = BACKENDS[key.backend].has_loop
    if workload.type in HTTP_WORKLOADS:
        if key.client == "lean":
            found.append("httptools")
        elif loop:
            found.append("aiohttp")
    if workload.type == "pipeline" and getattr(workload, "database", None) == "postgres":
        found.append("asyncpg" if loop else "psycopg")
    return tuple(found)


def server_needs(server) -> tuple[str, ...]:
    """What the mock server imports (when it runs on another interpreter)."""
    return ("aiohttp", "httptools") if server.engine == "fast" else ("aiohttp",)


def requirements() -> tuple[list[str], list[str]]:
    """The cell's requirements: (required, optional)."""
    path = REQUIREMENTS
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read the cells' requirements ({exc.strerror})"
                           ) from None
    required, optional = [], []
    for line in lines:
        text, _, comment = line.partition("#")
        if text.strip():
            (optional if "optional" in comment else required).append(text.strip())
    return required, optional


def sources_hash(package: Path) -> str:
    """Of the harness package's sources: a changed file refreshes every worker's copy."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def prepare(interpreter: Interpreter, root: Path, note=lambda line: None) -> Worker:
    """The worker of an interpreter: the runner's own python for the running one, else its
    environment under root/.venv-cells/, made or refreshed as needed. A failure is one line
    (HarnessError, exit 2), the log's path in it."""
    if interpreter.running:
        return Worker(interpreter, interpreter.executable)
    folder = root / FOLDER / interpreter.tag.removesuffix("-gil")  # ft-gil: the same binary
    folder.parent.mkdir(parents=True, exist_ok=True)
    package = Path(__file__).resolve().parents[1]
    wanted = {"base": os.path.realpath(interpreter.executable),
              "version": interpreter.version,
              "requirements": hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()}
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs at once: one builds, the other reuses
        stamp = _read_stamp(folder)
        if stamp is None or any(stamp.get(k) != v for k, v in wanted.items()):
            note(f"python {interpreter.tag}: creating its worker environment {folder} "
                 "(first use: a minute or two)")
            stamp = {**wanted, **_create(interpreter, folder)}
        if stamp.get("failed") and time.time() - stamp.get("tried", 0) > RETRY_S:
            retried = _install_optional(interpreter, folder, [
                r for r in requirements()[1] if _module(r) in stamp["failed"]])
            stamp.update(retried or {})
        source = sources_hash(package)
        if stamp.get("harness") != source:
            _copy_package(package, Path(stamp["purelib"]))
            stamp["harness"] = source
        (folder / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
    return Worker(interpreter, str(folder / "bin" / "python"), frozenset(stamp["modules"]),
                  stamp["installed"], dict(stamp.get("failed", {})))


def _module(requirement: str) -> str:
    """The import name of an optional requirement (`psycopg[binary]>=3.1` → psycopg)."""
    name = re.split(r"[<>=!~ ;]", requirement, maxsplit=1)[0]
    return MODULES.get(name, name)


def _read_stamp(folder: Path) -> dict | None:
    try:
        stamp = json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return None
    if not (folder / "bin" / "python").exists() or not isinstance(stamp, dict):
        return None
    return stamp


def _create(interpreter: Interpreter, folder: Path) -> dict:
    """A new environment: venv, the required wheels (all or nothing), each optional one on its
    own. Returns the stamp's facts."""
    if folder.exists():
        shutil.rmtree(folder)
    log = folder.parent / f"{folder.name}.log"
    required, optional = requirements()
    env = interpreter.environ()
    what = f"python {interpreter.tag} ({interpreter.executable})"
    with open(log, "w") as out:
        _step([interpreter.executable, "-m", "venv", str(folder)], out, env,
              f"{what}: cannot create a virtual environment (venv/ensurepip missing?)", log)
        _step([*_pip(folder), *required], out, env,
              f"{what}: the cells' requirements have no wheels for it", log)
    facts = _install_optional(interpreter, folder, optional)
    if facts is None:
        raise HarnessError(f"{what}: its worker environment does not run (see {log})")
    return facts


def _install_optional(interpreter: Interpreter, folder: Path, optional: list[str]) -> dict:
    """Each optional requirement on its own (a failure is kept with its reason, and tried
    again after RETRY_S); then what imports there."""
    log = folder.parent / f"{folder.name}.log"
    env = interpreter.environ()
    failed = {}
    with open(log, "a") as out:
        for requirement in optional:
            try:
                _step([*_pip(folder), requirement], out, env, "", log)
            except HarnessError:
                failed[_module(requirement)] = _last_error(log)
    facts = _facts(str(folder / "bin" / "python"), env)
    if facts is None:
        return None
    return {**facts, "failed": {m: why for m, why in failed.items()
                                if m not in facts["modules"]}, "tried": time.time()}


def _pip(folder: Path) -> list[str]:
    """pip install into the environment, wheels only: nothing compiles for minutes."""
    return [str(folder / "bin" / "python"), "-m", "pip", "install",
            "--disable-pip-version-check", "--quiet", "--only-binary", ":all:"]


def _step(argv: list[str], out, env: dict, failure: str, log: Path) -> None:
    out.write("$ " + " ".join(argv) + "\n")
    out.flush()
    try:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                              stdin=subprocess.DEVNULL, timeout=INSTALL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HarnessError(f"{failure}: {exc} (see {log})") from None
    if done.returncode != 0:
        raise HarnessError(f"{failure}: {_last_error(log)} (see {log})")


def _last_error(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines()
             if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["failed"])[-1][:200]


_FACTS = """import importlib, importlib.metadata as m, json, sysconfig
modules = []
for name in %r:
    try:
        importlib.import_module(name)
        modules.append(name)
    except Exception:
        pass
print(json.dumps({"purelib": sysconfig.get_paths()["purelib"], "modules": modules,
  "installed": {d.metadata["Name"]: d.version for d in m.distributions()}}))"""


def _facts(python: str, env: dict) -> dict | None:
    try:
        # cwd "/": a checkout's own harness.egg-info would pass for an installed package
        out = subprocess.run([python, "-c", _FACTS % (sorted(MODULES.values()),)],
                             capture_output=True, text=True, env=env, timeout=120,
                             stdin=subprocess.DEVNULL, cwd="/")
        return json.loads(out.stdout) if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None


def _copy_package(package: Path, purelib: Path) -> None:
    target = purelib / package.name
    partial = purelib / f".{package.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(package, partial, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
