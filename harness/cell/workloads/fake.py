"""`fake`: a request that sleeps, and fails on purpose on chosen `seq`s — for testing the
harness itself (what becomes of a request that raises, or of a process that dies mid-cell)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from harness.core.schema import Outcome

_OK = Outcome(True)


class FakeError(RuntimeError):
    """Raised by the fake workload on a `raise_on` seq."""


def _misbehave(seq: int, raise_on: frozenset, exit_on: frozenset) -> None:
    if seq in exit_on:  # the process running this request dies as an OOM kill would
        os.kill(os.getpid(), signal.SIGKILL)
    if seq in raise_on:
        raise FakeError(f"seq {seq}")


class _SyncFake:
    def __init__(self, workload: FakeWork) -> None:
        self.w = workload

    def run(self, seq: int) -> Outcome:
        time.sleep(self.w.delay_s)
        _misbehave(seq, self.w.raise_on, self.w.exit_on)
        return _OK

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


class _AsyncFake:
    def __init__(self, workload: FakeWork) -> None:
        self.w = workload

    async def run(self, seq: int) -> tuple[Outcome, None]:
        await asyncio.sleep(self.w.delay_s)
        _misbehave(seq, self.w.raise_on, self.w.exit_on)
        return _OK, None

    async def close(self) -> None:
        pass


class FakeWork:
    def __init__(self, spec) -> None:
        workload = spec.scenario.workload
        self.delay_s = workload.duration / 1e9
        self.raise_on = frozenset(workload.raise_on)
        self.exit_on = frozenset(workload.exit_on)

    def prepare(self) -> None:
        pass

    def sync_runner(self, slot: str) -> _SyncFake:
        return _SyncFake(self)

    async def async_runner(self) -> _AsyncFake:
        return _AsyncFake(self)

    def extras(self) -> dict:
        return {}
