"""`threads`: `concurrency` OS threads as slots, each with its own blocking keep-alive connection.
Dispatcher threads hand a request to a free slot; the free-slot queue is the global limit."""

from __future__ import annotations

import queue
import threading

import pyarrow as pa

from harness.backends.base import CellOutput, CellSpec, StopFlag, http_settings
from harness.backends.dispatch import join_all, start_dispatch
from harness.gauge import InFlightGauge, now_ns
from harness.http.blocking import BlockingHttpClient
from harness.schema import CANCELLED, RecordBuffer


class _Slot(threading.Thread):
    def __init__(self, index: int, client: BlockingHttpClient, gauge: InFlightGauge,
                 idle: queue.Queue, backend: ThreadsBackend) -> None:
        super().__init__(name=f"thread-{index}", daemon=True)
        self.label = f"thread-{index}"
        self.client, self.gauge, self.idle, self.backend = client, gauge, idle, backend
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.buffer = RecordBuffer()
        self.cancelled = False

    def run(self) -> None:
        gauge, client, buffer, label = self.gauge, self.client, self.buffer, self.label
        while (job := self.inbox.get()) is not None:
            if self.cancelled:  # handed over just before shutdown, never started: not a request
                continue
            seq, worker, enqueued_ns, scheduled_ns = job
            start_ns, in_flight = gauge.enter()
            outcome = client.request(seq)
            end_ns = gauge.exit()
            error = CANCELLED if (self.cancelled and not outcome.ok) else outcome.error
            buffer.append(worker, label, seq, enqueued_ns, scheduled_ns, start_ns, end_ns,
                          outcome.server_delay_ns, outcome.ok, outcome.status, error, in_flight)
            self.backend.completed += 1  # approximate under races; only the progress bar reads it
            self.idle.put(self)
        client.close()

    def cancel(self) -> None:
        self.cancelled = True
        self.client.abort()


class ThreadsBackend:
    name = "threads"

    def __init__(self) -> None:
        self.completed = 0

    def run(self, spec: CellSpec, stop: StopFlag) -> CellOutput:
        host, port = spec.host_port
        settings = http_settings(spec)
        t0 = now_ns()
        gauge = InFlightGauge(t0)
        idle: queue.Queue = queue.Queue()
        slots = [_Slot(i, BlockingHttpClient(host, port, **settings), gauge, idle, self)
                 for i in range(spec.concurrency)]
        for slot in slots:
            slot.start()
            idle.put(slot)
        threads = start_dispatch(spec, t0, stop, idle, lambda slot, job: slot.inbox.put(job))
        join_all(threads, stop, cancel=lambda: None)
        for slot in slots:
            slot.inbox.put(None)
        join_all(slots, stop, cancel=lambda: [slot.cancel() for slot in slots])
        records = pa.Table.from_batches([s.buffer.to_batch() for s in slots])
        return CellOutput(records, gauge.peak, stop.is_set())

