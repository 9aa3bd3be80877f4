"""Every figure shown to the user is computed here, from the Parquet records only, with one
percentile method — `run` and `report` call the same code."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.core.keys import CELL_KEYS
from harness.core.stats import (
    PERCENTILE_METHOD,
    achieved_per_s,
    in_flight_at,
    late_starts,
    median,
    normalised_rate,
    percentile,
    response_ns,
    service_ns,
    speedup,
    sweep_peak,
    throughput_per_s,
)
from harness.store.reader import find_run_dirs, read_metadata, read_run

__all__ = ["PERCENTILE_METHOD", "percentile", "sweep_peak", "load_runs", "summarize",
           "cell_speedups", "speedups", "measured"]


@dataclass
class Runs:
    """Everything of one or more runs, read from their Parquet files."""

    dirs: list[Path]
    requests: pd.DataFrame
    cells: pd.DataFrame
    timeline: pd.DataFrame
    loop_lag: pd.DataFrame
    metadata: list[dict]

    def scenarios(self) -> dict:
        """Each scenario as the runs recorded it (its text in the metadata), parsed: name →
        Scenario, whose `expect:` thresholds and workload the threshold checks use."""
        from harness.scenario.loader import parse_scenario

        found = {}
        for meta, path in zip(self.metadata, self.dirs, strict=False):
            for scenario in meta.get("scenarios", []):
                found[scenario["name"]] = parse_scenario(
                    scenario["text"], f"{path}: {scenario.get('path')}", recorded=True)
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


def _run_facts(metadata: list[dict]) -> tuple[dict, dict]:
    """From each run's metadata: its machine's CPU count (by run id; under --cluster also by
    run id and host) and each scenario's calibrated CPU units per request (by run id and
    scenario name; under --cluster also by run id, scenario name and host)."""
    cores, units = {}, {}
    for meta in metadata:
        run_id = meta.get("run_id")
        cores[run_id] = meta.get("cpu_count")
        hosts = (meta.get("cluster") or {}).get("hosts") or {}
        for scenario in meta.get("scenarios", []):
            found = scenario.get("calibration") or {}
            units[run_id, scenario.get("name")] = found.get("units")
            # a cluster's cells ran with their own host's units, on its cores
            for host, facts in hosts.items():
                cores[run_id, host] = facts.get("usable_cores") or facts.get("cores")
                there = (facts.get("calibration") or {}).get(
                    f"{found.get('kind')}:{found.get('target_ns')}") or {}
                units[run_id, scenario.get("name"), host] = there.get("units")
    return cores, units


LITTLE_TOLERANCE = 0.05
LITTLE_PHASES = 20  # shifts of the sampling instants tried, over one sampling interval
SATURATED = 90.0  # percent of a core
OK, OFF, NOT_ENOUGH = "ok", "off", "not enough data"


def little_check(reqs: pd.DataFrame, timeline: pd.DataFrame, makespan_ns: int
                 ) -> tuple[float, str]:
    """Little's law: the mean in flight as sampled live every 100 ms (the timeline) against
    the rate requests finish × their mean latency, over every row (ok, failed, cancelled or
    lost: all were in flight) — Σ(end − start) ÷ makespan.

    Returns the relative residual and "ok", "off" (beyond LITTLE_TOLERANCE: flag `little`) or
    "not enough data". A handful of samples can miss the time average by more than the
    tolerance with every count right, so the evidence is weighed first: the rows say how many
    were in flight at any instant, and the same sampling shifted over every phase of one
    interval shows how far a sampled mean *can* fall from the time average on these very rows.
    When that exceeds the tolerance the cell is too short to tell: "not enough data", never a
    flag. Otherwise a residual beyond the tolerance means the live count and the rows disagree."""
    samples = timeline.loc[timeline["t_ns"] <= makespan_ns, "t_ns"].to_numpy(np.int64)
    if len(reqs) == 0 or makespan_ns <= 0 or len(samples) < 2:
        return float("nan"), NOT_ENOUGH
    start, end = reqs["start_ns"].to_numpy(np.int64), reqs["end_ns"].to_numpy(np.int64)
    expected = float((end - start).sum()) / makespan_ns  # λ × W
    if expected <= 0:
        return float("nan"), NOT_ENOUGH
    sampled = timeline.loc[timeline["t_ns"] <= makespan_ns, "in_flight"].mean()
    residual = abs(sampled - expected) / expected
    interval = median(np.diff(samples))
    shifts = (np.arange(LITTLE_PHASES) / LITTLE_PHASES - 0.5) * interval  # includes 0
    instants = np.clip(samples[None, :] + shifts[:, None].astype(np.int64), 0, makespan_ns)
    means = in_flight_at(start, end, instants.ravel()).reshape(instants.shape).mean(axis=1)
    spread = float(np.abs(means - expected).max()) / expected
    if spread > LITTLE_TOLERANCE:
        return residual, NOT_ENOUGH
    return residual, OFF if residual > LITTLE_TOLERANCE else OK


def _self_checks(cell, reqs: pd.DataFrame, timeline: pd.DataFrame, cores: int | None
                 ) -> tuple[float, str, list[str]]:
    """Flags that say when the numbers may not mean what they seem to (see README). They
    check the recording and the machine, so they look at every row and the whole cell, its
    warm-up included (the live counts, the samples and the CPU times cover it too)."""
    flags = []
    makespan_s = cell.makespan_ns / 1e9
    residual, little = little_check(reqs, timeline, cell.makespan_ns)
    if little == OFF:
        flags.append("little")
    server, live = cell.peak_in_flight_server, cell.peak_in_flight_live
    generators = int(getattr(cell, "generators", 1) or 1)
    # One gauge counts live exactly what the sweep finds; the sum of several generators' live
    # counts is sampled (every 100 ms), so it can miss the peak, never exceed it.
    live_off = (cell.peak_in_flight != live if generators == 1
                else live > cell.peak_in_flight)
    if (not pd.isna(live) and live_off) or (
            not pd.isna(server) and server > cell.peak_in_flight):
        flags.append("peaks")
    if not cell.complete:
        flags.append("incomplete")  # the cell process died: rows up to its last flush
    if not pd.isna(cell.released) and cell.released != cell.requests:
        flags.append("rows_missing")
    if not pd.isna(cell.server_exit):
        flags.append("server_died")  # the mock server exited during the cell
    if _gil_back_on(cell):
        flags.append("gil-on")  # a free-threaded build ran this cell with the GIL
    if not pd.isna(getattr(cell, "service_exit", None)):
        flags.append("service_died")  # the started service ended during the cell (or never
        # started)
    # Of the machine that ran the cell (its metadata), not the one reading it.
    limit = SATURATED * (cores if cell.backend == "processes" else generators) if cores else None
    if limit and reqs["server_delay_ns"].notna().any() and len(timeline):
        if timeline["cpu_percent"].mean() > limit:
            flags.append("gen-cpu")  # the numbers may describe the load generator
    server_cpu = getattr(cell, "server_cpu_s", None)  # since the server was ready
    if server_cpu is not None and not pd.isna(server_cpu) and makespan_s > 0:
        if 100 * server_cpu / makespan_s > SATURATED:
            flags.append("srv-cpu")  # the numbers may describe the mock server
    return residual, little, flags


def _gil_back_on(cell) -> bool:
    """A free-threaded build (`python` ends in `t`; `-gil` asked for the GIL) whose cell
    process had the GIL on: an extension module without free-threading support enabled it."""
    python = getattr(cell, "python", None)
    return (isinstance(python, str) and python.endswith("t")
            and getattr(cell, "gil_enabled", None) is True)


WARMUP = "warmup"  # the `phase` of a warm-up row: left out of every figure


def measured(requests: pd.DataFrame) -> pd.DataFrame:
    """The rows every figure is computed from: warm-up rows left out (`phase` = "warmup"; a
    null phase, from files older than the open model, is measured)."""
    if "phase" not in requests:
        return requests
    return requests[requests["phase"].fillna("measure") != WARMUP]


def measured_span_ns(reqs: pd.DataFrame, last_end_ns: int) -> int:
    """The makespan of a cell's measured requests: from the end of the warm-up — the first
    measured request's scheduled start; the cell's start (0) when it had no warm-up — to the
    last request's end (`last_end_ns`, the cells row's makespan_ns). `reqs`: all the cell's
    rows."""
    rows = measured(reqs)
    begin = int(rows["scheduled_ns"].min()) if 0 < len(rows) < len(reqs) else 0
    return max(int(last_end_ns) - begin, 0)


def summarize(runs: Runs) -> pd.DataFrame:
    """One row per cell, in the cells' order, from its measured rows (warm-up rows left out of
    every figure). Latencies are response times (end − scheduled start) of ok requests; the
    service time (end − actual start) and the scheduling lag (actual − scheduled start) beside
    them. Makespan and throughput count from the end of the warm-up. The lower bound of the
    makespan is the sum of the delays the server drew divided by the concurrency limit (NaN
    unless the request is the server call alone, and for open cells, whose pace is the
    schedule's)."""
    requests, cells, timeline = runs.requests, runs.cells, runs.timeline
    cores, units = _run_facts(runs.metadata)
    rows = []
    groups = by_cell(requests)
    samples = by_cell(timeline) if len(timeline) else {}
    for cell in cells.itertuples(index=False):
        key = cell_key(getattr(cell, k) for k in CELL_KEYS)
        every = groups.get(key, requests.iloc[0:0])
        host = getattr(cell, "host", None)
        residual, little, flags = _self_checks(
            cell, every, samples.get(key, timeline.iloc[0:0]),
            cores.get((cell.run_id, host)) or cores.get(cell.run_id))
        unit = units.get((cell.run_id, cell.scenario, host)) or units.get((cell.run_id,
                                                                          cell.scenario))
        rows.append({**dict(zip(CELL_KEYS, key, strict=True)),
                     **_cell_figures(cell, every, unit),
                     "little_residual": residual, "little_check": little,
                     "flags": " ".join(_flags(cell, flags))})
    summary = pd.DataFrame(rows)
    if len(summary):
        summary.insert(summary.columns.get_loc("normalised_rate") + 1, "speedup",
                       cell_speedups(summary).to_numpy())
    return summary


def _flags(cell, flags: list[str]) -> list[str]:
    if getattr(cell, "model", "closed") == "open" and getattr(cell, "generator_lagging",
                                                               None) is True:
        flags.append("lagging")  # the numbers describe the generator, not the server
    return flags


def _cell_figures(cell, every: pd.DataFrame, units) -> dict:
    """A cell's figures from its rows (the measured ones) and its cells row, in the summary's
    column order."""
    reqs = measured(every)
    ok = reqs[reqs["ok"]]
    is_open = getattr(cell, "model", "closed") == "open"
    makespan_ns = measured_span_ns(every, cell.makespan_ns)
    makespan_s = makespan_ns / 1e9
    throughput = throughput_per_s(len(ok), makespan_ns)
    kernel = _nan(getattr(cell, "kernel_ns_per_unit", None))
    errors = int((~reqs["ok"].astype(bool)).sum())
    bound_s = _bound_s(reqs, cell.concurrency, is_open)
    return {
        "requests": len(reqs),
        "errors": errors,
        "error_rate": errors / len(reqs) if len(reqs) else float("nan"),
        "throughput_rps": throughput,
        **_latency_figures(reqs, ok, is_open),
        "cpu_p50_ms": _p50_ms(ok["cpu_ns"]),
        "cpu_wait_p50_ms": _p50_ms(ok["cpu_wait_ns"]),
        "io_p50_ms": _p50_ms(ok["io_ns"]),
        "db_p50_ms": _p50_ms(ok["db_ns"]),
        "connect_p50_ms": _connect_p50_ms(every, cell),
        "loop_lag_p99_ms": _nan(cell.loop_lag_p99_ns) / 1e6,
        "lost_updates": _nan(cell.lost_updates),
        "kernel_ns_per_unit": kernel,
        "normalised_rate": normalised_rate(throughput, units,
                                           None if np.isnan(kernel) else kernel),
        "cpu_user_s": _nan(cell.cpu_user_s),
        "cpu_sys_s": _nan(cell.cpu_sys_s),
        "server_cpu_s": _nan(getattr(cell, "server_cpu_s", None)),
        "server_loop_lag_p99_ms": _nan(getattr(cell, "server_loop_lag_p99_ns", None)) / 1e6,
        "service_cpu_s": _nan(getattr(cell, "service_cpu_s", None)),
        "service_loop_lag_p99_ms": _nan(getattr(cell, "service_loop_lag_p99_ns", None)) / 1e6,
        "peak_in_flight": cell.peak_in_flight,
        "peak_in_flight_live": cell.peak_in_flight_live,
        "peak_in_flight_server": cell.peak_in_flight_server,
        "makespan_s": makespan_s,
        "bound_s": bound_s,
        "efficiency": bound_s / makespan_s if makespan_s > 0 else float("nan"),
        "workers": every["worker"].nunique(),
        "interrupted": bool(cell.interrupted),
        "complete": bool(cell.complete),
        "released": cell.released,
        "warmup_requests": len(every) - len(reqs),
        "slots_lost": cell.slots_lost,
        "server_exit": cell.server_exit,
        "service_exit": getattr(cell, "service_exit", None),
        "gil_enabled": getattr(cell, "gil_enabled", None),
    }


def _connect_p50_ms(every: pd.DataFrame, cell) -> float:
    """Opening a connection (TLS included): the p50 over the ones opened under the clock (the
    rows' connect_ns, warm-up included: they are the cell's connections), else over the ones
    opened before it (the cells row's connect_p50_ns)."""
    under = every["connect_ns"].dropna() if "connect_ns" in every else pd.Series(dtype=float)
    if len(under):
        return percentile(under / 1e6, 50)
    return _nan(getattr(cell, "connect_p50_ns", None)) / 1e6


def _latency_figures(reqs: pd.DataFrame, ok: pd.DataFrame, is_open: bool) -> dict:
    """Response and service time of the ok requests, the schedule's figures, and the client's
    own HTTP overhead: the HTTP step (the whole request when it is the only step) minus the
    delay the server applied."""
    latency_ms = pd.Series(response_ns(ok["scheduled_ns"], ok["end_ns"]) / 1e6)
    service = service_ns(ok["start_ns"], ok["end_ns"])
    service_ms = service / 1e6
    lag = late_starts(reqs["start_ns"], reqs["scheduled_ns"])
    http_ns = ok["io_ns"].where(ok["io_ns"].notna(), pd.Series(service, index=ok.index))
    overhead_ms = (http_ns - ok["server_delay_ns"]).dropna() / 1e6
    return {
        "p50_ms": percentile(latency_ms, 50),
        "p90_ms": percentile(latency_ms, 90),
        "p99_ms": percentile(latency_ms, 99),
        "p999_ms": percentile(latency_ms, 99.9),
        "max_ms": float(latency_ms.max()) if len(latency_ms) else float("nan"),
        "service_p50_ms": percentile(service_ms, 50),
        "service_p99_ms": percentile(service_ms, 99),
        "sched_lag_p99_ms": lag.lag_p99_ns / 1e6,
        "late_starts": lag.late,
        "achieved_rps": achieved_per_s(reqs["start_ns"]),
        "target_rps": achieved_per_s(reqs["scheduled_ns"]) if is_open else float("nan"),
        "overhead_p50_ms": percentile(overhead_ms, 50),
        "overhead_p99_ms": percentile(overhead_ms, 99),
    }


def _bound_s(reqs: pd.DataFrame, concurrency: int, is_open: bool) -> float:
    """Σ drawn delay ÷ concurrency bounds the makespan only when the server's delay is all
    there is, and only in the closed model (an open cell's pace is its schedule's). The delay
    the server drew (`server_delay_target_ns`), not the one it applied: a late server lengthens
    the makespan, never the bound. Runs written before the drawn delay was recorded (schema
    < 4: the column all null) fall back to the applied delay."""
    drawn = reqs.get("server_delay_target_ns")
    delays = (drawn if drawn is not None and drawn.notna().any()
              else reqs["server_delay_ns"]).dropna()
    only_io = len(delays) and reqs["cpu_ns"].isna().all() and reqs["db_ns"].isna().all()
    return delays.sum() / concurrency / 1e9 if only_io and not is_open else float("nan")


def _nan(value) -> float:
    return float("nan") if value is None or pd.isna(value) else float(value)


SPEEDUP_KEYS = ["run_id", "scenario", "backend", "strategy", "variant", "client", "generators",
                "path", "python"]


def _closed(summary: pd.DataFrame) -> pd.Series:
    if "model" not in summary:
        return pd.Series(True, index=summary.index)
    return summary["model"].fillna("closed") != "open"


def cell_speedups(summary: pd.DataFrame) -> pd.Series:
    """The one speedup. Per closed-model cell: its rate ÷ the rate of the same run, scenario,
    backend, strategy, variant, client and repetition at the lowest concurrency of the
    scenario's closed cells in that run (a configuration missing its own cell there has no
    speedup). The rate is the normalised rate (busy cores) where the cell measured its kernel
    speed — CPU workloads, so that one process running the kernel faster than another cancels
    out — and the throughput otherwise; a pair where only one side is normalised has no
    speedup (NaN), as has a cell whose base is missing. Open cells have none: their rate is
    their schedule's, not a result of their concurrency."""
    normalised = summary["normalised_rate"].notna()
    closed = _closed(summary)
    frame = summary[SPEEDUP_KEYS + ["repetition"]].assign(
        rate=summary["normalised_rate"].where(normalised, summary["throughput_rps"]),
        normalised=normalised)
    concurrency = summary["concurrency"].where(closed)
    lowest = concurrency.groupby([summary["run_id"], summary["scenario"]],
                                 sort=False).transform("min")
    base = frame[closed & (concurrency == lowest)].drop_duplicates(
        SPEEDUP_KEYS + ["repetition"])
    paired = frame.merge(base, on=SPEEDUP_KEYS + ["repetition"], how="left",
                         suffixes=("", "_base"))
    values = [speedup(r.rate, r.rate_base) if is_closed and r.normalised == r.normalised_base
              else float("nan")
              for r, is_closed in zip(paired.itertuples(index=False), closed, strict=True)]
    return pd.Series(values, index=summary.index, name="speedup", dtype=np.float64)


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


SPEEDUP_TABLE_KEYS = ["scenario", "python", "backend", "strategy", "variant", "client",
                      "generators", "path", "model", "rate_per_s", "concurrency"]


def speedups(summary: pd.DataFrame) -> pd.DataFrame:
    """Across repetitions, per (scenario, backend, strategy, variant, client, model, rate,
    concurrency): the median of the cells' speedups (cell_speedups: per repetition, against
    the lowest concurrency), the median throughput, and means of throughput and p99 latency
    with bootstrap 95 % intervals."""
    rows = []
    keys = [k for k in SPEEDUP_TABLE_KEYS if k in summary]
    groups = summary.groupby(keys, sort=False, dropna=False) if len(summary) else ()
    for key, cells in groups:
        thr, thr_lo, thr_hi = mean_ci(cells["throughput_rps"])
        p99, p99_lo, p99_hi = mean_ci(cells["p99_ms"])
        rows.append({**dict(zip(keys, key, strict=True)),
                     "repetitions": len(cells),
                     "median_rps": median(cells["throughput_rps"].dropna()),
                     "mean_rps": thr, "rps_lo": thr_lo, "rps_hi": thr_hi,
                     "mean_p99_ms": p99, "p99_lo": p99_lo, "p99_hi": p99_hi,
                     "speedup": median(cells["speedup"].dropna())})
    return pd.DataFrame(rows, columns=[*keys, "repetitions", "median_rps",
                                       "mean_rps", "rps_lo", "rps_hi", "mean_p99_ms", "p99_lo",
                                       "p99_hi", "speedup"])


def interpreters(summary: pd.DataFrame) -> pd.DataFrame:
    """Per scenario and interpreter (closed cells): its single-thread cost — the median
    kernel_ns_per_unit of its cells at the scenario's lowest concurrency (CPU workloads), also
    relative to the first interpreter's — whether its cells had the GIL on, and per backend the
    median speedup at the highest concurrency (cell_speedups). Empty when no scenario has
    several interpreters."""
    rows = []
    closed = summary[_closed(summary)] if len(summary) else summary
    for scenario, cells in closed.groupby("scenario", sort=False):
        if "python" not in cells or cells["python"].nunique() < 2:
            continue
        low, high = cells["concurrency"].min(), cells["concurrency"].max()
        first = None
        for python, mine in cells.groupby("python", sort=False):
            kernel = median(mine.loc[mine["concurrency"] == low, "kernel_ns_per_unit"].dropna())
            first = kernel if first is None else first
            gil = mine["gil_enabled"].dropna() if "gil_enabled" in mine else pd.Series([])
            row = {"scenario": scenario, "python": python, "concurrency": int(high),
                   "gil": "-" if gil.empty else "on" if gil.all() else "off" if not gil.any()
                   else "mixed",
                   "kernel_ns_per_unit": kernel,
                   "relative_cost": kernel / first if first and not math.isnan(first)
                   else float("nan")}
            top = mine[mine["concurrency"] == high]
            for backend, speeds in top.groupby("backend", sort=False):
                row[f"speedup:{backend}"] = median(speeds["speedup"].dropna())
            rows.append(row)
    return pd.DataFrame(rows)


FAILED_FLAGS = ("incomplete", "rows_missing", "server_died", "service_died")


def cells_failed(summary: pd.DataFrame) -> bool:
    """A cell failed or lost rows (exit status 3): its process died, or released ≠ rows."""
    if summary.empty:
        return False
    return bool(summary["flags"].str.split().apply(
        lambda flags: any(f in FAILED_FLAGS for f in flags)).any())
