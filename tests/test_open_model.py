"""The open model's figures: response time, service time and scheduling lag, late
starts, the `lagging` flag, warm-up rows left out of every figure, makespan from the end of the
warm-up — on rows built by hand — and a small open run on every backend."""

from __future__ import annotations

import io
import json
import textwrap

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from harness.analysis.compare import compare
from harness.analysis.summary import load_runs, summarize
from harness.core.stats import percentile
from harness.report.table import print_summary
from harness.run.runner import run_scenarios
from harness.scenario.arrivals import schedule_for
from harness.scenario.loader import parse_scenario
from harness.scenario.model import LoadedScenario
from harness.scenario.thresholds import FAILED, NOT_APPLICABLE, PASSED, evaluate
from tests import synthetic
from tests.conftest import BACKENDS

MS = 1_000_000


def _open(scheduled, start, end, **kwargs):
    return synthetic.from_times(scheduled, start, end, model="open", rate_per_s=200.0,
                                concurrency=100, **kwargs)


def _row(*cells) -> pd.Series:
    return summarize(synthetic.runs(*cells)).iloc[0]


def _timed(n=400, seed=1, period_ms=5):
    """n requests meant to start every period: scheduling lags of 0–3 ms (every 40th 40 ms
    late; the first on time), service times of 5–15 ms."""
    rng = np.random.default_rng(seed)
    scheduled = np.arange(n, dtype=np.int64) * period_ms * MS
    lag = rng.integers(0, 3 * MS, n)
    lag[0] = 0
    lag[1::40] = 40 * MS
    service = rng.integers(5 * MS, 15 * MS, n)
    return scheduled, scheduled + lag, scheduled + lag + service


# --- response, service, scheduling lag ---------------------------------------------------------

def test_response_service_and_sched_lag_each_run_between_their_own_instants():
    scheduled, start, end = _timed()
    row = _row(_open(scheduled, start, end))
    response, service, lag = (end - scheduled) / MS, (end - start) / MS, (start - scheduled) / MS
    for q, column in ((50, "p50_ms"), (90, "p90_ms"), (99, "p99_ms"), (99.9, "p999_ms")):
        assert row[column] == pytest.approx(percentile(response, q))
    assert row["max_ms"] == pytest.approx(response.max())
    assert row["service_p50_ms"] == pytest.approx(percentile(service, 50))
    assert row["service_p99_ms"] == pytest.approx(percentile(service, 99))
    assert row["sched_lag_p99_ms"] == pytest.approx(percentile(lag, 99))
    # The wait to start counts in what a user feels, not in what the server took.
    assert row["p99_ms"] > row["service_p99_ms"] + 20
    assert row["service_p99_ms"] < 15
    # Rates: intended starts every 5 ms, the actual ones as they came.
    assert row["target_rps"] == pytest.approx(200.0)
    assert row["achieved_rps"] == pytest.approx((len(start) - 1) / ((start.max() - start.min())
                                                                    / 1e9))


def test_only_ok_requests_make_the_latencies_but_every_request_the_lag():
    scheduled, start, end = _timed()
    ok = np.ones(len(start), bool)
    ok[1::40] = False  # the 40 ms late ones failed
    row = _row(_open(scheduled, start, end, ok=ok))
    assert row["errors"] == 10 and row["error_rate"] == pytest.approx(10 / 400)
    assert row["p99_ms"] < 20  # the late ones left the latencies …
    assert row["sched_lag_p99_ms"] > 30  # … but were late all the same
    assert row["late_starts"] == 10 + int(((start - scheduled)[ok] > MS).sum())


def test_a_closed_cell_has_no_target_rate_and_its_response_runs_from_its_slot():
    scheduled, start, end = _timed()
    row = _row(synthetic.from_times(scheduled, start, end))
    assert np.isnan(row["target_rps"])
    assert row["p99_ms"] == pytest.approx(percentile((end - scheduled) / MS, 99))


# --- late starts ----------------------------------------------------------------------------

def test_late_starts_are_those_more_than_1ms_after_their_intended_time():
    lag = np.array([0, 500_000, MS, MS + 1, 1_500_000, 7 * MS, 30 * MS, 0, 0, 0])
    scheduled = np.arange(len(lag), dtype=np.int64) * 10 * MS
    start = scheduled + lag
    row = _row(_open(scheduled, start, start + 5 * MS))
    assert row["late_starts"] == 4  # exactly 1 ms is on time; 1 ms + 1 ns is late
    # Late warm-up requests are not counted.
    warm = np.arange(5, dtype=np.int64) * 10 * MS
    shift = 50 * MS
    row = _row(_open(np.concatenate([warm, scheduled + shift]),
                     np.concatenate([warm + 9 * MS, start + shift]),
                     np.concatenate([warm + 12 * MS, start + shift + 5 * MS]),
                     phase=["warmup"] * 5 + ["measure"] * len(lag)))
    assert row["late_starts"] == 4 and row["requests"] == len(lag)


