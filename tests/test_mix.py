"""`workload.requests`: which entry request `seq` sends (core.mix), the same on every backend
and client; the `request` column the writer fills from it (a killed run's spool too); the
server sees each entry's path, method and body; `report --by request`."""

import json

import numpy as np
import pyarrow as pa
import pytest

from harness.cell.buffer import RecordBuffer
from harness.core.keys import CellKey, key_dict
from harness.core.mix import Picker, pick, pick_many
from harness.core.schema import RECORD_SCHEMA, Outcome
from harness.run.runner import run_scenarios
from harness.scenario.loader import parse_scenario
from harness.scenario.model import LoadedScenario
from harness.store.reader import read_run
from harness.store.writer import RunWriter
from tests.conftest import BACKENDS

SEEDS = [0, 1, -1, 7, 2**63 - 1, -(2**63)]


@pytest.mark.parametrize("seed", SEEDS)
def test_scalar_and_vectorised_picks_agree(seed):
    weights = [5, 1, 3, 1]
    rng = np.random.default_rng(0)
    seqs = np.concatenate([np.arange(20_000), rng.integers(0, 2**62, 2_000)])
    picker = Picker(seed, weights)
    assert pick_many(seed, seqs, weights).tolist() == [picker(int(s)) for s in seqs]
    assert [pick(seed, int(s), weights) for s in seqs[:100]] == [picker(int(s)) for s in
                                                                  seqs[:100]]


def test_frequencies_follow_the_weights():
    weights = [6, 3, 1]
    counts = np.bincount(pick_many(11, np.arange(100_000), weights), minlength=3)
    assert np.allclose(counts / 100_000, [0.6, 0.3, 0.1], atol=0.01), counts
    assert counts.min() > 0 and counts.sum() == 100_000


def test_the_same_seed_and_seq_give_the_same_entry_and_another_seed_another_order():
    weights = [1, 1, 1, 1]
    first = [Picker(3, weights)(seq) for seq in range(200)]
    assert first == [Picker(3, weights)(seq) for seq in range(200)]
    assert first != [Picker(4, weights)(seq) for seq in range(200)]
    assert set(first) == {0, 1, 2, 3}


MIX = """name: mix
server:
  seed: 5
  endpoints:
    small: {latency: 1ms, size: 100}
    big: {latency: 2ms, size: 300}
workload:
  client: [standard, lean]
  requests:
    - {name: read, path: /small, weight: 3}
    - {name: write, method: POST, path: /big, body: 1KiB, weight: 2, headers: {X-Tenant: a}}
    - {method: HEAD, path: /big}
load: {requests: 40, concurrency: 3}
"""
NAMES, WEIGHTS = ["read", "write", "HEAD /big"], [3, 2, 1]
# what the mock server's answers say it received: the endpoint (its size), the method (HEAD:
# no body), and what the client sent (the entry's body)
SENT = {"read": 0, "write": 1024, "HEAD /big": 0}
RECEIVED = {"read": 100, "write": 300, "HEAD /big": 0}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    out = tmp_path_factory.mktemp("mix") / "out"
    run_scenarios([LoadedScenario("mix.yaml", MIX, parse_scenario(MIX))], out=out)
    return out, read_run(out)["requests"].to_pandas()


