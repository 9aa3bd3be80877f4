"""`race`: each request is one read → switch point → write of a shared counter. Without a lock,
a switch between read and write loses the other side's update."""

from __future__ import annotations

import asyncio
import threading
import time

from harness.core.schema import Outcome

_OK = Outcome(True)


class Counter:
    def __init__(self) -> None:
        self.counter = 0


class _SyncRace:
    def __init__(self, state: Counter, lock: threading.Lock | None) -> None:
        self.state, self.lock = state, lock

    def run(self, seq: int) -> Outcome:
        state = self.state
        if self.lock is None:
            value = state.counter
            time.sleep(0)  # releases the GIL: another thread may run here
            state.counter = value + 1
        else:
            with self.lock:
                value = state.counter
                time.sleep(0)
                state.counter = value + 1
        return _OK

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


class _AsyncRace:
    def __init__(self, state: Counter, lock: asyncio.Lock | None) -> None:
        self.state, self.lock = state, lock

    async def run(self, seq: int) -> tuple[Outcome, None]:
        state = self.state
        if self.lock is None:
            value = state.counter
            await asyncio.sleep(0)  # another task may run here
            state.counter = value + 1
        else:
            async with self.lock:
                value = state.counter
                await asyncio.sleep(0)
                state.counter = value + 1
        return _OK, None

    async def close(self) -> None:
        pass


class RaceWork:
    def __init__(self, spec) -> None:
        self.locked = spec.variant == "lock"
        self.state = Counter()
        self._thread_lock = threading.Lock() if self.locked else None

    def prepare(self) -> None:
        pass

    def sync_runner(self, slot: str) -> _SyncRace:
        return _SyncRace(self.state, self._thread_lock)

    async def async_runner(self) -> _AsyncRace:
        return _AsyncRace(self.state, asyncio.Lock() if self.locked else None)

    def extras(self) -> dict:
        return {"counter": self.state.counter}