# --- the lagging flag -----------------------------------------------------------------------

def test_the_lagging_flag_follows_the_cells_generator_lagging_on_open_cells():
    scheduled, start, end = _timed()
    lagging = _open(scheduled, start, end, generator_lagging=True)
    steady = _open(scheduled, start, end, generator_lagging=False, backend="threads")
    closed = synthetic.from_times(scheduled, start, end, generator_lagging=True,
                                  backend="uvloop")
    summary = summarize(synthetic.runs(lagging, steady, closed))
    assert summary["flags"].tolist() == ["lagging", "", ""]  # no schedule to lag in closed
    console = Console(width=100, file=io.StringIO(), color_system=None)
    print_summary(summary, console)
    text = console.file.getvalue()
    assert "lagging: flag: an open cell whose scheduling-lag p99 exceeds load.max_sched_lag" \
        in " ".join(text.split())


# --- warm-up ----------------------------------------------------------------------------------

FIGURES = ["requests", "errors", "error_rate", "throughput_rps", "p50_ms", "p90_ms", "p99_ms",
           "p999_ms", "max_ms", "service_p50_ms", "service_p99_ms", "sched_lag_p99_ms",
           "late_starts", "achieved_rps", "target_rps", "overhead_p50_ms", "overhead_p99_ms",
           "makespan_s", "bound_s", "efficiency"]


def _with_warmup(model: str, scheduled, start, end, ok, **kwargs):
    """The same measured rows after 100 warm-up rows of their own (shifted 500 ms later): slow,
    late and half failing, so that any figure they leaked into would move."""
    n = 100
    warm_scheduled = np.arange(n, dtype=np.int64) * 5 * MS
    warm_start = warm_scheduled + 30 * MS
    shift = 500 * MS
    make = _open if model == "open" else synthetic.from_times
    return make(np.concatenate([warm_scheduled, scheduled + shift]),
                np.concatenate([warm_start, start + shift]),
                np.concatenate([warm_start + 200 * MS, end + shift]),
                ok=np.concatenate([np.arange(n) % 2 == 0, ok]),
                phase=["warmup"] * n + ["measure"] * len(start), **kwargs)


@pytest.mark.parametrize("model", ["open", "closed"])
def test_warmup_rows_change_no_figure(model):
    scheduled, start, end = _timed()
    if model == "closed":
        scheduled = start  # a slot is obtained as the request starts
    ok = np.arange(len(start)) % 17 != 0
    make = _open if model == "open" else synthetic.from_times
    plain = summarize(synthetic.runs(make(scheduled, start, end, ok=ok))).iloc[0]
    warmed = summarize(synthetic.runs(_with_warmup(model, scheduled, start, end, ok))).iloc[0]
    assert warmed["warmup_requests"] == 100 and plain["warmup_requests"] == 0
    for column in FIGURES:
        assert warmed[column] == pytest.approx(plain[column], nan_ok=True), column


def test_makespan_and_throughput_count_from_the_end_of_the_warmup():
    warm = np.arange(100, dtype=np.int64) * 10 * MS  # 1 s of warm-up at 100/s
    scheduled = 1000 * MS + np.arange(200, dtype=np.int64) * 10 * MS  # then 2 s measured
    every = np.concatenate([warm, scheduled])
    row = _row(_open(every, every, every + 10 * MS, phase=["warmup"] * 100 + ["measure"] * 200))
    assert row["requests"] == 200 and row["released"] == 300
    assert row["makespan_s"] == pytest.approx(2.0)  # 1.0 s → 3.0 s, not 0 → 3.0 s
    assert row["throughput_rps"] == pytest.approx(100.0)
    assert row["flags"] == ""  # rows_missing compares released with every row


