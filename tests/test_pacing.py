"""bench/pacing.py: a steady run judged per one-second window of its starts, not by its end
points, and its verdicts' exit status — on synthetic starts, no run."""

import numpy as np
import pandas as pd

from bench import evidence, pacing
from harness.core.stats import NS_PER_S, achieved_per_s

MS = 1_000_000
T0 = 5 * NS_PER_S  # where the measured schedule begins (after a warm-up)


def schedule(seconds: int = 10, rate: int = 1000) -> np.ndarray:
    return T0 + np.arange(seconds * rate, dtype=np.int64) * (NS_PER_S // rate)


def stalled(scheduled: np.ndarray, from_s: float, to_s: float) -> np.ndarray:
    """Every start intended in [from, to) made at `to`: a stall the run then catches up."""
    starts = scheduled.copy()
    begin, end = T0 + int(from_s * NS_PER_S), T0 + int(to_s * NS_PER_S)
    starts[(starts >= begin) & (starts < end)] = end
    return starts


def windows(starts: np.ndarray, seconds: int = 10):
    return pacing.per_window(starts, 1000, T0, T0 + seconds * NS_PER_S)


def test_an_even_run_meets_every_window():
    found = windows(schedule() + 300_000)  # every start 0.3 ms late: still 1 000 a window
    assert list(found.counts) == [1000] * 10
    assert (found.missed, found.met) == (0, True)


def test_a_stall_in_the_middle_misses_though_the_end_points_give_the_rate():
    starts = stalled(schedule(), 4.5, 5.5)
    assert achieved_per_s(starts) == 1000.0  # what the end points say: exactly the rate
    found = windows(starts)
    assert list(found.counts) == [1000] * 4 + [500, 1500] + [1000] * 4
    assert (found.missed, found.worst, found.met) == (2, 4, False)


def test_a_window_may_be_off_by_one_percent_and_no_more():
    scheduled = schedule()
    for moved, met in ((10, True), (11, False)):
        starts = scheduled.copy()
        # the first `moved` starts of second 3 made at the end of second 2
        first = np.searchsorted(starts, T0 + 3 * NS_PER_S)
        starts[first:first + moved] = T0 + 3 * NS_PER_S - 1
        found = windows(np.sort(starts))
        assert found.counts[2] == 1000 + moved and found.counts[3] == 1000 - moved
        assert found.met is met
        assert found.missed == (0 if met else 2)


def test_windows_are_half_open_and_a_partial_last_one_is_left_out():
    starts = np.array([T0, T0 + NS_PER_S - 1, T0 + NS_PER_S, T0 + 2 * NS_PER_S + 5])
    found = pacing.per_window(starts, 2, T0, T0 + 2 * NS_PER_S + 900 * MS)
    assert list(found.counts) == [2, 1]  # the start in the partial third second is not counted
    assert (found.expected, found.tolerance) == (2.0, 0.02)
    empty = pacing.per_window(starts, 2, T0, T0 + NS_PER_S - 1)
    assert len(empty.counts) == 0 and empty.worst == -1 and empty.met is False


def rows(scenario: str, backend: str, starts: np.ndarray, scheduled: np.ndarray):
    return pd.DataFrame({"scenario": scenario, "backend": backend, "start_ns": starts,
                         "scheduled_ns": scheduled})


def cell(scenario: str, backend: str, lag_ms: float) -> dict:
    return {"scenario": scenario, "backend": backend, "sched_lag_p99_ms": lag_ms,
            "late_starts": 0, "requests": 10_000, "p99_ms": 11.0, "service_p50_ms": 10.2,
            "flags": ""}


def steady(uvloop_starts, lag_ms=0.5, threads_starts=None, cells=None):
    """Verdicts of the four steady cells: uvloop's starts given, the others even."""
    scheduled = schedule()
    given = {"uvloop": uvloop_starts, "threads": threads_starts}
    frames, summary = [], []
    for scenario, backends in pacing.STEADY.items():
        for backend in backends:
            if cells is not None and backend not in cells:
                continue
            starts = given.get(backend)
            frames.append(rows(scenario, backend, scheduled if starts is None else starts,
                               scheduled))
            summary.append(cell(scenario, backend, lag_ms if backend == "uvloop" else 0.5))
    verdicts, _ = pacing.steady_verdicts(pd.DataFrame(summary), pd.concat(frames))
    return {v.name: v for v in verdicts}


def test_the_event_loops_are_judged_by_their_windows_and_lag_the_others_reported():
    even = steady(schedule() + 200_000)
    assert evidence.status(list(even.values())) == evidence.MET
    judged = {name for name, v in even.items() if v.met is not None}
    assert judged == {f"1000/s: {b} {what}" for b in pacing.JUDGED
                      for what in ("starts per window", "scheduling-lag p99")}

    stall = steady(stalled(schedule(), 4.5, 5.5))
    window = stall["1000/s: uvloop starts per window"]
    assert window.met is False and "2 of 10 windows outside" in window.measured
    assert "first→last start 1000.0/s" in window.measured
    assert evidence.status(list(stall.values())) == evidence.MISSED

    lag = steady(schedule(), lag_ms=2.0)  # the bound is < 2 ms
    assert lag["1000/s: uvloop scheduling-lag p99"].met is False
    assert lag["1000/s: uvloop starts per window"].met is True

    threads = steady(schedule(), threads_starts=stalled(schedule(), 2.5, 3.5))
    assert threads["1000/s: threads starts per window"].met is None
    assert evidence.status(list(threads.values())) == evidence.MET


def test_a_judged_cell_without_rows_is_missed():
    found = steady(schedule(), cells={"asyncio", "threads", "processes"})
    assert found["1000/s: uvloop"].met is False
    assert evidence.status(list(found.values())) == evidence.MISSED
    assert steady(schedule(), cells={"uvloop", "asyncio"})["1000/s: threads"].met is None

