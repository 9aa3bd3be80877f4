"""One definition per figure derived from rows, used by the runner (for cells.parquet) and by
the analysis layer alike. NumPy only: no reporting stack."""

from __future__ import annotations

import numpy as np

PERCENTILE_METHOD = "linear"  # numpy's default (type 7); documented in the README


def percentile(values, q: float) -> float:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan")
    return float(np.percentile(values, q, method=PERCENTILE_METHOD))


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


def throughput_rps(ok_requests: int, makespan_ns: int) -> float:
    """The one definition of throughput: ok requests ÷ makespan (a request that failed is not
    work done, so a build that fails fast does not gain throughput by it); NaN for an empty
    cell."""
    return ok_requests / (makespan_ns / 1e9) if makespan_ns and makespan_ns > 0 else float("nan")


def speedup(throughput: float, base_throughput: float | None) -> float | None:
    if base_throughput is None or not base_throughput or np.isnan(throughput):
        return None
    return throughput / base_throughput
