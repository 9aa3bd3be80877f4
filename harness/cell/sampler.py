"""The cell's timeline: every 100 ms, in-flight and completed requests, the worst event-loop lag
of the interval (the probe's samples, or the lag in progress when the loop has been blocked
past the probe's due time), and the CPU use and context switches of the cell's whole process
tree: every thread of the cell's process (slot and pool threads too), the main thread of each
process under it (slot and pool processes run their work there)."""

from __future__ import annotations

import os
import resource
import threading
from array import array

import psutil
import pyarrow as pa

from harness.core.clock import now_ns

INTERVAL_S = 0.1
CHILD_SCAN_EVERY = 10  # samples between looks for new processes in the cell's tree
_COLUMNS = ("t_ns", "in_flight", "completed", "loop_lag_max_ns", "cpu_percent",
            "ctx_switches_voluntary", "ctx_switches_involuntary")


class Sampler(threading.Thread):
    def __init__(self, backend, on_sample=None, interval_s: float = INTERVAL_S,
                 on_clock=None) -> None:
        super().__init__(name="sampler", daemon=True)
        self.backend, self.on_sample, self.interval_s = backend, on_sample, interval_s
        self.on_clock = on_clock  # called once with t0 (monotonic ns) when the clock starts
        self.finished = threading.Event()
        self._lock = threading.Lock()  # the spooler drains the columns from its own thread
        self.columns = {name: [] for name in _COLUMNS}
        self._proc = psutil.Process()
        self._seen: dict[int, tuple[float, float, int, int]] = {}  # cumulative, per process
        self._base = (0.0, 0.0, 0, 0)
        self._lag_index = 0
        self._scans, self._children = 0, []
        self.cpu_user_s = self.cpu_sys_s = None

    def _scan(self) -> None:
        """The processes of the cell's tree: once at the clock's start (slots and pool workers
        start before it) and once a second after, not at every sample. From the kernel's
        children lists (child_pids) where it keeps them; else psutil's children(), which reads
        every process's /proc entry on the machine, each read giving up the GIL: uvloop's loop,
        which takes the GIL back for each of its callbacks, then hands it to the scan over and
        over (480 processes: scans of 47 ms, 156 waits of the loop for the GIL in 19 of them).
        """
        pids = child_pids(self._proc.pid)
        if pids is None:
            try:
                self._children = self._proc.children(recursive=True)
            except psutil.Error:
                self._children = []
            return
        known = {proc.pid: proc for proc in self._children}
        children = []
        for pid in pids:
            try:
                children.append(known.get(pid) or psutil.Process(pid))
            except psutil.Error:  # ended since the list was read
                pass
        self._children = children

    def _tree_totals(self) -> tuple[float, float, int, int]:
        """CPU seconds and context switches of the process tree so far. Per-process counters
        are cumulative, so the last reading of a process that has ended still counts. The cell's
        own process is read by getrusage (every thread's; one call that keeps the GIL, where
        /proc reads would wait for it behind CPU work); its children from /proc."""
        usage = resource.getrusage(resource.RUSAGE_SELF)  # first: before any /proc read
        self._seen[self._proc.pid] = (usage.ru_utime, usage.ru_stime, usage.ru_nvcsw,
                                      usage.ru_nivcsw)
        if self._scans % CHILD_SCAN_EVERY == 0:
            self._scan()
        self._scans += 1
        for proc in self._children:
            try:
                with proc.oneshot():
                    times, switches = proc.cpu_times(), proc.num_ctx_switches()
                self._seen[proc.pid] = (times.user, times.system, switches.voluntary,
                                        switches.involuntary)
            except psutil.Error:
                pass
        return tuple(sum(v[i] for v in self._seen.values()) for i in range(4))

    def run(self) -> None:
        while self.backend.gauge is None:  # the clock has not started yet
            if self.finished.wait(0.005):
                return
        t0 = self.backend.gauge.t0_ns
        if self.on_clock is not None:
            self.on_clock(t0)
        self._base = previous = self._tree_totals()
        last_t = now_ns()
        while True:
            done = self.finished.wait(self.interval_s)
            totals, t = self._tree_totals(), now_ns()
            self._record(t - t0, t - last_t, totals, previous)
            previous, last_t = totals, t
            if self.on_sample:
                self.on_sample(self.backend.completed)
            if done:
                break
        self.cpu_user_s = totals[0] - self._base[0]
        self.cpu_sys_s = totals[1] - self._base[1]

    def _record(self, t_ns, elapsed_ns, totals, previous) -> None:
        with self._lock:
            self._append(t_ns, elapsed_ns, totals, previous)

    def _append(self, t_ns, elapsed_ns, totals, previous) -> None:
        cols, backend = self.columns, self.backend
        cols["t_ns"].append(t_ns)
        cols["in_flight"].append(backend.gauge.in_flight)
        cols["completed"].append(backend.completed)
        lag = backend.lag_samples
        if lag is None:
            cols["loop_lag_max_ns"].append(None)
        else:
            fresh = lag[self._lag_index:]
            self._lag_index += len(fresh)
            # A loop blocked past the probe's due time has a lag in progress, though no sample
            # came in this interval: the probe cannot wake to record it.
            due, now = getattr(backend, "lag_due_ns", None), now_ns()
            overdue = [now - due] if due is not None and now > due else []
            elsewhere = getattr(backend, "lag_elsewhere", None)  # a cell's other generators
            if elsewhere is not None:
                overdue.append(elsewhere())
            cols["loop_lag_max_ns"].append(max([s[1] for s in fresh] + overdue, default=0))
        busy_s = (totals[0] - previous[0]) + (totals[1] - previous[1])
        cols["cpu_percent"].append(100.0 * busy_s / (elapsed_ns / 1e9) if elapsed_ns else 0.0)
        cols["ctx_switches_voluntary"].append(totals[2] - previous[2])
        cols["ctx_switches_involuntary"].append(totals[3] - previous[3])

    def stop(self) -> None:
        self.finished.set()
        self.join()

    def drain(self) -> pa.RecordBatch | None:
        """The samples taken since the last drain (TIMELINE_RECORD_SCHEMA)."""
        from harness.core.schema import TIMELINE_RECORD_SCHEMA

        with self._lock:
            if not self.columns["t_ns"]:
                return None
            columns, self.columns = self.columns, {name: [] for name in _COLUMNS}
        return pa.RecordBatch.from_arrays(
            [pa.array(columns[f.name], f.type) for f in TIMELINE_RECORD_SCHEMA],
            schema=TIMELINE_RECORD_SCHEMA)


