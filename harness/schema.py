"""The one typed, versioned record schema. Every writer and reader derives from it.

Units are in the names; all ints are int64 and all strings are plain utf8 so that every file of
one kind has exactly the same schema across runs. Times are nanoseconds since the cell's start on
the system-wide monotonic clock (CLOCK_MONOTONIC is shared by all processes on Linux).

Version history: 1 — first release; 2 — cells gain `strategy` and `variant` keys, requests gain
per-step durations, cells gain CPU time, loop lag, lost updates and speedup; loop_lag and
timeline files. Version-1 files are read with the new columns filled in (see `upgrade`)."""

from __future__ import annotations

from array import array
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

SCHEMA_VERSION = 2
META_KEY = b"harness"  # JSON run metadata in the Parquet key-value metadata
VERSION_KEY = b"harness.schema_version"

# Columns constant over a cell: added by the runner, not carried per row by the backends.
CELL_KEY_FIELDS = [
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("scenario", pa.string(), nullable=False),
    pa.field("backend", pa.string(), nullable=False),
    pa.field("concurrency", pa.int64(), nullable=False),
    pa.field("repetition", pa.int64(), nullable=False),
    pa.field("strategy", pa.string(), nullable=False),  # where CPU steps run (async backends)
    pa.field("variant", pa.string(), nullable=False),  # e.g. lock / no-lock; "default" if none
]
CELL_KEYS = [f.name for f in CELL_KEY_FIELDS]


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
        pa.field("peak_in_flight_live", pa.int64(), nullable=False),  # counted while running
        pa.field("peak_in_flight_server", pa.int64()),  # the mock server's own count
        pa.field("interrupted", pa.bool_(), nullable=False),
        pa.field("cpu_user_s", pa.float64()),  # the cell's process tree
        pa.field("cpu_sys_s", pa.float64()),
        pa.field("loop_lag_p99_ns", pa.int64()),  # from the raw samples; null without a loop
        pa.field("lost_updates", pa.int64()),  # race workload only
        pa.field("speedup", pa.float64()),  # throughput ÷ same cell at concurrency 1
        pa.field("server_cpu_s", pa.float64()),  # the mock server process's CPU time
    ]
)

LOOP_LAG_SCHEMA = pa.schema(CELL_KEY_FIELDS + [
    pa.field("t_ns", pa.int64(), nullable=False),  # when the probe woke
    pa.field("lag_ns", pa.int64(), nullable=False),  # how late it woke
])

TIMELINE_SCHEMA = pa.schema(CELL_KEY_FIELDS + [
    pa.field("t_ns", pa.int64(), nullable=False),
    pa.field("in_flight", pa.int64(), nullable=False),
    pa.field("completed", pa.int64(), nullable=False),
    pa.field("loop_lag_max_ns", pa.int64()),  # max in the interval; null without a loop
    pa.field("cpu_percent", pa.float64(), nullable=False),  # process tree; 100 = one core
    pa.field("ctx_switches_voluntary", pa.int64(), nullable=False),  # in the interval
    pa.field("ctx_switches_involuntary", pa.int64(), nullable=False),
])

# Error categories (the `error` column).
TIMEOUT, CONNECT, RESET, HTTP_STATUS, CANCELLED, PROTOCOL, DB = (
    "timeout", "connect", "reset", "http_status", "cancelled", "protocol", "db",
)
CANCELLED_OUTCOME = Outcome(False, 0, CANCELLED)

_NULL = -1  # sentinel for "no value" in the int arrays; no valid value is negative


class RecordBuffer:
    """Columnar buffer for one process's requests: one typed array per column, no dict per row."""

    def __init__(self) -> None:
        self.worker: list[str] = []
        self.slot: list[str] = []
        self.error: list[str | None] = []
        self.ints = {name: array("q") for name in (
            "seq", "enqueued_ns", "scheduled_ns", "start_ns", "end_ns", "status", "in_flight",
            *_NULLABLE_INTS,
        )}
        self.ok = array("b")

    def __len__(self) -> int:
        return len(self.ok)

    def append(self, worker: str, slot: str, seq: int, enqueued_ns: int, scheduled_ns: int,
               start_ns: int, end_ns: int, outcome: Outcome, in_flight: int) -> None:
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

    def to_batch(self) -> pa.RecordBatch:
        columns = {
            "worker": pa.array(self.worker, pa.string()),
            "slot": pa.array(self.slot, pa.string()),
            "ok": pa.array(self.ok, pa.int8()).cast(pa.bool_()),
            "error": pa.array(self.error, pa.string()),
        }
        for name in _NULLABLE_INTS:
            values = pa.array(self.ints[name], pa.int64())
            columns[name] = pc.if_else(pc.equal(values, _NULL), None, values)
        arrays = [columns[f.name] if f.name in columns else pa.array(self.ints[f.name], pa.int64())
                  for f in RECORD_FIELDS]
        return pa.RecordBatch.from_arrays(arrays, schema=RECORD_SCHEMA)


def upgrade(table: pa.Table, version: int, schema: pa.Schema) -> pa.Table:
    """Bring a table read from an older file to the current schema: columns added since are
    filled with their neutral value (keys "inline"/"default", measurements null)."""
    if version == SCHEMA_VERSION:
        return table
    defaults = {"strategy": "inline", "variant": "default"}
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        elif field.name in defaults:
            columns.append(pa.array([defaults[field.name]] * table.num_rows, field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema.with_metadata(table.schema.metadata))


def to_ipc_bytes(data: pa.Table | pa.RecordBatch) -> bytes:
    """Arrow IPC stream: how records cross process boundaries, a whole column at a time."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write(data)
    return sink.getvalue().to_pybytes()


def from_ipc_bytes(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
