"""Reports, thresholds, comparisons and the schema doc — all computed from Parquet files."""

import io
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.analysis.summary import cell_speedups, load_runs, speedups, summarize
from harness.run.runner import run_scenarios
from harness.scenario.loader import parse_scenario
from harness.scenario.model import LoadedScenario
from harness.scenario.thresholds import FAILED, NOT_APPLICABLE, PASSED, SKIPPED, evaluate, failed
from tests import synthetic
from tests.conftest import small_scenario

ROOT = Path(__file__).resolve().parent.parent



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
    # Clean, short cells: no self-check may cry wolf (the server's start-up CPU, a handful of
    # timeline samples); what the checks catch is tested on data built to trip them below.
    assert (summary["flags"] == "").all()
    assert (summary["error_rate"] == 0).all()


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
    assert len(blocks) == 5
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


# --- the self-checks, on cells built to trip each flag -----------------------------------------

def _flags(*cells, **kwargs) -> list[str]:
    return summarize(synthetic.runs(*cells, **kwargs))["flags"].tolist()


def _leaky(row, requests, timeline, by=1):
    """The same cell, with a live counter that reads `by` more than the rows hold."""
    return row, requests, timeline.assign(in_flight=timeline["in_flight"] + by)


TRIPS = {  # flag → a clean cell changed just enough to raise it
    "little": lambda: _leaky(*synthetic.cell()),
    "peaks": lambda: synthetic.cell(peak_in_flight_live=3),
    "gen-cpu": lambda: (lambda r, q, t: (r, q, t.assign(cpu_percent=95.0)))(*synthetic.cell()),
    "srv-cpu": lambda: synthetic.cell(server_cpu_s=4.8),  # 96 % of the 5 s cell
    "incomplete": lambda: synthetic.cell(complete=False, released=None, peak_in_flight_live=None),
    "rows_missing": lambda: synthetic.cell(released=101),
    "server_died": lambda: synthetic.cell(server_exit=-9),
}


def test_a_clean_cell_raises_no_flag_and_passes_littles_law():
    summary = summarize(synthetic.runs(synthetic.cell(), synthetic.cell(backend="processes"),
                                       synthetic.cell("threads", server=False, kernel=20.0)))
    assert (summary["flags"] == "").all()
    assert (summary["little_check"] == "ok").all()
    assert (summary["little_residual"] < 0.05).all()


@pytest.mark.parametrize("flag", list(TRIPS))
def test_each_flag_fires_on_data_built_to_trip_it_and_only_it(flag):
    assert _flags(TRIPS[flag]()) == [flag]


def test_gen_cpu_uses_the_cpu_count_of_the_machine_that_ran_the_cell():
    """A processes cell at 300 % of a core: saturated on a 2-core machine (over 180 %), not on
    a 4-core one (360 %) — whatever the reading machine has."""
    busy = (lambda r, q, t: (r, q, t.assign(cpu_percent=300.0)))(
        *synthetic.cell(backend="processes"))
    assert _flags(busy, cpu_count=2) == ["gen-cpu"]
    assert _flags(busy, cpu_count=4) == [""]
    one = (lambda r, q, t: (r, q, t.assign(cpu_percent=150.0)))(
        *synthetic.cell(backend="processes"))
    assert _flags(one, cpu_count=1) == ["gen-cpu"] and _flags(one, cpu_count=2) == [""]


def test_little_says_not_enough_data_where_a_few_samples_cannot_tell():
    """0.3 s of 30 ms requests every 71 ms: three samples land anywhere between busy and idle,
    so a live counter one too high cannot be told from sampling luck — no flag, 'not enough
    data'. The same counter error over 5 s is a flag. Requests every 60 ms alias with the
    100 ms samples (they always hit the same three phases): not enough data however long."""
    short = synthetic.cell(concurrency=1, latency_ms=30, gap_ms=41, duration_s=0.3)
    summary = summarize(synthetic.runs(_leaky(*short)))
    assert summary["little_check"].tolist() == ["not enough data"]
    assert summary["flags"].tolist() == [""]
    clean = synthetic.cell("asyncio", 1, latency_ms=30, gap_ms=41, duration_s=5)
    leaky = _leaky(*synthetic.cell("threads", 1, latency_ms=30, gap_ms=41, duration_s=5))
    summary = summarize(synthetic.runs(clean, leaky))
    assert summary["little_check"].tolist() == ["ok", "off"]
    assert summary["flags"].tolist() == ["", "little"]
    assert summary["little_residual"].iloc[1] > 1  # 1 more in flight than ~0.42
    aliased = synthetic.cell(concurrency=1, latency_ms=30, gap_ms=30, duration_s=10)
    assert summarize(synthetic.runs(_leaky(*aliased)))["little_check"].tolist() == [
        "not enough data"]


