"""`processes`: `concurrency` slot processes, each with its own workload runner
(for HTTP: a blocking keep-alive connection). Dispatcher threads in the cell process hand
requests to free slot processes over pipes; each slot sends its request's record back as the
request ends, so a slot holds nothing the cell does not already have but the request it runs.

The slot critical section (live in-flight counter + timestamps + the slot's own word) sits in
shared memory under a lock the kernel frees when its holder dies (gauge.FileLock), so live and
sweep peaks stay equal by construction across processes, and a slot process killed at any
instant neither stalls the cell nor leaves the live count high: the cell closes its interval
(end = when the death was seen), writes the request it held as a `lost` row, and goes on with
one slot fewer (`slots_lost`). Each slot process builds its own runner from the pickled spec."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import threading
from multiprocessing.connection import Connection, wait
from pathlib import Path

from harness.cell.backends.base import (
    CellOutput,
    CellSpec,
    Producer,
    StopFlag,
    freeze_heap,
    tell_phase,
    warm_ahead,
)
from harness.cell.backends.dispatch import POLL_S, join_all, start_dispatch
from harness.cell.buffer import RecordBuffer
from harness.cell.gauge import FileLock, SlotGauge
from harness.cell.workloads import make_workload, merge_slot_extras
from harness.core.clock import now_ns
from harness.core.schema import (
    CANCELLED_OUTCOME,
    LOST_OUTCOME,
    RECORD_SCHEMA,
    internal_outcome,
)
from harness.core.secrets import print_crash
from harness.core.units import grouped
from harness.scenario.secrets import model_secrets


class _Cancelled(BaseException):
    """Raised inside a slot process by SIGUSR1 while a request is in progress."""


def _slot_main(index: int, conn: Connection, spec: CellSpec, lock, state) -> None:
    try:
        _slot(index, conn, spec, lock, state)
    except Exception:  # e.g. the database refused: its message may quote the DSN
        print_crash(model_secrets(spec.scenario))
        raise SystemExit(1) from None


def _slot(index: int, conn: Connection, spec: CellSpec, lock, state) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):  # the cell process coordinates shutdown
        signal.signal(sig, signal.SIG_IGN)
    in_request = False

    def on_cancel(signum, frame):
        if in_request:
            raise _Cancelled

    signal.signal(signal.SIGUSR1, on_cancel)
    workload = make_workload(spec)
    runner = workload.sync_runner(f"process-{index}")
    warm_ahead(runner, spec, index)
    freeze_heap()
    # Ready (process start-up stays outside the measured cell), with what the slot measured
    # before the clock: its own kernel speed.
    conn.send(workload.extras())
    gauge = SlotGauge(conn.recv(), lock=lock, state=state)  # t0 arrives when all are ready
    send = conn.send
    while (job := conn.recv()) is not None:
        start_ns, in_flight = gauge.enter(index)
        try:
            in_request = True
            outcome = runner.run(job[0])
        except _Cancelled:
            runner.close()
            outcome = CANCELLED_OUTCOME
        except Exception as exc:  # a row, and the slot goes back to work
            outcome = internal_outcome(exc)
        finally:
            in_request = False
            end_ns = gauge.exit(index)
        send((start_ns, end_ns, tuple(outcome), in_flight))
    runner.close()


class ProcessesBackend:
    name = "processes"

    def __init__(self) -> None:
        self.start_clock = now_ns  # a spread cell's generator waits for its start time
        self.completed = 0
        self.gauge: SlotGauge | None = None
        self.lag_samples = None

    def run(self, spec: CellSpec, stop: StopFlag, spool) -> CellOutput:
        workload = make_workload(spec)
        workload.prepare()
        # forkserver: slots fork from a clean single-threaded server with this module preloaded,
        # so start-up is fast and no lock held by a thread of the cell process is inherited.
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        lock = FileLock(str(Path(spec.work_dir) / "gauge.lock"))
        state = ctx.RawArray("q", SlotGauge.initial_state(spec.slots))
        conns, procs = [], []
        # each slot process opens its connection itself (warm_ahead) before it reports
        tell_phase(self, f"starting {grouped(spec.slots)} processes")
        for i in range(spec.slots):
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=_slot_main, name=f"process-{i}", daemon=True, args=(
                i, child_end, spec, lock, state))
            proc.start()
            child_end.close()
            conns.append(parent_end)
            procs.append(proc)
        try:
            producer = Producer(spec, stop)
            measured = merge_slot_extras([conn.recv() for conn in conns])
            freeze_heap()
            t0 = self.start_clock()
            producer.start(t0)
            gauge = self.gauge = SlotGauge(t0, lock=lock, state=state)
            for conn in conns:
                conn.send(t0)
            slots = _Slots(conns, procs, gauge, self)
            spool.add("requests", RECORD_SCHEMA, slots.buffer.drain)
            released = slots.drive(spec, producer, stop, t0)
            return CellOutput(released, gauge.peak, stop.is_set(),
                              {**workload.extras(), **measured}, slots.lost)
        finally:
            for proc in procs:
                proc.join(1)
                if proc.is_alive():
                    proc.kill()
                    proc.join()


class _Slots:
    """The cell's side of the slot processes: hands requests over, turns their records into
    rows, and notices deaths."""

    def __init__(self, conns, procs, gauge: SlotGauge, backend: ProcessesBackend) -> None:
        self.conns, self.procs, self.gauge, self.backend = conns, procs, gauge, backend
        self.buffer = RecordBuffer()
        self.held: list[tuple | None] = [None] * len(conns)  # the request each slot runs
        self.alive = set(range(len(conns)))
        self.closing = False  # told to exit: an exit now is not a loss
        self.killing = False  # past the give-up time we kill slots: their requests are cancelled
        self.lost = 0
        self.idle: queue.Queue = queue.Queue()
        self._lock = threading.Lock()  # held/alive transitions
        self._producer: Producer | None = None

    def hand_over(self, i: int, job: tuple) -> None:
        with self._lock:
            if i not in self.alive:  # died after it was taken from the idle queue
                self._row_for_dead(i, job, None)
                return
            self.held[i] = job
        try:
            self.conns[i].send(job)
        except OSError:
            pass  # dead: the collector sees it and writes the row

    def _row_for_dead(self, i: int, job: tuple, start_ns: int | None, end_ns=None) -> None:
        seq, worker, enqueued_ns, scheduled_ns, warmup = job
        end_ns = self.gauge.stamp() if end_ns is None else end_ns
        outcome = CANCELLED_OUTCOME if self.killing else LOST_OUTCOME
        # Without the slot's own stamp, the request starts at the hand-over.
        self.buffer.append(worker, f"process-{i}", seq, enqueued_ns, scheduled_ns,
                           scheduled_ns if start_ns is None else start_ns, end_ns, outcome, 0,
                           warmup)

    def _record(self, i: int, message, requeue: bool = True) -> None:
        start_ns, end_ns, outcome, in_flight = message
        with self._lock:
            job, self.held[i] = self.held[i], None
        if job is None:  # nothing was handed over: not a record of ours
            return
        seq, worker, enqueued_ns, scheduled_ns, warmup = job
        self.buffer.row((worker, f"process-{i}", seq, enqueued_ns, scheduled_ns, start_ns,
                         end_ns, in_flight, warmup) + outcome)  # the slot sent a plain tuple
        self.backend.completed += 1
        if requeue and not self.closing:
            self.idle.put(i)

    def _died(self, i: int) -> None:
        conn = self.conns[i]
        try:
            while conn.poll():  # what it sent before it died still counts
                self._record(i, conn.recv(), requeue=False)
        except (EOFError, OSError):
            pass
        start_ns, end_ns = self.gauge.recover(i)
        with self._lock:
            self.alive.discard(i)
            job, self.held[i] = self.held[i], None
            if job is not None:
                self._row_for_dead(i, job, start_ns, end_ns)
            if not self.closing:
                self.lost += 1
            if not self.alive and self._producer is not None:
                self._producer.exhausted = True

    def collect(self) -> None:
        sentinels = {proc.sentinel: i for i, proc in enumerate(self.procs)}
        pipes = {id(conn): i for i, conn in enumerate(self.conns)}
        while self.alive:
            live = sorted(self.alive)
            watch = [self.conns[i] for i in live] + [self.procs[i].sentinel for i in live]
            for ready in wait(watch, timeout=POLL_S):
                if isinstance(ready, int):
                    if sentinels[ready] in self.alive:
                        self._died(sentinels[ready])
                    continue
                i = pipes[id(ready)]
                if i not in self.alive:
                    continue
                try:
                    self._record(i, ready.recv())
                except (EOFError, OSError):
                    self._died(i)

    def drive(self, spec: CellSpec, producer: Producer, stop: StopFlag, t0: int) -> int:
        self._producer = producer
        for i in range(len(self.conns)):
            self.idle.put(i)
        collector = threading.Thread(target=self.collect, name="collector", daemon=True)
        collector.start()
        threads = start_dispatch(spec, producer, t0, stop, self.idle, self.hand_over)
        join_all(threads, stop, cancel=lambda: None)
        self.closing = True
        for i in sorted(self.alive):
            try:
                self.conns[i].send(None)
            except OSError:
                pass
        join_all([collector], stop, cancel=lambda: [_signal(p, signal.SIGUSR1)
                                                    for p in self.procs])
        if collector.is_alive():  # stuck past the give-up time
            self.killing = True
            for proc in self.procs:
                _signal(proc, signal.SIGKILL)
            collector.join(POLL_S * 20)
        return producer.released


def _signal(proc, signum) -> None:
    try:
        if proc.pid and proc.is_alive():
            os.kill(proc.pid, signum)
    except ProcessLookupError:
        pass
