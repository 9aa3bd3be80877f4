"""bench/targets.py: each target on synthetic summaries built to meet it and to miss it."""

import pandas as pd
import pytest

from bench import targets
from harness.analysis.summary import summarize
from tests import synthetic


def verdicts(summary: pd.DataFrame) -> dict:
    return {name: (measured, met) for name, measured, met in targets.evaluate(summary)}


THREADS_CPU = "gil_cpu: threads speedup (normalised) at 2 ≤ 1.2"
PROCESSES_CPU = "gil_cpu: processes speedup (normalised) at 2 ≥ 1.6"


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


def _frame(**columns) -> pd.DataFrame:
    base = {"run_id": "run", "strategy": "inline", "variant": "default", "repetition": 0,
            "throughput_rps": 1.0, "p99_ms": 1.0, "speedup": 1.0}
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
                 efficiency=[0.98, 0.85], bound_s=15.0, makespan_s=[14.9, 17.6])
    found = verdicts(pd.concat([io, inference, race, lab], ignore_index=True))
    assert found["gil_io: asyncio at 10 ≥ 0.8 × ideal"] == ("0.950 × ideal", True)
    assert found["gil_io: threads at 10 ≥ 0.8 × ideal"] == ("0.750 × ideal", False)
    assert found["inference: asyncio inline lag p99 ≥ CPU step (20.0 ms)"] == ("30.0 ms", True)
    assert found["inference: asyncio thread_pool lag p99 < 20 ms and ≤ ¼ inline"] == (
        "5.0 ms", True)
    assert found["inference: asyncio process_pool lag p99 < 20 ms and ≤ ¼ inline"] == (
        "9.0 ms", False)  # above 30 ÷ 4
    assert found["race: asyncio no-lock loses updates (min over reps)"] == ("0", False)
    assert found["race: asyncio lock loses none (max over reps)"] == ("0", True)
    assert found["lab: asyncio efficiency ≥ 0.9 (bound 15.00 s)"] == ("0.980", True)
    assert found["lab: threads efficiency ≥ 0.9 (bound 15.00 s)"] == ("0.850", False)
    assert found["lab: asyncio under 15 s"] == ("14.90 s", True)
    assert found["lab: threads under 15 s"] == ("17.60 s", False)
    assert found[THREADS_CPU] == ("not run", None)  # no gil_cpu cells at all


def test_a_speedup_without_its_base_is_no_data_not_a_verdict():
    summary = _gil_cpu(lambda rep: (25, 12.5), lambda rep: (20, 20.0))
    summary = summary[~((summary.concurrency == 1) & (summary.backend == "threads"))]
    from harness.analysis.summary import cell_speedups

    summary = summary.assign(speedup=cell_speedups(summary).to_numpy())
    assert verdicts(summary)[THREADS_CPU] == ("no data", None)


def _stall_cells(stall_s: float, backend: str = "asyncio"):
    """open_stall by hand: 200/s open and 2 closed slots for 10 s against 10 ms requests; the
    server holds every response from 5 s for `stall_s`."""
    import numpy as np

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
    cells = _stall_cells(0.5)
    runs = synthetic.runs(*cells)
    found = {name: (value, met) for name, value, met in
             targets.evaluate(summarize(runs), runs.requests)}
    assert found["open_stall: asyncio open response-time p99 ≥ 350 ms"] == ("410.0 ms", True)
    assert found["open_stall: asyncio open requests over 100 ms: about a hundred"] == ("82", True)
    assert found["open_stall: asyncio closed requests over 100 ms: a handful (≤ 10)"] == (
        "2", True)
    assert found["open_stall: asyncio service-time p50 near 10 ms in both models (≤ 12 ms)"][1]
    calm = synthetic.runs(*_stall_cells(0.05))
    found = {name: (value, met) for name, value, met in
             targets.evaluate(summarize(calm), calm.requests)}
    assert found["open_stall: asyncio open response-time p99 ≥ 350 ms"][1] is False
    assert found["open_stall: asyncio open requests over 100 ms: about a hundred"] == ("0", False)