def test_little_counts_every_finished_row_not_only_the_ok_ones():
    """Failed requests were in flight too: the check must count them, or a cell with errors
    would be flagged."""
    row, requests, timeline = synthetic.cell()
    requests = requests.assign(ok=requests["seq"] % 4 != 0,
                               error=np.where(requests["seq"] % 4 == 0, "http_status", None))
    row = {**row, "errors": int((~requests["ok"]).sum())}
    summary = summarize(synthetic.runs((row, requests, timeline)))
    assert summary["little_check"].tolist() == ["ok"] and summary["flags"].tolist() == [""]


def test_the_mock_servers_start_up_cpu_is_not_counted():
    from harness.mock.process import ServerProcess

    with ServerProcess(small_scenario(latency="1ms")) as server:
        stats = server.stats()
    assert server.ready_cpu_s > 0  # imports, binding: before the cell
    assert stats["cpu_since_ready_s"] == pytest.approx(stats["cpu_s"] - server.ready_cpu_s)
    assert 0 <= stats["cpu_since_ready_s"] < stats["cpu_s"]


# --- the one speedup -----------------------------------------------------------------------------

def test_speedup_divides_normalised_rates_so_process_speed_cancels():
    """threads at 2 run in a process whose kernel is 1.6 × faster: 1.6 × the throughput of the
    cell at 1, the same busy core — speedup 1, not 1.6. processes at 2: two busy cores."""
    base = synthetic.cell("threads", 1, latency_ms=20, server=False, kernel=20.0)
    lucky = synthetic.cell("threads", 2, latency_ms=25, server=False, kernel=12.5)
    procs = synthetic.cell("processes", 1, latency_ms=20, server=False, kernel=20.0)
    both = synthetic.cell("processes", 2, latency_ms=20, server=False, kernel=20.0)
    summary = summarize(synthetic.runs(base, lucky, procs, both)).set_index(
        ["backend", "concurrency"])
    assert summary.loc[("threads", 2), "throughput_rps"] == pytest.approx(
        1.6 * summary.loc[("threads", 1), "throughput_rps"])
    assert summary.loc[("threads", 1), "normalised_rate"] == pytest.approx(1.0)
    assert summary.loc[("threads", 2), "speedup"] == pytest.approx(1.0)
    assert summary.loc[("processes", 2), "normalised_rate"] == pytest.approx(2.0)
    assert summary.loc[("processes", 2), "speedup"] == pytest.approx(2.0)
    assert summary.loc[("processes", 1), "speedup"] == 1.0


def test_speedup_is_per_repetition_and_the_table_shows_its_median():
    """Per repetition against the same repetition's lowest level; the table's speedup is the
    median of those — not the ratio of median throughputs (which would be 2.4 here)."""
    cells = []
    for rep, (base_ms, level_ms) in enumerate([(10, 5), (20, 10), (40, 10)]):
        cells += [synthetic.cell("asyncio", 1, rep, latency_ms=base_ms),
                  synthetic.cell("asyncio", 4, rep, latency_ms=4 * level_ms)]
    summary = summarize(synthetic.runs(*cells))
    at4 = summary[summary["concurrency"] == 4]
    assert at4["speedup"].tolist() == pytest.approx([2.0, 2.0, 4.0])
    table = speedups(summary).set_index("concurrency")
    assert table.loc[4, "speedup"] == pytest.approx(2.0)
    assert table.loc[1, "speedup"] == 1.0 and table.loc[4, "repetitions"] == 3
    assert table.loc[4, "median_rps"] / table.loc[1, "median_rps"] == pytest.approx(2.0)


def test_no_speedup_without_a_like_base():
    """A base cell that died (no kernel measured) cannot normalise its level's cells; a level
    without its repetition's base has no speedup either."""
    dead_base = synthetic.cell("threads", 1, 0, server=False, kernel=None, complete=False)
    level = synthetic.cell("threads", 2, 0, server=False, kernel=20.0)
    orphan = synthetic.cell("threads", 2, 1, server=False, kernel=20.0)
    summary = summarize(synthetic.runs(dead_base, level, orphan))
    assert summary["speedup"].isna().tolist() == [False, True, True]
    assert cell_speedups(summary).iloc[0] == 1.0  # the base itself, on throughput


def test_report_json_has_cell_speedups_and_their_medians(cli, two_runs):
    _, (run, _) = two_runs
    report = json.loads(cli("report", run, "--format", "json").stdout)
    cells = pd.DataFrame(report["cells"])
    assert (cells.loc[cells["concurrency"] == 1, "speedup"] == 1.0).all()
    assert cells.loc[cells["concurrency"] == 4, "speedup"].notna().all()
    table = pd.DataFrame(report["speedups"]).set_index(["backend", "concurrency"])
    for (backend, level), mine in cells.groupby(["backend", "concurrency"]):
        assert table.loc[(backend, level), "speedup"] == pytest.approx(mine["speedup"].median())


