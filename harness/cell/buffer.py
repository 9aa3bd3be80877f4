"""The hot path's record: a cell's requests kept as they came, one flat list of values, turned
into Arrow batches by the spooler thread.

The hot path's entry is `RecordBuffer.row`, the list's own `extend` (a C method, no Python frame),
taking one tuple of ROW_WIDTH values in ROW's order: the nine the backend knows, then the
request's Outcome, concatenated::

    row((worker, slot, seq, enqueued_ns, scheduled_ns, start_ns, end_ns, in_flight, warmup)
        + outcome)

A row is one extend, so it is whole or absent: under the GIL the extend is one step, and
without one (3.13t) a list takes its own lock for an extend and for a slice, so the hot path
takes none. `append` (today's signature) builds the same tuple for the rarer paths.

Nothing per request is converted or looked up on the hot path, and no object the collector
tracks is kept (the tuple and the Outcome go at once; ints, strings, None are not tracked), so
rows waiting for the spooler cost no collection. The work is the drain's: strided slices of the
list are the columns, each converted in one C call."""

from __future__ import annotations

import struct
import threading

import numpy as np
import pyarrow as pa

from harness.core.schema import NULLABLE_INTS, RECORD_FIELDS, RECORD_SCHEMA, Outcome

# One request's values, in the order `row` takes them (Outcome's fields are column names).
ROW = ("worker", "slot", "seq", "enqueued_ns", "scheduled_ns", "start_ns", "end_ns",
       "in_flight", "warmup", *Outcome._fields)
ROW_WIDTH = len(ROW)
_OUTCOME_WIDTH = len(Outcome._fields)
_AT = {name: i for i, name in enumerate(ROW)}
_LABELS = ("worker", "slot", "error", "error_detail", "fault")
_INTS = ("seq", "enqueued_ns", "scheduled_ns", "start_ns", "end_ns", "in_flight", "status")
assert set(ROW) - {"warmup"} == {f.name for f in RECORD_FIELDS} - {"phase"}
BATCH_ROWS = 16_384  # rows per Arrow batch
_VARIES = object()


class RecordBuffer:
    """A cell's requests as ROW_WIDTH values each in one list, filled on the hot path by `row`
    (one list.extend per request); the spooler thread drains what has arrived into Arrow
    batches. Labels may be any object: a non-string one is written as its str()."""

    def __init__(self) -> None:
        self._values: list = []
        self.row = self._values.extend  # the hot path's entry: see the module's docstring
        self._take = threading.Lock()  # a drain's take against `appended`
        self._draining = threading.Lock()  # one drain at a time
        self._drained = 0

    def append(self, worker: str, slot: str, seq: int, enqueued_ns: int, scheduled_ns: int,
               start_ns: int, end_ns: int, outcome: Outcome, in_flight: int,
               warmup: bool = False) -> None:
        """One row, the slower way (a Python call): for paths off the hot one."""
        if len(outcome) != _OUTCOME_WIDTH:  # a row of the wrong width would shift the rest
            raise ValueError(f"an Outcome has {_OUTCOME_WIDTH} fields, not {len(outcome)}")
        self.row((worker, slot, seq, enqueued_ns, scheduled_ns, start_ns, end_ns, in_flight,
                  warmup) + tuple(outcome))

    def __len__(self) -> int:
        return len(self._values) // ROW_WIDTH

    @property
    def appended(self) -> int:
        """Rows appended since creation, drained or not (the sampler's progress count): never
        lower than an earlier answer, also while a drain takes rows."""
        with self._take:
            return self._drained + len(self._values) // ROW_WIDTH

    def drain(self) -> pa.Table | None:
        """The rows appended since the last drain, as a table of batches of at most
        BATCH_ROWS rows each (None when there are none). Raises ValueError when a row was not
        ROW_WIDTH values, or a value has the wrong type for its column (the rows drained with
        it are lost: a bug on a hot path, not a condition of the run)."""
        values = self._values
        if not values:
            return None
        with self._draining:
            size = len(values)
            rows, torn = divmod(size, ROW_WIDTH)
            if torn:  # every row from the wrong one on is shifted: all are lost
                self._drop(size)
                raise ValueError(f"a row was not {ROW_WIDTH} values (RecordBuffer.row)")
            # Appends only add at the end and only a drain removes, so these rows stay where
            # they are while their columns are sliced out of the live list (no copy). They
            # leave it in one deletion at the end, which moves only the rows appended since
            # (many, when the hot path keeps going meanwhile: a deletion per block would move
            # them once per block).
            try:
                batches = [_to_batch(values, first, min(first + BATCH_ROWS, rows))
                           for first in range(0, rows, BATCH_ROWS)]
            finally:  # a value of the wrong type: the rows drained with it are lost
                self._drop(size)
        return pa.Table.from_batches(batches, schema=RECORD_SCHEMA) if batches else None

    def _drop(self, size: int) -> None:
        """The first `size` values leave the list; the rows they were count as drained."""
        with self._take:
            del self._values[:size]  # the front only: rows appended since stay
            self._drained += size // ROW_WIDTH


