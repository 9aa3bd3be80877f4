from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
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
    kwargs.setdefault("timeout", 300)
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)],
                          capture_output=True, text=True, **kwargs)


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


# A throwaway PostgreSQL cluster per module that asks for postgres_dsn. initdb refuses to run as
# root and needs a data directory the postgres user owns (pytest's tmp_path is root-owned 0700),
# so as root the server binaries run through `runuser -u postgres` in a folder made for it under
# the system temp dir.
PG_BIN = next((p for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
               if (p / "initdb").exists()), None) if Path("/usr/lib/postgresql").exists() else None


def _as_postgres(*cmd: str) -> subprocess.CompletedProcess:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def postgres_dsn():
    base = Path(tempfile.mkdtemp(prefix="harness-pg-"))
    data, sockets = base / "data", base / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sockets, "postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    init = _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U",
                        "postgres", "--no-sync")
    assert init.returncode == 0, init.stderr
    start = _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l",
                         str(base / "log"), "-o",
                         f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off",
                         "start")
    assert start.returncode == 0, start.stderr + start.stdout
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)
