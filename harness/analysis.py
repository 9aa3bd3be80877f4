"""Every figure shown to the user is computed here, from the Parquet records only, with one
percentile method — `run` and `report` call the same code."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.figures import PERCENTILE_METHOD, percentile, sweep_peak, throughput_rps
from harness.keys import CELL_KEYS
from harness.output import find_run_dirs, read_metadata, read_run

__all__ = ["PERCENTILE_METHOD", "percentile", "sweep_peak", "load_runs", "summarize"]


@dataclass
class Runs:
    """Everything of one or more runs, read from their Parquet files."""

    dirs: list[Path]
    requests: pd.DataFrame
    cells: pd.DataFrame
    timeline: pd.DataFrame
    loop_lag: pd.DataFrame
    metadata: list[dict]

    def thresholds(self) -> dict[str, list]:
        """Each scenario's `expect:` thresholds, parsed from the scenario text in the metadata."""
        from harness.scenario import parse_scenario

        found = {}
        for meta in self.metadata:
            for scenario in meta.get("scenarios", []):
                found[scenario["name"]] = parse_scenario(scenario["text"]).thresholds()
        return found


def load_runs(paths: list[Path]) -> Runs:
    """All records under the given run directories (or folders containing runs)."""
    dirs = find_run_dirs(paths)
    tables = [read_run(d) for d in dirs]

    def read(kind: str) -> pd.DataFrame:
        frames = [t[kind].to_pandas() for t in tables if t[kind].num_rows]
        if not frames:
            return tables[0][kind].to_pandas() if tables else pd.DataFrame(columns=CELL_KEYS)
        return pd.concat(frames, ignore_index=True)

    return Runs(dirs, read("requests"), read("cells"), read("timeline"), read("loop_lag"),
                [read_metadata(d) for d in dirs])


def cell_key(values) -> tuple:
    """A cell's key values as a dict key: a null key (rate_per_s of a closed cell) as None,
    since NaN never equals itself."""
    return tuple(None if isinstance(v, float) and math.isnan(v) else v for v in values)


def by_cell(frame: pd.DataFrame, keys=CELL_KEYS) -> dict[tuple, pd.DataFrame]:
    """Rows grouped by cell (null keys kept, which pandas drops by default)."""
    return {cell_key(key): rows for key, rows in frame.groupby(keys, sort=False, dropna=False)}


def _p50_ms(series) -> float:
    return percentile(series.dropna(), 50) / 1e6


LITTLE_TOLERANCE = 0.05
SATURATED = 90.0  # percent of a core


def _self_checks(cell, reqs: pd.DataFrame, timeline: pd.DataFrame, makespan_s: float
                 ) -> tuple[float, list[str]]:
    """Flags that say when the numbers may not mean what they seem to (see README)."""
    flags = []
    # Little's law: the sampled mean in flight against the rate requests leave the system
    # (ok or failed, not cancelled — everything that was in flight) × their mean latency.
    done = reqs[reqs["error"] != "cancelled"]
    residual = float("nan")
    if len(timeline) >= 10 and len(done) and makespan_s > 0:
        expected = len(done) / makespan_s * ((done["end_ns"] - done["start_ns"]).mean() / 1e9)
        sampled = timeline.loc[timeline["t_ns"] <= cell.makespan_ns, "in_flight"].mean()
        residual = abs(sampled - expected) / expected if expected else float("nan")
        if residual > LITTLE_TOLERANCE:
            flags.append("little")
    server, live = cell.peak_in_flight_server, cell.peak_in_flight_live
    if (not pd.isna(live) and cell.peak_in_flight != live) or (
            not pd.isna(server) and server > cell.peak_in_flight):
        flags.append("peaks")
    if not cell.complete:
        flags.append("incomplete")  # the cell process died: rows up to its last flush
    if not pd.isna(cell.released) and cell.released != cell.requests:
        flags.append("rows_missing")
    if not pd.isna(cell.server_exit):
        flags.append("server_died")  # the mock server exited during the cell
    if reqs["server_delay_ns"].notna().any() and len(timeline):
        cores = (os.cpu_count() or 1) if cell.backend == "processes" else 1
        if timeline["cpu_percent"].mean() > SATURATED * cores:
            flags.append("gen-cpu")  # the numbers may describe the load generator
    server_cpu = getattr(cell, "server_cpu_s", None)
    if server_cpu is not None and not pd.isna(server_cpu) and makespan_s > 0:
        if 100 * server_cpu / makespan_s > SATURATED:
            flags.append("srv-cpu")  # the numbers may describe the mock server
    return residual, flags


