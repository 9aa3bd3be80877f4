"""What every backend shares: the cell it runs, how it is told to stop, what it returns.

Two shapes. With `load.workers` (the seed lab's): a producer feeds a queue; `workers` queue
workers (dispatchers) take requests from it and run each in one of `concurrency` execution
slots under one global limit. Without: each slot takes its next seq itself (closed model), or
one pacer hands each arrival to a free slot (open model) — no queue, dispatcher or task per
request. Backends differ only in what a slot is (thread, process, task+connection); the
`processes` backend always dispatches (its slot processes are long-lived already)."""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from itertools import islice
from typing import Protocol

from harness.cell.tickets import Counter, Shared
from harness.core.clock import now_ns
from harness.core.job import GRACE_S
from harness.core.keys import CellKey
from harness.core.tls import TlsSettings
from harness.core.units import grouped
from harness.scenario.model import Scenario


@dataclass(frozen=True)
class CellSpec:
    """Everything a cell (and each of its slot processes) needs; picklable. The cell's axes
    read through: `spec.concurrency` is `spec.key.concurrency`."""

    scenario: Scenario
    key: CellKey
    server_url: str = ""  # empty when the workload calls no endpoint
    units: int | None = None  # calibrated CPU work units, for cpu workloads
    work_dir: str = ""  # the cell's scratch folder (e.g. the SQLite file)
    generator: int = 0  # which of the cell's `generators` processes this one is
    shared: str = ""  # the generators' shared file (tickets.Shared); empty with one generator
    body_file: str = ""  # the request body the runner made (workload.body.image)
    spread: bool = False  # the generators are standalone processes (CellJob.spread)
    tls: TlsSettings | None = None  # https: how the clients connect

    @cached_property
    def load(self):
        """The scenario's load block this cell comes from."""
        return self.scenario.load_for(self.key)

    @property
    def slots(self) -> int:
        """This generator's share of the cell's slots (closed: concurrency; open:
        max_in_flight): divided evenly, the remainder to the first generators."""
        whole, rest = divmod(self.key.concurrency, self.key.generators)
        return whole + (self.generator < rest)

    @property
    def queued(self) -> bool:
        """The producer, queue and workers shape: load.workers given, or slot processes (their
        dispatcher threads hand requests over the pipes)."""
        return self.load.workers is not None or self.key.backend == "processes"

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "key":  # not during unpickling
            raise AttributeError(name)
        return getattr(self.key, name)


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


def freeze_heap() -> None:
    """Just before the clock: collect, then move every object made so far (imports, the
    workload's sessions and connections, the schedule) to the collector's permanent
    generation, so a full collection during the cell walks only what the cell made. Left
    alone, the first full collections walked the whole imported heap with the loop stopped:
    20-80 ms each in a cell's first second, starts 86 ms late at 1 000/s."""
    gc.collect()
    gc.freeze()