def _to_batch(values: list, first: int, last: int) -> pa.RecordBatch:
    """Rows first..last of the flat values as one Arrow batch: each column a strided slice."""
    low, high = first * ROW_WIDTH, last * ROW_WIDTH
    columns = {}
    for name, convert in _CONVERT.items():
        column = values[low + _AT[name]:high:ROW_WIDTH]
        try:
            columns[name] = convert(column)
        except (TypeError, ValueError, OverflowError, struct.error, pa.ArrowException) as exc:
            raise ValueError(f"RecordBuffer: column {name!r}: {exc}") from exc
    columns["phase"] = columns.pop("warmup")
    return pa.RecordBatch.from_arrays([columns[f.name] for f in RECORD_FIELDS],
                                      schema=RECORD_SCHEMA)


def _same(column: list):
    """The value every entry equals, or _VARIES; a look at three entries first, so that a
    column that varies costs no full pass."""
    first = column[0]
    if first == column[-1] == column[len(column) >> 1] and \
            column.count(first) == len(column):
        return first
    return _VARIES


_FILLED: dict = {}  # (type, value, rows) → that many times the value


def _filled(kind: pa.DataType, value, n: int) -> pa.Array:
    """n times `value` (None: nulls), made once: most batches have BATCH_ROWS rows, and a
    constant column (the worker, the status, the phase, the nulls) is the same array each
    time (Arrow arrays are immutable)."""
    key = (kind, value, n)  # one Python type per Arrow type here: no 1 == True mix-up
    found = _FILLED.get(key)
    if found is None:
        if len(_FILLED) >= 64:
            _FILLED.clear()
        found = _FILLED[key] = pa.repeat(pa.scalar(value, kind), n)
    return found


def _ints(column: list) -> pa.Array:
    same = _same(column)
    if type(same) is int:
        return _filled(pa.int64(), same, len(column))
    return _packed(column)


def _packed(column: list) -> pa.Array:
    """Ints as one int64 array, in one struct pack (which takes ints only: no None, no float,
    no str)."""
    words = struct.pack(f"<{len(column)}q", *column)
    return pa.Array.from_buffers(pa.int64(), len(column), [None, pa.py_buffer(words)])


def _nullable_ints(column: list) -> pa.Array:
    same = _same(column)
    if same is None or type(same) is int:
        return _filled(pa.int64(), same, len(column))
    try:  # no null: one pack (looking for None first would cost a compare per int)
        return _packed(column)
    except struct.error:
        return pa.array(column, pa.int64())


def _labels(column: list) -> pa.Array:
    same = _same(column)
    if same is None or type(same) is str:
        return _filled(pa.string(), same, len(column))
    try:
        return pa.array(column, pa.string())  # also takes bytes, as UTF-8
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # a label that is not a string: its str()
        return pa.array([None if label is None else str(label) for label in column],
                        pa.string())


def _ok(column: list) -> pa.Array:
    same = _same(column)
    if type(same) is bool:
        return _filled(pa.bool_(), same, len(column))
    return pa.array(np.fromiter(column, np.bool_, len(column)))  # any value's truth


_PHASES = pa.array(["measure", "warmup"])


def _phase(column: list) -> pa.Array:
    """The warm-up flags as the `phase` column."""
    same = _same(column)
    if type(same) is bool:
        return _filled(pa.string(), "warmup" if same else "measure", len(column))
    return _PHASES.take(pa.array(np.fromiter(column, np.bool_, len(column)).view(np.int8)))


_CONVERT = {**dict.fromkeys(_LABELS, _labels), **dict.fromkeys(_INTS, _ints),
            **dict.fromkeys(NULLABLE_INTS, _nullable_ints), "ok": _ok, "warmup": _phase}
assert set(_CONVERT) == set(ROW)