def test_comparisons_leave_the_warmup_out():
    scheduled, start, end = _timed()
    ok = np.ones(len(start), bool)
    base = synthetic.runs(*[_open(scheduled, start, end, ok=ok, repetition=r) for r in range(3)])
    new = synthetic.runs(*[_with_warmup("open", scheduled, start, end, ok, repetition=r)
                           for r in range(3)])
    row = compare(base, new).iloc[0]
    assert row["throughput_ratio"] == pytest.approx(1.0)
    assert row["p50_ratio"] == pytest.approx(1.0) and row["p99_ratio"] == pytest.approx(1.0)
    assert row["error_rate_new"] == 0.0  # the failing warm-up requests are not counted


# --- thresholds on the new figures ------------------------------------------------------------

def test_thresholds_read_response_and_service_times_and_the_open_figures():
    text = textwrap.dedent("""\
        name: synth
        server: {endpoints: {api: {latency: 10ms}}}
        workload: {endpoint: api}
        load:
          - {requests: 10, concurrency: 2}
          - {rate: 200/s, requests: 400}
        expect:
          - "p99_ms < 20"
          - "service_p99_ms < 20"
          - "late_starts <= 5"
          - "target_rps >= 199"
          - "efficiency >= 0"
        """)
    scheduled, start, end = _timed()
    summary = summarize(synthetic.runs(_open(scheduled, start, end)))
    checks = evaluate(summary, {"synth": parse_scenario(text)})
    checks = checks[checks["backend"] == "asyncio"]  # the cell's rows (no "skipped" row)
    status = dict(zip(checks["threshold"], checks["status"], strict=True))
    assert status == {"p99_ms < 20": FAILED,  # the 40 ms late starts count
                      "service_p99_ms < 20": PASSED,
                      "late_starts <= 5": FAILED,
                      "target_rps >= 199": PASSED,
                      "efficiency >= 0": NOT_APPLICABLE}  # the bound is the closed model's


# --- a small open run on every backend ------------------------------------------------------

RUN = """\
name: small_open
workload: {type: fake, duration: 5ms}
load:
  - {requests: 20, concurrency: 2, warmup: 5}
  - {rate: 100/s, duration: 1s, warmup: 10, max_in_flight: 20}
  - {rate: 100/s, duration: 1s, warmup: 10, max_in_flight: 21, workers: 2}  # through a queue
backends: [threads, processes, asyncio, uvloop]
seed: 3
"""


@pytest.fixture(scope="module")
def small_open_run(tmp_path_factory):
    scenario = parse_scenario(RUN)
    out = tmp_path_factory.mktemp("open") / "run"
    result = run_scenarios([LoadedScenario("small_open.yaml", RUN, scenario)], out=out)
    assert not result.failures and not result.interrupted
    return scenario, load_runs([out])


def test_a_small_open_run_keeps_its_schedule_on_every_backend(small_open_run):
    scenario, runs = small_open_run
    requests, cells = runs.requests, runs.cells
    assert sorted(cells["backend"].unique()) == sorted(BACKENDS)
    assert (requests["start_ns"] >= requests["scheduled_ns"]).all()  # never early
    for cell in cells.itertuples(index=False):
        rows = requests[(requests["backend"] == cell.backend)
                        & (requests["model"] == cell.model)
                        & (requests["concurrency"] == cell.concurrency)]
        assert cell.released == len(rows) == cell.requests
        phases = rows["phase"].value_counts().to_dict()
        key = next(k for k in _keys(scenario) if (k.backend, k.model, k.concurrency) == (
            cell.backend, cell.model, cell.concurrency))
        load = scenario.load_for(key)
        assert phases.get("warmup", 0) == load.warmup.requests
        if cell.model == "open":
            schedule = schedule_for(load, scenario.arrival_seed, key).take()
            assert phases["measure"] == 100
            assert np.array_equal(np.sort(rows["scheduled_ns"].to_numpy()), schedule.at_ns)
            warm = rows[rows["phase"] == "warmup"]["scheduled_ns"].to_numpy()
            assert np.array_equal(np.sort(warm), schedule.at_ns[schedule.warmup])
            # Kept, not only planned: each request starts at its time. Beside two CPU hogs the
            # median lag was 0.24-1.14 ms (p99 up to 4.2 ms); 5 ms leaves room for a loaded
            # machine's stalls, which hit the tail, not the middle of 100 requests over 1 s.
            lag = (rows["start_ns"] - rows["scheduled_ns"])[rows["phase"] == "measure"]
            assert lag.median() < 5 * MS, (cell.backend, lag.describe())
            queued = load.workers is not None or cell.backend == "processes"
            assert rows["worker"].str.startswith("worker-" if queued else "slot-" if
                                                 cell.backend != "threads" else "thread-").all()
        else:
            assert phases["measure"] == 20
    summary = summarize(runs)
    assert (summary["requests"] == np.where(summary["model"] == "open", 100, 20)).all()
    assert (summary["warmup_requests"] == np.where(summary["model"] == "open", 10, 5)).all()
    open_cells = summary[summary["model"] == "open"]
    assert np.allclose(open_cells["target_rps"], 100.0)
    assert (summary["service_p50_ms"] >= 5).all()


