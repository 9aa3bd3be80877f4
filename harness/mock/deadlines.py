"""Waits on the event loop that end at a CLOCK_MONOTONIC deadline in nanoseconds: never early,
and late by little.

The loop's own timers cannot do this: libuv counts in whole milliseconds and its poll timeout
is subject to the kernel's timer slack, so a sleep ends up to a millisecond early or late. On
Linux every pending deadline goes on a heap and one timerfd, armed at the earliest with an
absolute CLOCK_MONOTONIC time (a kernel hrtimer, no slack), wakes the loop through its
reader EARLY_NS before each deadline; the waiter then yields (`sleep(0)`, the other tasks run
in between) until the clock has passed its deadline, so the time it spends queued behind other
callbacks after the wake-up is absorbed instead of added. Elsewhere the wait sleeps until
SPIN_NS before the deadline, then yields until it has passed.

`call_at` is the callback form, for a hot path with no coroutine per wait (the fast mock
engine): the timerfd is armed at the deadline itself and the callback runs when it fires,
neither early nor yielding; without a timerfd, the loop's timer, re-armed while early."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import heapq
import itertools
import os
import sys

from harness.core.clock import now_ns

SPIN_NS = 1_000_000  # the fallback's yielding stretch before each deadline
EARLY_NS = 200_000  # the timerfd wakes a waiter this much early; it yields until the deadline
_CLOCK_MONOTONIC, _TFD_TIMER_ABSTIME = 1, 1
_TFD_NONBLOCK, _TFD_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc if hasattr(libc, "timerfd_create") else None
    except OSError:
        return None


class _Call:
    """A callback due at a deadline; shares the heap with the waiters' futures, so it answers
    done() and set_result() like one."""

    __slots__ = ("callback", "over")

    def __init__(self, callback) -> None:
        self.callback, self.over = callback, False

    def done(self) -> bool:
        return self.over

    def set_result(self, _) -> None:
        callback, self.callback, self.over = self.callback, None, True
        callback()

    def cancel(self) -> None:
        self.callback, self.over = None, True  # nothing it holds stays alive until its time


class Deadlines:
    """One per event loop: `await deadlines.wait_until(deadline_ns)`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, precise: bool = True) -> None:
        self._loop = loop
        self._heap: list[tuple[int, int, asyncio.Future]] = []
        self._order = itertools.count()
        self._armed: int | None = None  # the deadline the timerfd is set to
        self._libc = _libc() if precise else None
        self._fd = -1
        if self._libc is not None:
            self._fd = self._libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
            if self._fd < 0:
                self._libc = None
            else:
                loop.add_reader(self._fd, self._fire)

    @property
    def precise(self) -> bool:
        """Whether the timerfd drives the waits (else: sleep, then yield)."""
        return self._libc is not None

    async def wait_until(self, deadline_ns: int) -> None:
        """Waits end in their deadlines' order, but a wait begun at or after its deadline
        ends at once: it may end before earlier waits whose wake-up the loop has not yet taken
        (the caller came late; holding it back would only make it later)."""
        while (left := deadline_ns - now_ns()) > 0:
            if self._libc is None:
                await asyncio.sleep((left - SPIN_NS) / 1e9 if left > SPIN_NS else 0)
                continue
            if left <= EARLY_NS:  # woken early on purpose: yield to the others until it is time
                await asyncio.sleep(0)
                continue
            wake_ns, future = deadline_ns - EARLY_NS, self._loop.create_future()
            heapq.heappush(self._heap, (wake_ns, next(self._order), future))
            if self._armed is None or wake_ns < self._armed:
                self._arm(wake_ns)
            await future

    def call_at(self, deadline_ns: int, callback) -> _Call:
        """Call `callback()` on the loop once the clock has passed `deadline_ns` (never from
        inside this call); the returned handle's `cancel()` drops it."""
        call = _Call(callback)
        if self._libc is None:
            self._later(deadline_ns, call)
        else:
            heapq.heappush(self._heap, (deadline_ns, next(self._order), call))
            if self._armed is None or deadline_ns < self._armed:
                self._arm(deadline_ns)
        return call

    def _later(self, deadline_ns: int, call: _Call) -> None:
        def check() -> None:
            if call.over:
                return
            left = deadline_ns - now_ns()
            if left > 0:  # a millisecond timer fired early: wait for the rest
                self._loop.call_later(left / 1e9, check)
            else:
                call.set_result(None)

        self._loop.call_later(max(deadline_ns - now_ns(), 0) / 1e9, check)

    def _arm(self, deadline_ns: int) -> None:
        spec = _Itimerspec()
        spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(deadline_ns, 1_000_000_000)
        if self._libc.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None):
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")
        self._armed = deadline_ns

    def _fire(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._fd, 8)
        now, heap, due = now_ns(), self._heap, []
        while heap and heap[0][0] <= now:
            due.append(heapq.heappop(heap)[2])
        self._armed = None
        if heap:
            self._arm(heap[0][0])
        for waiter in due:
            if waiter.done():  # a waiter cancelled (its client went away) is skipped
                continue
            try:
                waiter.set_result(None)
            except Exception as exc:  # reported as the loop reports a failed callback
                self._loop.call_exception_handler(
                    {"message": "a deadline callback failed", "exception": exc})

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd, self._libc = -1, None
