"""`threads`: `concurrency` OS threads as slots, each with its own workload runner (for HTTP: a
blocking keep-alive connection). Dispatcher threads hand a request to a free slot; the
free-slot queue is the global limit."""

from __future__ import annotations

import queue
import threading

import pyarrow as pa

from harness.backends.base import CellOutput, CellSpec, StopFlag
from harness.backends.dispatch import join_all, start_dispatch
from harness.gauge import InFlightGauge, now_ns
from harness.schema import CANCELLED_OUTCOME, RecordBuffer
from harness.workloads import make_workload


class _Slot(threading.Thread):
    def __init__(self, index: int, runner, gauge: InFlightGauge, idle: queue.Queue,
                 backend: ThreadsBackend) -> None:
        super().__init__(name=f"thread-{index}", daemon=True)
        self.label = f"thread-{index}"
        self.runner, self.gauge, self.idle, self.backend = runner, gauge, idle, backend
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.buffer = RecordBuffer()
        self.cancelled = False

    def run(self) -> None:
        gauge, runner, buffer, label = self.gauge, self.runner, self.buffer, self.label
        while (job := self.inbox.get()) is not None:
            if self.cancelled:  # handed over just before shutdown, never started: not a request
                continue
            seq, worker, enqueued_ns, scheduled_ns = job
            start_ns, in_flight = gauge.enter()
            outcome = runner.run(seq)
            end_ns = gauge.exit()
            if self.cancelled and not outcome.ok:
                outcome = CANCELLED_OUTCOME
            buffer.append(worker, label, seq, enqueued_ns, scheduled_ns, start_ns, end_ns,
                          outcome, in_flight)
            self.backend.completed += 1  # approximate under races; only the sampler reads it
            self.idle.put(self)
        runner.close()

    def cancel(self) -> None:
        self.cancelled = True
        self.runner.abort()


class ThreadsBackend:
    name = "threads"

    def __init__(self) -> None:
        self.completed = 0
        self.gauge: InFlightGauge | None = None
        self.lag_samples = None

    def run(self, spec: CellSpec, stop: StopFlag) -> CellOutput:
        workload = make_workload(spec)
        workload.prepare()
        idle: queue.Queue = queue.Queue()
        runners = [workload.sync_runner(f"thread-{i}") for i in range(spec.concurrency)]
        t0 = now_ns()
        gauge = self.gauge = InFlightGauge(t0)
        slots = [_Slot(i, runner, gauge, idle, self) for i, runner in enumerate(runners)]
        for slot in slots:
            slot.start()
            idle.put(slot)
        threads = start_dispatch(spec, t0, stop, idle, lambda slot, job: slot.inbox.put(job))
        join_all(threads, stop, cancel=lambda: None)
        for slot in slots:
            slot.inbox.put(None)
        join_all(slots, stop, cancel=lambda: [slot.cancel() for slot in slots])
        records = pa.Table.from_batches([s.buffer.to_batch() for s in slots])
        return CellOutput(records, gauge.peak, stop.is_set(), workload.extras())