def _keys(scenario):
    from harness.scenario.model import plan_cells

    return plan_cells(scenario)


# --- harness saturate, end to end -------------------------------------------------------------

TINY = """\
name: tiny
workload: {type: fake, duration: 2ms}
load: {rate: 20/s, duration: 1s, max_sched_lag: 1s}
backends: [asyncio, threads]
"""



def test_saturate_end_to_end_writes_each_probe_as_a_run_and_exits_by_its_finding(
        cli, write_scenario, tmp_path):
    path = write_scenario(TINY)
    out = tmp_path / "knee"
    found = cli("saturate", path, "--slo", "p99 < 1s", "-b", "asyncio", "--probe-duration", "1s",
                "--max-rate", "40", "--final-probes", "1", "--out", out, "--format", "json")
    assert found.returncode == 0, found.stderr
    (row,) = json.loads(found.stdout)["results"]
    assert json.loads(found.stdout)["results_dir"] == str(out)  # its folder inside the JSON
    assert (row["backend"], row["client"], row["max_rate_per_s"], row["status"]) == (
        "asyncio", "standard", 40.0, "ceiling")  # 20/s, 40/s = the ceiling, 40/s again
    assert 2 <= row["p99_ms"] < 1000
    assert "asyncio standard start" in found.stderr and "pass" in found.stderr
    probes = sorted(out.glob("probe-*"))
    assert [p.name for p in probes] == ["probe-001", "probe-002", "probe-003"]
    summary = summarize(load_runs([out]))  # ordinary runs, one open cell each
    assert summary["rate_per_s"].tolist() == [20.0, 40.0, 40.0]
    assert (summary["model"] == "open").all() and (summary["backend"] == "asyncio").all()
    search = json.loads((out / "saturate.json").read_text())
    assert [p["run"] for p in search["probes"]] == ["probe-001", "probe-002", "probe-003"]
    assert [p["phase"] for p in search["probes"]] == ["start", "double", "repeat"]

    again = cli("saturate", path, "--slo", "p99 < 1s", "--out", out)
    assert again.returncode == 2 and "not empty" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1

    fails = cli("saturate", path, "--slo", "p99 < 1ms", "-b", "asyncio", "--probe-duration",
                "1s", "--final-probes", "1", "--out", out, "--force")  # the fake alone takes 2 ms
    assert fails.returncode == 1, fails.stderr
    assert "fails at the start rate" in fails.stdout and "p99 < 1ms failed" in fails.stdout
    assert f"results: {out}" in fails.stdout  # on stdout, as `run` says it
    # tried twice (a failed start is tried again); --force removed the earlier probe-003
    assert sorted(p.name for p in out.glob("probe-*")) == ["probe-001", "probe-002"]


@pytest.mark.parametrize(("args", "message"), [
    (["--slo", "fast"], "error: --slo: must look like 'p99 < 50ms' or 'p99_ms < 50'"),
    (["--slo", "p99 < 50"], "error: --slo: needs a unit"),
    (["--slo", "p99 < 1s", "--probe-duration", "soon"], "error: --probe-duration: "),
    (["--slo", "p99 < 1s", "--start-rate", "0"], "error: --start-rate: must be > 0"),
    (["--slo", "p99 < 1s", "--start-rate", "fast"], "error: --start-rate: "),
    (["--slo", "p99 < 1s", "--precision", "2"], "error: --precision: "),
    (["--slo", "p99 < 1s", "-b", "uvloop"], "error: --backend: uvloop is not one of"),
])
def test_saturate_refuses_bad_input_in_one_line_and_runs_nothing(cli, write_scenario, tmp_path,
                                                                  args, message):
    path = write_scenario(TINY)
    result = cli("saturate", path, *args, "--out", tmp_path / "never")
    assert result.returncode == 2
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "never").exists()


def test_saturate_refuses_a_bad_scenario_with_its_file_and_field(cli, write_scenario, tmp_path):
    path = write_scenario(TINY.replace("rate: 20/s", "rate: -1/s"))
    result = cli("saturate", path, "--slo", "p99 < 1s", "--out", tmp_path / "never")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path}: load.rate")
