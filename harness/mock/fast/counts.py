"""The fast engine's counts (in flight, peak, requests): a process's own, or its slot of an array
shared by N processes on one port."""

from __future__ import annotations

import os
import time

from harness.mock.procstat import process_cpu_s

IN_FLIGHT, PEAK, REQUESTS, PID = range(4)
FIELDS = 4  # int64 per process in the shared array


class LocalCounts:
    """The counts of a server in one process."""

    __slots__ = ("in_flight", "peak", "requests", "arrivals")

    def __init__(self) -> None:
        self.in_flight = self.peak = self.requests = self.arrivals = 0

    def arrive(self) -> int:
        """A request to an endpoint arrived: the in-flight count, this one included."""
        self.arrivals += 1
        n = self.in_flight = self.in_flight + 1
        if n > self.peak:
            self.peak = n
        return n

    def depart(self, count: int = 1) -> None:
        self.in_flight -= count
        self.requests += count

    def arrival_seq(self) -> int:
        """The seq of a request without one: the arrivals before it."""
        return self.arrivals - 1

    def stats(self) -> dict:
        return {"in_flight": self.in_flight, "peak_in_flight": self.peak,
                "requests": self.requests, "pid": os.getpid(), "cpu_s": time.process_time()}


class SharedCounts:
    """The counts of one of N processes: its slot of a shared int64 array (FIELDS a process),
    written by its process alone, read by all. /_harness/stats, answered by whichever process
    the connection reached, sums the slots.

    In flight at arrival (the header, and the peak) is the sum of every process's in-flight
    count, read without a lock: exact unless another process's count changes during the read
    (a few hundred nanoseconds), when it is off by those requests. The peak reported is the
    largest such sum any process saw, so it is the server's peak, as one process counts it,
    within that margin (a sum of per-process peaks would only bound it from above). A request
    without a seq takes `index + N * (the process's arrivals before it)`: distinct across
    processes without a shared counter."""

    __slots__ = ("view", "base", "in_flights", "peaks", "index", "processes", "arrivals",
                 "supervisor")

    def __init__(self, array, index: int, processes: int, supervisor: int) -> None:
        self.view = view = memoryview(array).cast("q")
        self.base = index * FIELDS
        self.in_flights = view[IN_FLIGHT::FIELDS]
        self.peaks = view[PEAK::FIELDS]
        self.index, self.processes, self.supervisor = index, processes, supervisor
        self.arrivals = 0
        view[self.base + PID] = os.getpid()

    def arrive(self) -> int:
        self.arrivals += 1
        view, base = self.view, self.base
        view[base + IN_FLIGHT] += 1
        n = sum(self.in_flights)
        if n > view[base + PEAK]:
            view[base + PEAK] = n
        return n

    def depart(self, count: int = 1) -> None:
        view, base = self.view, self.base
        view[base + IN_FLIGHT] -= count
        view[base + REQUESTS] += count

    def arrival_seq(self) -> int:
        return self.index + self.processes * (self.arrivals - 1)

    def stats(self) -> dict:
        view, me = self.view, os.getpid()
        processes, cpu_s = [], 0.0
        for base in range(0, len(view), FIELDS):
            pid = view[base + PID]
            processes.append({"pid": pid, "in_flight": view[base + IN_FLIGHT],
                            "peak_in_flight": view[base + PEAK],
                            "requests": view[base + REQUESTS]})
            cpu_s += process_cpu_s(pid) if pid != me else time.process_time()
        return {"in_flight": sum(self.in_flights), "peak_in_flight": max(self.peaks),
                "requests": sum(w["requests"] for w in processes), "pid": self.supervisor,
                "cpu_s": cpu_s + process_cpu_s(self.supervisor), "processes": processes}