@pytest.mark.parametrize("client", ["standard", "lean"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_and_client_sends_the_same_mix(mixed, backend, client):
    _, rows = mixed
    mine = rows[(rows.backend == backend) & (rows.client == client)].sort_values("seq")
    assert mine.seq.tolist() == list(range(40)) and mine.ok.all(), mine.error.value_counts()
    expected = [NAMES[i] for i in pick_many(5, np.arange(40), WEIGHTS)]
    assert mine.request.tolist() == expected
    assert set(expected) == set(NAMES)
    assert mine.bytes_sent.tolist() == [SENT[name] for name in expected]
    assert mine.bytes_received.tolist() == [RECEIVED[name] for name in expected]
    assert (mine.path == "mix").all()


def test_report_by_request_has_a_row_per_entry(mixed, cli):
    out, rows = mixed
    result = cli("report", out, "--by", "request", "--format", "json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)["requests"]
    assert len(found) == 8 * 3
    threads = [r for r in found if r["backend"] == "threads" and r["client"] == "lean"]
    counts = rows[(rows.backend == "threads") & (rows.client == "lean")].request.value_counts()
    assert [r["request"] for r in threads] == NAMES  # the scenario's order
    assert {r["request"]: r["requests"] for r in threads} == counts.to_dict()
    assert all(r["errors"] == 0 for r in threads)
    assert sum(r["share"] for r in threads) == pytest.approx(1.0)
    table = cli("report", out, "--by", "request", "--no-legend")
    assert table.returncode == 0
    lines = [line.split() for line in table.stdout.splitlines()]
    uvloop_lean = [line for line in lines if line[:2] == ["uvloop", "lean"]]
    assert [line[3] for line in uvloop_lean] == ["read", "write", "HEAD"]
    summary = cli("report", out).stdout  # without --by: the summary, no entry in it
    assert "by request" not in summary and "write" not in summary.split()
    assert "req/s" in summary


def test_a_killed_runs_spool_gets_the_request_column(tmp_path):
    scenario = parse_scenario(MIX)
    writer = RunWriter(tmp_path, {"run_id": "r"})
    constants = {"run_id": "r", "scenario": "mix", **key_dict(CellKey("threads", 3, 0)),
                 "path": "mix", "mix": scenario.mix_manifest()}
    _, spool = writer.open_cell(constants)
    buffer = RecordBuffer()
    for seq in range(300):
        buffer.append("w", "s", seq, 0, 0, seq, seq + 1, Outcome(True, 200), 1)
    with pa.OSFile(str(spool / "requests.arrows"), "wb") as sink, \
            pa.ipc.new_stream(sink, RECORD_SCHEMA) as stream:
        stream.write(buffer.drain())
    tables = read_run(tmp_path)
    rows = tables["requests"].to_pandas().sort_values("seq")
    assert rows.request.tolist() == [NAMES[i] for i in pick_many(5, np.arange(300), WEIGHTS)]
    assert not tables["cells"].to_pandas().complete.iloc[0]


def test_a_single_request_leaves_the_column_null(tmp_path):
    text = ("name: one\nserver:\n  endpoints:\n    api: {latency: 1ms}\n"
            "workload: {endpoint: api}\nload: {requests: 5, concurrency: 1}\n"
            "backends: [threads]\n")
    run_scenarios([LoadedScenario("one.yaml", text, parse_scenario(text))], out=tmp_path / "o")
    rows = read_run(tmp_path / "o")["requests"].to_pandas()
    assert len(rows) == 5 and rows.request.isna().all() and (rows.path == "/api").all()


FAULTY = """name: faulty
server:
  seed: 9
  endpoints:
    calm: {latency: 1ms, size: 10}
    sick: {latency: 1ms, size: 10, faults: [{share: 30%, status: 503}]}
workload:
  requests:
    - {path: /calm}
    - {path: /sick}
load: {requests: 60, concurrency: 2}
backends: [uvloop]
"""


def test_a_mix_labels_each_row_with_its_own_endpoints_fault(tmp_path):
    run_scenarios([LoadedScenario("f.yaml", FAULTY, parse_scenario(FAULTY))], out=tmp_path / "o")
    rows = read_run(tmp_path / "o")["requests"].to_pandas()
    sick = rows[rows.request == "GET /sick"]
    calm = rows[rows.request == "GET /calm"]
    assert len(sick) and len(calm) and calm.ok.all() and calm.fault.isna().all()
    failed = sick[~sick.ok]
    assert len(failed) and (failed.status == 503).all() and (failed.fault == "status").all()
    assert sick[sick.ok].fault.isna().all()


def test_an_entry_sends_its_file_and_an_unreadable_one_is_refused(tmp_path, cli):
    body = tmp_path / "body.bin"
    body.write_bytes(b"x" * 777)
    text = ("name: files\nserver:\n  endpoints:\n    api: {latency: 1ms, size: 10}\n"
            "workload:\n  requests:\n    - {path: /api}\n"
            f"    - {{method: PUT, path: /api, body: {{file: {body}}}}}\n"
            "load: {requests: 20, concurrency: 2}\nbackends: [threads]\n")
    path = tmp_path / "files.yaml"
    path.write_text(text)
    assert cli("run", path, "--out", tmp_path / "o", "--quiet").returncode == 0
    rows = read_run(tmp_path / "o")["requests"].to_pandas()
    assert rows.ok.all() and set(rows.request) == {"GET /api", "PUT /api"}
    assert (rows.bytes_sent == rows.request.map({"GET /api": 0, "PUT /api": 777})).all()
    body.unlink()
    result = cli("run", path, "--out", tmp_path / "p")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert f"workload.requests[1].body.file: cannot read {body}" in result.stderr


def test_a_cluster_refuses_an_entry_body_file(tmp_path):
    from harness.core.errors import HarnessError
    from harness.run.cluster_run import check

    text = MIX.replace("body: 1KiB", f"body: {{file: {tmp_path / 'b'}}}")
    with pytest.raises(HarnessError, match=r"m.yaml: workload.requests\[1\].body.file: not with "
                                           "--cluster"):
        check(LoadedScenario("m.yaml", text, parse_scenario(text)))
    check(LoadedScenario("m.yaml", MIX, parse_scenario(MIX)))  # a sized body travels
