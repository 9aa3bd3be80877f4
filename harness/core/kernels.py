"""CPU kernels and their calibration.

`spin` is pure Python and holds the GIL for its whole run; `digest` hashes a buffer with
hashlib, which releases the GIL while it hashes (buffers over 2 KiB), so threads can overlap."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time

from harness.core.clock import now_ns
from harness.core.stats import median

_BLOCK = bytes(range(256)) * 1024  # 256 KiB: one `digest` unit


def spin(units: int) -> int:
    x = 0
    for i in range(units):
        x = (x * 31 + i) & 0xFFFFFFFF
    return x


def digest(units: int) -> int:
    h = hashlib.sha256()
    for _ in range(units):
        h.update(_BLOCK)
    return h.digest()[0]


KERNELS = {"cpu": spin, "cpu_release": digest}


def timed_kernel(kind: str, units: int) -> tuple[int, str]:
    """Run a kernel where it is called (loop, pool thread or pool process); returns its
    duration measured there and a label naming what ran it. Module-level: pools pickle it."""
    start = now_ns()
    KERNELS[kind](units)
    elapsed = now_ns() - start
    return elapsed, f"{threading.current_thread().name}@{os.getpid()}"


KERNEL_TRIALS = 3


def kernel_ns_per_unit(kind: str, units: int, trials: int = KERNEL_TRIALS, alone=None) -> float:
    """This process's speed on the kernel, in ns per unit: the fastest of `trials` runs of
    `units` units (one request's worth), the least disturbed one. The same calibrated kernel
    runs markedly faster in some processes than in others, so every process that runs kernels
    measures its own, before the clock starts. `alone`: a lock the processes of one cell take
    in turn, so that each measures its own speed, not its share of the cores (50 slots on 2
    cores would each read 25 × slower). Module-level: pools pickle it."""
    with alone if alone is not None else contextlib.nullcontext():
        return min(timed_kernel(kind, units)[0] for _ in range(trials)) / units


def mean_ns_per_unit(values) -> float | None:
    """Several processes' kernel speeds as one: their mean speed (units per ns), given back in
    ns per unit — the harmonic mean of the ns per unit. When every process stays busy, units
    done ÷ time × this ÷ 1e9 is exactly the number of busy processes."""
    values = [v for v in values if v]
    return len(values) / sum(1 / v for v in values) if values else None


def calibrate(kind: str, duration_ns: int, trials: int = 5) -> dict:
    """Units that take `duration_ns` of CPU on this machine now: grow a probe until it runs
    >= 20 ms, then take the median rate of several trials (the machine's speed drifts; run per
    run). Timed in this thread's own CPU time: wall time, which other work on a busy machine
    stretches, would size the steps too small for the quieter moment they run in."""
    kernel = KERNELS[kind]
    units = 1 if kind == "cpu_release" else 1000
    while True:
        start = time.thread_time_ns()
        kernel(units)
        elapsed = time.thread_time_ns() - start
        if elapsed >= 20_000_000:
            break
        units *= 2
    rates = []
    for _ in range(trials):
        start = time.thread_time_ns()
        kernel(units)
        rates.append(units / max(time.thread_time_ns() - start, 1))
    rate = median(rates)  # units per ns
    return {"kind": kind, "target_ns": duration_ns, "units": max(1, round(rate * duration_ns)),
            "units_per_s": rate * 1e9, "trials": trials}
