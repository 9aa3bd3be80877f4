"""`make postgres` (bench/postgres.py) and the one place the harness finds a DSN when a
scenario names none (harness.core.postgres): $HARNESS_POSTGRES_DSN, else .pg/dsn in the working
directory. The cluster's life runs in pytest's tmp_path, as root a 0700 folder the postgres
user cannot enter, as a clone under /root or /work would be."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import psutil
import pytest

from bench import postgres as make_postgres
from harness.core import postgres
from harness.core.secrets import scrub
from harness.scenario.loader import scenario_from_text
from harness.store.reader import read_run
from tests.conftest import harness

needs_server = pytest.mark.skipif(make_postgres.binaries() is None,
                                  reason="PostgreSQL server binaries not installed")

PIPELINE = """name: pg
server: {endpoints: {infer: {latency: 1ms}}}
workload: {type: pipeline, endpoint: infer, image: 8, database: postgres}
load: {requests: 6, concurrency: 2}
backends: [threads]
"""


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """An empty working directory and no $HARNESS_POSTGRES_DSN."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(postgres.ENV, raising=False)
    return tmp_path


def _write_file(folder: Path, text: str) -> None:
    (folder / ".pg").mkdir(exist_ok=True)
    (folder / ".pg" / "dsn").write_text(text)


# ---- resolution ------------------------------------------------------------------------------


def test_the_environment_beats_the_file(cwd, monkeypatch):
    _write_file(cwd, "postgresql://file@127.0.0.1:1/db\n")
    monkeypatch.setenv(postgres.ENV, "postgresql://env@127.0.0.1:2/db")
    assert postgres.dsn() == "postgresql://env@127.0.0.1:2/db"


def test_the_file_is_read_when_the_environment_is_unset_or_empty(cwd, monkeypatch):
    _write_file(cwd, "postgresql://file@127.0.0.1:1/db\n")
    assert postgres.dsn() == "postgresql://file@127.0.0.1:1/db"
    monkeypatch.setenv(postgres.ENV, "")
    assert postgres.dsn() == "postgresql://file@127.0.0.1:1/db"


def test_no_dsn_without_either(cwd):
    assert postgres.dsn() is None
    _write_file(cwd, "\n")  # an empty file names no server
    assert postgres.dsn() is None


def test_a_password_in_the_file_is_a_secret_like_the_environments(cwd):
    """Remembered when a scenario that uses it is read: scrubbed from any text after."""
    _write_file(cwd, "postgresql://u:pgfile4-pw@127.0.0.1:1/db\n")
    message = "connection to postgresql://u:pgfile4-pw@127.0.0.1:1/db refused"
    assert "pgfile4" in scrub(message)  # not known before
    scenario_from_text(PIPELINE)
    assert "pgfile4" not in scrub(message) and "u:***@" in scrub(message)


def test_a_run_using_the_file_connects_with_it_and_writes_its_password_nowhere(cwd):
    """The cell tried the file's DSN (a run without one is refused before any cell, exit 2)
    and failed: libpq refuses the bad %-escape and quotes it, the harness says so without it."""
    _write_file(cwd, "postgresql://u:pgfile7%ZZ@127.0.0.1:1/db\n")
    (cwd / "pg.yaml").write_text(PIPELINE)
    env = {k: v for k, v in os.environ.items() if k != postgres.ENV}
    run = harness("run", "pg.yaml", "--out", "out", cwd=cwd, env=env)
    assert run.returncode == 3 and "cell pg threads" in run.stderr, run.stderr
    leaks = [str(p) for p in (cwd / "out").rglob("*") if p.is_file()
             and b"pgfile7" in p.read_bytes()]
    assert leaks == [] and "pgfile7" not in run.stdout + run.stderr
    assert "invalid percent-encoded token" in run.stderr


def test_the_refusal_without_a_dsn_names_make_postgres(cwd):
    (cwd / "pg.yaml").write_text(PIPELINE)
    run = harness("run", "pg.yaml", "--out", "out", cwd=cwd,
                  env={k: v for k, v in os.environ.items() if k != postgres.ENV})
    assert run.returncode == 2
    assert "workload.dsn: required for database: postgres" in run.stderr
    assert "make postgres" in run.stderr


