"""Runs built by hand, with exactly known figures: cells of back-to-back requests on every slot,
their timeline sampled from the rows (as a live counter that agrees with them would read), and
the run metadata the analysis reads (CPU count, calibration)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.analysis.summary import Runs
from harness.core.keys import CELL_KEYS, CellKey, key_dict
from harness.core.schema import CELLS_SCHEMA
from harness.core.stats import in_flight_at, sweep_peak

UNITS = 1_000_000  # calibrated kernel units per request in CPU cells


def cell(backend="asyncio", concurrency=2, repetition=0, latency_ms=100.0, duration_s=5.0,
         gap_ms=0.0, server=True, kernel=None, strategy="inline", variant="default",
         scenario="synth", run_id="run", sample_ms=100.0, model="closed", rate_per_s=None,
         python=None, **overrides):
    """One cell: `concurrency` slots each running requests of `latency_ms` back to back (with
    `gap_ms` between them) for `duration_s`. `server`: the request is a mock-server call (its
    delay is the whole latency); else a CPU step. `kernel`: the cell's kernel ns per unit.
    `overrides` replace fields of the cells row."""
    period = int((latency_ms + gap_ms) * 1e6)
    per_slot = int(duration_s * 1e9 // period)
    start = np.concatenate([np.arange(per_slot, dtype=np.int64) * period
                            for _ in range(concurrency)])
    return from_times(start, start, start + int(latency_ms * 1e6), backend=backend,
                      concurrency=concurrency, repetition=repetition, server=server,
                      kernel=kernel, strategy=strategy, variant=variant, scenario=scenario,
                      run_id=run_id, sample_ms=sample_ms, model=model, rate_per_s=rate_per_s,
                      python=python,
                      slots=np.repeat([f"slot-{i}" for i in range(concurrency)], per_slot),
                      **overrides)


def from_times(scheduled_ns, start_ns, end_ns, ok=True, phase="measure", *, backend="asyncio",
               concurrency=2, repetition=0, server=True, kernel=None, strategy="inline",
               variant="default", scenario="synth", run_id="run", sample_ms=100.0,
               model="closed", rate_per_s=None, slots=None, python=None, **overrides):
    """A cell of exactly these requests (scheduled, actual start and end of each, in ns from
    the cell's t0; `ok` and `phase` per request or for all), its timeline sampled from them
    and its cells row as the recorder writes it (overridden by `overrides`)."""
    key = {"run_id": run_id, "scenario": scenario,
           **key_dict(CellKey(backend, concurrency, repetition, strategy, variant,
                              model=model, rate_per_s=rate_per_s, python=python))}
    assert list(key) == CELL_KEYS
    scheduled = np.asarray(scheduled_ns, dtype=np.int64)
    start = np.asarray(start_ns, dtype=np.int64)
    end = np.asarray(end_ns, dtype=np.int64)
    n = len(start)
    ok = np.broadcast_to(np.asarray(ok, dtype=bool), (n,))
    phase = np.broadcast_to(np.asarray(phase, dtype=object), (n,))
    service = end - start
    delay = np.where(ok, service, np.nan) if server else np.nan
    requests = pd.DataFrame({
        **key, "worker": "worker-0", "slot": "slot-0" if slots is None else slots,
        "seq": np.arange(n), "enqueued_ns": scheduled, "scheduled_ns": scheduled,
        "start_ns": start, "end_ns": end, "server_delay_ns": delay, "ok": ok,
        "status": np.where(ok, 200, 0) if server else 0,
        "error": np.where(ok, None, "timeout"), "error_detail": None,
        "in_flight": in_flight_at(start, end, start), "cpu_ns": np.nan if server else service,
        "cpu_wait_ns": np.nan if server else 0, "io_ns": np.nan, "db_ns": np.nan,
        "fault": None, "bytes_sent": np.nan, "bytes_received": np.nan,
        "server_delay_target_ns": delay, "phase": phase})
    makespan = int(end.max())
    t = np.arange(1, int(makespan // (sample_ms * 1e6)) + 2) * int(sample_ms * 1e6)
    timeline = pd.DataFrame({**key, "t_ns": t, "in_flight": in_flight_at(start, end, t),
                             "completed": np.searchsorted(np.sort(end), t, "right"),
                             "loop_lag_max_ns": 0, "cpu_percent": 20.0,
                             "ctx_switches_voluntary": 0, "ctx_switches_involuntary": 0})
    peak = sweep_peak(start, end)
    errors = int((~ok).sum())
    row = {**{f.name: None for f in CELLS_SCHEMA}, **key, "requests": n, "errors": errors,
           "makespan_ns": makespan,
           "peak_in_flight": peak, "peak_in_flight_live": peak,
           "peak_in_flight_server": peak if server else None, "interrupted": False,
           "cpu_user_s": 0.1, "cpu_sys_s": 0.01, "loop_lag_p99_ns": None,
           "lost_updates": None, "server_cpu_s": 0.01 * makespan / 1e9 if server else None,
           "released": n, "slots_lost": 0, "complete": True, "server_exit": None,
           "kernel_ns_per_unit": kernel, "generator_lagging": False if model == "open" else None}
    row.update(overrides)
    return row, requests, timeline


def runs(*cells, cpu_count=2, units=UNITS, scenario_text=None) -> Runs:
    """Runs of these cells, with metadata: each run's CPU count and each scenario's units."""
    rows, requests, timelines = zip(*cells, strict=True)
    cells_frame = pd.DataFrame(list(rows))
    metadata = []
    for run_id, mine in cells_frame.groupby("run_id", sort=False):
        metadata.append({"run_id": run_id, "cpu_count": cpu_count, "scenarios": [
            {"name": name, "text": scenario_text or "", "path": f"{name}.yaml",
             "calibration": {"units": units} if units else None}
            for name in mine["scenario"].unique()]})
    return Runs([], pd.concat(requests, ignore_index=True), cells_frame,
                pd.concat(timelines, ignore_index=True), pd.DataFrame(columns=CELL_KEYS),
                metadata)
