"""Runs scenarios: for each cell a fresh mock server and a fresh cell process; records are
written as each cell finishes. Usable as a library (no Click here)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.analysis import PERCENTILE_METHOD, sweep_peak
from harness.backends.base import GRACE_S
from harness.cell import LAG, RECORDS, TIMELINE, CellJob
from harness.errors import HarnessError
from harness.meta import new_run_id, run_metadata
from harness.output import ResultsWriter, prepare_out_dir
from harness.scenario import CellKey, LoadedScenario, plan_cells
from harness.schema import CELL_KEY_FIELDS, from_ipc_bytes
from harness.server import ServerProcess

KILL_AFTER_S = GRACE_S + 10  # after an interrupt, a cell process still alive then is killed


class RunUI:
    """Progress callbacks; the default shows nothing (library use)."""

    def run_started(self, total_cells: int) -> None: ...
    def cell_started(self, scenario: str, key: CellKey, requests: int | None) -> None: ...
    def cell_progress(self, completed: int) -> None: ...
    def cell_finished(self, cell: dict) -> None: ...


@dataclass
class RunResult:
    run_id: str
    out_dirs: list[Path]
    interrupted: bool = False


@dataclass
class _Interrupt:
    """SIGINT/SIGTERM: mark the run interrupted and pass SIGTERM on to the running cell."""

    requested: bool = False
    child: subprocess.Popen | None = None
    _timer: threading.Timer | None = field(default=None, repr=False)

    def handle(self, signum, frame) -> None:
        self.requested = True
        child = self.child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)  # the cell process alone: it stops its slots
            if self._timer is None:
                self._timer = threading.Timer(KILL_AFTER_S, _signal_group, (child, signal.SIGKILL))
                self._timer.daemon = True
                self._timer.start()

    def install(self) -> dict:
        # Set explicitly: a background job of a non-interactive shell starts with SIGINT ignored.
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, self.handle)
        return previous

    def cell_done(self) -> None:
        self.child = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the cell and its slot processes share a process group
    except (ProcessLookupError, PermissionError):
        pass


def _out_dirs(loaded: list[LoadedScenario], out: Path | None, root: Path, run_id: str):
    if out is not None:
        return {s.scenario.name: out for s in loaded}
    return {s.scenario.name: root / s.scenario.name / run_id for s in loaded}


def _preflight(item: LoadedScenario) -> None:
    """What validation cannot know from the file alone, checked before anything runs."""
    workload = item.scenario.workload
    if (workload.type == "pipeline" and workload.database == "postgres" and not workload.dsn
            and not os.environ.get("HARNESS_POSTGRES_DSN")):
        raise HarnessError(f"{item.path}: workload.dsn: required for database: postgres "
                           "(or set HARNESS_POSTGRES_DSN)")


def _calibrate(item: LoadedScenario) -> dict | None:
    workload = item.scenario.workload
    if workload.type not in ("cpu", "cpu_release"):
        return None
    from harness.workloads.cpu import calibrate

    return calibrate(workload.type, workload.duration)


def run_scenarios(loaded: list[LoadedScenario], backends: tuple[str, ...] = (),
                  repeat: int | None = None, out: Path | None = None, force: bool = False,
                  results_root: Path = Path("results"), ui: RunUI | None = None) -> RunResult:
    ui = ui or RunUI()
    names = [s.scenario.name for s in loaded]
    if len(set(names)) != len(names):
        raise HarnessError(f"two scenarios share the name '{names[0]}': names must differ")
    for item in loaded:
        _preflight(item)
    run_id = new_run_id()
    dirs = _out_dirs(loaded, out, results_root, run_id)
    for path in set(dirs.values()):
        prepare_out_dir(path, force)
    # CPU work is calibrated at the start of each run: the machine's speed drifts.
    calibration = {s.scenario.name: _calibrate(s) for s in loaded}
    writers: dict[Path, ResultsWriter] = {}
    for path in set(dirs.values()):
        in_dir = [s for s in loaded if dirs[s.scenario.name] == path]
        writers[path] = ResultsWriter(path, run_metadata(run_id, in_dir, calibration))
    plans = [(s, plan_cells(s.scenario, backends or None, repeat)) for s in loaded]
    ui.run_started(sum(len(cells) for _, cells in plans))

    interrupt = _Interrupt()
    previous = interrupt.install()
    try:
        for item, cells in plans:
            throughput_c1: dict[tuple, float] = {}
            for key in cells:
                if interrupt.requested:
                    break
                ui.cell_started(item.scenario.name, key, item.scenario.load.requests)
                units = (calibration[item.scenario.name] or {}).get("units")
                tables, cell = _run_cell(item, key, run_id, units, interrupt, ui)
                _add_speedup(cell, key, throughput_c1)
                writers[dirs[item.scenario.name]].add_cell(tables, cell)
                ui.cell_finished(cell)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return RunResult(run_id, list(dict.fromkeys(dirs.values())), interrupt.requested)


def _add_speedup(cell: dict, key: CellKey, throughput_c1: dict) -> None:
    """Throughput against the same backend/strategy/variant/repetition at concurrency 1."""
    same = (key.backend, key.strategy, key.variant, key.repetition)
    throughput = cell["requests"] / (cell["makespan_ns"] / 1e9) if cell["makespan_ns"] else None
    if key.concurrency == 1 and throughput:
        throughput_c1[same] = throughput
    base = throughput_c1.get(same)
    cell["speedup"] = throughput / base if (throughput and base) else None


def _run_cell(item: LoadedScenario, key: CellKey, run_id: str, units: int | None,
              interrupt: _Interrupt, ui: RunUI) -> tuple[dict[str, pa.Table], dict]:
    server_config = item.scenario.server
    with tempfile.TemporaryDirectory(prefix="harness-cell-") as tmp, \
            open(Path(tmp) / "stderr.txt", "w+") as stderr:
        # The cell process imports while the mock server starts; it waits for its job on stdin.
        proc = subprocess.Popen([sys.executable, "-m", "harness.cell"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=stderr, text=True,
                                start_new_session=True)  # own group: we pass signals on
        interrupt.child = proc
        try:
            with (ServerProcess(item.text) if server_config
                  else contextlib.nullcontext()) as server:
                job = CellJob(item.text, key.backend, key.concurrency, key.repetition,
                              key.strategy, key.variant, server.url if server else "", units, tmp)
                result = _drive_cell_process(proc, job, interrupt, ui)
                server_stats = server.stats() if server else {}
        finally:
            interrupt.cell_done()
            _signal_group(proc, signal.SIGKILL)  # nothing of the cell may outlive it
            if proc.poll() is None:
                proc.wait()
        if result is None or proc.returncode != 0:
            stderr.seek(0)
            tail = [line for line in stderr.read().splitlines() if line.strip()][-1:]
            detail = tail[0] if tail else f"exit status {proc.returncode}"
            raise HarnessError(f"cell {key.backend} c={key.concurrency} r={key.repetition} "
                               f"failed: {detail}")
        files = {name: from_ipc_bytes((Path(tmp) / name).read_bytes())
                 for name in (RECORDS, LAG, TIMELINE)}
    constants = {"run_id": run_id, "scenario": item.scenario.name, "backend": key.backend,
                 "concurrency": key.concurrency, "repetition": key.repetition,
                 "strategy": key.strategy, "variant": key.variant}
    records, lag, timeline = (_with_keys(files[name], constants)
                              for name in (RECORDS, LAG, TIMELINE))
    n = records.num_rows
    start = records.column("start_ns").to_numpy()
    end = records.column("end_ns").to_numpy()
    ok = int(pc.sum(records.column("ok")).as_py() or 0)
    lag_ns = lag.column("lag_ns").to_numpy()
    counter = result["extras"].get("counter")
    cell = {**constants, "requests": n, "errors": n - ok,
            "makespan_ns": int(end.max()) if n else 0,
            "peak_in_flight": sweep_peak(start, end),
            "peak_in_flight_live": result["peak_live"],
            "peak_in_flight_server": server_stats.get("peak_in_flight"),
            "server_cpu_s": server_stats.get("cpu_s"),
            "interrupted": bool(result["interrupted"] or interrupt.requested),
            "cpu_user_s": result["cpu_user_s"], "cpu_sys_s": result["cpu_sys_s"],
            "loop_lag_p99_ns": int(np.percentile(lag_ns, 99, method=PERCENTILE_METHOD))
            if result["has_loop"] and lag_ns.size else None,
            "lost_updates": ok - counter if counter is not None else None}
    return {"requests": records, "loop_lag": lag, "timeline": timeline}, cell


def _with_keys(table: pa.Table, constants: dict) -> pa.Table:
    n = table.num_rows
    for i, f in enumerate(CELL_KEY_FIELDS):
        table = table.add_column(i, f.name, pa.array([constants[f.name]] * n, f.type))
    return table


def _drive_cell_process(proc: subprocess.Popen, job: CellJob, interrupt: _Interrupt,
                        ui: RunUI) -> dict | None:
    """Send the job, relay progress, return the final message (None if there was none)."""
    if interrupt.requested:  # a signal that came while the process was starting
        interrupt.handle(signal.SIGTERM, None)
    try:
        proc.stdin.write(job.to_json())
        proc.stdin.close()
    except BrokenPipeError:
        return None
    result = None
    for line in proc.stdout:
        message = json.loads(line)
        if "completed" in message:
            ui.cell_progress(message["completed"])
        elif message.get("done"):
            result = message
    proc.wait()
    return result
