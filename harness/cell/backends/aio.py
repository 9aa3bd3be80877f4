"""`asyncio` and `uvloop`: one event loop; for HTTP an aiohttp ClientSession (or the lean
client's connections). Without `load.workers`, `concurrency` long-lived slot coroutines
(harness.cell.backends.slots); with it, a producer, a queue, its workers and a task per request
bounded by a semaphore. The two backends differ only by the loop factory.

While a cell runs, a probe task sleeps 10 ms at a time and records how late it woke: the
event-loop lag, which is what CPU work inside a coroutine costs every other task. The same
code on both loops: wake time − (sleep start + 10 ms) on the monotonic clock, not clipped (a
timer that fires early by the loop's resolution shows as a small negative lag on either loop).
While it sleeps, `lag_due_ns` says when it should wake, so a sampler can see a lag in progress
when the loop is blocked for longer than a sample interval."""

from __future__ import annotations

import asyncio
import signal

from harness.cell.backends.base import (
    CellOutput,
    CellSpec,
    Producer,
    StopFlag,
    connecting,
    freeze_heap,
    worker_name,
)
from harness.cell.backends.slots import slots as _slots
from harness.cell.backends.slots import wind_down as _slots_down
from harness.cell.buffer import RecordBuffer
from harness.cell.gauge import InFlightGauge
from harness.cell.workloads import make_workload
from harness.core.clock import now_ns
from harness.core.job import SERVER_DIED
from harness.core.schema import CANCELLED_OUTCOME, RECORD_SCHEMA, internal_outcome

LAG_INTERVAL_NS = 10_000_000


class AsyncioBackend:
    name = "asyncio"

    @staticmethod
    def loop_factory() -> asyncio.AbstractEventLoop:
        return asyncio.new_event_loop()

    def __init__(self) -> None:
        self.start_clock = now_ns  # a cell split across generators starts them on one t0
        self.gauge_state = None  # ... and keeps each one's gauge where the cell can sum them
        self.buffer = RecordBuffer()
        self.gauge: InFlightGauge | None = None
        self.lag_samples: list[tuple[int, int]] = []
        self.lag_due_ns: int | None = None  # when the sleeping probe is due (monotonic ns)

    @property
    def completed(self) -> int:
        return self.buffer.appended

    def run(self, spec: CellSpec, stop: StopFlag, spool) -> CellOutput:
        spool.add("requests", RECORD_SCHEMA, self.buffer.drain)
        previous = {sig: signal.getsignal(sig)
                    for sig in (signal.SIGINT, signal.SIGTERM, SERVER_DIED)}
        try:
            with asyncio.Runner(loop_factory=self.loop_factory) as runner:
                return runner.run(self._main(spec, stop))
        finally:
            for sig, handler in previous.items():  # the loop's handlers are gone with it
                signal.signal(sig, handler)

    async def _main(self, spec: CellSpec, stop: StopFlag) -> CellOutput:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()

        def on_signal(reason: str) -> None:
            stop.set(reason)
            stopping.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, "signal")
        loop.add_signal_handler(SERVER_DIED, on_signal, "server")
        if stop.is_set():
            stopping.set()
        workload = make_workload(spec)
        workload.prepare()
        runner = await workload.async_runner()  # sessions and pools exist before the clock
        if hasattr(runner, "warm") and spec.load.connect_rate:  # connections too
            connecting(self, spec, runner)
            await runner.warm(spec.slots, spec.load.connect_rate)
        try:
            released, peak = await self._load(spec, stop, stopping, runner)
        finally:
            await runner.close()
        return CellOutput(released, peak, stop.is_set(), workload.extras())

    async def _probe(self, t0: int) -> None:
        samples, interval_s = self.lag_samples, LAG_INTERVAL_NS / 1e9
        try:
            while True:
                due = self.lag_due_ns = now_ns() + LAG_INTERVAL_NS
                await asyncio.sleep(interval_s)
                woke = now_ns()
                samples.append((woke - t0, woke - due))
        finally:
            self.lag_due_ns = None  # stopped: no lag in progress

    async def _load(self, spec, stop, stopping: asyncio.Event, runner) -> tuple[int, int]:
        producer = Producer(spec, stop)
        freeze_heap()
        t0 = self.start_clock()
        producer.start(t0)
        gauge = self.gauge = InFlightGauge.for_event_loop(t0, self.gauge_state)
        probe = asyncio.create_task(self._probe(t0))
        if spec.queued:
            await self._queued(spec, stop, stopping, runner, producer, t0)
        else:
            pacers, slots = _slots(spec, producer, runner, gauge, self.buffer, t0)
            await _slots_down([asyncio.create_task(c) for c in pacers],
                              [asyncio.create_task(c) for c in slots], stopping, stop)
        probe.cancel()
        self.warmup_released = producer.warmup_released
        return producer.released_count(), gauge.peak

    async def _queued(self, spec, stop, stopping: asyncio.Event, runner, producer: Producer,
                      t0: int) -> None:
        """The producer, the queue and its workers."""
        gauge, buffer = self.gauge, self.buffer
        workers = spec.load.workers
        jobs: asyncio.Queue = asyncio.Queue()
        room = asyncio.Semaphore(spec.slots + workers)
        limit = asyncio.Semaphore(spec.slots)
        in_flight: set[asyncio.Task] = set()
        # Released requests whose task has not started yet: a task cancelled before its first
        # step never runs its body, so the cell writes those rows itself at the end.
        unstarted: dict[int, tuple] = {}

        async def run_one(seq: int, worker: str, enqueued_ns: int, scheduled_ns: int,
                          warmup: bool) -> None:
            del unstarted[seq]
            start_ns, level = gauge.enter()
            outcome, slot = CANCELLED_OUTCOME, None
            try:
                outcome, slot = await runner.run(seq)
            except asyncio.CancelledError:
                outcome = CANCELLED_OUTCOME
                raise
            except Exception as exc:  # e.g. BrokenProcessPool: a row, never a vanished request
                outcome = internal_outcome(exc)
            finally:
                limit.release()
                buffer.row((worker, slot or "loop", seq, enqueued_ns, scheduled_ns, start_ns,
                            gauge.exit(), level, warmup) + outcome)

        async def dispatch(worker: str) -> None:
            while (job := await jobs.get()) is not None:
                enqueued_ns, intended_ns, warmup = job
                if intended_ns is None:
                    room.release()
                await limit.acquire()  # the open model keeps its intended time while it waits
                scheduled = now_ns()  # one stamp both for the deadline check and the record
                if producer.over(scheduled):  # out of time: drain, start nothing new
                    limit.release()
                    continue
                seq, warmup = producer.release(warmup)
                scheduled = scheduled - t0 if intended_ns is None else intended_ns
                unstarted[seq] = (worker, enqueued_ns, scheduled, warmup)
                task = asyncio.create_task(run_one(seq, worker, enqueued_ns, scheduled, warmup))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)

        feeders = [asyncio.create_task(_produce_open(producer, jobs, workers, t0)
                                       if producer.open else
                                       _produce_closed(producer, jobs, room, workers, t0))]
        feeders += [asyncio.create_task(dispatch(worker_name(i))) for i in range(workers)]
        await _wind_down(feeders, in_flight, stopping, stop)
        _record_unstarted(unstarted, gauge, buffer)


