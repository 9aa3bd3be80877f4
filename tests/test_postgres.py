"""The pipeline's PostgreSQL path, against a throwaway cluster this test starts and removes.

initdb refuses to run as root and needs a data directory the postgres user owns (pytest's
tmp_path is root-owned 0700), so as root the server binaries run through `runuser -u postgres`
in a folder made for it under the system temp dir."""

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness.run.runner import run_scenarios
from harness.scenario.loader import parse_scenario
from harness.scenario.model import LoadedScenario
from harness.store.reader import read_run
from tests.conftest import BACKENDS

PG_BIN = next((p for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
               if (p / "initdb").exists()), None) if Path("/usr/lib/postgresql").exists() else None

# Only what needs a server skips without one: the refusal below runs everywhere.
needs_server = pytest.mark.skipif(PG_BIN is None,
                                  reason="PostgreSQL server binaries not installed")


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


@needs_server
@pytest.mark.parametrize("backend", BACKENDS)
def test_pipeline_writes_to_postgres_on_every_backend(tmp_path, postgres_dsn, backend):
    import psycopg

    text = f"""
name: pg
server:
  endpoints:
    infer: {{latency: 5ms}}
workload: {{type: pipeline, endpoint: infer, image: 64, database: postgres, dsn: "{postgres_dsn}"}}
load: {{requests: 12, concurrency: 3}}
backends: [{backend}]
strategies: [thread_pool]
"""
    run_scenarios([LoadedScenario("pg.yaml", text, parse_scenario(text))], out=tmp_path)
    rows = read_run(tmp_path)["requests"].to_pandas()
    assert len(rows) == 12 and rows["ok"].all() and rows["db_ns"].notna().all()
    with psycopg.connect(postgres_dsn) as conn:
        written = conn.execute("SELECT count(*) FROM harness_pipeline WHERE cell LIKE %s",
                               (f"{backend}/%",)).fetchone()[0]
    assert written == 12


def test_postgres_without_a_dsn_is_refused_before_running(tmp_path, monkeypatch):
    from harness.core.errors import HarnessError

    monkeypatch.delenv("HARNESS_POSTGRES_DSN", raising=False)
    monkeypatch.chdir(tmp_path)  # no .pg/dsn from a `make postgres` in the clone
    text = """
name: pg
server: {endpoints: {infer: {latency: 5ms}}}
workload: {type: pipeline, endpoint: infer, database: postgres}
load: {requests: 2, concurrency: 1}
"""
    with pytest.raises(HarnessError, match="workload.dsn: required for database: postgres"):
        run_scenarios([LoadedScenario("pg.yaml", text, parse_scenario(text))], out=tmp_path)
    assert not (tmp_path / "run.json").exists()


@needs_server
def test_a_dsn_password_is_in_no_file_of_a_run_that_connects(tmp_path, postgres_dsn):
    """The server trusts local connections: the password is sent nowhere, but parsed, used
    by the driver, and kept out of every file the run writes."""
    from harness.scenario.loader import scenario_from_text

    port = postgres_dsn.rsplit(":", 1)[1].split("/")[0]
    text = f"""
name: pg
server: {{endpoints: {{infer: {{latency: 1ms}}}}}}
workload:
  type: pipeline
  endpoint: infer
  image: 8
  database: postgres
  dsn: 'host=127.0.0.1 port={port} user=postgres password=''pgsecret1 x\\''y'' dbname=postgres'
load: {{requests: 4, concurrency: 2}}
backends: [threads, asyncio]
"""
    loaded = scenario_from_text(text)
    assert "password='pgsecret1 x\\'y'" in loaded.scenario.workload.dsn
    run_scenarios([loaded], out=tmp_path / "out")
    assert read_run(tmp_path / "out")["requests"].to_pandas()["ok"].all()
    leaks = [p for p in (tmp_path / "out").rglob("*") if p.is_file() and b"pgsecret1" in
             p.read_bytes()]
    assert leaks == []
