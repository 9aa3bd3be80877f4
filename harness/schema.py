"""The one typed, versioned record schema. Every writer and reader derives from it.

Units are in the names; all ints are int64 and all strings are plain utf8 so that every file of
one kind has exactly the same schema across runs. Times are nanoseconds since the cell's start on
the system-wide monotonic clock (CLOCK_MONOTONIC is shared by all processes on Linux).

Version history: 1 — first release; 2 — cells gain `strategy` and `variant` keys, requests gain
per-step durations, cells gain CPU time, loop lag, lost updates and speedup; loop_lag and
timeline files. 3 — one Parquet file per cell and kind (`requests/cell-NNNN.parquet`, …) and
`run.json`, written once; requests gain `error_detail` (and the error categories `internal` and
`lost`); cells gain `released`, `slots_lost` and `complete`. 4 — cells gain
`kernel_ns_per_unit` (the cell's own speed on its CPU kernel) and lose `speedup` (computed by
the analysis, from the cells of a run, and nowhere else). Files of older versions are read with
the newer columns filled in and the dropped ones left out (see `upgrade`)."""

from __future__ import annotations

import threading
from array import array
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from harness.keys import AXIS_DEFAULTS, CELL_KEYS, KEY_TYPES

SCHEMA_VERSION = 4
META_KEY = b"harness"  # JSON run metadata in the Parquet key-value metadata
VERSION_KEY = b"harness.schema_version"

_ARROW = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64()}
# Columns constant over a cell, derived from the one definition in harness.keys: added by the
# runner, not carried per row by the backends.
CELL_KEY_FIELDS = [pa.field(name, _ARROW[kind], nullable=False) for name, kind in KEY_TYPES.items()]
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


_NULLABLE_INTS = ("server_delay_ns", "cpu_ns", "cpu_wait_ns", "io_ns", "db_ns")

# What a backend records for each request, in this order.
RECORD_FIELDS = [
    pa.field("worker", pa.string(), nullable=False),  # queue worker (dispatcher) that took it
    pa.field("slot", pa.string(), nullable=False),  # thread / process / connection that ran it
    pa.field("seq", pa.int64(), nullable=False),
    pa.field("enqueued_ns", pa.int64(), nullable=False),
    pa.field("scheduled_ns", pa.int64(), nullable=False),
    pa.field("start_ns", pa.int64(), nullable=False),
    pa.field("end_ns", pa.int64(), nullable=False),
    pa.field("server_delay_ns", pa.int64()),  # null when no server response (or not HTTP)
    pa.field("ok", pa.bool_(), nullable=False),
    pa.field("status", pa.int64(), nullable=False),  # 0 when there was no HTTP response
    pa.field("error", pa.string()),  # category; null when ok
    pa.field("error_detail", pa.string()),  # e.g. the exception type behind `internal`
    pa.field("in_flight", pa.int64(), nullable=False),  # at start, itself included
    pa.field("cpu_ns", pa.int64()),
    pa.field("cpu_wait_ns", pa.int64()),
    pa.field("io_ns", pa.int64()),
    pa.field("db_ns", pa.int64()),
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
        pa.field("server_cpu_s", pa.float64()),  # the mock server process's CPU time
        pa.field("released", pa.int64()),  # requests handed to a slot; null if unknown
        pa.field("slots_lost", pa.int64()),  # slot processes that died during the cell
        pa.field("complete", pa.bool_(), nullable=False),  # the cell process ended normally
        pa.field("server_exit", pa.int64()),  # the mock server died: exit code or -signal
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


class RecordBuffer:
    """Columnar buffer of requests: one typed array per column, no dict per row. Appended by
    one thread (a slot, or the loop) and drained by the spooler thread, under a lock so a
    drain never tears a row."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()
        self.appended = 0  # rows appended since creation (drained or not)

    def _reset(self) -> None:
        self.worker: list[str] = []
        self.slot: list[str] = []
        self.error: list[str | None] = []
        self.error_detail: list[str | None] = []
        self.ints = {name: array("q") for name in (
            "seq", "enqueued_ns", "scheduled_ns", "start_ns", "end_ns", "status", "in_flight",
            *_NULLABLE_INTS,
        )}
        self.ok = array("b")

    def __len__(self) -> int:
        return len(self.ok)

    def append(self, worker: str, slot: str, seq: int, enqueued_ns: int, scheduled_ns: int,
               start_ns: int, end_ns: int, outcome: Outcome, in_flight: int) -> None:
        with self._lock:
            ints = self.ints
            self.worker.append(worker)
            self.slot.append(slot)
            ints["seq"].append(seq)
            ints["enqueued_ns"].append(enqueued_ns)
            ints["scheduled_ns"].append(scheduled_ns)
            ints["start_ns"].append(start_ns)
            ints["end_ns"].append(end_ns)
            ints["status"].append(outcome.status)
            ints["in_flight"].append(in_flight)
            for name in _NULLABLE_INTS:
                value = getattr(outcome, name)
                ints[name].append(_NULL if value is None else value)
            self.ok.append(outcome.ok)
            self.error.append(outcome.error)
            self.error_detail.append(outcome.error_detail)
            self.appended += 1

    def drain(self) -> pa.RecordBatch | None:
        """The rows appended since the last drain, as one batch (None when there are none)."""
        with self._lock:
            if not len(self.ok):
                return None
            worker, slot, error, detail, ints, ok = (self.worker, self.slot, self.error,
                                                     self.error_detail, self.ints, self.ok)
            self._reset()
        columns = {
            "worker": pa.array(worker, pa.string()),
            "slot": pa.array(slot, pa.string()),
            "ok": pa.array(ok, pa.int8()).cast(pa.bool_()),
            "error": pa.array(error, pa.string()),
            "error_detail": pa.array(detail, pa.string()),
        }
        for name in _NULLABLE_INTS:
            values = pa.array(ints[name], pa.int64())
            columns[name] = pc.if_else(pc.equal(values, _NULL), None, values)
        arrays = [columns[f.name] if f.name in columns else pa.array(ints[f.name], pa.int64())
                  for f in RECORD_FIELDS]
        return pa.RecordBatch.from_arrays(arrays, schema=RECORD_SCHEMA)


def upgrade(table: pa.Table, version: int, schema: pa.Schema) -> pa.Table:
    """Bring a table read from an older file to the current schema: columns added since are
    filled with their neutral value (keys "inline"/"default", measurements null); columns
    dropped since (the cells' `speedup` of versions 2 and 3) are left out."""
    if version == SCHEMA_VERSION:
        return table
    defaults = {**AXIS_DEFAULTS, "complete": True}  # older versions wrote finished cells only
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        elif field.name in defaults:
            columns.append(pa.array([defaults[field.name]] * table.num_rows, field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema.with_metadata(table.schema.metadata))
