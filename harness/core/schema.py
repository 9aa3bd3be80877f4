"""The one typed, versioned record schema. Every writer and reader derives from it.

Units are in the names; all ints are int64 and all strings are plain utf8 so that every file of
one kind has exactly the same schema across runs. Times are nanoseconds since the cell's start on
the system-wide monotonic clock (CLOCK_MONOTONIC is shared by all processes on Linux).

The version history is in docs/schema.md: files of older versions are read with the newer
columns filled in and the dropped ones left out (see `upgrade`)."""

from __future__ import annotations

from typing import NamedTuple

import pyarrow as pa

from harness.core.keys import AXIS_DEFAULTS, CELL_KEYS, KEY_TYPES, NULLABLE_KEYS

SCHEMA_VERSION = 9
META_KEY = b"harness"  # JSON run metadata in the Parquet key-value metadata
VERSION_KEY = b"harness.schema_version"

_ARROW = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64()}
# Columns constant over a cell, derived from the one definition in harness.core.keys: added by the
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
    connect_ns: int | None = None  # opening its connection (TLS included); None when reused


NULLABLE_INTS = ("server_delay_ns", "cpu_ns", "cpu_wait_ns", "io_ns", "db_ns",
                  "server_delay_target_ns", "bytes_sent", "bytes_received", "connect_ns")

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
    # connecting, TLS handshake included, for the request that opened its connection; null on
    # a reused one (or one opened before the clock: the cells' connect_p50_ns/connect_p99_ns)
    pa.field("connect_ns", pa.int64()),
    pa.field("phase", pa.string(), nullable=False),  # "warmup" (left out of every figure)
]
RECORD_SCHEMA = pa.schema(RECORD_FIELDS)
# Which of the cell's generator processes ran the request (0 … generators − 1): known from the
# spool file it came in, so no backend carries it per row.
GENERATOR_FIELD = pa.field("generator", pa.int64(), nullable=False)
# The machine that ran it (its host name): the runner's, or a cluster worker's; null in files
# from before version 8.
HOST_FIELD = pa.field("host", pa.string())
# The name of the `workload.requests` entry the request sent: a function of (seed, seq), so the
# writer adds it and no backend carries it per row; null for a single request.
REQUEST_FIELD = pa.field("request", pa.string())
DERIVED_FIELDS = (GENERATOR_FIELD, HOST_FIELD, REQUEST_FIELD)
REQUESTS_SCHEMA = pa.schema(CELL_KEY_FIELDS + list(DERIVED_FIELDS) + RECORD_FIELDS)

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
        # The service the harness started (`service:`): its process tree's CPU time over the
        # cell, its exit status when it ended during the cell (or did not start), and its own
        # loop lag p99 (`service.lag_path`); null without a service.
        pa.field("service_cpu_s", pa.float64()),
        pa.field("service_exit", pa.int64()),
        pa.field("service_loop_lag_p99_ns", pa.int64()),
        # Whether the GIL was on in the cell's process, read after its imports and its run (a
        # C extension without free-threading support turns it back on); null if it died.
        pa.field("gil_enabled", pa.bool_()),
        HOST_FIELD,  # where the cell ran (with generators on several hosts: generator 0's)
        # Connections opened before the clock (load.connect_rate), TLS handshake included
        pa.field("connect_p50_ns", pa.int64()),
        pa.field("connect_p99_ns", pa.int64()),
    ]
)

LAG_RECORD_SCHEMA = pa.schema([
    pa.field("t_ns", pa.int64(), nullable=False),  # when the probe woke
    pa.field("lag_ns", pa.int64(), nullable=False),  # how late it woke
])
LOOP_LAG_SCHEMA = pa.schema(CELL_KEY_FIELDS + [GENERATOR_FIELD] + list(LAG_RECORD_SCHEMA))

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

def upgrade(table: pa.Table, version: int, schema: pa.Schema,
            per_scenario: dict[str, dict[str, object]] | None = None) -> pa.Table:
    """Bring a table read from an older file to the current schema: columns added since are
    filled with their neutral value (keys "inline"/"default", measurements null), or per
    scenario from its run's metadata (`per_scenario`: column → scenario → value, e.g. the
    `path` each scenario requested); columns dropped since (the cells' `speedup` of versions 2
    and 3) are left out."""
    if version == SCHEMA_VERSION:
        return table
    per_scenario = per_scenario or {}
    # older versions wrote finished cells only, and had no warm-up
    defaults = {**AXIS_DEFAULTS, "complete": True, "phase": "measure", "generator": 0}
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        elif field.name in per_scenario and "scenario" in table.column_names:
            values = per_scenario[field.name]
            columns.append(pa.array([values.get(name) for name in
                                     table.column("scenario").to_pylist()], field.type))
        elif field.name in defaults:
            columns.append(pa.array([defaults[field.name]] * table.num_rows, field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema.with_metadata(table.schema.metadata))
