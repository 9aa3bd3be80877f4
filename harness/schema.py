"""The one typed, versioned record schema. Every writer and reader derives from it.

Units are in the names; all ints are int64 and all strings are plain utf8 so that every file of
one kind has exactly the same schema across runs. Times are nanoseconds since the cell's start on
the system-wide monotonic clock (CLOCK_MONOTONIC is shared by all processes on Linux).

Version history: 1 — first release; 2 — cells gain `strategy` and `variant` keys, requests gain
per-step durations, cells gain CPU time, loop lag, lost updates and speedup; loop_lag and
timeline files. 3 — one Parquet file per cell and kind (`requests/cell-NNNN.parquet`, …) and
`run.json`, written once; requests gain `error_detail` (and the error categories `internal` and
`lost`); cells gain `released`, `slots_lost`, `complete` and `server_exit`. 4 — requests gain
`server_delay_target_ns`, `fault`, `bytes_sent` and `bytes_received`; the `client` key; cells
gain the wall-clock anchors `started_unix_ns`, `t0_unix_ns`, `finished_unix_ns`; the open
model: keys `model` and `rate_per_s`, requests' `phase`, cells' `late_starts`, `late_p99_ns`,
`generator_lagging`; cells gain `kernel_ns_per_unit` (the cell's own speed on its CPU kernel)
and lose `speedup` (computed by the analysis, from the cells of a run, and nowhere else). Files
of older versions are read with the newer columns filled in and the dropped ones left out (see
`upgrade`)."""

from __future__ import annotations

import struct
import sys
import threading
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from harness.keys import AXIS_DEFAULTS, CELL_KEYS, KEY_TYPES, NULLABLE_KEYS

SCHEMA_VERSION = 4
META_KEY = b"harness"  # JSON run metadata in the Parquet key-value metadata
VERSION_KEY = b"harness.schema_version"

_ARROW = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64()}
# Columns constant over a cell, derived from the one definition in harness.keys: added by the
# runner, not carried per row by the backends.
CELL_KEY_FIELDS = [pa.field(name, _ARROW[kind], nullable=name in NULLABLE_KEYS)
                   for name, kind in KEY_TYPES.items()]
assert [f.name for f in CELL_KEY_FIELDS] == CELL_KEYS


class Outcome(NamedTuple):
    """What running one request produced. Step durations are None when a step does not exist."""

    ok: bool
    status: int = 0  # HTTP status; 0 when no HTTP response arrived (or no HTTP at all)
    error: str | None = None
    server_delay_ns: int | None = None
    cpu_ns: int | None = None  # executing the CPU step, measured where it ran
    cpu_wait_ns: int | None = None  # waiting for a pool slot (and the hand-over)
    io_ns: int | None = None
    db_ns: int | None = None
    error_detail: str | None = None  # `internal`: the exception's type name
    server_delay_target_ns: int | None = None  # the delay the mock server drew
    bytes_sent: int | None = None  # request body bytes (as vegeta's bytes_out)
    bytes_received: int | None = None  # response body bytes read (as vegeta's bytes_in)
    fault: str | None = None  # the fault the mock server scheduled for this seq


_NULLABLE_INTS = ("server_delay_ns", "cpu_ns", "cpu_wait_ns", "io_ns", "db_ns",
                  "server_delay_target_ns", "bytes_sent", "bytes_received")
_NULLABLE_STRINGS = ("error", "error_detail", "fault")

