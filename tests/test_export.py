"""harness export: every request row as CSV or JSON lines (filtered, cut to columns), and each
cell's response-time distribution in HdrHistogram's text format."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pyarrow.csv as csv
import pytest

from harness.analysis.summary import load_runs, summarize
from harness.core.schema import REQUESTS_SCHEMA
from harness.report.export import parse_where, percentile_ticks
from harness.run.runner import run_scenarios
from harness.scenario.loader import load_scenario
from harness.store.reader import read_run
from tests.conftest import small_scenario


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    path = folder / "s.yaml"
    path.write_text(small_scenario(requests=40, concurrency=4, backends="[threads, asyncio]")
                    .replace("backends:", "repeat: 2\nbackends:"))
    out = folder / "run"
    run_scenarios([load_scenario(path)], out=out)
    return out


def test_csv_and_jsonl_hold_every_row(cli, run):
    rows = read_run(run)["requests"]
    found = cli("export", run)
    assert found.returncode == 0, found.stderr
    table = csv.read_csv(io.BytesIO(found.stdout.encode()))
    assert table.num_rows == rows.num_rows == 160
    assert table.column_names == REQUESTS_SCHEMA.names
    assert sorted(table["seq"].to_pylist()) == sorted(rows["seq"].to_pylist())
    lines = cli("export", run, "--format", "jsonl").stdout.splitlines()
    assert len(lines) == 160 and set(json.loads(lines[0])) == set(REQUESTS_SCHEMA.names)


def test_where_and_columns(cli, run):
    rows = read_run(run)["requests"].to_pandas()
    found = cli("export", run, "--format", "jsonl", "--where",
                'backend == "asyncio" and repetition >= 1 and seq < 10',
                "--columns", "backend,seq,repetition")
    got = [json.loads(line) for line in found.stdout.splitlines()]
    want = rows[(rows.backend == "asyncio") & (rows.repetition >= 1) & (rows.seq < 10)]
    assert len(got) == len(want) == 10
    assert all(list(row) == ["backend", "seq", "repetition"] for row in got)
    none = cli("export", run, "--where", "error != null")
    assert none.returncode == 0 and none.stdout == ""  # no failed row: nothing, no header


@pytest.mark.parametrize(("where", "message"), [
    ("bakend == 1", "unknown column 'bakend'"),
    ("backend = 1", "cannot read"),
    ("backend == asyncio", "'asyncio' is not a value"),
    ("seq < 5 or seq > 7", "expected `and`"),
    ("seq >", "is not COLUMN OP VALUE"),
    ("ok < null", "null compares only"),
])
def test_a_bad_where_is_one_line(cli, run, where, message):
    found = cli("export", run, "--where", where)
    assert found.returncode == 2 and message in found.stderr
    assert len(found.stderr.strip().splitlines()) == 1
    assert cli("export", run, "--columns", "seq,nope").returncode == 2


def test_where_parses_to_the_expressions_pyarrow_filters_with():
    expression = parse_where('backend == "uvloop" and concurrency >= 10', REQUESTS_SCHEMA.names)
    assert str(expression) == '((backend == "uvloop") and (concurrency >= 10))'


def test_hgrm_percentiles_are_the_summarys(cli, run, tmp_path):
    found = cli("export", run, "--format", "hgrm", "--out", tmp_path / "h")
    assert found.returncode == 0 and "results:" in found.stdout
    summary = summarize(load_runs([run]))
    files = sorted((tmp_path / "h").glob("cell-*.hgrm"))
    assert len(files) == len(summary) == 4
    for path, cell in zip(files, summary.itertuples(), strict=True):
        table = {}
        for line in path.read_text().splitlines()[2:]:
            if not line.startswith("#"):
                value, fraction, count, *_ = line.split()
                table[round(float(fraction), 6)] = (float(value), int(count))
        assert table[0.5][0] == pytest.approx(cell.p50_ms, abs=0.0006)
        assert table[0.9][0] == pytest.approx(cell.p90_ms, abs=0.0006)
        assert table[1.0][1] == 40  # every measured ok request counted


def test_percentile_ticks_are_hdrhistograms():
    ticks = list(percentile_ticks())
    assert ticks[:7] == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 55.0]
    assert ticks[-1] == 100.0 and all(b > a for a, b in zip(ticks, ticks[1:], strict=False))


def test_a_reader_that_stops_early_is_not_an_error(run):
    found = subprocess.run(["bash", "-c", "set -o pipefail; "  # harness's status, not head's
                            f"{sys.executable} -m harness export {run} --format jsonl | head -2"],
                           capture_output=True, text=True, timeout=120)
    assert found.returncode == 0 and len(found.stdout.splitlines()) == 2
    assert "Traceback" not in found.stderr and "Broken pipe" not in found.stderr