# --- thresholds ----------------------------------------------------------------------------------

def test_a_threshold_that_matches_no_cell_of_the_matrix_is_refused(cli, write_scenario):
    text = small_scenario(backends="[threads, asyncio]")
    for expect, problem in [
            ("threads: loop_lag_p99_ms < 5", "loop_lag_p99_ms needs an event loop"),
            ("lost_updates == 0", "lost_updates needs the race workload"),
            ("cpu_p50_ms < 5", "cpu_p50_ms needs a CPU step")]:
        path = write_scenario(text + f'expect: ["error_rate == 0", "{expect}"]\n')
        result = cli("validate", path)
        assert result.returncode == 2
        assert result.stderr.strip() == (
            f"error: {path}: expect[1]: '{expect}' applies to no cell of this scenario: "
            f"{problem}" + result.stderr.strip().split(problem, 1)[1])
    fine = write_scenario(text + 'expect: ["loop_lag_p99_ms < 5"]\n', "fine.yaml")
    assert cli("validate", fine).returncode == 0


def _scenarios(text):
    return {"synth": parse_scenario(text)}


def test_a_metric_that_does_not_apply_is_not_applicable_never_a_pass():
    text = small_scenario(name="synth", backends="[threads, asyncio]")
    summary = summarize(synthetic.runs(synthetic.cell("threads"),
                                       synthetic.cell("asyncio", loop_lag_p99_ns=3e6)))
    checks = evaluate(summary, _scenarios(text + 'expect: ["loop_lag_p99_ms < 5"]\n'))
    assert checks.set_index("backend")["status"].to_dict() == {"threads": NOT_APPLICABLE,
                                                               "asyncio": PASSED}
    assert checks["passed"].tolist() == [False, True] and not failed(checks)
    checks = evaluate(summary, _scenarios(text + 'expect: ["loop_lag_p99_ms < 1"]\n'))
    assert checks["status"].tolist() == [NOT_APPLICABLE, FAILED] and failed(checks)


def test_a_threshold_whose_cells_did_not_run_is_skipped():
    text = small_scenario(name="synth", backends="[threads, asyncio]")
    summary = summarize(synthetic.runs(synthetic.cell("asyncio")))  # as with -b asyncio
    checks = evaluate(summary, _scenarios(
        text + 'expect: ["threads: p99_ms < 1", "asyncio: p99_ms < 1000"]\n'))
    assert checks[["threshold", "status"]].values.tolist() == [
        ["threads: p99_ms < 1", SKIPPED], ["asyncio: p99_ms < 1000", PASSED]]
    assert not failed(checks)


def test_run_with_b_reports_the_left_out_threshold_as_skipped(cli, write_scenario, tmp_path):
    text = small_scenario(requests=10, concurrency=2, backends="[threads, asyncio]")
    path = write_scenario(text + 'expect: ["threads: error_rate == 0", "loop_lag_p99_ms < 1e6"]\n')
    result = cli("run", path, "-b", "asyncio", "--out", tmp_path / "o")
    assert result.returncode == 0, result.stderr
    assert "thresholds: 1 passed, 0 failed" in result.stdout
    assert "skipped" in result.stdout and "threads: error_rate == 0" in result.stdout


# --- the terminal summary ------------------------------------------------------------------------

def _shipped_summary() -> pd.DataFrame:
    """A summary of every cell of every shipped scenario, with the widest values they show."""
    from harness.scenario.loader import load_scenario
    from harness.scenario.model import plan_cells

    rows, serviced = [], []
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        scenario = load_scenario(path).scenario
        for key in plan_cells(scenario):
            row, _, _ = synthetic.cell(key.backend, key.concurrency, key.repetition,
                                       strategy=key.strategy, variant=key.variant,
                                       model=key.model, rate_per_s=key.rate_per_s,
                                       scenario=scenario.name, run_id="20260101T000000Z-abcdef")
            rows.append({**row, "path": key.path})
            serviced.append(scenario.service is not None)
    summary = pd.DataFrame(rows)
    is_open = summary["model"] == "open"
    service = np.where(serviced, 123.4, np.nan)
    return summary.assign(
        requests=99999, errors=19999, error_rate=0.5,
        achieved_rps=1234.5, target_rps=np.where(is_open, 1234.5, np.nan),
        service_p50_ms=1234.5, service_p99_ms=1234.5, sched_lag_p99_ms=123.4,
        late_starts=99999,
        throughput_rps=1234.5, p50_ms=1234.5, p90_ms=1234.5, p99_ms=1234.5, p999_ms=1234.5,
        max_ms=1234.5, overhead_p50_ms=12.3, overhead_p99_ms=12.3, cpu_p50_ms=12.3,
        cpu_wait_p50_ms=12.3, io_p50_ms=12.3, db_p50_ms=12.3, loop_lag_p99_ms=123.4,
        server_loop_lag_p99_ms=123.4,
        lost_updates=1999.0, kernel_ns_per_unit=123.4, normalised_rate=1.23, speedup=1.23,
        makespan_s=15.3, bound_s=15.1, efficiency=0.987, little_residual=0.012,
        little_check="ok", flags=np.where(is_open, "lagging gen-cpu", "little gen-cpu"),
        peak_in_flight_server=50, service_loop_lag_p99_ms=service, service_cpu_s=service)


