"""The slot critical section: in-flight counter and start/end timestamps taken under one lock.

Because the counter moves and the timestamp is taken inside the same critical section, and
timestamps are forced strictly increasing in lock order, a sweep over the recorded (start, end)
intervals yields exactly the peak counted live — equal by construction, not by luck."""

from __future__ import annotations

import threading
import time

now_ns = time.monotonic_ns  # CLOCK_MONOTONIC: one clock for every process on the machine

IN_FLIGHT, PEAK, LAST = 0, 1, 2


class _NoLock:
    """For a single event-loop thread: code between awaits is already a critical section."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class InFlightGauge:
    """`state` is any mutable [in_flight, peak, last_ts] sequence: a list for threads and event
    loops, a multiprocessing RawArray for slots in separate processes."""

    def __init__(self, t0_ns: int, lock=None, state=None) -> None:
        self.t0_ns = t0_ns
        self._lock = lock if lock is not None else threading.Lock()
        self._state = state if state is not None else [0, 0, -1]

    @classmethod
    def for_event_loop(cls, t0_ns: int) -> InFlightGauge:
        return cls(t0_ns, lock=_NoLock())

    def _tick(self, state) -> int:
        ts = now_ns() - self.t0_ns
        if ts <= state[LAST]:
            ts = state[LAST] + 1
        state[LAST] = ts
        return ts

    def enter(self) -> tuple[int, int]:
        """Returns (start_ns, in_flight including this request)."""
        state = self._state
        with self._lock:
            ts = self._tick(state)
            n = state[IN_FLIGHT] + 1
            state[IN_FLIGHT] = n
            if n > state[PEAK]:
                state[PEAK] = n
            return ts, n

    def exit(self) -> int:
        """Returns end_ns."""
        state = self._state
        with self._lock:
            ts = self._tick(state)
            state[IN_FLIGHT] -= 1
            return ts

    @property
    def peak(self) -> int:
        return self._state[PEAK]

    @property
    def in_flight(self) -> int:
        return self._state[IN_FLIGHT]