# ---- the cluster -----------------------------------------------------------------------------


def test_without_the_binaries_one_line_names_the_package_and_exits_2(cwd, monkeypatch, capsys):
    monkeypatch.setattr(make_postgres, "ROOTS", cwd / "none")
    monkeypatch.setenv("PATH", str(cwd))
    assert make_postgres.main(["start"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "install the package postgresql" in err
    assert not (cwd / ".pg").exists()


def _start(capsys) -> str:
    assert make_postgres.main(["start"]) == 0
    return capsys.readouterr().out.strip()


def _server_processes(base: Path) -> list[psutil.Process]:
    pid = int((base / "data" / "postmaster.pid").read_text().split()[0])
    postmaster = psutil.Process(pid)
    return [postmaster, *postmaster.children(recursive=True)]


def _alive(process: psutil.Process) -> bool:
    """Running, not a zombie: the daemonised postmaster's parent is PID 1, which reaps it when
    it gets to it."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _port(dsn: str) -> int:
    return int(dsn.rsplit(":", 1)[1].split("/")[0])


def _stop_anyway():
    """The cluster a failed test leaves, stopped (the test's cwd is still the tmp folder)."""
    if make_postgres.CLUSTER.exists():
        make_postgres.main(["stop"])


@needs_server
def test_start_connects_starts_once_and_stop_leaves_nothing(cwd, capsys):
    import psycopg

    if os.geteuid() == 0:  # the case the cluster folder under the temp dir is for
        reach = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(cwd)])
        assert reach.returncode != 0
    try:
        dsn = _start(capsys)
        assert dsn == f"postgresql://postgres@127.0.0.1:{_port(dsn)}/postgres"
        assert postgres.dsn() == dsn  # what the harness reads
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        base = Path(make_postgres.CLUSTER.read_text().strip())
        processes = _server_processes(base)
        assert _start(capsys) == dsn  # running: only the DSN
        assert Path(make_postgres.CLUSTER.read_text().strip()) == base
        assert _alive(processes[0])  # the same postmaster

        # a scenario without dsn: uses it, run from this folder as from the clone
        (cwd / "pg.yaml").write_text(PIPELINE)
        run = harness("run", "pg.yaml", "--out", "out", cwd=cwd,
                      env={k: v for k, v in os.environ.items() if k != postgres.ENV})
        assert run.returncode == 0, run.stderr
        assert read_run(cwd / "out")["requests"].to_pandas()["ok"].all()
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM harness_pipeline").fetchone() == (6,)

        assert make_postgres.main(["stop"]) == 0
    finally:
        _stop_anyway()
    assert not any(_alive(p) for p in processes)
    assert [p.pid for p in psutil.process_iter(["cmdline"]) if _alive(p)
            and str(base) in " ".join(p.info["cmdline"] or [])] == []
    with pytest.raises(ConnectionRefusedError), socket.socket() as sock:
        sock.connect(("127.0.0.1", _port(dsn)))
    assert not base.exists() and not (cwd / ".pg").exists()
    assert make_postgres.main(["stop"]) == 0  # nothing to stop: said, not an error
    assert "nothing to stop" in capsys.readouterr().out


@needs_server
def test_a_cluster_whose_server_died_is_replaced_by_a_fresh_one(cwd, capsys):
    import psycopg

    try:
        _start(capsys)
        old = Path(make_postgres.CLUSTER.read_text().strip())
        processes = _server_processes(old)
        processes[0].send_signal(signal.SIGKILL)
        # the postmaster's children leave when they see it gone
        assert psutil.wait_procs(processes, timeout=30)[1] == []
        fresh = _start(capsys)
        assert Path(make_postgres.CLUSTER.read_text().strip()) != old and not old.exists()
        assert postgres.dsn() == fresh

        with psycopg.connect(fresh) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        _stop_anyway()
