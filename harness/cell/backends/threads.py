"""`threads`: `concurrency` OS threads as slots, each with its own workload runner (for HTTP: a
blocking keep-alive connection). Closed model without `load.workers`: each slot takes its next
seq itself. Otherwise dispatcher threads (or, open model without workers, one pacer thread)
hand a request to a free slot; the free-slot queue is the global limit. Each slot appends its
rows to its own buffer, which the cell's spooler drains to disk."""

from __future__ import annotations

import queue
import threading

from harness.cell.backends.base import (
    CellOutput,
    CellSpec,
    Producer,
    StopFlag,
    connecting,
    freeze_heap,
    warm_ahead,
)
from harness.cell.backends.dispatch import join_all, start_dispatch
from harness.cell.buffer import RecordBuffer
from harness.cell.gauge import InFlightGauge
from harness.cell.workloads import make_workload
from harness.core.clock import now_ns
from harness.core.schema import CANCELLED_OUTCOME, RECORD_SCHEMA, internal_outcome


class _Slot(threading.Thread):
    def __init__(self, index: int, runner, gauge: InFlightGauge, idle: queue.Queue,
                 backend: ThreadsBackend) -> None:
        super().__init__(name=f"thread-{index}", daemon=True)
        self.label = f"thread-{index}"
        self.runner, self.gauge, self.idle, self.backend = runner, gauge, idle, backend
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.buffer = RecordBuffer()
        self.cancelled = False
        # The request in progress, (job, start_ns, in_flight), and whether the cell gave up
        # waiting for it: then the cell wrote its row, and the slot must not write another.
        self.current: tuple | None = None
        self.abandoned = False
        self.producer: Producer | None = None  # closed model without a queue: it takes seqs
        self.go: threading.Event | None = None  # ... once this is set
        self._turn = threading.Lock()

    def run(self) -> None:
        if self.producer is not None:
            self.go.wait()
            self._take()
            return
        gauge, runner, buffer, label = self.gauge, self.runner, self.buffer, self.label
        while (job := self.inbox.get()) is not None:
            seq, worker, enqueued_ns, scheduled_ns, warmup = job
            worker = worker or label  # handed over by the pacer: no queue worker
            if self.cancelled:  # handed over just before shutdown, never started
                ts = gauge.stamp()
                buffer.append(worker, label, seq, enqueued_ns, scheduled_ns, ts, ts,
                              CANCELLED_OUTCOME, 0, warmup)
                continue
            self.current = (job, None, 0)
            start_ns, in_flight = gauge.enter()
            self.current = (job, start_ns, in_flight)
            try:
                outcome = runner.run(seq)
            except Exception as exc:  # a row, and the slot goes back to work
                outcome = internal_outcome(exc)
            finally:
                end_ns = gauge.exit()
            if self.cancelled and not outcome.ok:
                outcome = CANCELLED_OUTCOME
            with self._turn:
                self.current = None
                if self.abandoned:
                    return
                buffer.row((worker, label, seq, enqueued_ns, scheduled_ns, start_ns, end_ns,
                            in_flight, warmup) + outcome)
            self.backend.completed += 1  # approximate under races; only the sampler reads it
            self.idle.put(self)
        runner.close()

    def _take(self) -> None:
        """Closed model without a queue: take the next seq, run it, record it, again."""
        gauge, runner, label = self.gauge, self.runner, self.label
        take, enter, leave, record = (self.producer.take_seq, gauge.enter, gauge.exit,
                                      self.buffer.row)
        while (ticket := take()) is not None:
            seq, warmup = ticket
            job = (seq, label, None, None, warmup)
            self.current = (job, None, 0)
            start_ns, in_flight = enter()
            self.current = (job, start_ns, in_flight)
            try:
                outcome = runner.run(seq)
            except Exception as exc:  # a row, and the slot goes back to work
                outcome = internal_outcome(exc)
            finally:
                end_ns = leave()
            if self.cancelled and not outcome.ok:
                outcome = CANCELLED_OUTCOME
            with self._turn:
                self.current = None
                if self.abandoned:
                    return
                record((label, label, seq, start_ns, start_ns, start_ns, end_ns, in_flight,
                        warmup) + outcome)
            self.backend.completed += 1  # approximate under races; only the sampler reads it
        runner.close()

    def cancel(self) -> None:
        self.cancelled = True
        self.runner.abort()

    def abandon(self) -> None:
        """The cell stops waiting for this slot: its request in progress becomes a cancelled
        row ending now."""
        with self._turn:
            self.abandoned = True
            if self.current is not None:
                (seq, worker, enqueued_ns, scheduled_ns, warmup), start_ns, in_flight = \
                    self.current
                end_ns = self.gauge.stamp()
                if enqueued_ns is None:  # taken by the slot itself: scheduled as it started
                    enqueued_ns = scheduled_ns = end_ns if start_ns is None else start_ns
                self.buffer.append(worker, self.label, seq, enqueued_ns, scheduled_ns,
                                   end_ns if start_ns is None else start_ns, end_ns,
                                   CANCELLED_OUTCOME, in_flight, warmup)
                self.current = None


class ThreadsBackend:
    name = "threads"

    def __init__(self) -> None:
        self.start_clock = now_ns  # a cell split across generators starts them on one t0
        self.gauge_state = None  # ... and keeps each one's gauge where the cell can sum them
        self.completed = 0
        self.gauge: InFlightGauge | None = None
        self.lag_samples = None

    def run(self, spec: CellSpec, stop: StopFlag, spool) -> CellOutput:
        workload = make_workload(spec)
        workload.prepare()
        idle: queue.Queue = queue.Queue()
        runners = [workload.sync_runner(f"thread-{i}") for i in range(spec.slots)]
        connecting(self, spec, runners[0])
        for runner in runners:
            warm_ahead(runner, spec)
        producer = Producer(spec, stop)
        # Threads started before the clock (t0 is set on the gauge before any slot has a job).
        gauge = InFlightGauge(0, state=self.gauge_state)
        slots = [_Slot(i, runner, gauge, idle, self) for i, runner in enumerate(runners)]
        pull = not spec.queued and not producer.open
        go = threading.Event()  # pulling slots take their first seq once the clock runs
        for slot in slots:
            spool.add("requests", RECORD_SCHEMA, slot.buffer.drain)
            if pull:
                slot.producer, slot.go = producer, go
            slot.start()
        freeze_heap()
        t0 = gauge.t0_ns = self.start_clock()
        self.gauge = gauge
        producer.start(t0)
        go.set()
        for slot in slots:
            idle.put(slot)
        if not pull:  # the slots wait in their inboxes for what the dispatchers hand over
            threads = start_dispatch(spec, producer, t0, stop, idle,
                                     lambda slot, job: slot.inbox.put(job))
            join_all(threads, stop, cancel=lambda: None)
            for slot in slots:
                slot.inbox.put(None)
        join_all(slots, stop, cancel=lambda: [slot.cancel() for slot in slots])
        for slot in slots:
            if slot.is_alive():  # stuck past the give-up time: its row is written for it
                slot.abandon()
        return CellOutput(producer.released_count(), gauge.peak, stop.is_set(),
                          workload.extras())
