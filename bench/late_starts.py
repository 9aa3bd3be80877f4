"""Where an open cell's late starts lose their time. A measurement, not a test.

One open cell (the fast mock's endpoint, the standard client by default) run in this process
by harness.cell.main.run_cell, the code a `harness run` cell process runs, while `perf record`
traces the scheduler (sched_switch and sched_wakeup with stacks, on the monotonic clock; perf
must be installed and allowed to trace). For the starts later than --late-ms (start −
intended start), merged into windows: what the cell's loop thread did during them (running,
waiting for a core after a wake-up or a preemption, waiting for the GIL, asleep in epoll), which
tasks had the CPUs meanwhile, and how the cell's own threads (the spooler's flushes, the
sampler's samples and scans of the process tree) overlap them; the same for the whole measured
span, and the GIL waits of the loop thread with who ended them. Without perf (--no-perf) only
the overlaps are printed.

    python -m bench.late_starts [--backend uvloop] [--rate 400] [--seconds 4] [--latency 1ms]
                                [--client standard] [--late-ms 5] [--no-perf]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench import sched_trace
from harness.core.stats import percentile

SCENARIO = """\
name: late_starts
server:
  engine: fast
  endpoints:
    api: {{latency: {latency}, size: 64}}
workload: {{type: io, endpoint: api, client: [{client}]}}
load: {{rate: {rate}/s, duration: {seconds}s, warmup: 500ms}}
backends: [{backend}]
"""
SILENCE_NS = 2_000_000  # no scheduler event on any CPU for longer: see sched_trace.silences
WORK = {"flush": ("harness.store.spool", "Spooler", "flush"),
        "sample": ("harness.cell.sampler", "Sampler", "_tree_totals"),
        "scan": ("harness.cell.sampler", "Sampler", "_scan")}


@contextlib.contextmanager
def timed_work():
    """The cell's own threads' work, timed as it happens: name → [(start, end, thread CPU)],
    and the threads' native ids by name."""
    import importlib

    from harness.core.clock import now_ns

    found: dict[str, list] = {name: [] for name in WORK}
    tids: dict[str, int] = {}
    originals = []
    for name, (module_name, class_name, method) in WORK.items():
        cls = getattr(importlib.import_module(module_name), class_name)
        original = getattr(cls, method)
        originals.append((cls, method, original))

        def wrapper(*args, _name=name, _original=original, **kwargs):
            tids[threading.current_thread().name] = threading.get_native_id()
            start, cpu = now_ns(), time.thread_time_ns()
            try:
                return _original(*args, **kwargs)
            finally:
                found[_name].append((start, now_ns(), time.thread_time_ns() - cpu))

        setattr(cls, method, wrapper)
    try:
        yield found, tids
    finally:
        for cls, method, original in originals:
            setattr(cls, method, original)


def run_cell(args, url: str, tmp: Path):
    """The cell; (its backend, the measured rows' intended and actual starts, in ns since its
    clock)."""
    import pyarrow as pa

    from harness.cell import main as cell_main
    from harness.cell.backends.base import StopFlag
    from harness.core.job import CellJob
    from harness.core.keys import key_dict
    from harness.scenario.loader import parse_scenario
    from harness.scenario.model import plan_cells
    from harness.store.spool import read_batches

    text = SCENARIO.format(**vars(args))
    spool = tmp / "spool"
    spool.mkdir()
    job = CellJob(text, key_dict(plan_cells(parse_scenario(text))[0]), url, None, str(tmp),
                  str(spool))
    made = []
    get_backend = cell_main.get_backend
    cell_main.get_backend = lambda name: made.append(get_backend(name)) or made[0]
    try:
        cell_main.run_cell(job, StopFlag(), report=lambda line: None)
    finally:
        cell_main.get_backend = get_backend
    rows = pa.Table.from_batches(list(read_batches(spool / "requests.arrows"))).to_pandas()
    rows = rows[rows["phase"] == "measure"]
    return made[0], rows["scheduled_ns"].to_numpy(), rows["start_ns"].to_numpy()


def windows(intended: np.ndarray, started: np.ndarray, late_ns: int) -> list[list[int]]:
    """[begin, end, worst lateness] of each stretch where starts were late, overlapping
    [intended, start] spans merged."""
    merged: list[list[int]] = []
    for i in np.argsort(intended):
        if started[i] - intended[i] <= late_ns:
            continue
        begin, end = int(intended[i]), int(started[i])
        if merged and begin <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
            merged[-1][2] = max(merged[-1][2], end - begin)
        else:
            merged.append([begin, end, end - begin])
    return merged


def overlap_ns(spans, begin: int, end: int) -> int:
    return sum(max(0, min(stop, end) - max(start, begin)) for start, stop, *_ in spans)


def ms(ns: float) -> str:
    return f"{ns / 1e6:.1f}"


