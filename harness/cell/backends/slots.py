"""Slots without a queue on an event loop: `slots` long-lived coroutines, each running one
request at a time and recording it, so the loop spends nothing per request on hand-offs (no
producer, queue, dispatcher, semaphore or task per request).

Closed model: a slot takes the next seq itself (Producer.take_seq), runs it, records it and
takes again. Open model: one pacer coroutine waits for each arrival's intended time and hands it
to a free slot (a future the slot waits on); when none is free (max_in_flight reached) the
arrival waits, keeping its intended time. The gauge's enter/exit stay the critical section
around each request, so live and swept peaks are equal by construction. Without a queue a row's
`worker` is the slot's label and `enqueued_ns` = `scheduled_ns` in the closed model (nothing
waits between taking a seq and starting it)."""

from __future__ import annotations

import asyncio
from collections import deque

from harness.cell.backends.base import CellSpec, Producer, StopFlag
from harness.cell.buffer import RecordBuffer
from harness.cell.gauge import InFlightGauge
from harness.core.clock import now_ns
from harness.core.schema import CANCELLED_OUTCOME, internal_outcome


def slot_name(i: int) -> str:
    return f"slot-{i}"


def slots(spec: CellSpec, producer: Producer, runner, gauge: InFlightGauge,
          buffer: RecordBuffer, t0: int) -> tuple[list, list]:
    """The coroutines to run as tasks: (the pacer, open model only; the slots)."""
    count = spec.slots
    if not producer.open:
        return [], [_closed(slot_name(i), producer, runner, gauge, buffer)
                    for i in range(count)]
    hand = _Hand()
    return [_pace(producer, hand, t0)], [
        _open(slot_name(i), hand, runner, gauge, buffer) for i in range(count)]


async def _closed(label: str, producer: Producer, runner, gauge: InFlightGauge,
                  buffer: RecordBuffer) -> None:
    take, run, enter, leave = producer.take_seq, runner.run, gauge.enter, gauge.exit
    record = buffer.row  # one C call per request: buffer.ROW's order
    while (ticket := take()) is not None:
        seq, warmup = ticket
        start_ns, level = enter()
        outcome, conn = CANCELLED_OUTCOME, None
        try:
            outcome, conn = await run(seq)
        except asyncio.CancelledError:
            outcome = CANCELLED_OUTCOME
            raise
        except Exception as exc:  # e.g. BrokenProcessPool: a row, never a vanished request
            outcome = internal_outcome(exc)
        finally:
            record((label, conn or "loop", seq, start_ns, start_ns, start_ns, leave(), level,
                    warmup) + outcome)


class _Hand:
    """Free slots, each waiting on a future for its next arrival (None: stop)."""

    def __init__(self) -> None:
        self.free: deque[asyncio.Future] = deque()
        self.freed: asyncio.Future | None = None  # the pacer waits on it when none is free
        self.closed = False

    def wait(self) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        if self.closed:
            future.set_result(None)
            return future
        self.free.append(future)
        if self.freed is not None and not self.freed.done():
            self.freed.set_result(None)
        return future

    def close(self) -> None:
        self.closed = True
        while self.free:
            future = self.free.popleft()
            if not future.done():
                future.set_result(None)


async def _pace(producer: Producer, hand: _Hand, t0: int) -> None:
    """Arrivals at their intended times on the loop's own timers; a timer that fires early is
    re-armed, so none starts too soon. Timers count whole milliseconds (libuv truncates, epoll
    rounds up): a wait under 1 ms is armed for 1 ms, so the loop never spins re-arming
    sub-millisecond sleeps (at most 1 ms late, never early)."""
    loop = asyncio.get_running_loop()
    try:
        while (arrival := producer.next_arrival()) is not None:
            due = t0 + arrival.at_ns
            while (left := due - now_ns()) > 0:
                await asyncio.sleep(max(left, 1_000_000) / 1e9)
            enqueued = now_ns() - t0
            while not hand.free:  # max_in_flight reached: the arrival keeps its intended time
                hand.freed = loop.create_future()
                await hand.freed
            if (ticket := producer.take_seq(arrival.warmup)) is None:  # stopped meanwhile
                break
            hand.free.popleft().set_result((ticket[0], enqueued, arrival.at_ns, ticket[1]))
    finally:
        hand.close()


async def _open(label: str, hand: _Hand, runner, gauge: InFlightGauge,
                buffer: RecordBuffer) -> None:
    run, enter, leave, record = runner.run, gauge.enter, gauge.exit, buffer.row
    while (job := await hand.wait()) is not None:
        seq, enqueued_ns, scheduled_ns, warmup = job
        start_ns, level = enter()
        outcome, conn = CANCELLED_OUTCOME, None
        try:
            outcome, conn = await run(seq)
        except asyncio.CancelledError:
            outcome = CANCELLED_OUTCOME
            raise
        except Exception as exc:
            outcome = internal_outcome(exc)
        finally:
            record((label, conn or "loop", seq, enqueued_ns, scheduled_ns, start_ns, leave(),
                    level, warmup) + outcome)


async def wind_down(pacers: list[asyncio.Task], tasks: list[asyncio.Task],
                    stopping: asyncio.Event, stop: StopFlag) -> None:
    """Until every slot (and the pacer) is done; on a stop, no slot takes another request, the
    pacer ends at once (its slots waiting for an arrival with it), and the requests in flight
    get the grace period, then are cancelled."""
    everything = asyncio.gather(*pacers, *tasks, return_exceptions=True)
    stop_wait = asyncio.ensure_future(stopping.wait())
    await asyncio.wait([everything, stop_wait], return_when=asyncio.FIRST_COMPLETED)
    if stopping.is_set() and not everything.done():
        for pacer in pacers:
            pacer.cancel()
        await asyncio.sleep(0)  # the pacer's finally: the idle slots are told to end
        left = [task for task in tasks if not task.done()]
        if left:
            await asyncio.wait(left, timeout=stop.grace_left_s())
        for task in left:
            task.cancel()
        await everything
    stop_wait.cancel()
