"""The CPU work of a mock endpoint with `cpu:` — the inference service's pre-processing, done
by the server itself: `harness.core.image.preprocess` (normalise, blur and downsample a
generated RGB image with NumPy, which releases the GIL for most of it, as OpenCV does), sized so
that one request costs `cpu` of CPU time in the process that runs it.

A plan is `repeats` images of `side` pixels. The side is calibrated (continuous durations, no
rounding to whole units); images are repeated only beyond what one image of MAX_SIDE takes
(~5 ms here), so a long `cpu` holds a few MB of arrays at a time, never a huge image.

Calibration counts the thread's CPU time (time.thread_time_ns), not wall time: the server
calibrates while the cell process starts beside it, and a wall clock would count as work the
time it waited for a core. Each process calibrates its own plans — the same code runs faster in
some processes than in others — the server's at start-up, a pool process's when it starts."""

from __future__ import annotations

import math
import os
import threading
import time
from typing import NamedTuple

from harness.core.image import preprocess
from harness.core.stats import median

MAX_SIDE = 256  # the pipeline's default image
MIN_SIDE = 8  # the pipeline's smallest: the floor of one request's work (~50 µs)
TRIALS = 3


class Plan(NamedTuple):
    side: int
    repeats: int
    cost_ns: int  # the plan's CPU time as calibrated: repeats × one image's median
    pid: int  # the process that calibrated it (and runs it)


_PLANS: dict[int, Plan] = {}  # cpu_ns → this process's plan
_LOCK = threading.Lock()


def _image_ns(side: int, trials: int = TRIALS) -> int:
    """Median CPU time of one image of `side` pixels in this thread."""
    runs = []
    for seq in range(trials):
        start = time.thread_time_ns()
        preprocess(seq, side)
        runs.append(time.thread_time_ns() - start)
    return int(median(runs))


def calibrate(cpu_ns: int) -> Plan:
    """The plan whose CPU time is closest to `cpu_ns` in this process: as few repeats as keep
    the side <= MAX_SIDE, then the side found by bisection on measured costs."""
    preprocess(0, MIN_SIDE)  # first call: NumPy's own warm-up is not work
    costs = {MAX_SIDE: _image_ns(MAX_SIDE)}
    repeats = max(1, math.ceil(cpu_ns / costs[MAX_SIDE]))
    each = cpu_ns / repeats
    low, high = MIN_SIDE, MAX_SIDE  # the smallest side that costs at least `each`
    while low < high:
        mid = (low + high) // 2
        costs[mid] = _image_ns(mid)
        if costs[mid] < each:
            low = mid + 1
        else:
            high = mid
    for side in (low, low - 1):
        if side >= MIN_SIDE and side not in costs:
            costs[side] = _image_ns(side)
    side = min((s for s in (low, low - 1) if s >= MIN_SIDE),
               key=lambda s: abs(costs[s] - each))
    return Plan(side, repeats, costs[side] * repeats, os.getpid())


def plan_for(cpu_ns: int) -> Plan:
    """This process's plan for `cpu_ns`, calibrated on first use."""
    with _LOCK:
        if cpu_ns not in _PLANS:
            _PLANS[cpu_ns] = calibrate(cpu_ns)
        return _PLANS[cpu_ns]


def calibrate_all(cpu_values: tuple[int, ...]) -> list[Plan]:
    """Calibrate every value (a pool process does this as it starts, before the server is
    ready). Module-level: pools pickle it."""
    return [plan_for(cpu_ns) for cpu_ns in cpu_values]


def work(cpu_ns: int, seq: int, stop: threading.Event | None = None) -> int:
    """One request's CPU work, where it is called (the loop, a pool thread or a pool process);
    returns the CPU time it took (ns). `stop` (threads only): the server is stopping — the work
    ends after the image in progress, so a pool thread never holds up the exit. Module-level:
    pools pickle it."""
    plan = plan_for(cpu_ns)
    start = time.thread_time_ns()
    for i in range(plan.repeats):
        if stop is not None and stop.is_set():
            break
        preprocess(seq + i, plan.side)
    return time.thread_time_ns() - start
