from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BACKENDS = ["threads", "processes", "asyncio", "uvloop"]


def small_scenario(name="small", latency="{dist: uniform, min: 5ms, max: 20ms}", requests=60,
                   concurrency=4, workers=None, backends="[threads, processes, asyncio, uvloop]",
                   extra_load="", timeout="") -> str:
    """A scenario small enough for a unit test: scaled delays, few requests; `workers` (the
    queue's) left out unless given, so slots take their requests themselves."""
    queue = "" if workers is None else f", workers: {workers}"
    return textwrap.dedent(f"""\
        name: {name}
        server:
          seed: 7
          endpoints:
            api: {{latency: {latency}, size: 128}}
        workload: {{endpoint: api{timeout}}}
        load: {{requests: {requests}, concurrency: {concurrency}{queue}{extra_load}}}
        backends: {backends}
        """)


@pytest.fixture
def write_scenario(tmp_path):
    def write(text: str, name: str = "scenario.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def harness(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """The CLI as a user runs it, in a child process."""
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)],
                          capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture
def cli(capsys, monkeypatch):
    """The CLI in this process (no interpreter start-up per call): returns what a subprocess
    would — returncode, stdout, stderr."""
    from types import SimpleNamespace

    from harness.cli import main

    def call(*args):
        monkeypatch.setattr(sys, "argv", ["harness", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return call
