"""What every backend shares: the cell it runs, how it is told to stop, what it returns.

The shape is the same everywhere: a producer feeds a queue; `workers` queue workers
(dispatchers) take requests from it and run each in one of `concurrency` execution slots under
one global limit. Backends differ only in what a slot is (thread, process, task+connection)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from harness.gauge import now_ns
from harness.scenario import Scenario

GRACE_S = 5.0  # on stop: how long in-flight requests may finish before they are cancelled


@dataclass(frozen=True)
class CellSpec:
    """Everything a cell (and each of its slot processes) needs; picklable."""

    scenario: Scenario
    backend: str
    concurrency: int
    repetition: int
    strategy: str = "inline"
    variant: str = "default"
    server_url: str = ""  # empty when the workload calls no endpoint
    units: int | None = None  # calibrated CPU work units, for cpu workloads
    work_dir: str = ""  # the cell's scratch folder (e.g. the SQLite file)

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.server_url.removeprefix("http://").rstrip("/").partition(":")
        return host, int(port)


@dataclass
class CellOutput:
    records: pa.Table  # RECORD_SCHEMA
    peak_live: int
    interrupted: bool
    extras: dict = field(default_factory=dict)  # the workload's cell-level results


@dataclass
class StopFlag:
    """Set from a signal handler (or a test); backends poll it or wake on it."""

    event: threading.Event = field(default_factory=threading.Event)
    grace_s: float = GRACE_S
    set_at_ns: int = 0

    def set(self) -> None:
        if not self.event.is_set():
            self.set_at_ns = now_ns()
            self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def grace_left_s(self) -> float:
        return max(0.0, self.grace_s - (now_ns() - self.set_at_ns) / 1e9)


class Backend(Protocol):
    name: str
    completed: int  # requests finished so far, read by the sampler
    gauge: object | None  # the InFlightGauge once the clock has started
    lag_samples: list | None  # (t_ns, lag_ns) of the event-loop probe; None without a loop

    def run(self, spec: CellSpec, stop: StopFlag) -> CellOutput: ...


class Producer:
    """The closed model's request source: seq 0, 1, 2 … until `requests` are made, `duration`
    has passed since t0, or stop is set — whichever comes first."""

    def __init__(self, spec: CellSpec, t0_ns: int, stop: StopFlag) -> None:
        load = spec.scenario.load
        self.limit = load.requests
        self.deadline_ns = t0_ns + load.duration if load.duration else None
        self.stop = stop
        self.next_seq = 0

    def take(self) -> int | None:
        """The next seq, or None when production is over."""
        if self.over() or (self.limit is not None and self.next_seq >= self.limit):
            return None
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        return seq

    def over(self, at_ns: int | None = None) -> bool:
        """Stopped or past the duration (at `at_ns`, default now): queued requests must not
        start any more."""
        return self.stop.is_set() or (
            self.deadline_ns is not None and (at_ns or now_ns()) >= self.deadline_ns)


def worker_name(i: int) -> str:
    return f"worker-{i}"