def summarize(runs: Runs) -> pd.DataFrame:
    """One row per cell, in the cells' order. Latencies are over ok requests; the lower bound
    of the makespan is the sum of the server's applied delays divided by the concurrency limit
    (NaN unless the request is the server call alone)."""
    requests, cells, timeline = runs.requests, runs.cells, runs.timeline
    rows = []
    groups = by_cell(requests)
    samples = by_cell(timeline) if len(timeline) else {}
    for cell in cells.itertuples(index=False):
        key = cell_key(getattr(cell, k) for k in CELL_KEYS)
        reqs = groups.get(key, requests.iloc[0:0])
        ok = reqs[reqs["ok"]]
        latency_ns = ok["end_ns"] - ok["start_ns"]
        latency_ms = latency_ns / 1e6
        # The client's own HTTP overhead: the HTTP step (the whole request when it is the only
        # step) minus the delay the server applied.
        http_ns = ok["io_ns"].where(ok["io_ns"].notna(), latency_ns)
        overhead_ms = (http_ns - ok["server_delay_ns"]).dropna() / 1e6
        makespan_s = cell.makespan_ns / 1e9
        delays = reqs["server_delay_ns"].dropna()
        # Σ delay ÷ concurrency bounds the makespan only when the server's delay is all there is.
        only_io = len(delays) and reqs["cpu_ns"].isna().all() and reqs["db_ns"].isna().all()
        bound_s = delays.sum() / cell.concurrency / 1e9 if only_io else float("nan")
        residual, flags = _self_checks(cell, reqs, samples.get(key, timeline.iloc[0:0]),
                                       makespan_s)
        rows.append({
            **dict(zip(CELL_KEYS, key, strict=True)),
            "requests": cell.requests,
            "errors": cell.errors,
            "error_rate": cell.errors / cell.requests if cell.requests else float("nan"),
            "throughput_rps": throughput_rps(len(ok), cell.makespan_ns),
            "p50_ms": percentile(latency_ms, 50),
            "p90_ms": percentile(latency_ms, 90),
            "p99_ms": percentile(latency_ms, 99),
            "p999_ms": percentile(latency_ms, 99.9),
            "max_ms": float(latency_ms.max()) if len(latency_ms) else float("nan"),
            "overhead_p50_ms": percentile(overhead_ms, 50),
            "overhead_p99_ms": percentile(overhead_ms, 99),
            "cpu_p50_ms": _p50_ms(ok["cpu_ns"]),
            "cpu_wait_p50_ms": _p50_ms(ok["cpu_wait_ns"]),
            "io_p50_ms": _p50_ms(ok["io_ns"]),
            "db_p50_ms": _p50_ms(ok["db_ns"]),
            "loop_lag_p99_ms": _nan(cell.loop_lag_p99_ns) / 1e6,
            "lost_updates": _nan(cell.lost_updates),
            "speedup": _nan(cell.speedup),
            "cpu_user_s": _nan(cell.cpu_user_s),
            "cpu_sys_s": _nan(cell.cpu_sys_s),
            "peak_in_flight": cell.peak_in_flight,
            "peak_in_flight_live": cell.peak_in_flight_live,
            "peak_in_flight_server": cell.peak_in_flight_server,
            "makespan_s": makespan_s,
            "bound_s": bound_s,
            "efficiency": bound_s / makespan_s if makespan_s > 0 else float("nan"),
            "workers": reqs["worker"].nunique(),
            "interrupted": bool(cell.interrupted),
            "complete": bool(cell.complete),
            "released": cell.released,
            "slots_lost": cell.slots_lost,
            "server_exit": cell.server_exit,
            "little_residual": residual,
            "flags": " ".join(flags),
        })
    return pd.DataFrame(rows)


def _nan(value) -> float:
    return float("nan") if value is None or pd.isna(value) else float(value)


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and its bootstrap interval (scipy, percentile method); NaN bounds below 2 values."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if values.size < 2 or np.all(values == values[0]):
        return mean, float("nan"), float("nan")
    from scipy import stats

    result = stats.bootstrap((values,), np.mean, n_resamples=2000, method="percentile",
                             confidence_level=confidence, rng=np.random.default_rng(0))
    return mean, float(result.confidence_interval.low), float(result.confidence_interval.high)


def speedups(summary: pd.DataFrame) -> pd.DataFrame:
    """Across repetitions, per (scenario, backend, strategy, variant, concurrency): median
    throughput and its ratio to the same group's median at the lowest concurrency level, and
    means of throughput and p99 latency with bootstrap 95 % intervals."""
    group = ["scenario", "backend", "strategy", "variant"]
    rows = []
    for key, cells in summary.groupby([*group, "concurrency"], sort=False):
        thr, thr_lo, thr_hi = mean_ci(cells["throughput_rps"])
        p99, p99_lo, p99_hi = mean_ci(cells["p99_ms"])
        rows.append({**dict(zip([*group, "concurrency"], key, strict=True)),
                     "repetitions": len(cells), "median_rps": cells["throughput_rps"].median(),
                     "mean_rps": thr, "rps_lo": thr_lo, "rps_hi": thr_hi,
                     "mean_p99_ms": p99, "p99_lo": p99_lo, "p99_hi": p99_hi})
    medians = pd.DataFrame(rows)
    lowest = medians.sort_values("concurrency").groupby(group, sort=False).first()
    base = medians.merge(lowest[["concurrency", "median_rps"]].reset_index(), on=group,
                         suffixes=("", "_base"), how="left")
    base["speedup"] = base["median_rps"] / base["median_rps_base"]
    return base.drop(columns=["median_rps_base"])


FAILED_FLAGS = ("incomplete", "rows_missing", "server_died")


def cells_failed(summary: pd.DataFrame) -> bool:
    """A cell failed or lost rows (exit status 3): its process died, or released ≠ rows."""
    if summary.empty:
        return False
    return bool(summary["flags"].str.split().apply(
        lambda flags: any(f in FAILED_FLAGS for f in flags)).any())
