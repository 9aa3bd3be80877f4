"""Where a cell's seqs come from when slots take requests themselves (no queue): a counter
of requests released, local to one generator process or shared by all of a cell's.

The shared one is a word in a small file every generator maps, moved under a lock the kernel
frees when its holder dies (gauge.FileLock), so a generator killed at any instant stalls none
of the others; next to it each generator publishes its live in-flight count, completed count
and worst recent loop lag for the cell's sampler, which sums them on one clock."""

from __future__ import annotations

import mmap
import os
import sys
import threading
from itertools import count
from pathlib import Path

from harness.cell.gauge import FileLock

# The shared file's words: the next seq, then per generator FIELDS words: its gauge's three
# (in flight, peak, last stamp: gauge.IN_FLIGHT, PEAK, LAST), its completed count, its worst
# loop lag since the cell's sampler last looked.
NEXT, HEADER = 0, 1
COMPLETED, LAG_MAX, FIELDS = 3, 4, 5
WORD = 8


class Counter:
    """Seqs 0, 1, 2, … up to `limit` (None: no limit), for the slots of one process. Under
    the GIL `next` on an itertools.count is one atomic step, so threads need no lock.

    Strided (`start` g, `step` N): generator g of N processes that share nothing takes g, g+N,
    g+2N, …, so the N counters together hand out every seq below the limit once."""

    def __init__(self, limit: int | None, start: int = 0, step: int = 1) -> None:
        self.limit, self.start, self.step = limit, start, step
        self._next = count(start, step).__next__
        if not getattr(sys, "_is_gil_enabled", lambda: True)():
            lock, step = threading.Lock(), self._next

            def locked() -> int:
                with lock:
                    return step()

            self._next = locked

    def take(self) -> int | None:
        seq = self._next()
        if self.limit is not None and seq >= self.limit:
            return None
        return seq

    def released(self) -> int:
        """Seqs handed out; once taking is over (the count moves past what it reports)."""
        seq = self._next()
        end = seq if self.limit is None else min(seq, self.limit)
        return max(0, -(-(end - self.start) // self.step))  # start, start+step, … below end


class Shared:
    """The file the generators of one cell share: the seq counter and each generator's
    published figures. Every process maps it itself, from its path (the job carries it)."""

    def __init__(self, path: str, generators: int, create: bool = False) -> None:
        self.path, self.generators = path, generators
        size = (HEADER + FIELDS * generators) * WORD
        if create:
            Path(path).write_bytes(bytes(size))
        fd = os.open(path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.words = memoryview(self._map).cast("q")
        self._lock = FileLock(f"{path}.lock")

    def counter(self, limit: int | None) -> SharedCounter:
        return SharedCounter(self, limit)

    def field(self, generator: int, name: int) -> int:
        return HEADER + FIELDS * generator + name

    def total(self, name: int) -> int:
        words, base = self.words, HEADER + name
        return sum(words[base + FIELDS * g] for g in range(self.generators))

    def worst(self, name: int) -> int:
        """The largest of one field over the generators, each reset to 0 once read."""
        words, worst = self.words, 0
        for g in range(self.generators):
            i = HEADER + FIELDS * g + name
            worst, words[i] = max(worst, words[i]), 0
        return worst

    @property
    def released(self) -> int:
        return self.words[NEXT]


class SharedCounter:
    """Seqs from the cell's one counter: every generator takes its next request there, so none
    idles at the tail while another still has a backlog."""

    def __init__(self, shared: Shared, limit: int | None) -> None:
        self.shared, self.limit = shared, limit
        self._words, self._lock = shared.words, shared._lock

    def take(self) -> int | None:
        words = self._words
        with self._lock:
            seq = words[NEXT]
            if self.limit is not None and seq >= self.limit:
                return None
            words[NEXT] = seq + 1
        return seq

    def released(self) -> int:
        return self.shared.released
