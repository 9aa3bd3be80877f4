"""What every backend shares: the cell it runs, how it is told to stop, what it returns.

The shape is the same everywhere: a producer feeds a queue; `workers` queue workers
(dispatchers) take requests from it and run each in one of `concurrency` execution slots under
one global limit. Backends differ only in what a slot is (thread, process, task+connection)."""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field
from typing import Protocol

from harness.gauge import now_ns
from harness.keys import CellKey
from harness.scenario import Scenario

GRACE_S = 5.0  # on stop: how long in-flight requests may finish before they are cancelled
SERVER_DIED = signal.SIGUSR2  # from the runner: the mock server died, release nothing more


@dataclass(frozen=True)
class CellSpec:
    """Everything a cell (and each of its slot processes) needs; picklable. The cell's axes
    read through: `spec.concurrency` is `spec.key.concurrency`."""

    scenario: Scenario
    key: CellKey
    server_url: str = ""  # empty when the workload calls no endpoint
    units: int | None = None  # calibrated CPU work units, for cpu workloads
    work_dir: str = ""  # the cell's scratch folder (e.g. the SQLite file)

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "key":  # not during unpickling
            raise AttributeError(name)
        return getattr(self.key, name)

    @property
    def host_port(self) -> tuple[str, int]:
        from harness.target import split_target

        return split_target(self.server_url)


@dataclass
class CellOutput:
    """What the cell observed besides its records (those went to the spool as they came)."""

    released: int  # requests handed to a slot: each is a row
    peak_live: int
    interrupted: bool
    extras: dict = field(default_factory=dict)  # the workload's cell-level results
    slots_lost: int = 0


@dataclass
class StopFlag:
    """Set from a signal handler (or a test); backends poll it or wake on it."""

    event: threading.Event = field(default_factory=threading.Event)
    grace_s: float = GRACE_S
    set_at_ns: int = 0
    reason: str = ""  # "signal" (the user), "server" (the mock server died), "disk"

    def set(self, reason: str = "signal") -> None:
        if not self.event.is_set():
            self.set_at_ns = now_ns()
            self.reason = reason
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

    def run(self, spec: CellSpec, stop: StopFlag, spool) -> CellOutput:
        """`spool`: a Spooler; the backend registers its record buffers with it before the
        clock starts, and every row it appends reaches disk within the flush interval."""


class Producer:
    """The closed model's request source: tickets until `requests` are made, `duration` has
    passed since t0, or stop is set — whichever comes first. A ticket becomes a request with a
    `seq` only when a dispatcher releases it to a slot (`release`), so every cell's rows have
    seq 0…n−1 without gaps: the look-ahead left in the queue at the end is never released."""

    def __init__(self, spec: CellSpec, t0_ns: int, stop: StopFlag) -> None:
        load = spec.scenario.load
        self.limit = load.requests
        self.deadline_ns = t0_ns + load.duration if load.duration else None
        self.stop = stop
        self.produced = 0
        self.released = 0
        self.exhausted = False  # no slot is left to run anything (every slot process died)
        self._lock = threading.Lock()

    def take(self) -> bool:
        """One more ticket, or False when production is over."""
        if self.over() or (self.limit is not None and self.produced >= self.limit):
            return False
        self.produced += 1
        return True

    def release(self) -> int:
        """The seq of a request handed to a slot now (dispatchers may be threads)."""
        with self._lock:
            seq = self.released
            self.released = seq + 1
            return seq

    def over(self, at_ns: int | None = None) -> bool:
        """Stopped, out of slots or past the duration (at `at_ns`, default now): queued
        requests must not start any more."""
        return self.stop.is_set() or self.exhausted or (
            self.deadline_ns is not None and (at_ns or now_ns()) >= self.deadline_ns)


def worker_name(i: int) -> str:
    return f"worker-{i}"