def _render(renderable, width: int) -> list[str]:
    from rich.console import Console

    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.file.getvalue().splitlines()


def test_the_default_summary_fits_100_columns_for_every_shipped_scenario():
    from harness.report.table import speedup_tables, summary_tables

    summary = _shipped_summary()
    tables = summary_tables(summary) + speedup_tables(speedups(summary))
    assert len(tables) == 2 * len(list((ROOT / "scenarios").glob("*.yaml")))
    for table in tables:
        # A started service's scenario shows two more figures, its path axis and the service's
        # own loop lag (the lesson it exists for): 135 columns at the widest synthetic values,
        # 115 for a real run of it.
        limit = 135 if "fastapi_inference" in str(table.title) else 100
        natural = _render(table, 400)  # as wide as the table wants
        assert max(len(line.rstrip()) for line in natural) <= limit, natural[:3]
        assert _render(table, limit) == natural  # at its width nothing is squeezed or cut
        headers = [c.header for c in table.columns]
        assert "backend" in headers and "…" not in "".join(natural)


def test_wide_shows_every_column_and_the_legend_defines_each_once():
    from harness.report.table import _COLUMNS, _DEFINED_BY, legend, summary_grid

    summary = _shipped_summary()
    narrow = {h for _, headers, _ in summary_grid(summary, wide=False) for h in headers}
    wide = {h for _, headers, _ in summary_grid(summary, wide=True) for h in headers}
    split = {"gen"} if (summary["generators"] != 1).any() else set()  # crowd.yaml's
    paths = {"path", "service lag p99"}  # fastapi_inference.yaml's: a service, four paths
    assert narrow == {"backend", "strategy", "variant", "conc", "rep", "requests", "errors",
                      "req/s", "p50 ms", "p99 ms", "peak", "flags",
                      "rate", "started/s", "sched p99"} | split | paths  # 3: open cells
    for title, headers, _ in summary_grid(summary, wide=False):  # in the room of req/s, peak
        has_open = title.startswith(("open_stall", "saturate", "inference_service",
                                     "fastapi_inference"))
        assert ("started/s" in headers) == has_open and ("req/s" in headers) != has_open
    # python: shown where the cells' interpreters differ; gil: from a run's cells (none here);
    # conn p50: from connections the cells opened (the synthetic rows open none)
    assert wide == ({h for h, *_ in _COLUMNS} - {"peak", "python", "gil", "conn p50"}
                    - ({"gen"} - split))
    text = legend(sorted(wide), {"little", "gen-cpu", "lagging"})
    entries = [part.split(": ", 1)[0] for part in text.split("; ")]
    assert len(entries) == len(set(entries))  # each figure once
    for header in wide - {"backend", "strategy", "variant", "flags"}:
        assert _DEFINED_BY.get(header, header) in entries, header


def test_the_readme_legend_is_the_code_legend_and_each_figure_is_defined_in_code():
    """Every figure in the README's summary legend has one definition in code: the README's
    table is harness.report.LEGEND, and each entry names an object that exists."""
    import importlib

    from harness.report.table import LEGEND

    doc = (ROOT / "docs" / "summary.md").read_text()
    table = doc.split("| figure | definition | computed in |\n", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| (.+?) \| `([\w.]+)` \|$", table, re.M)
    assert {name: (text, where) for name, text, where in rows} == LEGEND
    for _, where in LEGEND.values():
        module, _, attr = where.rpartition(".")
        obj = None
        while obj is None:
            try:
                obj = importlib.import_module(module)
            except ModuleNotFoundError:
                module, _, outer = module.rpartition(".")
                attr = f"{outer}.{attr}"
        for part in attr.split("."):
            obj = getattr(obj, part)


def test_every_percentile_goes_through_the_one_function():
    sources = [*(ROOT / "harness").rglob("*.py"), *(ROOT / "bench").glob("*.py")]
    pattern = re.compile(r"np\.(percentile|quantile|median|nanpercentile)\(|\.quantile\(|"
                         r"\.median\(|statistics\.median\(")
    found = [f"{path.relative_to(ROOT)}: {line.strip()}" for path in sources
             if path.name != "stats.py"
             for line in path.read_text().splitlines() if pattern.search(line)]
    assert found == []
