"""Producer, queue and dispatcher threads shared by the thread- and process-slot backends."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from harness.cell.backends.base import CellSpec, Producer, StopFlag, worker_name
from harness.core.clock import now_ns

POLL_S = 0.05  # how often a blocked thread looks at the stop flag
GIVE_UP_S = 3.0  # after cancelling, how long to wait before abandoning a stuck slot


def start_dispatch(spec: CellSpec, producer: Producer, t0: int, stop: StopFlag,
                   idle: queue.Queue, hand_over: Callable[[object, tuple], None]
                   ) -> list[threading.Thread]:
    """Start the producer and `workers` dispatcher threads. A dispatcher takes a ticket from the
    queue, waits for a free slot from `idle` (the global limit), releases the request (its seq)
    and calls hand_over(slot, (seq, worker, enqueued_ns, scheduled_ns, warmup)).

    scheduled_ns: closed model, when it got its slot; open model, its intended start — the
    producer queues each arrival at that time (a deadline wait, no polling), and a request that
    waits for a slot (max_in_flight reached) keeps it."""
    if not producer.queued and producer.open:
        return [_start(_pace, (producer, t0, idle, hand_over), "pacer")]
    jobs: queue.SimpleQueue = queue.SimpleQueue()
    workers = spec.load.workers or 1  # the processes backend dispatches in any case
    # The producer stays at most concurrency + workers requests ahead, and stamps enqueued_ns
    # only once there is room, so the stamp is when the request entered the queue.
    room = threading.Semaphore(spec.slots + workers)

    def dispatch(worker: str) -> None:
        while (job := jobs.get()) is not None:
            enqueued_ns, intended_ns, warmup = job
            if intended_ns is None:
                room.release()
            slot = _free_slot(idle, producer)
            scheduled = now_ns()  # one stamp both for the deadline check and the record
            if slot is not None and producer.over(scheduled):
                idle.put(slot)
                slot = None
            if slot is not None:  # else: stopping or out of time; drain, start nothing new
                seq, warmup = producer.release(warmup)
                scheduled = scheduled - t0 if intended_ns is None else intended_ns
                hand_over(slot, (seq, worker, enqueued_ns, scheduled, warmup))

    feed = ((_produce_open, (producer, jobs, workers, t0)) if producer.open else
            (_produce_closed, (producer, jobs, room, workers, t0, stop)))
    threads = [threading.Thread(target=feed[0], args=feed[1], name="producer", daemon=True)]
    threads += [threading.Thread(target=dispatch, args=(worker_name(i),), name=worker_name(i),
                                 daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    return threads


def _start(target, args: tuple, name: str) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread


def _free_slot(idle: queue.Queue, producer: Producer):
    """The next free slot, or None once production is over (the stop flag looked at while
    waiting)."""
    while not producer.over():
        try:
            return idle.get(timeout=POLL_S)
        except queue.Empty:
            pass
    return None


def _pace(producer: Producer, t0: int, idle: queue.Queue,
          hand_over: Callable[[object, tuple], None]) -> None:
    """Open model without a queue: each arrival, at its intended time (a deadline wait), to a
    free slot; when none is free it waits, keeping its intended time. The slot names itself as
    the row's worker."""
    while (arrival := producer.next_arrival()) is not None:
        if not producer.wait_until(arrival.at_ns):
            break
        enqueued = now_ns() - t0
        slot = _free_slot(idle, producer)
        ticket = None if slot is None else producer.take_seq(arrival.warmup)
        if ticket is None:
            if slot is not None:
                idle.put(slot)
            break
        hand_over(slot, (ticket[0], None, enqueued, arrival.at_ns, ticket[1]))


def _produce_open(producer: Producer, jobs: queue.SimpleQueue, workers: int, t0: int) -> None:
    """Each arrival queued at its intended time (a deadline wait, no polling)."""
    while (arrival := producer.next_arrival()) is not None:
        if not producer.wait_until(arrival.at_ns):
            break
        jobs.put((now_ns() - t0, arrival.at_ns, arrival.warmup))
    for _ in range(workers):
        jobs.put(None)


def _produce_closed(producer: Producer, jobs: queue.SimpleQueue, room: threading.Semaphore,
                    workers: int, t0: int, stop: StopFlag) -> None:
    """A ticket whenever there is room; the stop flag is looked at while waiting for it."""
    while True:
        while not room.acquire(timeout=POLL_S):
            if stop.is_set():
                break
        if not producer.take():
            break
        jobs.put((now_ns() - t0, None, None))
    for _ in range(workers):
        jobs.put(None)


def join_all(threads: list[threading.Thread], stop: StopFlag, cancel: Callable[[], None]) -> None:
    """Wait for the threads. Once stop is set they get the grace period; then `cancel` is called
    on every poll (it must be idempotent) until they end, or GIVE_UP_S later we stop waiting."""
    for thread in threads:
        while thread.is_alive():
            thread.join(POLL_S)
            if stop.is_set() and stop.grace_left_s() == 0:
                cancel()
                if stop.grace_left_s() == 0 and _overdue(stop):
                    return


def _overdue(stop: StopFlag) -> bool:
    return (now_ns() - stop.set_at_ns) / 1e9 > stop.grace_s + GIVE_UP_S
