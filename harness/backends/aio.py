"""`asyncio` and `uvloop`: one event loop, aiohttp ClientSession, tasks bounded by a semaphore.
The two backends differ only by the loop factory."""

from __future__ import annotations

import asyncio
import signal

import pyarrow as pa

from harness.backends.base import (
    CellOutput,
    CellSpec,
    Producer,
    StopFlag,
    http_settings,
    worker_name,
)
from harness.gauge import InFlightGauge, now_ns
from harness.http.aiohttp_client import AiohttpClient
from harness.schema import CANCELLED, RecordBuffer


class AsyncioBackend:
    name = "asyncio"

    @staticmethod
    def loop_factory() -> asyncio.AbstractEventLoop:
        return asyncio.new_event_loop()

    def __init__(self) -> None:
        self.buffer = RecordBuffer()

    @property
    def completed(self) -> int:
        return len(self.buffer)

    def run(self, spec: CellSpec, stop: StopFlag) -> CellOutput:
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            with asyncio.Runner(loop_factory=self.loop_factory) as runner:
                return runner.run(self._main(spec, stop))
        finally:
            for sig, handler in previous.items():  # the loop's handlers are gone with it
                signal.signal(sig, handler)

    async def _main(self, spec: CellSpec, stop: StopFlag) -> CellOutput:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()

        def on_signal() -> None:
            stop.set()
            stopping.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        if stop.is_set():
            stopping.set()
        client = AiohttpClient(spec.server_url, concurrency=spec.concurrency, **http_settings(spec))
        try:
            peak = await self._load(spec, stop, stopping, client)
        finally:
            await client.close()
        return CellOutput(pa.Table.from_batches([self.buffer.to_batch()]), peak, stop.is_set())

    async def _load(self, spec, stop, stopping: asyncio.Event, client: AiohttpClient) -> int:
        t0 = now_ns()
        gauge = InFlightGauge.for_event_loop(t0)
        buffer = self.buffer
        workers = spec.scenario.load.workers
        jobs: asyncio.Queue = asyncio.Queue()
        room = asyncio.Semaphore(spec.concurrency + workers)
        limit = asyncio.Semaphore(spec.concurrency)
        in_flight: set[asyncio.Task] = set()
        producer = Producer(spec, t0, stop)

        async def run_one(seq: int, worker: str, enqueued_ns: int, scheduled_ns: int) -> None:
            start_ns, level = gauge.enter()
            try:
                outcome, slot = await client.request(seq)
            except asyncio.CancelledError:
                buffer.append(worker, "conn-?", seq, enqueued_ns, scheduled_ns, start_ns,
                              gauge.exit(), None, False, 0, CANCELLED, level)
                raise
            finally:
                limit.release()
            buffer.append(worker, slot, seq, enqueued_ns, scheduled_ns, start_ns, gauge.exit(),
                          outcome.server_delay_ns, outcome.ok, outcome.status, outcome.error,
                          level)

        async def produce() -> None:
            while True:
                await room.acquire()
                seq = producer.take()
                if seq is None:
                    break
                jobs.put_nowait((seq, now_ns() - t0))
            for _ in range(workers):
                jobs.put_nowait(None)

        async def dispatch(worker: str) -> None:
            while (item := await jobs.get()) is not None:
                room.release()
                await limit.acquire()
                if producer.over():  # out of time: drain, start nothing new
                    limit.release()
                    continue
                seq, enqueued_ns = item
                task = asyncio.create_task(run_one(seq, worker, enqueued_ns, now_ns() - t0))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)

        feeders = [asyncio.create_task(produce())]
        feeders += [asyncio.create_task(dispatch(worker_name(i))) for i in range(workers)]
        stop_wait = asyncio.create_task(stopping.wait())
        await asyncio.wait([asyncio.gather(*feeders), stop_wait],
                           return_when=asyncio.FIRST_COMPLETED)
        while in_flight and not stopping.is_set():
            await asyncio.wait([*in_flight, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        if stopping.is_set():  # stop producing; in-flight requests get the grace period
            for task in feeders:
                task.cancel()
            if in_flight:
                await asyncio.wait(list(in_flight), timeout=stop.grace_left_s())
            for task in list(in_flight):
                task.cancel()
            await asyncio.gather(*feeders, *in_flight, return_exceptions=True)
        stop_wait.cancel()
        return gauge.peak


class UvloopBackend(AsyncioBackend):
    name = "uvloop"

    @staticmethod
    def loop_factory() -> asyncio.AbstractEventLoop:
        import uvloop

        return uvloop.new_event_loop()
