"""One definition per figure derived from rows: the cells row (harness.store.writer) and the
analysis (harness.analysis, which computes every figure shown) use these and no other. NumPy
only: no reporting stack."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NS_PER_S = 1_000_000_000
LATE_NS = 1_000_000  # a request that starts more than 1 ms after its intended time is late
PERCENTILE_METHOD = "linear"  # numpy's default (type 7); documented in the README


def percentile(values, q):
    """The one percentile: `q` in 0…100, a number (→ float) or a sequence (→ array); NaN for
    no values. Every percentile and median the harness shows goes through here."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan") if np.ndim(q) == 0 else np.full(np.shape(q), np.nan)
    result = np.percentile(values, q, method=PERCENTILE_METHOD)
    return float(result) if np.ndim(q) == 0 else result


def median(values) -> float:
    return percentile(values, 50)


def response_ns(scheduled_ns, end_ns) -> np.ndarray:
    """Response time, what a user feels: from the request's scheduled start to its end. Open
    model: from its intended start, so time spent waiting behind a slow server or a lagging
    generator counts; closed model: from when it obtained its slot. Every latency percentile
    shown (p50_ms, p99_ms, …) is of this."""
    return np.asarray(end_ns, dtype=np.int64) - np.asarray(scheduled_ns, dtype=np.int64)


def service_ns(start_ns, end_ns) -> np.ndarray:
    """Service time: from the request's actual start (on the wire) to its end — what the
    server and the client's own path took, without any wait to start."""
    return np.asarray(end_ns, dtype=np.int64) - np.asarray(start_ns, dtype=np.int64)


def sweep_peak(start_ns, end_ns) -> int:
    """Most intervals [start, end) overlapping at any instant. At equal timestamps an end is
    counted before a start (an interval that ends as another starts does not overlap it)."""
    start = np.asarray(start_ns, dtype=np.int64)
    end = np.asarray(end_ns, dtype=np.int64)
    if start.size == 0:
        return 0
    times = np.concatenate([start, end])
    deltas = np.concatenate([np.ones_like(start), -np.ones_like(end)])
    order = np.lexsort((deltas, times))  # by time, then -1 before +1
    return int(np.cumsum(deltas[order]).max())


def in_flight_at(start_ns, end_ns, t_ns) -> np.ndarray:
    """How many intervals [start, end) hold each instant of `t_ns` (same convention as
    sweep_peak)."""
    start = np.sort(np.asarray(start_ns, dtype=np.int64))
    end = np.sort(np.asarray(end_ns, dtype=np.int64))
    t = np.asarray(t_ns, dtype=np.int64)
    return np.searchsorted(start, t, "right") - np.searchsorted(end, t, "right")


def throughput_per_s(ok_requests: int, makespan_ns: int) -> float:
    """The one definition of throughput: ok requests ÷ makespan (a request that failed is not
    work done, so a build that fails fast does not gain throughput by it); NaN for an empty
    cell."""
    return ok_requests / (makespan_ns / 1e9) if makespan_ns and makespan_ns > 0 else float("nan")


def normalised_rate(throughput: float, units_per_request, kernel_ns_per_unit) -> float:
    """A CPU cell's rate in busy cores: units done per second × the cell's own kernel time
    per unit (measured before its clock started) ÷ 1e9. A process that does nothing but the
    kernel counts 1, however fast it happens to run it; NaN without a kernel measurement."""
    if units_per_request is None or kernel_ns_per_unit is None:
        return float("nan")
    return float(throughput) * float(units_per_request) * float(kernel_ns_per_unit) / 1e9


def speedup(rate: float, base_rate: float) -> float:
    """A cell's rate ÷ its base's (see analysis.cell_speedups for which rate and which base);
    NaN when either is missing or the base is 0."""
    if rate is None or base_rate is None or np.isnan(rate) or np.isnan(base_rate) \
            or base_rate == 0:
        return float("nan")
    return float(rate) / float(base_rate)


# What happened against an open model's schedule.


def late(start_ns, scheduled_ns, tolerance_ns: int = LATE_NS) -> np.ndarray:
    """Per request: started more than `tolerance_ns` after its intended time."""
    lag = np.asarray(start_ns, dtype=np.int64) - np.asarray(scheduled_ns, dtype=np.int64)
    return lag > tolerance_ns


@dataclass(frozen=True)
class LateStarts:
    requests: int  # measured requests counted (warm-up left out)
    late: int  # of which started more than the tolerance after their intended time
    lag_p99_ns: float  # p99 of max(0, start − intended) over the measured requests
    late_p99_ns: float  # p99 lateness of the late ones (NaN when none was late)

    def lagging(self, max_sched_lag_ns: int) -> bool:
        """The generator did not keep its schedule: the lag's p99 exceeds the bound."""
        return bool(self.lag_p99_ns > max_sched_lag_ns)


def late_starts(start_ns, scheduled_ns, warmup=None, tolerance_ns: int = LATE_NS) -> LateStarts:
    """Late starts and scheduling lag over the measured requests (rows with `warmup` True are
    left out). Percentiles: harness.core.stats.percentile (linear, like every figure)."""
    start = np.asarray(start_ns, dtype=np.int64)
    scheduled = np.asarray(scheduled_ns, dtype=np.int64)
    if warmup is not None:
        keep = ~np.asarray(warmup, dtype=bool)
        start, scheduled = start[keep], scheduled[keep]
    lag = np.maximum(start - scheduled, 0)
    is_late = lag > tolerance_ns
    return LateStarts(int(len(lag)), int(is_late.sum()), percentile(lag, 99),
                      percentile(lag[is_late], 99))


def achieved_per_s(times_ns, warmup=None) -> float:
    """Arrivals per second over the measured requests: (n − 1) ÷ (last − first). Over the
    intended times it is the target rate, over the actual starts the achieved one."""
    times = np.asarray(times_ns, dtype=np.int64)
    if warmup is not None:
        times = times[~np.asarray(warmup, dtype=bool)]
    if len(times) < 2:
        return math.nan
    span = int(times.max() - times.min())
    return (len(times) - 1) / (span / NS_PER_S) if span > 0 else math.nan


def inter_arrival_cv(times_ns) -> float:
    """Coefficient of variation (σ ÷ mean) of the gaps between consecutive times, in time
    order: 1 for a Poisson process, 0 for even spacing; NaN below 3 times."""
    times = np.sort(np.asarray(times_ns, dtype=np.int64))
    if len(times) < 3:
        return math.nan
    gaps = np.diff(times).astype(np.float64)
    mean = gaps.mean()
    return float(gaps.std() / mean) if mean > 0 else math.nan
