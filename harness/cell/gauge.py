"""The slot critical section: in-flight counter and start/end timestamps taken under one lock.

Because the counter moves and the timestamp is taken inside the same critical section, and
timestamps are forced strictly increasing in lock order, a sweep over the recorded (start, end)
intervals yields exactly the peak counted live — equal by construction, not by luck."""

from __future__ import annotations

import fcntl
import os
import threading

from harness.core.clock import now_ns

IN_FLIGHT, PEAK, LAST = 0, 1, 2


class InFlightGauge:
    """`state` is any mutable [in_flight, peak, last_ts] sequence: a list for threads and event
    loops, a multiprocessing RawArray for slots in separate processes."""

    def __init__(self, t0_ns: int, lock=None, state=None) -> None:
        self.t0_ns = t0_ns
        self._lock = lock if lock is not None else threading.Lock()
        self._state = state if state is not None else [0, 0, -1]

    @classmethod
    def for_event_loop(cls, t0_ns: int, state=None) -> InFlightGauge:
        return LoopGauge(t0_ns, state=state)

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

    def stamp(self) -> int:
        """A timestamp in the gauge's order that moves no counter (e.g. for a request cancelled
        before it started: a zero-length interval)."""
        with self._lock:
            return self._tick(self._state)

    @property
    def peak(self) -> int:
        return self._state[PEAK]

    @property
    def in_flight(self) -> int:
        return self._state[IN_FLIGHT]


class LoopGauge(InFlightGauge):
    """For one event-loop thread: code between awaits is already a critical section, so the
    same steps without a lock (a context manager per call cost more than the rest)."""

    def enter(self) -> tuple[int, int]:
        state = self._state
        ts = now_ns() - self.t0_ns
        if ts <= state[LAST]:
            ts = state[LAST] + 1
        state[LAST] = ts
        n = state[IN_FLIGHT] + 1
        state[IN_FLIGHT] = n
        if n > state[PEAK]:
            state[PEAK] = n
        return ts, n

    def exit(self) -> int:
        state = self._state
        ts = now_ns() - self.t0_ns
        if ts <= state[LAST]:
            ts = state[LAST] + 1
        state[LAST] = ts
        state[IN_FLIGHT] -= 1
        return ts

    def stamp(self) -> int:
        return self._tick(self._state)


class FileLock:
    """A cross-process mutex that the kernel releases when its holder dies (flock on a file),
    so a slot process killed inside the critical section cannot stall the others. Each process
    opens the file itself (a pickled FileLock carries only the path). Threads of one process
    may share one: flock excludes open files, not threads, so a thread lock goes first — it
    also keeps two threads from opening the file twice on first use, where the second open
    would wait on the first's lock forever."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._threads = threading.Lock()

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    def __enter__(self):
        self._threads.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise
        return self

    def __exit__(self, *exc):
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()
        return False


SLOTS = 3  # index of the first per-slot word in a SlotGauge's state


class SlotGauge(InFlightGauge):
    """The gauge for slots in separate processes: besides the counters, each slot's word holds
    the start of the request it runs (-1 when idle), so when a slot process dies the cell can
    close its interval and set the live count right, wherever in the critical section it died.
    `state`: [in_flight, peak, last_ts, slot_0, …, slot_n-1], e.g. a RawArray."""

    @staticmethod
    def initial_state(slots: int) -> list[int]:
        return [0, 0, -1] + [-1] * slots

    def enter(self, slot: int) -> tuple[int, int]:
        state = self._state
        with self._lock:
            ts = self._tick(state)
            n = state[IN_FLIGHT] + 1
            state[IN_FLIGHT] = n
            if n > state[PEAK]:
                state[PEAK] = n
            state[SLOTS + slot] = ts
            return ts, n

    def exit(self, slot: int) -> int:
        state = self._state
        with self._lock:
            ts = self._tick(state)
            state[SLOTS + slot] = -1
            state[IN_FLIGHT] -= 1
            return ts

    def recover(self, slot: int) -> tuple[int | None, int]:
        """After slot `slot`'s process died: (its request's start, or None when it had not
        stamped one; the end stamp). The live count is recounted from the slot words, which
        every enter/exit keeps equal to it, so a death halfway through either leaves no trace."""
        state = self._state
        with self._lock:
            start = state[SLOTS + slot]
            state[SLOTS + slot] = -1
            state[IN_FLIGHT] = sum(1 for v in state[SLOTS:] if v >= 0)
            return (start if start >= 0 else None), self._tick(state)
