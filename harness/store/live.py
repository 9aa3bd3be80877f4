"""A running cell's last second, read from its spool as the cell flushes it: what the live view
on a terminal shows. The runner reads it from its own thread, so the cell's hot path pays
nothing; only what was flushed since the last look is read.

A spool file is read as it grows: whole IPC messages only, a message still being written is
left for the next look. Nothing here raises for a file that is missing, cut short or being
written: the live view is no reason for a run to fail."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from harness.core.stats import percentile, response_ns
from harness.store.spool import spool_files

WINDOW_NS = 1_000_000_000  # the live figures are of the last second


class StreamTail:
    """One spool file (an Arrow IPC stream) read as it grows: `read_new` returns the record
    batches appended since its last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0  # bytes of whole messages read so far
        self.schema: pa.Schema | None = None

    def read_new(self) -> list[pa.RecordBatch]:
        try:
            with open(self.path, "rb") as file:
                file.seek(self.offset)
                data = file.read()
        except OSError:
            return []
        if not data:
            return []
        source = pa.BufferReader(pa.py_buffer(data))
        batches, used = [], 0
        try:
            messages = pa.ipc.MessageReader.open_stream(source)
            while True:
                message = messages.read_next_message()  # StopIteration at the end
                if message.type == "schema":
                    self.schema = pa.ipc.read_schema(message)
                elif message.type == "record batch" and self.schema is not None:
                    batches.append(pa.ipc.read_record_batch(message, self.schema))
                used = source.tell()
        except (StopIteration, OSError, pa.ArrowException):  # the end, or a message in writing
            pass
        self.offset += used
        return batches


@dataclass
class LiveStats:
    """A running cell's figures: of its last second (WINDOW_NS of end_ns before the newest
    row's end or the latest timeline sample, whichever is later), and that sample's."""

    rate_per_s: float = 0.0  # requests that ended in the window ÷ its length
    errors: dict[str, int] = field(default_factory=dict)  # by category, in the window
    p50_ns: float = float("nan")  # response time (harness.core.stats.response_ns)
    p99_ns: float = float("nan")
    in_flight: int | None = None  # the timeline's latest sample
    elapsed_ns: int | None = None  # since the cell's clock, at that sample
    rows: int = 0  # every row read so far


class LiveCell:
    """A cell's spool folder, looked at now and then (`poll`). The rows of the last second are
    kept as chunks, one per batch read; older ones are dropped."""

    def __init__(self, folder: Path, window_ns: int = WINDOW_NS) -> None:
        self.folder, self.window_ns = Path(folder), window_ns
        self._tails: dict[Path, StreamTail] = {}
        self._chunks: collections.deque = collections.deque()  # (end, response, error rows)
        self._latest: dict[Path, tuple[int, int]] = {}  # timeline file → (t_ns, in_flight)
        self.newest_ns: int | None = None
        self.rows = 0

    def poll(self) -> LiveStats:
        for _, batch in self._read("requests"):
            self._add(batch)
        for path, batch in self._read("timeline"):
            if batch.num_rows:
                last = batch.slice(batch.num_rows - 1).to_pydict()
                self._latest[path] = (last["t_ns"][0], last["in_flight"][0])
        return self._stats()

    def _read(self, kind: str) -> list[tuple[Path, pa.RecordBatch]]:
        found = []
        for _, path in spool_files(self.folder, kind):
            tail = self._tails.setdefault(path, StreamTail(path))
            found += [(path, batch) for batch in tail.read_new()]
        return found

    def _add(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        end = batch.column("end_ns").to_numpy()
        response = response_ns(batch.column("scheduled_ns").to_numpy(), end)
        error = batch.column("error")
        failed = np.asarray(error.is_valid())  # only the failed rows' categories become objects
        errors = (end[failed], error.filter(failed).to_pylist()) if failed.any() else None
        self._chunks.append((end, response, errors))
        self.rows += batch.num_rows
        newest = int(end.max())
        self.newest_ns = newest if self.newest_ns is None else max(self.newest_ns, newest)

    def _stats(self) -> LiveStats:
        stats = LiveStats(rows=self.rows)
        if self._latest:  # a cell's generators each sample their own (a spread cell)
            stats.elapsed_ns = max(t for t, _ in self._latest.values())
            stats.in_flight = sum(n for _, n in self._latest.values())
        if self.newest_ns is None:
            return stats
        # The window ends at the clock's latest sample when that is later than the newest row:
        # while nothing ends (a stall), the last second empties instead of standing still.
        end_ns = max(self.newest_ns, stats.elapsed_ns or 0)
        since = end_ns - self.window_ns  # the window: end_ns in (since, end]
        while self._chunks and self._chunks[0][0].max() <= since:
            self._chunks.popleft()
        if not self._chunks:
            return stats
        ends = np.concatenate([chunk[0] for chunk in self._chunks])
        responses = np.concatenate([chunk[1] for chunk in self._chunks])[ends > since]
        # the cell's first second: the window is as long as the clock has run
        span_ns = min(self.window_ns, end_ns) if end_ns > 0 else self.window_ns
        stats.rate_per_s = responses.size / (span_ns / 1e9)
        if responses.size:
            stats.p50_ns, stats.p99_ns = (float(p) for p in percentile(responses, [50, 99]))
        for chunk in self._chunks:
            if chunk[2] is not None:
                for at, category in zip(*chunk[2], strict=True):
                    if at > since:
                        stats.errors[category] = stats.errors.get(category, 0) + 1
        return stats