class Producer:
    """Where a cell's requests come from. Closed model: tickets until `requests` (plus the
    warm-up's) are made, `duration` (after the warm-up) has passed, or stop is set, whichever
    comes first; a slot takes the next as soon as it is free. Open model: arrivals at intended
    times from the cell's schedule (harness.scenario.arrivals), whatever is in flight.

    A ticket becomes a request with a `seq` only when a dispatcher releases it to a slot
    (`release`), so every cell's rows have seq 0…n−1 without gaps: the look-ahead left in the
    queue at the end is never released."""

    def __init__(self, spec: CellSpec, stop: StopFlag) -> None:
        """Built before the clock starts (the schedule's first arrivals are computed here);
        `start(t0)` when it does."""
        self.load, self.stop = spec.load, stop
        self.open, self.queued = self.load.model == "open", spec.queued
        self.warmup_requests = self.load.warmup.requests
        self.limit = (None if self.load.requests is None
                      else self.load.requests + self.warmup_requests)
        self._arrivals = None
        if self.open:
            from harness.scenario.arrivals import schedule_for

            arrivals = schedule_for(self.load, spec.scenario.arrival_seed, spec.key)
            if spec.generators > 1:  # arrival k is generator k mod N's
                arrivals = islice(arrivals, spec.generator, None, spec.generators)
            self._arrivals = _prefetched(arrivals)
        # Without a queue, seqs come straight from a counter (the cell's one when it is split
        # across generators); the open model's arrivals bound it, not `requests`.
        limit = None if self.open else self.limit
        if spec.shared:
            self.counter = Shared(spec.shared, spec.generators).counter(limit)
        elif spec.spread and spec.generators > 1:
            # Nothing shared: generator g takes g, g+N, …; open, seq = the arrival's index.
            if self.queued:  # the scenario refuses it already; a hand-made job gets this
                raise ValueError(f"a spread cell's {spec.generators} generators cannot share "
                                 "one queue (load.workers, processes): use one generator")
            self.counter = Counter(limit, spec.generator, spec.generators)
        else:
            self.counter = Counter(limit)
        self.start(now_ns())
        self.produced = 0
        self.released = 0
        self.warmup_released = 0
        self.exhausted = False  # no slot is left to run anything (every slot process died)
        self._lock = threading.Lock()

    def start(self, t0_ns: int) -> Producer:
        load = self.load
        self.t0_ns = t0_ns
        self.warmup_end_ns = t0_ns + load.warmup.duration  # closed, warm-up by duration
        self.deadline_ns = None
        if not self.open and load.duration:
            self.deadline_ns = t0_ns + load.warmup.duration + load.duration
        return self

    def take(self) -> bool:
        """Closed model: one more ticket, or False when production is over."""
        if self.over() or (self.limit is not None and self.produced >= self.limit):
            return False
        self.produced += 1
        return True

    def next_arrival(self):
        """Open model: the next Arrival (intended start in ns since t0, warm-up or not), or
        None when the schedule is done or production stopped. The caller waits for it."""
        if self.over():
            return None
        arrival = next(self._arrivals, None)
        if arrival is not None:
            self.produced += 1
        return arrival

    def wait_until(self, at_ns: int) -> bool:
        """From a thread: sleep until t0 + at_ns, never less (a deadline wait on the monotonic
        clock, woken early only by stop). False when stopped meanwhile."""
        due = self.t0_ns + at_ns
        while (left := due - now_ns()) > 0:
            if self.stop.event.wait(left / 1e9):
                return False
        return not self.stop.is_set()

    def release(self, warmup: bool | None = None) -> tuple[int, bool]:
        """(seq, warm-up?) of a request handed to a slot now (dispatchers may be threads).
        `warmup`: the open model's arrival says; the closed model's warm-up is the first
        `warmup.requests` released, or those released before the warm-up's end."""
        with self._lock:
            seq = self.released
            self.released = seq + 1
        if warmup is None:
            warmup = seq < self.warmup_requests or (
                self.warmup_end_ns > self.t0_ns and now_ns() < self.warmup_end_ns)
        if warmup:
            with self._lock:
                self.warmup_released += 1
        return seq, warmup

    def take_seq(self, warmup: bool | None = None) -> tuple[int, bool] | None:
        """Without a queue: (seq, warm-up?) of the request a slot starts now, or None when
        production is over. `warmup` as for release(); not counted in warmup_released."""
        # over(), inlined: this runs once per request on every slot
        if self.stop.event.is_set() or self.exhausted or (
                self.deadline_ns is not None and now_ns() >= self.deadline_ns):
            return None
        seq = self.counter.take()
        if seq is None:
            return None
        if warmup is None:
            warmup = seq < self.warmup_requests or (
                self.warmup_end_ns > self.t0_ns and now_ns() < self.warmup_end_ns)
        return seq, warmup

    def released_count(self) -> int:
        """Requests released to a slot, at the end: by this producer through its queue, or
        by the cell's counter (every generator's, when they share one)."""
        return self.released if self.queued else self.counter.released()

    def over(self, at_ns: int | None = None) -> bool:
        """Stopped, out of slots or past the duration (at `at_ns`, default now): queued
        requests must not start any more."""
        return self.stop.is_set() or self.exhausted or (
            self.deadline_ns is not None and (at_ns or now_ns()) >= self.deadline_ns)


def _prefetched(schedule):
    """The schedule's iterator with its first chunk already computed."""
    from itertools import chain

    arrivals = iter(schedule)
    first = next(arrivals, None)
    return chain(() if first is None else (first,), arrivals)


def tell_phase(backend, text: str) -> None:
    """A start-up step, said to the runner for its live view (`backend.on_phase`, set by the
    cell's main process; a generator of a cell says nothing)."""
    on_phase = getattr(backend, "on_phase", None)
    if on_phase is not None:
        on_phase(text)


def connecting(backend, spec: CellSpec, runner) -> None:
    """Say that the slots' connections open now, if they do (as warm_ahead decides)."""
    if spec.load.connect_rate and hasattr(runner, "warm"):
        tell_phase(backend, f"connecting {grouped(spec.slots)}")


def warm_ahead(runner, spec: CellSpec, index: int | None = None) -> None:
    """A blocking slot's connection, opened before the clock: at most load.connect_rate a
    second over the cell (slot processes start together, so slot i waits i ÷ rate)."""
    rate = spec.load.connect_rate
    if not rate or not hasattr(runner, "warm"):
        return
    if index is not None:
        time.sleep(index / rate)
        runner.warm()
        return
    runner.warm()
    time.sleep(1 / rate)


def worker_name(i: int) -> str:
    return f"worker-{i}"