# What a backend records for each request, in this order.
RECORD_FIELDS = [
    pa.field("worker", pa.string(), nullable=False),  # queue worker (dispatcher) that took it
    pa.field("slot", pa.string(), nullable=False),  # thread / process / connection that ran it
    pa.field("seq", pa.int64(), nullable=False),
    pa.field("enqueued_ns", pa.int64(), nullable=False),
    pa.field("scheduled_ns", pa.int64(), nullable=False),
    pa.field("start_ns", pa.int64(), nullable=False),
    pa.field("end_ns", pa.int64(), nullable=False),
    pa.field("server_delay_ns", pa.int64()),  # applied by the server; null without a response
    pa.field("server_delay_target_ns", pa.int64()),  # the delay it drew for this seq
    pa.field("ok", pa.bool_(), nullable=False),
    pa.field("status", pa.int64(), nullable=False),  # 0 when there was no HTTP response
    pa.field("error", pa.string()),  # category; null when ok
    pa.field("error_detail", pa.string()),  # e.g. the exception type behind `internal`
    pa.field("in_flight", pa.int64(), nullable=False),  # at start, itself included
    pa.field("cpu_ns", pa.int64()),
    pa.field("cpu_wait_ns", pa.int64()),
    pa.field("io_ns", pa.int64()),
    pa.field("db_ns", pa.int64()),
    pa.field("fault", pa.string()),  # effect the mock scheduled for this seq; null if none
    pa.field("bytes_sent", pa.int64()),  # request body bytes; null without HTTP
    pa.field("bytes_received", pa.int64()),  # response body bytes; null without a response
    pa.field("phase", pa.string(), nullable=False),  # "warmup" (left out of every figure)
]
RECORD_SCHEMA = pa.schema(RECORD_FIELDS)
REQUESTS_SCHEMA = pa.schema(CELL_KEY_FIELDS + RECORD_FIELDS)

CELLS_SCHEMA = pa.schema(
    CELL_KEY_FIELDS
    + [
        pa.field("requests", pa.int64(), nullable=False),
        pa.field("errors", pa.int64(), nullable=False),
        pa.field("makespan_ns", pa.int64(), nullable=False),
        pa.field("peak_in_flight", pa.int64(), nullable=False),  # sweep over start/end
        pa.field("peak_in_flight_live", pa.int64()),  # counted live; null if the cell died
        pa.field("peak_in_flight_server", pa.int64()),  # the mock server's own count
        pa.field("interrupted", pa.bool_(), nullable=False),
        pa.field("cpu_user_s", pa.float64()),  # the cell's process tree
        pa.field("cpu_sys_s", pa.float64()),
        pa.field("loop_lag_p99_ns", pa.int64()),  # from the raw samples; null without a loop
        pa.field("lost_updates", pa.int64()),  # race workload only
        pa.field("server_cpu_s", pa.float64()),  # the mock server's CPU time (+ pool workers)
        pa.field("server_loop_lag_p99_ns", pa.int64()),  # its event loop's; null without it
        pa.field("released", pa.int64()),  # requests handed to a slot; null if unknown
        pa.field("slots_lost", pa.int64()),  # slot processes that died during the cell
        pa.field("complete", pa.bool_(), nullable=False),  # the cell process ended normally
        pa.field("server_exit", pa.int64()),  # the mock server died: exit code or -signal
        # Wall-clock anchors (ns since the Unix epoch): the cell's processes were started, its
        # clock started (t0), it ended. Start-up = t0 − started.
        pa.field("started_unix_ns", pa.int64()),
        pa.field("t0_unix_ns", pa.int64()),
        pa.field("finished_unix_ns", pa.int64()),
        # Measured requests that started more than 1 ms after their intended time, the p99 of
        # start − scheduled, and whether it exceeds load.max_sched_lag (the numbers then
        # describe the generator, not the server).
        pa.field("late_starts", pa.int64()),
        pa.field("late_p99_ns", pa.int64()),
        pa.field("generator_lagging", pa.bool_()),
        pa.field("kernel_ns_per_unit", pa.float64()),  # CPU workloads: measured before t0
    ]
)

LAG_RECORD_SCHEMA = pa.schema([
    pa.field("t_ns", pa.int64(), nullable=False),  # when the probe woke
    pa.field("lag_ns", pa.int64(), nullable=False),  # how late it woke
])
LOOP_LAG_SCHEMA = pa.schema(CELL_KEY_FIELDS + list(LAG_RECORD_SCHEMA))

