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

from array import array
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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


_INT_COLUMNS = ("seq", "enqueued_ns", "scheduled_ns", "start_ns", "end_ns", "in_flight", "status",
                *_NULLABLE_INTS)


class RecordBuffer:
    """Columnar buffer of a cell's requests: one typed array per column, filled on the hot path
    with no lock and no per-row object; the spooler thread drains what has arrived into an
    Arrow batch (ints zero-copy from the arrays). `ok` is appended last and marks a whole row:
    a drain takes the first n = len(ok) rows of every column and deletes them, each step
    atomic (under the GIL, and under free-threading's per-object locks), so a row appended
    meanwhile waits for the next drain and none is torn."""

    def __init__(self) -> None:
        self._ints = {name: array("q") for name in _INT_COLUMNS}
        self._strings = {name: [] for name in ("worker", "slot", *_NULLABLE_STRINGS)}
        self._ok, self._warmup = array("b"), array("b")
        self._drained = 0
        i, t = self._ints, self._strings
        self._put = (t["worker"].append, t["slot"].append, i["seq"].append,
                     i["enqueued_ns"].append, i["scheduled_ns"].append, i["start_ns"].append,
                     i["end_ns"].append, i["in_flight"].append, self._warmup.append,
                     i["status"].append, t["error"].append, i["server_delay_ns"].append,
                     i["cpu_ns"].append, i["cpu_wait_ns"].append, i["io_ns"].append,
                     i["db_ns"].append, t["error_detail"].append,
                     i["server_delay_target_ns"].append, i["bytes_sent"].append,
                     i["bytes_received"].append, t["fault"].append, self._ok.append)

    def append(self, worker: str, slot: str, seq: int, enqueued_ns: int, scheduled_ns: int,
               start_ns: int, end_ns: int, outcome: Outcome, in_flight: int,
               warmup: bool = False) -> None:
        (p_worker, p_slot, p_seq, p_enq, p_sched, p_start, p_end, p_flight, p_warm, p_status,
         p_error, p_delay, p_cpu, p_wait, p_io, p_db, p_detail, p_target, p_sent, p_recv,
         p_fault, p_ok) = self._put
        (ok, status, error, delay, cpu, wait, io, db, detail, target, sent, recv,
         fault) = outcome
        p_worker(worker)
        p_slot(slot)
        p_seq(seq)
        p_enq(enqueued_ns)
        p_sched(scheduled_ns)
        p_start(start_ns)
        p_end(end_ns)
        p_flight(in_flight)
        p_warm(warmup)
        p_status(status)
        p_error(error)
        p_delay(_NULL if delay is None else delay)
        p_cpu(_NULL if cpu is None else cpu)
        p_wait(_NULL if wait is None else wait)
        p_io(_NULL if io is None else io)
        p_db(_NULL if db is None else db)
        p_detail(detail)
        p_target(_NULL if target is None else target)
        p_sent(_NULL if sent is None else sent)
        p_recv(_NULL if recv is None else recv)
        p_fault(fault)
        p_ok(ok)  # last: the row is whole

    def __len__(self) -> int:
        return len(self._ok)

    @property
    def appended(self) -> int:
        """Rows appended since creation, drained or not (the sampler's progress count)."""
        return self._drained + len(self._ok)

    def drain(self) -> pa.RecordBatch | None:
        """The rows appended since the last drain, as one batch (None when there are none)."""
        n = len(self._ok)
        if not n:
            return None
        columns = {}
        for name, values in self._ints.items():
            taken = values[:n]
            del values[:n]
            column = pa.array(np.frombuffer(taken, dtype=np.int64))  # zero-copy, not per item
            if name in _NULLABLE_INTS:
                column = pc.if_else(pc.equal(column, _NULL), None, column)
            columns[name] = column
        for name, values in self._strings.items():
            columns[name] = pa.array(values[:n], pa.string())
            del values[:n]
        for name, values, cast in (("ok", self._ok, None), ("phase", self._warmup, "phase")):
            flags = pa.array(np.frombuffer(values[:n], dtype=np.int8).astype(bool))
            del values[:n]
            columns[name] = flags if cast is None else pc.if_else(flags, "warmup", "measure")
        self._drained += n
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
