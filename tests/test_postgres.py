"""The pipeline's PostgreSQL path, against a throwaway cluster (tests/conftest.py's
postgres_dsn) started for this module and removed after."""

import pytest

from harness.run.runner import run_scenarios
from harness.scenario.loader import parse_scenario
from harness.scenario.model import LoadedScenario
from harness.store.reader import read_run
from tests.conftest import BACKENDS, PG_BIN

# Only what needs a server skips without one: the refusal below runs everywhere.
needs_server = pytest.mark.skipif(PG_BIN is None,
                                  reason="PostgreSQL server binaries not installed")


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
