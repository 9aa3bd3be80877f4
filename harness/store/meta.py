"""Run metadata stored in every Parquet file's key-value metadata."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import secrets
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

from harness.core.schema import SCHEMA_VERSION

_PACKAGES = ("harness", "aiohttp", "uvloop", "click", "pandas", "pyarrow", "numpy", "pydantic",
             "PyYAML", "rich", "psutil")


def new_run_id(now: dt.datetime | None = None) -> str:
    """Sortable: UTC timestamp first, then a random suffix so two runs in a second differ."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def run_metadata(run_id: str, scenarios: list, calibration: dict | None = None,
                 facts: dict | None = None, cluster: dict | None = None) -> dict:
    """`scenarios`: LoadedScenario objects (their text as kept, secrets replaced by ***, and its
    hash are recorded);
    `calibration`: per scenario name, the CPU calibration this run measured (or None);
    `facts`: per scenario name, more of what the run knew of it (its interpreters);
    `cluster`: where its cells ran under --cluster (the scheduler, each host's facts)."""
    calibration = calibration or {}
    facts = facts or {}
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    found = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "build": " ".join(platform.python_build()),
            "compiler": platform.python_compiler(),
            "gil_enabled": gil,
            "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
            "executable": sys.executable,
        },
        "packages": _versions(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
        "scenarios": [
            {"name": s.scenario.name, "path": s.path, "sha256": s.sha256,
             "text": s.kept_text, "overrides": list(s.overrides),
             "seeds": {"server": s.scenario.server.seed if s.scenario.server else None},
             "calibration": calibration.get(s.scenario.name),
             **facts.get(s.scenario.name, {})}
            for s in scenarios
        ],
        "host": socket.gethostname(),  # the runner's; each cell's is in its rows
    }
    if cluster is not None:
        found["cluster"] = cluster
        hosts = [h.get("usable_cores") or h.get("cores") for h in cluster["hosts"].values()]
        if hosts and all(hosts):  # what the analysis divides by: the cells' machines'
            found["cpu_count"] = min(hosts)
    return found
