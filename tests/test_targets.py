"""bench/targets.py: each target on synthetic summaries built to meet it and to miss it, the
exit status it gives ("not run" is not judged, "no data" fails), the lab's bound; the bound of
the analysis (the drawn delay); bench/evidence.py's verdicts, statuses and summary.md; and the
`make bench` recipe's worst-status logic with its steps stubbed."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import evidence, targets
from bench.evidence import Verdict
from harness.analysis.summary import summarize
from tests import synthetic

ROOT = Path(__file__).resolve().parent.parent


def verdicts(summary: pd.DataFrame, requests=None, expected=None) -> dict:
    return {v.name: (v.measured, v.met) for v in targets.evaluate(summary, requests, expected)}


THREADS_CPU = "gil_cpu: threads speedup (normalised) at 2"
PROCESSES_CPU = "gil_cpu: processes speedup (normalised) at 2"


def _gil_cpu(threads_at_2, processes_at_2):
    """gil_cpu over 3 repetitions: at 1 every cell runs 20 ms requests with a 20 ns/unit
    kernel (one busy core); at 2 `threads_at_2(rep)` / `processes_at_2(rep)` give (latency
    per request on each of the 2 slots, kernel ns per unit)."""
    cells = []
    for rep in range(3):
        for backend, at_2 in (("threads", threads_at_2), ("processes", processes_at_2)):
            cells.append(synthetic.cell(backend, 1, rep, latency_ms=20, server=False,
                                        kernel=20.0, scenario="gil_cpu", duration_s=1))
            latency, kernel = at_2(rep)
            cells.append(synthetic.cell(backend, 2, rep, latency_ms=latency, server=False,
                                        kernel=kernel, scenario="gil_cpu", duration_s=1))
    return summarize(synthetic.runs(*cells))


def test_gil_cpu_targets_are_met_on_normalised_speedups_whatever_the_processes_speed():
    """threads at 2 happen to run in processes with a kernel 1.6 × faster: 1.6 × the
    throughput, still one busy core — the GIL target is met, not failed by luck; processes
    keep two cores busy."""
    summary = _gil_cpu(lambda rep: (25, 12.5), lambda rep: (20 + rep, 20.0 + rep))
    threads = summary[(summary.backend == "threads")].set_index(["concurrency", "repetition"])
    assert threads.loc[(2, 0), "throughput_rps"] / threads.loc[(1, 0), "throughput_rps"] == (
        pytest.approx(1.6))
    found = verdicts(summary)
    assert found[THREADS_CPU] == ("1.00", True)
    assert found[PROCESSES_CPU] == ("2.00", True)


def test_gil_cpu_targets_fail_when_the_cores_are_not_there():
    """threads at 2 keep 1.5 cores busy (the GIL released); processes at 2 only one."""
    summary = _gil_cpu(lambda rep: (20 / 0.75, 20.0), lambda rep: (40, 20.0))
    found = verdicts(summary)
    assert found[THREADS_CPU] == ("1.50", False)
    assert found[PROCESSES_CPU] == ("1.00", False)


def test_free_threading_targets_ask_threads_to_scale_only_without_the_gil():
    """Threads at 2 keep (python → busy cores): 3.11 one, 3.13t 1.8, 3.13t-gil 1.6 (a miss:
    the GIL is on there)."""
    cells = []
    for python, cores in (("3.11", 1.0), ("3.13t", 1.8), ("3.13t-gil", 1.6)):
        for rep in range(3):
            cells.append(synthetic.cell("threads", 1, rep, latency_ms=20, server=False,
                                        kernel=20.0, scenario="free_threading_cpu",
                                        duration_s=1, python=python))
            cells.append(synthetic.cell("threads", 2, rep, latency_ms=40 / cores,
                                        server=False, kernel=20.0,
                                        scenario="free_threading_cpu", duration_s=1,
                                        python=python))
    found = verdicts(summarize(synthetic.runs(*cells)))
    name = "free_threading_cpu: threads speedup (normalised) at 2 on {}"
    assert found[name.format("3.11")] == ("1.00", True)
    assert found[name.format("3.13t")] == ("1.80", True)
    assert found[name.format("3.13t-gil")] == ("1.60", False)


def _frame(**columns) -> pd.DataFrame:
    base = {"run_id": "run", "strategy": "inline", "variant": "default", "repetition": 0,
            "model": "closed", "throughput_rps": 1.0, "p99_ms": 1.0, "speedup": 1.0}
    rows = max(len(v) for v in columns.values() if isinstance(v, list))
    return pd.DataFrame({**base, **columns}, index=range(rows))


def test_io_inference_race_and_lab_targets_met_and_missed():
    io = _frame(scenario="gil_io", backend=["asyncio", "threads"], concurrency=10,
                requests=100, bound_s=0.5, throughput_rps=[190.0, 150.0])  # ideal 200 req/s
    inference = _frame(scenario="inference", backend="asyncio",
                       strategy=["inline", "thread_pool", "process_pool"],
                       loop_lag_p99_ms=[30.0, 5.0, 9.0], cpu_p50_ms=20.0, concurrency=8)
    race = _frame(scenario="race", backend="asyncio", concurrency=10,
                  variant=["no-lock", "lock", "no-lock", "lock"], repetition=[0, 0, 1, 1],
                  lost_updates=[12.0, 0.0, 0.0, 0.0])
    lab = _frame(scenario="lab", backend=["asyncio", "threads"], concurrency=10,
                 efficiency=[0.98, 0.85], bound_s=14.0, makespan_s=[14.3, 16.5])
    all_of_them = targets.evaluate(pd.concat([io, inference, race, lab], ignore_index=True))
    found = {v.name: (v.measured, v.met) for v in all_of_them}
    assert found["gil_io: asyncio throughput at 10 ÷ ideal"] == ("0.950", True)
    assert found["gil_io: threads throughput at 10 ÷ ideal"] == ("0.750", False)
    assert found["inference: asyncio inline loop-lag p99"] == ("30.0 ms", True)
    assert found["inference: asyncio thread_pool loop-lag p99"] == ("5.0 ms", True)
    assert found["inference: asyncio process_pool loop-lag p99"] == ("9.0 ms", False)  # > 30/4
    assert found["race: asyncio no-lock lost updates (min over reps)"] == ("0", False)
    assert found["race: asyncio lock lost updates (max over reps)"] == ("0", True)
    assert found["lab: asyncio efficiency"] == ("0.980", True)
    assert found["lab: threads efficiency"] == ("0.850", False)
    # a bound under 15 s: the seed's claim is attainable, and judged as written
    assert found["lab: asyncio under 15 s"] == ("14.30 s", True)
    assert found["lab: threads under 15 s"] == ("16.50 s", False)
    assert found[THREADS_CPU] == ("not run", None)  # no gil_cpu cells at all
    shown = {v.name: v.target for v in all_of_them}
    assert shown["gil_io: asyncio throughput at 10 ÷ ideal"] == "≥ 0.8 (ideal 200.0 req/s)"
    assert shown["inference: asyncio process_pool loop-lag p99"] == (
        "< 20 ms and ≤ ¼ inline (7.5 ms)")
    assert shown["lab: asyncio efficiency"] == "≥ 0.97 (bound 14.00 s)"


def test_a_speedup_without_its_base_is_no_data_and_fails():
    summary = _gil_cpu(lambda rep: (25, 12.5), lambda rep: (20, 20.0))
    summary = summary[~((summary.concurrency == 1) & (summary.backend == "threads"))]
    from harness.analysis.summary import cell_speedups

    summary = summary.assign(speedup=cell_speedups(summary).to_numpy())
    found = targets.evaluate(summary)
    assert verdicts(summary)[THREADS_CPU] == ("no data", False)
    assert evidence.status(found) == evidence.MISSED


def _lab(latency_ms: float, gap_ms: float, backends=("threads", "asyncio")) -> pd.DataFrame:
    """The lab by hand: 10 slots, `latency_ms` requests (the server's delay alone) with
    `gap_ms` between them, 50 per slot: bound 500 × latency ÷ 10."""
    period_s = (latency_ms + gap_ms) / 1000
    cells = [synthetic.cell(b, 10, latency_ms=latency_ms, gap_ms=gap_ms, scenario="lab",
                            duration_s=50 * period_s + period_s / 2) for b in backends]
    return summarize(synthetic.runs(*cells))


def test_the_lab_gates_on_efficiency_and_shows_under_15_s_as_not_attainable_with_its_bound():
    """Seed 1 draws a mean of 302.4 ms: bound 15.12 s. The claim stays, with its bound, not
    judged; efficiency ≥ 0.97 of the bound gates."""
    summary = _lab(302.4, 5.0)
    assert summary["bound_s"].tolist() == pytest.approx([15.12, 15.12])
    found = {v.name: v for v in targets.evaluate(summary)}
    under = found["lab: threads under 15 s"]
    assert (under.met, under.why) == (None, "not attainable with this seed")
    assert under.target == "< 15 s (bound 15.12 s)"
    assert found["lab: threads efficiency"].met is True  # 302.4 ÷ 307.4 = 0.984
    assert evidence.status(list(found.values())) == evidence.MET
    slow = {v.name: v for v in targets.evaluate(_lab(302.4, 15.0))}  # 0.953
    assert slow["lab: threads efficiency"].met is False
    assert slow["lab: threads under 15 s"].met is None


def test_not_run_is_not_judged_and_no_data_for_a_scenario_to_be_run_fails():
    race = [synthetic.cell(b, 10, rep, scenario="race", variant=v, duration_s=0.5,
                           lost_updates=(5 if v == "no-lock" and b != "threads" else 0))
            for b in ("threads", "asyncio") for v in ("no-lock", "lock") for rep in (0, 1)]
    runs = synthetic.runs(*race)
    summary = summarize(runs)
    only_race = {"race": ("threads", "asyncio")}
    found = targets.evaluate(summary, runs.requests, only_race)
    assert evidence.status(found) == evidence.MET
    not_run = {v.name: v.measured for v in found if v.met is None}
    assert not_run == {"gil_cpu: threads speedup (normalised) at 2": "not run",
                       "gil_cpu: processes speedup (normalised) at 2": "not run",
                       "gil_release: threads speedup at 2": "not run",
                       "gil_io: each backend throughput at 10 ÷ ideal": "not run",
                       "inference: each backend inline loop-lag p99": "not run",
                       "inference: each backend thread_pool loop-lag p99": "not run",
                       "inference: each backend process_pool loop-lag p99": "not run",
                       "open_stall: each backend open response-time p99": "not run",
                       "open_stall: each backend open requests over 100 ms": "not run",
                       "open_stall: each backend closed requests over 100 ms": "not run",
                       "open_stall: each backend service-time p50, the larger of both models":
                           "not run",
                       "crowd: each backend, each generator count: errors (max over reps)":
                           "not run",
                       "crowd: each backend, each generator count: server peak in flight "
                       "(min over reps)": "not run",
                       "crowd: each backend, each generator count: loop-lag p99": "not run",
                       "lab: each backend efficiency": "not run",
                       "lab: each backend under 15 s": "not run"}
    # uvloop was to run race too, and the lab: their targets have no data, and fail
    found = targets.evaluate(summary, runs.requests,
                             {**only_race, "race": ("threads", "asyncio", "uvloop"),
                              "lab": ("asyncio",)})
    failed = {v.name: v.measured for v in found if v.met is False}
    assert failed == {"race: uvloop no-lock lost updates (min over reps)": "no data",
                      "race: uvloop lock lost updates (max over reps)": "no data",
                      "lab: asyncio efficiency": "no data", "lab: asyncio under 15 s": "no data"}
    assert evidence.status(found) == evidence.MISSED


def _stall_cells(stall_s: float, backend: str = "asyncio"):
    """open_stall by hand: 200/s open and 2 closed slots for 10 s against 10 ms requests; the
    server holds every response from 5 s for `stall_s`."""
    ms, s = 1_000_000, 1_000_000_000
    begin, end_of_stall = 5 * s, int((5 + stall_s) * s)

    def served(start):
        held = (start >= begin) & (start < end_of_stall)
        return np.where(held, end_of_stall, start) + 10 * ms

    scheduled = np.arange(2000, dtype=np.int64) * 5 * ms
    open_cell = synthetic.from_times(scheduled, scheduled, served(scheduled), backend=backend,
                                     model="open", rate_per_s=200.0, concurrency=200,
                                     scenario="open_stall")
    starts = []
    for _ in range(2):
        t = 0
        while t < 10 * s:
            starts.append(t)
            t = int(served(np.array([t]))[0])
    starts = np.sort(np.array(starts, dtype=np.int64))
    closed_cell = synthetic.from_times(starts, starts, served(starts), backend=backend,
                                       scenario="open_stall")
    return open_cell, closed_cell


def test_open_stall_targets_see_the_stall_in_the_open_models_response_time():
    runs = synthetic.runs(*_stall_cells(0.5))
    found = verdicts(summarize(runs), runs.requests)
    assert found["open_stall: asyncio open response-time p99"] == ("410.0 ms", True)
    assert found["open_stall: asyncio open requests over 100 ms"] == ("82", True)
    assert found["open_stall: asyncio closed requests over 100 ms"] == ("2", True)
    assert found["open_stall: asyncio service-time p50, the larger of both models"][1]
    calm = synthetic.runs(*_stall_cells(0.05))
    found = verdicts(summarize(calm), calm.requests)
    assert found["open_stall: asyncio open response-time p99"][1] is False
    assert found["open_stall: asyncio open requests over 100 ms"] == ("0", False)
    # without the rows the counts cannot be made: no data, for a scenario that ran
    found = verdicts(summarize(calm))
    assert found["open_stall: asyncio open requests over 100 ms"] == ("no data", False)


def _crowd(errors, peak, lag_ms, generators=(1, 1, 2, 2), repetition=(0, 1, 0, 1)):
    """crowd by hand: a row per cell, uvloop at 1 and 2 generators, two repetitions each."""
    return _frame(scenario="crowd", backend="uvloop", concurrency=10_000, client="lean",
                  generators=list(generators), repetition=list(repetition), errors=errors,
                  peak_in_flight_server=peak, loop_lag_p99_ms=lag_ms)


def test_crowd_targets_per_cell_met_and_missed():
    one, two = "crowd: uvloop, 1 generator: ", "crowd: uvloop, 2 generators: "
    found = verdicts(_crowd([0, 0, 0, 0], [10_000, 9_990, 9_500, 10_000],
                            [200.0, 400.0, 120.0, 130.0]))
    assert found[one + "errors (max over reps)"] == ("0", True)
    assert found[one + "server peak in flight (min over reps)"] == ("9990", True)
    assert found[one + "loop-lag p99"] == ("300.0 ms", True)  # the median of 200 and 400
    assert found[two + "server peak in flight (min over reps)"] == ("9500", True)
    assert found[two + "loop-lag p99"] == ("125.0 ms", True)
    # one repetition's error, one repetition's low peak, and a lagging loop: each misses
    lag = targets.CROWD_LAG_MS
    found = verdicts(_crowd([0, 3, 0, 0], [10_000, 10_000, 10_000, 9_499],
                            [lag - 1, lag + 1, lag, lag]))
    assert found[one + "errors (max over reps)"] == ("3", False)
    assert found[two + "errors (max over reps)"] == ("0", True)
    assert found[two + "server peak in flight (min over reps)"] == ("9499", False)
    assert found[one + "loop-lag p99"][1] is False  # the median, lag, is not under lag
    assert found[two + "loop-lag p99"][1] is False
    assert evidence.status(targets.evaluate(_crowd([0] * 4, [10_000] * 4, [lag + 1] * 4))) == (
        evidence.MISSED)


def test_crowd_without_the_servers_peak_or_a_backend_is_no_data():
    """A run before the generators axis reads as one generator; a missing server count, or a
    loop backend that was to run without cells, fails."""
    summary = _crowd([0, 0], [10_000, None], [100.0, 100.0], generators=(None, None),
                     repetition=(0, 1)).astype({"peak_in_flight_server": "float64"})
    found = verdicts(summary, expected={"crowd": ("asyncio", "uvloop")})
    assert found["crowd: uvloop, 1 generator: errors (max over reps)"] == ("0", True)
    assert found["crowd: uvloop, 1 generator: server peak in flight (min over reps)"] == (
        "no data", False)
    assert found["crowd: asyncio, 1 generator: loop-lag p99"] == ("no data", False)


# main: the whole path on synthetic runs (the Parquet reading stubbed), exit status and file

def _race_runs(lock_lost: int):
    return synthetic.runs(*[
        synthetic.cell(b, 10, rep, scenario="race", variant=v, duration_s=0.5,
                       lost_updates=(5 if v == "no-lock" else lock_lost))
        for b in ("threads", "asyncio", "uvloop") for v in ("no-lock", "lock") for rep in (0, 1)])


@pytest.mark.parametrize("lock_lost, code", [(0, 0), (1, 1)])
def test_main_exits_1_when_a_target_is_missed_and_writes_the_runs_summary(
        monkeypatch, tmp_path, capsys, lock_lost, code):
    monkeypatch.setattr(targets, "load_runs", lambda dirs: _race_runs(lock_lost))
    sitting = evidence.Sitting("make bench SCENARIOS=scenarios/race.yaml")
    sitting.save(tmp_path / "sitting.json")
    run = tmp_path / "run"
    assert targets.main([str(run), "--scenarios", str(ROOT / "scenarios" / "race.yaml"),
                         "--sitting", str(tmp_path / "sitting.json"),
                         "--run-status", "0"]) == code
    text = (run / "summary.md").read_text()
    assert "- command: `make bench SCENARIOS=scenarios/race.yaml`" in text
    assert f"started {sitting.started:%H:%M:%S} UTC" in text
    assert "- `harness run` exit status: 0" in text
    assert "| lab: each backend efficiency | not run | ≥ 0.97 | - |" in text
    lock = "| race: threads lock lost updates (max over reps) | "
    assert lock + ("0 | 0 | met |" if code == 0 else "1 | 0 | **missed** |") in text
    assert re.search(r"```\nrace  across repetitions\n.*\n```", text, re.S)  # as printed
    assert f"(exit {code})" in text
    assert "race: uvloop lock lost updates" in capsys.readouterr().out


def test_main_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert targets.main([str(tmp_path / "nowhere")]) == evidence.NO_SETUP
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nowhere" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nload: {requests: -1}\n")
    assert targets.main([str(tmp_path), "--scenarios", str(bad)]) == evidence.NO_SETUP
    assert "bad.yaml" in capsys.readouterr().err
    garbage = tmp_path / "sitting.json"
    garbage.write_text("{}")
    assert targets.main([str(tmp_path), "--sitting", str(garbage)]) == evidence.NO_SETUP
    assert "bench.evidence start" in capsys.readouterr().err


# the bound: of the delays the server drew

def _late_server(late_ms: float, drawn_recorded: bool = True) -> pd.Series:
    """A closed cell of 20 ms server calls on 4 slots whose server applies each delay
    `late_ms` late: each request lasts 20 + late_ms ms, the applied delay with it."""
    row, requests, timeline = synthetic.cell("asyncio", 4, latency_ms=20 + late_ms,
                                             duration_s=2)
    requests = requests.assign(server_delay_target_ns=(
        requests["server_delay_ns"] - late_ms * 1e6 if drawn_recorded else np.nan))
    return summarize(synthetic.runs((row, requests, timeline))).iloc[0]


def test_the_bound_is_of_the_drawn_delay_so_a_late_server_does_not_raise_it():
    on_time, late = _late_server(0), _late_server(5)
    assert late["requests"] == on_time["requests"] * 20 // 25  # 2 s of 25 ms, not 20 ms
    assert late["bound_s"] == pytest.approx(late["requests"] * 0.020 / 4)
    assert on_time["efficiency"] == pytest.approx(1.0)
    assert late["efficiency"] == pytest.approx(0.8)  # the server's lateness shows


def test_runs_without_the_drawn_delay_fall_back_to_the_applied_one():
    old = _late_server(5, drawn_recorded=False)  # schema < 4: the column read as all null
    assert old["bound_s"] == pytest.approx(old["requests"] * 0.025 / 4)
    assert old["efficiency"] == pytest.approx(1.0)


# bench/evidence.py

def test_status_and_worst():
    judged = [Verdict("a", "1", met=True), Verdict("b", "not run"), Verdict("c", "2", met=True)]
    assert evidence.status(judged) == 0
    assert evidence.status([*judged, Verdict("d", "no data", met=False)]) == 1
    assert evidence.status([]) == 0
    assert evidence.worst() == 0
    assert evidence.worst(0, 1, 0) == 1
    assert evidence.worst(1, 2) == 2
    assert evidence.worst(2, 3, 1) == 3
    assert evidence.worst(3, 130, 0) == 130
    assert evidence.worst(0, 4) == 3  # an unknown failure counts as a failed run
    assert evidence.worst(130, 7) == 130


def test_evidence_cli_worst_and_start(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "bench.evidence", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    assert cli("worst", "0", "1", "3", "2").returncode == 3
    assert cli("worst", "0", "0").returncode == 0
    assert cli("worst", "x").returncode == 2
    assert cli("start", str(tmp_path / "s.json"), "make bench").returncode == 0
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["command"] == "make bench"
    assert evidence.Sitting.load(tmp_path / "s.json").command == "make bench"


def test_write_summary_names_machine_commit_date_and_each_verdict(tmp_path):
    sitting = evidence.Sitting("python -m bench.targets RUN")
    path = sitting.write_summary(tmp_path, "targets", [
        Verdict("x: a", "1.00", "≤ 1.2", True), Verdict("x: b", "16 s", "< 15 s", None,
                                                        "not attainable with this seed"),
        Verdict("x: c", "no data", "≥ 1.5", False)], ["a note"], "```\ntables\n```")
    text = path.read_text()
    # as tests/test_docs.py requires of every measurement
    assert re.search(r"^- machine: \S", text, re.M)
    assert re.search(r"^- commit: .*\b[0-9a-f]{7,40}\b", text, re.M)
    assert re.search(r"^- date: .*\b20\d\d-\d\d-\d\d\b", text, re.M)
    assert re.search(r"^- CPU pressure .*before .*; after ", text, re.M)
    assert "- verdict: missed: x: c (exit 1)" in text
    assert "| x: b | 16 s | < 15 s | - (not attainable with this seed) |" in text
    assert "| x: c | no data | ≥ 1.5 | **missed** |" in text
    assert "- a note" in text and text.rstrip().endswith("tables\n```")


# the Makefile: `make bench`'s three steps, stubbed, and the status they give

STUB_HARNESS = """#!/bin/sh
echo "harness $1" >> "$STEPS"
case "$1" in run) exit "$RUN";; report) exit "$REPORT";; esac
"""
STUB_PYTHON = """#!/bin/sh
echo "python $2" >> "$STEPS"
if [ "$2" = bench.targets ]; then exit "$TARGETS"; fi
exec {python} "$@"
"""


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("run, targets_code, report, recipe", [
    (0, 0, 0, 0), (0, 1, 0, 1), (3, 1, 0, 3), (0, 1, 2, 2), (2, 2, 2, 2), (130, 0, 0, 130)])
def test_make_bench_runs_every_step_and_exits_with_the_worst(tmp_path, run, targets_code,
                                                             report, recipe):
    """The sitting's status is the worst of the three (make then exits 2 with `Error N`, as GNU
    make does for any failed recipe; `python -m bench.sitting` gives it exactly); after an
    interrupted run it stops at once."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name, text in (("harness", STUB_HARNESS),
                       ("python", STUB_PYTHON.format(python=sys.executable))):
        (venv / "bin" / name).write_text(text)
        (venv / "bin" / name).chmod(0o755)
    (venv / ".installed").touch()  # newer than pyproject.toml: no install
    steps = tmp_path / "steps"
    env = {**os.environ, "STEPS": str(steps), "RUN": str(run), "TARGETS": str(targets_code),
           "REPORT": str(report)}
    done = subprocess.run(["make", "-s", "bench", f"VENV={venv}", "SCENARIOS=scenarios/race.yaml"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    expected = ["python bench.sitting", "harness run"]
    if run != 130:
        expected += ["python bench.targets", "harness report"]
    assert steps.read_text().split("\n")[:-1] == expected
    if recipe == 0:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == 2 and f"] Error {recipe}" in done.stderr, done.stderr
    # the sitting itself, as CI runs it, gives the exact status
    steps.unlink()
    direct = subprocess.run([sys.executable, "-m", "bench.sitting", "--bin", str(venv / "bin"),
                             "--root", str(tmp_path / "runs"), "scenarios/race.yaml"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert direct.returncode == recipe, direct.stderr
    assert steps.read_text().split("\n")[:-1] == expected[1:]
