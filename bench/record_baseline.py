"""Today's record buffer, kept for side-by-side comparison in bench-self's recording section
(bench/self_recording.py): harness/cell/buffer.py as of commit a913db0 (last changed in
b71b6cb), before the hot path's record became one list.extend of a row tuple. Not used by the
harness.

The hot path's record: a cell's requests packed into one growing bytearray, drained into
Arrow batches by the spooler thread."""

from __future__ import annotations

import struct
import sys
import threading

import numpy as np
import pyarrow as pa

from harness.core.schema import NULLABLE_INTS, RECORD_FIELDS, RECORD_SCHEMA, Outcome

_NULL = -1  # sentinel for "no value" in the int arrays; no valid value is negative


# One request as the hot path packs it: 22 int64 words, in this order. String columns are
# label codes (0 = null), nullable ints hold -1 for null, `ok` and the warm-up flag 0 or 1.
_CODED = ("worker", "slot", "error", "error_detail", "fault")
_INTS = ("seq", "enqueued_ns", "scheduled_ns", "start_ns", "end_ns", "in_flight", "status")
_PACKED = (*_CODED, *_INTS, *NULLABLE_INTS, "ok", "warmup")
_WORD = {name: i for i, name in enumerate(_PACKED)}
_ROW = struct.Struct(f"<{len(_PACKED)}q")
BATCH_ROWS = 16_384  # rows → columns a block at a time, the block within the CPU's caches
_PHASES = pa.array(["measure", "warmup"])


def _int_column(words: np.ndarray, nullable: bool = False) -> pa.Array:
    """One int64 column of the transposed rows, zero-copy when it has no null."""
    if nullable:
        missing = words == _NULL
        if missing.all():
            return pa.nulls(len(words), pa.int64())
        if missing.any():
            return pa.array(words, mask=missing)
    return pa.Array.from_buffers(pa.int64(), len(words), [None, pa.py_buffer(words)])


class BaselineRecordBuffer:
    """A cell's requests as packed rows in one growing bytearray, filled on the hot path by one
    struct pack and one extend per request (no per-column append, no per-row object kept);
    strings become small codes, each label stored once. The spooler thread drains what has
    arrived into an Arrow batch. A row is whole or absent: under the GIL the extend is one
    atomic step and a drain takes whole rows from the front, so a row appended meanwhile waits
    for the next drain and none is torn. Without a GIL (3.13t's bytearray has no lock of its
    own) the extend and the drain's take go under one lock; with it, the hot path takes none."""

    def __init__(self) -> None:
        self._rows = bytearray()
        self._codes: dict = {None: 0}
        self._labels: list = [None]
        self._new_label = threading.Lock()
        self._take = threading.Lock()  # a drain's take against `appended` (and, no GIL, appends)
        self._drained = 0
        self._extend, self._pack = self._rows.extend, _ROW.pack
        if not getattr(sys, "_is_gil_enabled", lambda: True)():
            extend, take = self._rows.extend, self._take

            def locked_extend(row: bytes) -> None:
                with take:
                    extend(row)

            self._extend = locked_extend

    def _code(self, label: str | None) -> int:
        """The slow path: a label seen for the first time gets the next code."""
        with self._new_label:
            code = self._codes.get(label)
            if code is None:
                code = len(self._labels)
                # a str (or null) whatever came: a label Arrow cannot take would fail every drain
                self._labels.append(None if label is None else str(label))
                self._codes[label] = code  # after its label: a drain that sees it finds it
            return code

    def append(self, worker: str, slot: str, seq: int, enqueued_ns: int, scheduled_ns: int,
               start_ns: int, end_ns: int, outcome: Outcome, in_flight: int,
               warmup: bool = False) -> None:
        (ok, status, error, delay, cpu, wait, io, db, detail, drawn, sent, recv, fault,
         connect) = outcome  # the Outcome of today's schema, connect_ns included
        codes = self._codes
        try:
            w, s, e, d, f = codes[worker], codes[slot], codes[error], codes[detail], codes[fault]
        except KeyError:
            w, s, e, d, f = map(self._code, (worker, slot, error, detail, fault))
        self._extend(self._pack(
            w, s, e, d, f, seq, enqueued_ns, scheduled_ns, start_ns, end_ns, in_flight, status,
            -1 if delay is None else delay, -1 if cpu is None else cpu,
            -1 if wait is None else wait, -1 if io is None else io, -1 if db is None else db,
            -1 if drawn is None else drawn, -1 if sent is None else sent,
            -1 if recv is None else recv, -1 if connect is None else connect, ok, warmup))

    def __len__(self) -> int:
        return len(self._rows) // _ROW.size

    @property
    def appended(self) -> int:
        """Rows appended since creation, drained or not (the sampler's progress count): never
        lower than an earlier answer, also while a drain takes rows."""
        with self._take:
            return self._drained + len(self._rows) // _ROW.size

    def drain(self) -> pa.Table | None:
        """The rows appended since the last drain, as a table of batches of at most
        BATCH_ROWS rows each (None when there are none)."""
        size = len(self._rows) // _ROW.size * _ROW.size
        if not size:
            return None
        with self._take:
            taken = self._rows[:size]
            del self._rows[:size]  # the front only: rows appended meanwhile stay
            self._drained += size // _ROW.size
        rows = np.frombuffer(taken, dtype=np.int64).reshape(-1, len(_PACKED))
        labels = pa.array(list(self._labels), pa.string())  # codes in `rows` are all in it
        batches = [_to_batch(rows[first:first + BATCH_ROWS], labels)
                   for first in range(0, len(rows), BATCH_ROWS)]
        return pa.Table.from_batches(batches, schema=RECORD_SCHEMA)


def _to_batch(rows: np.ndarray, labels: pa.Array) -> pa.RecordBatch:
    """Packed rows (a block small enough for the CPU's caches) as one Arrow batch."""
    n = len(rows)
    words = np.ascontiguousarray(rows.T)
    columns = {}
    for name in _CODED:
        codes = words[_WORD[name]]
        columns[name] = labels.take(pa.array(codes.astype(np.int32))) if codes.any() else \
            pa.nulls(n, pa.string())
    for name in _INTS:
        columns[name] = _int_column(words[_WORD[name]])
    for name in NULLABLE_INTS:
        columns[name] = _int_column(words[_WORD[name]], nullable=True)
    columns["ok"] = pa.array(words[_WORD["ok"]] != 0)
    columns["phase"] = _PHASES.take(pa.array(words[_WORD["warmup"]].astype(np.int32)))
    return pa.RecordBatch.from_arrays([columns[f.name] for f in RECORD_FIELDS],
                                      schema=RECORD_SCHEMA)
