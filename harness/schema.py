"""The one typed, versioned record schema. Every writer and reader derives from it.

Units are in the names; all ints are int64 and all strings are plain utf8 so that every file of
one kind has exactly the same schema across runs. Times are nanoseconds since the cell's start on
the system-wide monotonic clock (CLOCK_MONOTONIC is shared by all processes on Linux)."""

from __future__ import annotations

from array import array

import pyarrow as pa
import pyarrow.compute as pc

SCHEMA_VERSION = 1
META_KEY = b"harness"  # JSON run metadata in the Parquet key-value metadata
VERSION_KEY = b"harness.schema_version"

# Columns constant over a cell: added by the runner, not carried per row by the backends.
CELL_KEY_FIELDS = [
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("scenario", pa.string(), nullable=False),
    pa.field("backend", pa.string(), nullable=False),
    pa.field("concurrency", pa.int64(), nullable=False),
    pa.field("repetition", pa.int64(), nullable=False),
]

# What a backend records for each request, in this order (RecordBuffer.append's arguments).
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
    ]
)

# Error categories (the `error` column).
TIMEOUT, CONNECT, RESET, HTTP_STATUS, CANCELLED, PROTOCOL = (
    "timeout", "connect", "reset", "http_status", "cancelled", "protocol",
)

_NO_DELAY = -1


class RecordBuffer:
    """Columnar buffer for one process's requests: one typed array per column, no dict per row."""

    def __init__(self) -> None:
        self.worker: list[str] = []
        self.slot: list[str] = []
        self.error: list[str | None] = []
        self.ints = {name: array("q") for name in (
            "seq", "enqueued_ns", "scheduled_ns", "start_ns", "end_ns", "server_delay_ns",
            "status", "in_flight",
        )}
        self.ok = array("b")

    def __len__(self) -> int:
        return len(self.ok)

    def append(self, worker, slot, seq, enqueued_ns, scheduled_ns, start_ns, end_ns,
               server_delay_ns, ok, status, error, in_flight) -> None:
        ints = self.ints
        self.worker.append(worker)
        self.slot.append(slot)
        ints["seq"].append(seq)
        ints["enqueued_ns"].append(enqueued_ns)
        ints["scheduled_ns"].append(scheduled_ns)
        ints["start_ns"].append(start_ns)
        ints["end_ns"].append(end_ns)
        ints["server_delay_ns"].append(_NO_DELAY if server_delay_ns is None else server_delay_ns)
        ints["status"].append(status)
        ints["in_flight"].append(in_flight)
        self.ok.append(ok)
        self.error.append(error)

    def to_batch(self) -> pa.RecordBatch:
        delay = pa.array(self.ints["server_delay_ns"], pa.int64())
        delay = pc.if_else(pc.equal(delay, _NO_DELAY), None, delay)
        columns = {
            "worker": pa.array(self.worker, pa.string()),
            "slot": pa.array(self.slot, pa.string()),
            "server_delay_ns": delay,
            "ok": pa.array(self.ok, pa.int8()).cast(pa.bool_()),
            "error": pa.array(self.error, pa.string()),
        }
        arrays = [columns.get(f.name) or pa.array(self.ints[f.name], pa.int64())
                  for f in RECORD_FIELDS]
        return pa.RecordBatch.from_arrays(arrays, schema=RECORD_SCHEMA)


def to_ipc_bytes(data: pa.Table | pa.RecordBatch) -> bytes:
    """Arrow IPC stream: how records cross process boundaries, a whole column at a time."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write(data)
    return sink.getvalue().to_pybytes()


def from_ipc_bytes(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