def _record_unstarted(unstarted: dict, gauge: InFlightGauge, buffer: RecordBuffer) -> None:
    """Released, cancelled before it started: a zero-length row each."""
    for seq, (worker, enqueued_ns, scheduled_ns, warmup) in list(unstarted.items()):
        ts = gauge.stamp()
        buffer.append(worker, "loop", seq, enqueued_ns, scheduled_ns, ts, ts,
                      CANCELLED_OUTCOME, 0, warmup)


async def _produce_closed(producer: Producer, jobs: asyncio.Queue, room: asyncio.Semaphore,
                          workers: int, t0: int) -> None:
    """Closed model: a ticket whenever a slot (or a worker's hand) is free."""
    while True:
        await room.acquire()
        if not producer.take():
            break
        jobs.put_nowait((now_ns() - t0, None, None))
    for _ in range(workers):
        jobs.put_nowait(None)


async def _produce_open(producer: Producer, jobs: asyncio.Queue, workers: int, t0: int) -> None:
    """Arrivals at their intended times on the loop's own timers; a timer that fires early is
    re-armed, so none starts too soon. Timers count whole milliseconds (libuv truncates, epoll
    rounds up): a wait under 1 ms is armed for 1 ms, so the loop never spins re-arming
    sub-millisecond sleeps (at most 1 ms late, never early)."""
    while (arrival := producer.next_arrival()) is not None:
        due = t0 + arrival.at_ns
        while (left := due - now_ns()) > 0:
            await asyncio.sleep(max(left, 1_000_000) / 1e9)
        jobs.put_nowait((now_ns() - t0, arrival.at_ns, arrival.warmup))
    for _ in range(workers):
        jobs.put_nowait(None)


async def _wind_down(feeders: list[asyncio.Task], in_flight: set[asyncio.Task],
                     stopping: asyncio.Event, stop: StopFlag) -> None:
    """Until the producer and the workers are done and nothing is in flight; on a stop, the
    feeders end at once and the requests in flight get the grace period, then are cancelled."""
    stop_wait = asyncio.create_task(stopping.wait())
    await asyncio.wait([asyncio.gather(*feeders), stop_wait],
                       return_when=asyncio.FIRST_COMPLETED)
    while in_flight and not stopping.is_set():
        await asyncio.wait([*in_flight, stop_wait], return_when=asyncio.FIRST_COMPLETED)
    if stopping.is_set():
        for task in feeders:
            task.cancel()
        if in_flight:
            await asyncio.wait(list(in_flight), timeout=stop.grace_left_s())
        for task in list(in_flight):
            task.cancel()
        await asyncio.gather(*feeders, *in_flight, return_exceptions=True)
    stop_wait.cancel()


class UvloopBackend(AsyncioBackend):
    name = "uvloop"

    @staticmethod
    def loop_factory() -> asyncio.AbstractEventLoop:
        import uvloop

        return uvloop.new_event_loop()
