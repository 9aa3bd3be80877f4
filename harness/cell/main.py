"""One measured cell in a fresh process: `python -m harness.cell`, driven by the runner.

Protocol: a JSON job on stdin; JSON lines on stdout (`{"phase": "connecting 100"}` for each
start-up step, `{"phase": null}` when the clock starts, `{"completed": n}` while running, then
`{"done": ...}` with what the cell observed). Records, loop-lag samples and the timeline go to
Arrow IPC spool files in the job's `spool_dir` as they come (harness.store.spool); the runner turns
them into the cell's Parquet files. SIGINT and SIGTERM stop the cell gracefully.

A spread job (CellJob.spread) is one of a cell's generators on its own machine: it runs as a
whole cell for its share, says `{"ready": true}` before its clock and starts at the Unix time
it then reads on stdin; harness.store.merge makes one cell of the generators' reports."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

from harness.cell.backends import get_backend
from harness.cell.backends.base import CellSpec, StopFlag
from harness.cell.generators import Crowd, Publisher, gauge_state
from harness.cell.sampler import LagDrain, Sampler
from harness.cell.tickets import Shared
from harness.core.clock import now_ns
from harness.core.job import SERVER_DIED, CellJob
from harness.core.keys import BACKENDS as BACKEND_TRAITS
from harness.core.keys import CellKey, running_python
from harness.core.schema import LAG_RECORD_SCHEMA, TIMELINE_RECORD_SCHEMA
from harness.core.secrets import print_crash
from harness.core.system import raise_fd_limit
from harness.core.tls import TlsSettings
from harness.core.wire import post_t0
from harness.scenario.loader import parse_wire
from harness.store.spool import Spooler

PROGRESS_EVERY = 5  # samples (of 100 ms) between progress lines
MAX_START_WAIT_S = 60.0  # a spread generator's wait for its start time, at most


def run_cell(job: CellJob, stop: StopFlag, report=print, argv: tuple[str, ...] = ()) -> dict:
    """`argv`: what this process was preloaded with, for the generators it starts."""
    _check_python(job)
    spec = CellSpec(parse_wire(job.scenario_text), CellKey(**job.key), job.server_url,
                    job.units, job.work_dir, job.generator, job.shared, job.body_file,
                    job.spread, TlsSettings.from_data(job.tls))
    backend = get_backend(spec.backend)
    if job.generator and not job.spread:
        return _run_generator(spec, backend, job, stop, report)
    crowd = None
    if job.spread:  # a whole cell of its own but for its share, started with the others
        backend.start_clock = spread_start(stop, report)
    elif spec.generators > 1:
        crowd = Crowd(backend, job, spec, stop)
        spec = replace(spec, shared=crowd.shared.path)
        backend.gauge_state = gauge_state(crowd.shared, 0)
        backend.start_clock = crowd.start_clock
        crowd.spawn(list(argv))
    spool = Spooler(Path(job.spool_dir), generator=job.generator if job.spread else 0)
    spool.on_error = lambda message: stop.set("disk")  # a full disk ends the cell; rows stay
    backend.on_phase = lambda text: report(json.dumps({"phase": text}))
    mock = job.mock_url or job.server_url
    # A spread generator's monotonic clock may be another machine's: it tells the server nothing.
    post = spec.scenario.server and not job.spread

    def clock(t0: int) -> None:
        if post:
            post_t0(mock, t0, quiet=True)
        backend.on_phase(None)  # the start-up is over

    sampler = Sampler(crowd or backend, on_sample=_progress(report), on_clock=clock)
    spool.add("timeline", TIMELINE_RECORD_SCHEMA, sampler.drain)
    spool.add("loop_lag", LAG_RECORD_SCHEMA, LagDrain(backend))
    spool.start()
    sampler.start()
    try:
        output = backend.run(spec, stop, spool)
        if crowd is not None:
            crowd.wait()
    finally:
        sampler.stop()
        spool.stop()
    gauge = backend.gauge
    t0_unix_ns = (time.time_ns() - (now_ns() - gauge.t0_ns)) if gauge is not None else None
    result = {"done": True, "released": output.released, "peak_live": output.peak_live,
              "t0_unix_ns": t0_unix_ns,
              "interrupted": output.interrupted,
              "extras": output.extras,
              "slots_lost": output.slots_lost, "has_loop": backend.lag_samples is not None,
              "cpu_user_s": sampler.cpu_user_s, "cpu_sys_s": sampler.cpu_sys_s,
              "spool_error": spool.error}
    if crowd is not None:
        merged = crowd.finish(output)
        merged["spool_error"] = spool.error or merged["spool_error"]
        result.update(merged)
    result["interrupted"] = result["interrupted"] and stop.reason == "signal"
    # After every import the cell made, lazy ones included: a C extension without
    # free-threading support turns a free-threaded build's GIL back on for the whole process.
    result["gil_enabled"] = getattr(sys, "_is_gil_enabled", lambda: True)()
    return result


def _progress(report):
    """What the sampler calls every sample: a progress line every PROGRESS_EVERY."""
    count = [0]

    def progress(completed: int) -> None:
        count[0] += 1
        if count[0] % PROGRESS_EVERY == 0:
            report(json.dumps({"completed": completed}))

    return progress


def _check_python(job: CellJob) -> None:
    wanted = job.key.get("python")
    if wanted is not None and wanted.removesuffix("-gil") != running_python():
        raise RuntimeError(f"this cell is for python {wanted} but runs under "
                           f"{running_python()} ({sys.executable})")


def spread_start(stop: StopFlag, report, read=None):
    """A spread generator's clock: once its backend is ready it says so and reads its start
    time (Unix ns, this machine's time.time_ns()) on stdin, sleeps until then (at most
    MAX_START_WAIT_S) and starts; an empty line or EOF stops it before anything starts. Every
    generator of the cell so starts on one wall-clock instant."""
    read = read or sys.stdin.readline

    def start_clock() -> int:
        report(json.dumps({"ready": True}))
        line = read().strip()
        if not line:
            stop.set()
            return now_ns()
        try:
            at_ns = int(line)
        except ValueError:
            raise ValueError(f"start time: expected Unix ns, got {line[:40]!r}") from None
        wait_ns = min(at_ns - time.time_ns(), int(MAX_START_WAIT_S * 1e9))
        due = now_ns() + wait_ns  # on the monotonic clock: a step of the wall clock is harmless
        while (left := due - now_ns()) > 0:
            if stop.event.wait(left / 1e9):
                break
        return now_ns()

    return start_clock


def _run_generator(spec: CellSpec, backend, job: CellJob, stop: StopFlag, report) -> dict:
    """Generator 1 … N−1 of a cell: its own slots and spool files; the cell's process samples
    the timeline and gives the clock."""
    shared = Shared(job.shared, spec.generators)
    backend.gauge_state = gauge_state(shared, job.generator)

    def start_clock() -> int:
        report(json.dumps({"ready": True}))
        line = sys.stdin.readline()
        if not line:  # the cell's process is gone: start nothing
            stop.set()
            return now_ns()
        return int(line)

    backend.start_clock = start_clock
    spool = Spooler(Path(job.spool_dir), generator=job.generator)
    spool.on_error = lambda message: stop.set("disk")
    spool.add("loop_lag", LAG_RECORD_SCHEMA, LagDrain(backend))
    publisher = Publisher(backend, shared, job.generator)
    spool.start()
    publisher.start()
    try:
        output = backend.run(spec, stop, spool)
    finally:
        publisher.stop()
        spool.stop()
    return {"done": True, "released": output.released, "peak_live": output.peak_live,
            "interrupted": output.interrupted, "extras": output.extras,
            "slots_lost": output.slots_lost, "spool_error": spool.error}


def preload(backend: str, workload: str, client: str) -> None:
    """Import what the cell will run while the runner is still starting the mock server (the
    job arrives once the server is ready), so the imports are not start-up on the critical
    path. Nothing runs: only modules are loaded."""
    import importlib

    from harness.cell.backends import backend_module
    from harness.cell.workloads import workload_module

    modules = [backend_module(backend), workload_module(workload)]
    if workload in ("io", "http", "pipeline"):
        kind = "lean" if client == "lean" else "standard"
        form = "async" if BACKEND_TRAITS[backend].has_loop else "blocking"
        modules.append(f"harness.client.{kind}_{form}")
    if BACKEND_TRAITS[backend].has_loop:
        modules.append("uvloop" if backend == "uvloop" else "asyncio")
    for module in modules:
        importlib.import_module(module)
    import pyarrow as pa

    pa.array(["x"])  # pyarrow imports pandas on its first list conversion: not in the clock


def main() -> None:
    raise_fd_limit()  # thousands of connections in flight need as many open files
    if len(sys.argv) == 4:
        preload(*sys.argv[1:])
    stop = StopFlag()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.set())
    # From the runner: the mock server died. Release nothing more; what is in flight ends.
    signal.signal(SERVER_DIED, lambda signum, frame: stop.set("server"))
    job = CellJob(**json.loads(sys.stdin.readline()))  # one line: generators read on
    try:
        result = run_cell(job, stop, report=lambda line: print(line, flush=True),
                          argv=tuple(sys.argv[1:]))
    except Exception:  # e.g. the database refused: its message may quote the DSN
        print_crash()  # parsing the job's scenario remembered its secrets
        sys.exit(1)
    print(json.dumps(result), flush=True)
    # Everything is on disk and reported: skip the interpreter's teardown (its module and
    # thread clean-up costs a tenth of a second per cell and has nothing left to save).
    os._exit(0)


if __name__ == "__main__":
    main()
