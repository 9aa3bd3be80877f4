"""`processes`: `concurrency` worker processes as slots, each with its own workload runner
(for HTTP: a blocking keep-alive connection). Dispatcher threads in the cell process hand
requests to free slot processes over pipes; each slot sends back a one-byte "done" per
request, and its records once, at the end, as one columnar Arrow batch (never row by row).

The slot critical section (live in-flight counter + timestamps) sits in shared memory under a
process-shared lock, so live and sweep peaks stay equal by construction across processes.
Each slot process builds its own workload runner from the (pickled) cell spec."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import threading
from multiprocessing.connection import Connection, wait

import pyarrow as pa

from harness.backends.base import CellOutput, CellSpec, StopFlag
from harness.backends.dispatch import POLL_S, join_all, start_dispatch
from harness.gauge import InFlightGauge, now_ns
from harness.schema import CANCELLED_OUTCOME, RecordBuffer, from_ipc_bytes, to_ipc_bytes
from harness.workloads import make_workload

_DONE = b"."


class _Cancelled(BaseException):
    """Raised inside a slot process by SIGUSR1 while a request is in progress."""


def _slot_main(index: int, conn: Connection, spec: CellSpec, lock, state) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):  # the cell process coordinates shutdown
        signal.signal(sig, signal.SIG_IGN)
    in_request = False

    def on_cancel(signum, frame):
        if in_request:
            raise _Cancelled

    signal.signal(signal.SIGUSR1, on_cancel)
    label = f"process-{index}"
    runner = make_workload(spec).sync_runner(label)
    conn.send_bytes(_DONE)  # ready: process start-up stays outside the measured cell
    gauge = InFlightGauge(conn.recv(), lock=lock, state=state)  # t0 arrives when all are ready
    buffer = RecordBuffer()
    while (job := conn.recv()) is not None:
        seq, worker, enqueued_ns, scheduled_ns = job
        start_ns, in_flight = gauge.enter()
        try:
            in_request = True
            outcome = runner.run(seq)
            in_request = False
        except _Cancelled:
            in_request = False
            runner.close()
            outcome = CANCELLED_OUTCOME
        end_ns = gauge.exit()
        buffer.append(worker, label, seq, enqueued_ns, scheduled_ns, start_ns, end_ns, outcome,
                      in_flight)
        conn.send_bytes(_DONE)
    runner.close()
    conn.send_bytes(to_ipc_bytes(buffer.to_batch()))


class ProcessesBackend:
    name = "processes"

    def __init__(self) -> None:
        self.completed = 0
        self.gauge: InFlightGauge | None = None
        self.lag_samples = None

    def run(self, spec: CellSpec, stop: StopFlag) -> CellOutput:
        workload = make_workload(spec)
        workload.prepare()
        # forkserver: slots fork from a clean single-threaded server with this module preloaded,
        # so start-up is fast and no lock held by a thread of the cell process is inherited.
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        lock, state = ctx.Lock(), ctx.RawArray("q", [0, 0, -1])
        conns, procs = [], []
        for i in range(spec.concurrency):
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=_slot_main, name=f"process-{i}", daemon=True, args=(
                i, child_end, spec, lock, state))
            proc.start()
            child_end.close()
            conns.append(parent_end)
            procs.append(proc)
        try:
            for conn in conns:
                conn.recv_bytes()
            t0 = now_ns()
            gauge = self.gauge = InFlightGauge(t0, lock=lock, state=state)
            for conn in conns:
                conn.send(t0)
            output = self._drive(spec, stop, t0, gauge, conns, procs)
            output.extras = workload.extras()
            return output
        finally:
            for proc in procs:
                proc.join(1)
                if proc.is_alive():
                    proc.kill()
                    proc.join()

    def _drive(self, spec, stop, t0, gauge, conns, procs) -> CellOutput:
        idle: queue.Queue = queue.Queue()
        for i in range(len(conns)):
            idle.put(i)
        batches: list[pa.Table] = []
        open_conns = set(conns)

        def collect() -> None:  # one thread turns "done" messages into free slots
            while open_conns:
                for conn in wait(list(open_conns), timeout=POLL_S):
                    try:
                        data = conn.recv_bytes()
                    except (EOFError, OSError):
                        open_conns.discard(conn)
                        continue
                    if data == _DONE:
                        self.completed += 1
                        idle.put(conns.index(conn))
                    else:
                        batches.append(from_ipc_bytes(data))
                        open_conns.discard(conn)

        collector = threading.Thread(target=collect, name="collector", daemon=True)
        collector.start()
        threads = start_dispatch(spec, t0, stop, idle, lambda slot, job: conns[slot].send(job))
        join_all(threads, stop, cancel=lambda: None)
        for conn in conns:
            try:
                conn.send(None)
            except OSError:  # that slot process is gone; its records are lost, not the rest
                pass
        join_all([collector], stop, cancel=lambda: [_signal(p, signal.SIGUSR1) for p in procs])
        records = pa.concat_tables(batches) if batches else RecordBuffer().to_batch()
        if isinstance(records, pa.RecordBatch):
            records = pa.Table.from_batches([records])
        return CellOutput(records, gauge.peak, stop.is_set())


def _signal(proc, signum) -> None:
    try:
        if proc.pid and proc.is_alive():
            os.kill(proc.pid, signum)
    except ProcessLookupError:
        pass