def child_pids(pid: int, proc: str = "/proc") -> list[int] | None:
    """Every process under `pid` (its children, theirs, and so on), from the per-thread
    children lists Linux keeps (/proc/PID/task/TID/children): a few small reads for the cell's
    own tree, however many processes the machine runs (a full scan read 480 of them in 13-18 ms
    of CPU beside other work). None where the lists are absent (another system, a kernel built
    without CONFIG_PROC_CHILDREN). A process that ends meanwhile is left out."""
    if not os.path.exists(f"{proc}/{pid}/task/{pid}/children"):
        return None
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"{proc}/{parent}/task")
        except OSError:  # ended meanwhile
            continue
        for tid in tasks:
            try:
                with open(f"{proc}/{parent}/task/{tid}/children") as file:
                    children = [int(child) for child in file.read().split()]
            except (OSError, ValueError):  # the thread or the process ended meanwhile
                continue
            found += children
            todo += children
    return found


class LagDrain:
    """The event-loop probe's samples not yet spooled (LAG_RECORD_SCHEMA); None without a
    loop. The probe appends to a list on the loop's thread; reading a slice is safe."""

    def __init__(self, backend) -> None:
        self.backend, self.index = backend, 0

    def __call__(self) -> pa.RecordBatch | None:
        from harness.core.schema import LAG_RECORD_SCHEMA

        samples = self.backend.lag_samples
        if not samples:
            return None
        fresh = samples[self.index:]
        if not fresh:
            return None
        self.index += len(fresh)
        return pa.RecordBatch.from_arrays(
            [pa.array(array("q", (s[0] for s in fresh)), pa.int64()),
             pa.array(array("q", (s[1] for s in fresh)), pa.int64())], schema=LAG_RECORD_SCHEMA)