def report(args, lags, late, work, trace, tids, loop_tid, server_pid, span) -> None:
    print(f"{args.backend} {args.client} {args.rate}/s: {len(lags)} measured starts; lag p50 "
          f"{percentile(lags, 50) / 1e6:.2f} ms, p99 {percentile(lags, 99) / 1e6:.2f} "
          f"ms, max {lags.max() / 1e6:.1f} ms; {int((lags > args.late_ms * 1e6).sum())} later "
          f"than {args.late_ms:g} ms, in {len(late)} windows ({ms(sum(e - b for b, e, _ in late))}"
          " ms)")
    for name, spans in work.items():
        cpu = [c for *_, c in spans]
        touching = sum(1 for b, e, _ in late if overlap_ns(spans, b, e))
        p50 = percentile(cpu, 50) / 1e6 if cpu else 0
        print(f"  {name}: {len(spans)} calls, thread CPU p50 {p50:.2f} ms, max "
              f"{max(cpu, default=0) / 1e6:.2f} ms; overlaps {touching} of the late windows")
    if trace is None:
        return
    names = {tid: name for name, tid in tids.items()}

    def label(tid: int) -> str:
        if tid in names:
            return names[tid]
        if trace.process.get(tid) == server_pid:
            return "mock server"
        return f"{trace.names.get(tid, '?')} (pid {trace.process.get(tid, '?')})"

    silences = trace.silences(SILENCE_NS)
    for title, stretches in (("the late windows", [(b, e) for b, e, _ in late]),
                             ("the measured span", [span])):
        silent = sum(overlap_ns(silences, b, e) for b, e in stretches)
        total = sum(e - b for b, e in stretches)
        print(f"  in {title} ({ms(total)} ms): no task switched or woken on any CPU for "
              f"{ms(silent)} ms ({silent / max(total, 1):.0%}; silences over "
              f"{SILENCE_NS / 1e6:g} ms: the VM not run by its host, or events perf lost)")
        states: dict[str, int] = {}
        cpu: dict[str, int] = {}
        waits: dict[str, int] = {}
        for begin, end in stretches:
            for state, ns in trace.states(loop_tid, begin, end).items():
                states[state] = states.get(state, 0) + ns
            for tid, ns in trace.cpu_by_task(begin, end).items():
                cpu[label(tid)] = cpu.get(label(tid), 0) + ns
            for tid, n in trace.gil_wakers(loop_tid, begin, end).items():
                waits[label(tid)] = waits.get(label(tid), 0) + n
        print("    the loop thread (ms): "
              + ", ".join(f"{k} {ms(v)}" for k, v in sorted(states.items(), key=lambda kv: -kv[1])))
        top = sorted(cpu.items(), key=lambda kv: -kv[1])[:8]
        print("    the CPUs went to (ms): " + ", ".join(f"{k} {ms(v)}" for k, v in top))
        print(f"    GIL waits of the loop thread ended by: {waits or 'none'}")


def record_perf(path: Path) -> subprocess.Popen:
    return subprocess.Popen(["perf", "record", "-q", "-a", "-k", "mono", "-g", "-e",
                             "sched:sched_switch", "-e", "sched:sched_wakeup", "-o", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="uvloop", choices=("uvloop", "asyncio"))
    parser.add_argument("--rate", type=int, default=400)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--latency", default="1ms")
    parser.add_argument("--client", default="standard", choices=("standard", "lean"))
    parser.add_argument("--late-ms", type=float, default=5.0)
    parser.add_argument("--no-perf", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 30 or not 1 <= args.rate <= 20_000:
        parser.error("--seconds must be 1..30 and --rate 1..20000")
    use_perf = not args.no_perf
    if use_perf and shutil.which("perf") is None:
        print("bench.late_starts: perf is not installed (or use --no-perf)", file=sys.stderr)
        return 2
    from harness.mock.process import ServerProcess

    with tempfile.TemporaryDirectory(prefix="late-starts-") as name:
        tmp = Path(name)
        with ServerProcess(SCENARIO.format(**vars(args))) as server, timed_work() as (work, tids):
            perf = record_perf(tmp / "perf.data") if use_perf else None
            try:
                time.sleep(0.5 if perf else 0)  # perf attaches its tracepoints
                tids["loop"] = threading.get_native_id()
                backend, intended, started = run_cell(args, server.url, tmp)
            finally:
                if perf is not None:
                    perf.send_signal(signal.SIGINT)
                    _, err = perf.communicate(timeout=120)
            server_pid = server.proc.pid
        t0 = backend.gauge.t0_ns
        intended, started = intended + t0, started + t0
        late = windows(intended, started, int(args.late_ms * 1e6))
        trace = None
        if perf is not None:
            if perf.returncode not in (0, -signal.SIGINT) or not (tmp / "perf.data").exists():
                print(f"bench.late_starts: perf failed: {err.strip()[-300:]}", file=sys.stderr)
                return 3
            text = subprocess.run(["perf", "script", "-i", str(tmp / "perf.data"), "-F",
                                   sched_trace.FIELDS, "--ns"], capture_output=True, text=True,
                                  timeout=600).stdout
            trace = sched_trace.build(sched_trace.parse(text), set(tids.values()))
    report(args, started - intended, late, work, trace, tids, tids["loop"], server_pid,
           (int(intended.min()), int(started.max())))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