TIMELINE_RECORD_SCHEMA = pa.schema([
    pa.field("t_ns", pa.int64(), nullable=False),
    pa.field("in_flight", pa.int64(), nullable=False),
    pa.field("completed", pa.int64(), nullable=False),
    pa.field("loop_lag_max_ns", pa.int64()),  # max in the interval; null without a loop
    pa.field("cpu_percent", pa.float64(), nullable=False),  # process tree; 100 = one core
    pa.field("ctx_switches_voluntary", pa.int64(), nullable=False),  # in the interval
    pa.field("ctx_switches_involuntary", pa.int64(), nullable=False),
])
TIMELINE_SCHEMA = pa.schema(CELL_KEY_FIELDS + list(TIMELINE_RECORD_SCHEMA))

# Error categories (the `error` column).
TIMEOUT, CONNECT, RESET, HTTP_STATUS, CANCELLED, PROTOCOL, DB, INTERNAL, LOST = (
    "timeout", "connect", "reset", "http_status", "cancelled", "protocol", "db", "internal",
    "lost",
)
CANCELLED_OUTCOME = Outcome(False, 0, CANCELLED)
LOST_OUTCOME = Outcome(False, 0, LOST)


def internal_outcome(exc: BaseException) -> Outcome:
    """Any exception inside a request: a row, never a vanished request."""
    return Outcome(False, 0, INTERNAL, error_detail=type(exc).__name__)

_NULL = -1  # sentinel for "no value" in the int arrays; no valid value is negative


# One request as the hot path packs it: 22 int64 words, in this order. String columns are
# label codes (0 = null), nullable ints hold -1 for null, `ok` and the warm-up flag 0 or 1.
_CODED = ("worker", "slot", "error", "error_detail", "fault")
_INTS = ("seq", "enqueued_ns", "scheduled_ns", "start_ns", "end_ns", "in_flight", "status")
_PACKED = (*_CODED, *_INTS, *_NULLABLE_INTS, "ok", "warmup")
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


class RecordBuffer:
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
        (ok, status, error, delay, cpu, wait, io, db, detail, target, sent, recv,
         fault) = outcome
        codes = self._codes
        try:
            w, s, e, d, f = codes[worker], codes[slot], codes[error], codes[detail], codes[fault]
        except KeyError:
            w, s, e, d, f = map(self._code, (worker, slot, error, detail, fault))
        self._extend(self._pack(
            w, s, e, d, f, seq, enqueued_ns, scheduled_ns, start_ns, end_ns, in_flight, status,
            -1 if delay is None else delay, -1 if cpu is None else cpu,
            -1 if wait is None else wait, -1 if io is None else io, -1 if db is None else db,
            -1 if target is None else target, -1 if sent is None else sent,
            -1 if recv is None else recv, ok, warmup))

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
    for name in _NULLABLE_INTS:
        columns[name] = _int_column(words[_WORD[name]], nullable=True)
    columns["ok"] = pa.array(words[_WORD["ok"]] != 0)
    columns["phase"] = _PHASES.take(pa.array(words[_WORD["warmup"]].astype(np.int32)))
    return pa.RecordBatch.from_arrays([columns[f.name] for f in RECORD_FIELDS],
                                      schema=RECORD_SCHEMA)


def upgrade(table: pa.Table, version: int, schema: pa.Schema) -> pa.Table:
    """Bring a table read from an older file to the current schema: columns added since are
    filled with their neutral value (keys "inline"/"default", measurements null); columns
    dropped since (the cells' `speedup` of versions 2 and 3) are left out."""
    if version == SCHEMA_VERSION:
        return table
    # older versions wrote finished cells only, and had no warm-up
    defaults = {**AXIS_DEFAULTS, "complete": True, "phase": "measure"}
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        elif field.name in defaults:
            columns.append(pa.array([defaults[field.name]] * table.num_rows, field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema.with_metadata(table.schema.metadata))
