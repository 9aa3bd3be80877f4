"""Reports, thresholds, comparisons and the schema doc — all computed from Parquet files."""

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.analysis import load_runs, summarize
from harness.runner import run_scenarios
from harness.scenario import LoadedScenario, parse_scenario
from tests.conftest import small_scenario

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli(capsys, monkeypatch):
    """The CLI in this process (no interpreter start-up per call): returns what a subprocess
    would — returncode, stdout, stderr."""
    from types import SimpleNamespace

    from harness.cli import main  # noqa: PLC0415

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


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two runs of one small scenario with 2 repetitions and two backends: the first at two
    concurrency levels, the second at the higher one only."""
    root = tmp_path_factory.mktemp("results")
    runs = []
    for levels in ("[1, 4]", "[4]"):
        text = small_scenario(name="cmp", latency="{dist: uniform, min: 5ms, max: 15ms}",
                              requests=30, concurrency=levels, backends="[asyncio, threads]")
        text += "repeat: 2\n"
        result = run_scenarios([LoadedScenario("cmp.yaml", text, parse_scenario(text))],
                               results_root=root / "results")
        runs.append(result.out_dirs[0])
    return root, runs


def test_report_formats_agree(cli, two_runs):
    _, (run, _) = two_runs
    as_json = cli("report", run, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    cells = json.loads(as_json.stdout)["cells"]
    assert len(cells) == 2 * 2 * 2
    assert {c["backend"] for c in cells} == {"asyncio", "threads"}
    csv = cli("report", run, "--format", "csv")
    assert csv.stdout.splitlines()[0].startswith("run_id,scenario,backend,concurrency")
    assert len(csv.stdout.splitlines()) == 1 + len(cells)
    markdown = cli("report", run, "--format", "markdown")
    table = [line for line in markdown.stdout.splitlines() if line.startswith("|")]
    assert table[0].startswith("| backend |") and len(table) == 2 + len(cells)
    assert "[" not in markdown.stdout.replace("[1", "")  # no rich markup leaks


def test_summary_self_checks(two_runs):
    _, (run, _) = two_runs
    summary = summarize(load_runs([run]))
    assert (summary["peak_in_flight"] == summary["peak_in_flight_live"]).all()
    assert not summary["flags"].str.contains("peaks").any()
    assert summary["little_residual"].notna().any() or (summary["makespan_s"] < 1).all()
    assert (summary["error_rate"] == 0).all() and (summary["p999_ms"] >= summary["p99_ms"]).all()


def test_compare_two_runs_with_two_repetitions_says_too_few(cli, two_runs):
    """Two repetitions a side are below the minimum: ratios, but no test, no interval, no
    failure — also with --fail-on-regression."""
    _, (base, new) = two_runs
    result = cli("compare", base, new, "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 2  # 2 backends at the shared level
    for row in rows:
        assert row["verdict"] == "too few repetitions"
        assert (row["reps_base"], row["reps_new"]) == (2, 2)
        assert row["throughput_ratio"] > 0 and row["p50_ratio"] > 0
        assert row["throughput_lo"] is None and row["p_holm"] is None
    assert "too few repetitions" in result.stderr
    markdown = cli("compare", base, new, "--format", "markdown", "--fail-on-regression")
    assert markdown.returncode == 0
    assert markdown.stdout.startswith("| scenario |") and "too few repetitions" in markdown.stdout


def test_compare_between_backends_of_real_runs(cli, two_runs):
    _, (base, _) = two_runs
    result = cli("compare", base, "--between", "asyncio,threads", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {(r["base"], r["new"]) for r in rows} == {("asyncio", "threads")}
    assert {r["concurrency"] for r in rows} == {1, 4}
    gate = cli("compare", base, "--between", "asyncio,threads", "--fail-on-regression")
    assert gate.returncode == 0 and "too few repetitions" in gate.stdout


def test_compare_refuses_what_cannot_be_compared(cli, two_runs, tmp_path, write_scenario):
    _, (base, _) = two_runs
    bad = cli("compare", base, "--between", "asyncio,trio")
    assert bad.returncode == 2 and "--between" in bad.stderr
    other = tmp_path / "other"
    text = small_scenario(name="elsewhere", requests=5, concurrency=1, backends="[asyncio]")
    run_scenarios([LoadedScenario("o.yaml", text, parse_scenario(text))], out=other)
    result = cli("compare", base, other)
    assert result.returncode == 2 and "nothing to compare" in result.stderr
    missing = cli("compare", base)
    assert missing.returncode == 2


def test_failing_threshold_exits_1_and_misspelled_metric_exits_2(cli, write_scenario, tmp_path):
    text = small_scenario(requests=20, concurrency=2, backends="[asyncio]")
    failing = write_scenario(text + 'expect: ["p99_ms < 0.001", "error_rate <= 0.01"]\n', "f.yaml")
    result = cli("run", failing, "--out", tmp_path / "f")
    assert result.returncode == 1, result.stderr
    assert "thresholds: 1 passed, 1 failed" in result.stdout
    assert "FAIL" in result.stdout and "p99_ms < 0.001" in result.stdout
    again = cli("report", tmp_path / "f")  # thresholds come back from the metadata
    assert again.returncode == 1 and "1 failed" in again.stdout
    misspelled = write_scenario(text + 'expect: ["p99ms < 50"]\n', "m.yaml")
    bad = cli("run", misspelled, "--out", tmp_path / "m")
    assert bad.returncode == 2
    assert "expect[0]: unknown metric 'p99ms'" in bad.stderr
    assert not (tmp_path / "m").exists()
    passing = write_scenario(text + 'expect: ["asyncio: error_rate == 0"]\n', "p.yaml")
    assert cli("run", passing, "--out", tmp_path / "p").returncode == 0


def test_html_report_is_self_contained_with_decodable_plots(cli, two_runs, tmp_path):
    _, runs = two_runs
    path = tmp_path / "report.html"
    result = cli("report", runs[0], "--html", path)
    assert result.returncode == 0, result.stderr
    page = path.read_text()
    assert "<script" not in page and "<link" not in page and "<img" not in page
    external = {u for u in re.findall(r"(?:src|href)=[\"']([^\"']+)", page)}
    assert not [u for u in external if u.startswith(("http", "//"))]
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(svgs) >= 5  # spectrum, CDF, throughput/in-flight, loop lag, speedup
    for svg in svgs:
        root = ET.fromstring(svg)  # each plot is a well-formed SVG document …
        paths = root.findall(".//{http://www.w3.org/2000/svg}path")
        assert len(paths) > 20  # … that draws something
    for title in ("latency by percentile", "latency CDF", "throughput and in flight",
                  "event-loop lag over time", "speedup vs concurrency"):
        assert title in page
    assert "run metadata" in page and "cmp" in page


def test_schema_doc_examples_run(two_runs):
    root, _ = two_runs
    doc = (ROOT / "docs" / "schema.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert len(blocks) == 3
    for block in blocks:
        result = subprocess.run([sys.executable, "-c", block], cwd=root, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip()
    assert "asyncio requests;" in result.stdout


def test_scenario_json_schema(cli):
    result = cli("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert set(schema["required"]) >= {"name", "workload", "load"}
    assert "expect" in schema["properties"] and "strategies" in schema["properties"]
    duration = schema["$defs"]["CpuWorkload"]["properties"]["duration"]
    assert duration["default"] == "20.0ms"
    assert {"string", "number"} <= {alt["type"] for alt in duration["anyOf"]}
