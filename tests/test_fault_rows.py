"""Faults on purpose, seen from the rows: every injected fault lands under its category on
every backend and client, the same fault on the same seq everywhere; a crashing server ends
its cell cleanly and the run goes on."""

import json
import signal

import pytest

from harness.run.runner import run_scenarios
from harness.scenario.loader import parse_scenario
from harness.scenario.model import LoadedScenario
from harness.store.reader import read_run
from tests.conftest import BACKENDS, harness

FAULTS = """name: sick
server:
  seed: 5
  endpoints:
    api:
      latency: 2ms
      size: 2KiB
      faults:
        - {share: 10%, status: 503}
        - {share: 8%, reset: true}
        - {share: 5%, hang: true}
        - {share: 5%, trickle: 1KiB/s}
        - {share: 8%, truncate: true}
        - {share: 8%, delay: 20ms}
workload:
  endpoint: api
  timeout: {connect: 1s, total: 600ms}
  client: [standard, lean]
load: {requests: 150, concurrency: 10}
"""
EXPECTED = {"status": {"http_status"}, "reset": {"reset"}, "hang": {"timeout"},
            "trickle": {"timeout"}, "truncate": {"protocol"}, "delay": {"ok"}, "-": {"ok"}}


@pytest.fixture(scope="module")
def sick(tmp_path_factory):
    out = tmp_path_factory.mktemp("sick")
    run_scenarios([LoadedScenario("s.yaml", FAULTS, parse_scenario(FAULTS))], out=out)
    tables = read_run(out)
    return tables["requests"].to_pandas(), tables["cells"].to_pandas()


@pytest.mark.parametrize("client", ["standard", "lean"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_injected_fault_lands_under_its_category(sick, backend, client):
    rows, cells = sick
    mine = rows[(rows.backend == backend) & (rows.client == client)]
    assert sorted(mine.seq) == list(range(150))  # every request is a row
    for fault, group in mine.groupby(mine.fault.fillna("-"), dropna=False):
        errors = set(group.error.fillna("ok"))
        assert errors == EXPECTED[fault], (fault, errors)
    assert set(mine.fault.dropna()) == {"status", "reset", "hang", "trickle", "truncate", "delay"}
    cell = cells[(cells.backend == backend) & (cells.client == client)].iloc[0]
    assert cell.released == cell.requests == 150 and cell.complete


def test_the_same_seq_meets_the_same_fault_everywhere(sick):
    rows, _ = sick
    per_seq = rows.groupby("seq")["fault"].agg(lambda f: set(f.fillna("-")))
    assert (per_seq.map(len) == 1).all()


def test_no_request_outlasts_the_total_timeout(sick):
    rows, _ = sick  # hangs and trickles included, on every client (0.6 s, plus slack)
    assert ((rows.end_ns - rows.start_ns) < 1.2e9).all()


CRASH = """name: crash
server:
  endpoints:
    api: {latency: 5ms}
  crash_after: 40 requests
workload: {endpoint: api}
load: {requests: 200, concurrency: 4}
backends: [threads, uvloop]
"""


def test_crash_after_ends_the_cell_and_the_run_goes_on(write_scenario, tmp_path):
    out = tmp_path / "out"
    result = harness("run", write_scenario(CRASH), "--out", out)
    assert result.returncode == 3, result.stderr
    tables = read_run(out)
    cells = tables["cells"].to_pandas()
    assert list(cells.backend) == ["threads", "uvloop"]  # the second cell had a fresh server
    assert (cells.server_exit == -signal.SIGKILL).all()
    assert (cells.released == cells.requests).all()
    rows = tables["requests"].to_pandas()
    for _, mine in rows.groupby("backend"):
        assert 36 <= mine.ok.sum() <= 39  # the 40th to arrive killed it and the 3 in flight
        failed = mine[~mine.ok]
        assert set(failed.error) <= {"connect", "reset", "protocol"}
        # within 1 s of the first failure nothing more was released
        assert mine.scheduled_ns.max() - failed.start_ns.min() < 1e9
    report = harness("report", out, "--format", "json")
    assert report.returncode == 3
    assert all("server_died" in c["flags"] for c in json.loads(report.stdout)["cells"])
