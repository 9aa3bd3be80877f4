"""Writing a run folder as the run goes: run.json first, then each cell's files from its spool,
the cells row last; and the cells row's figures, computed from the cell's own rows."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harness.core.keys import AXIS_DEFAULTS, BACKENDS, CELL_KEYS
from harness.core.mix import pick_many
from harness.core.schema import (
    CELL_KEY_FIELDS,
    CELLS_SCHEMA,
    DERIVED_FIELDS,
    GENERATOR_FIELD,
    HOST_FIELD,
    META_KEY,
    REQUEST_FIELD,
    SCHEMA_VERSION,
    VERSION_KEY,
)
from harness.core.stats import late_starts, percentile, sweep_peak
from harness.core.tls import CONNECTS
from harness.store.layout import (
    CELLS,
    DEFAULT_MAX_SCHED_LAG_NS,
    KINDS,
    MANIFEST,
    ROW_GROUP_ROWS,
    RUN_FILE,
    _disk_error,
    cell_name,
)
from harness.store.spool import SPOOL_DIR, read_batches, spool_files


def _file_meta(metadata: dict) -> dict:
    return {VERSION_KEY: str(SCHEMA_VERSION).encode(), META_KEY: json.dumps(metadata).encode()}


class RunWriter:
    """One per run folder. Cells are numbered in the order they start."""

    def __init__(self, out_dir: Path, metadata: dict) -> None:
        self.out_dir = out_dir
        self._meta = _file_meta(metadata)
        self._next = 0
        try:
            for kind in KINDS:
                (out_dir / kind).mkdir(exist_ok=True)
            _write_atomic(out_dir / RUN_FILE, json.dumps(metadata, indent=1).encode())
        except OSError as exc:
            raise _disk_error(out_dir / RUN_FILE, exc) from None

    def open_cell(self, constants: dict, index: int | None = None) -> tuple[int, Path]:
        """A spool folder for the next cell (or cell `index`: cells run at once elsewhere are
        numbered in the order they were planned), with its manifest."""
        if index is None:
            index, self._next = self._next, self._next + 1
        spool = self.out_dir / SPOOL_DIR / cell_name(index)
        try:
            spool.mkdir(parents=True)
            _write_atomic(spool / MANIFEST, json.dumps(constants).encode())
        except OSError as exc:
            raise _disk_error(spool, exc) from None
        return index, spool

    def write_cell_data(self, index: int, spool: Path, constants: dict) -> CellRows:
        """Stream the spool into the cell's requests, loop_lag and timeline files (temporary
        names until `commit`). Returns what the rows say, for the cells row."""
        rows = CellRows(constants)
        name = cell_name(index)
        try:
            for kind in ("requests", "loop_lag", "timeline"):
                final = self.out_dir / kind / f"{name}.parquet"
                tmp = final.with_name(f".{final.name}.tmp")
                schema = KINDS[kind].with_metadata(self._meta)
                with parquet_writer(tmp, schema) as writer:
                    for table in rows.read(spool, kind):
                        writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        except OSError as exc:
            raise _disk_error(self.out_dir / kind, exc) from None
        return rows

    def commit(self, index: int, spool: Path, row: dict) -> None:
        """Put the cell's files in place, its cells row last, then drop the spool."""
        name = cell_name(index)
        try:
            for kind in ("requests", "loop_lag", "timeline"):
                final = self.out_dir / kind / f"{name}.parquet"
                os.replace(final.with_name(f".{final.name}.tmp"), final)
            final = self.out_dir / CELLS / f"{name}.parquet"
            tmp = final.with_name(f".{final.name}.tmp")
            table = pa.Table.from_pylist([row], schema=CELLS_SCHEMA.with_metadata(self._meta))
            pq.write_table(table, tmp)
            os.replace(tmp, final)
        except OSError as exc:
            raise _disk_error(self.out_dir / CELLS, exc) from None
        shutil.rmtree(spool, ignore_errors=True)


    def amend(self, change) -> None:
        """run.json changed by `change(metadata)` in place: what only the run's end knows (a
        cluster's clock offsets); the Parquet files keep what was known at the start."""
        path = self.out_dir / RUN_FILE
        try:
            metadata = json.loads(path.read_text())
            change(metadata)
            _write_atomic(path, json.dumps(metadata, indent=1).encode())
        except OSError as exc:
            raise _disk_error(path, exc) from None

    def close(self) -> None:
        """At the end of the run: the spool folder goes when no cell left anything in it."""
        with contextlib.suppress(OSError):
            (self.out_dir / SPOOL_DIR).rmdir()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# Int columns with few distinct values in a cell: dictionary pages suit them too.
_FEW_VALUES = frozenset({*CELL_KEYS, "status", "in_flight", "bytes_sent", "bytes_received"})


def parquet_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """How every rows file is written: dictionary pages for the string columns (a few distinct
    labels each) and the ints with few values (the keys, status, in flight, sizes) only;
    timestamps are nearly all distinct, and trying a dictionary on them first cost 45 % of the
    write time (bench/self.py, 1 000 000 rows: 0.50 → 0.27 s, and 23 % smaller)."""
    return pq.ParquetWriter(path, schema, use_dictionary=[
        f.name for f in schema if pa.types.is_string(f.type) or f.name in _FEW_VALUES])


def _with_keys(batch: pa.RecordBatch | pa.Table, constants: dict, schema: pa.Schema,
               generator: int = 0) -> pa.Table:
    n = batch.num_rows
    # a manifest older than a key (a killed run of an earlier version) gets its default
    keys = [pa.repeat(pa.scalar(constants.get(f.name, AXIS_DEFAULTS.get(f.name)), f.type), n)
            for f in CELL_KEY_FIELDS]
    if GENERATOR_FIELD.name in schema.names:
        keys.append(pa.repeat(pa.scalar(generator, pa.int64()), n))
    if HOST_FIELD.name in schema.names:  # a generator on another machine: its own host
        host = (constants.get("hosts") or {}).get(str(generator), constants.get("host"))
        keys.append(pa.repeat(pa.scalar(host, pa.string()), n))
    if REQUEST_FIELD.name in schema.names:
        keys.append(_entry_names(batch, constants.get("mix")))
    return pa.Table.from_arrays(keys + list(batch.columns), schema=schema)


def _entry_names(batch: pa.RecordBatch | pa.Table, mix: dict | None) -> pa.Array:
    """The `request` column: each row's `workload.requests` entry, drawn from its seq as the
    clients drew it (core.mix); null for a single request."""
    if not mix:
        return pa.nulls(batch.num_rows, pa.string())
    picked = pick_many(mix["seed"], batch.column("seq").to_numpy(), mix["weights"])
    return pa.DictionaryArray.from_arrays(pa.array(picked, pa.int32()),
                                          pa.array(mix["names"], pa.string())).cast(pa.string())


class CellRows:
    """Reads a cell's spool kind by kind (adding the key columns, in row groups of at most
    ROW_GROUP_ROWS) and keeps what the cells row needs: counts, intervals, loop lag."""

    def __init__(self, constants: dict) -> None:
        self.constants = constants
        self.rows = self.ok = 0
        self.max_end_ns = 0
        self._starts: list[np.ndarray] = []
        self._ends: list[np.ndarray] = []
        self._sched_lag: list[np.ndarray] = []  # start − scheduled of measured requests
        self._lag: list[np.ndarray] = []

    def read(self, spool: Path, kind: str):
        schema = KINDS[kind]
        records = pa.schema([f for f in schema if f.name not in CELL_KEYS
                             and f not in DERIVED_FIELDS])
        wrote = False
        for generator, path in spool_files(spool, kind):  # one file per generator (and part)
            pending: list[pa.RecordBatch] = []
            size = 0
            for batch in read_batches(path):
                self._observe(kind, batch)
                pending.append(batch)
                size += batch.num_rows
                if size >= ROW_GROUP_ROWS:
                    yield _with_keys(pa.Table.from_batches(pending), self.constants, schema,
                                     generator)
                    pending, size, wrote = [], 0, True
            if pending:
                yield _with_keys(pa.Table.from_batches(pending, schema=records),
                                 self.constants, schema, generator)
                wrote = True
        if not wrote:  # an empty cell still gets its (empty) file
            yield _with_keys(records.empty_table(), self.constants, schema)

    def _observe(self, kind: str, batch: pa.RecordBatch) -> None:
        if kind == "requests":
            end = batch.column("end_ns").to_numpy()
            self.rows += batch.num_rows
            self.ok += int(pc.sum(batch.column("ok")).as_py() or 0)
            start = batch.column("start_ns").to_numpy()
            self._starts.append(start)
            self._ends.append(end)
            measured = pc.equal(batch.column("phase"), "measure").to_numpy(zero_copy_only=False)
            self._sched_lag.append((start - batch.column("scheduled_ns").to_numpy())[measured])
            if end.size:
                self.max_end_ns = max(self.max_end_ns, int(end.max()))
        elif kind == "loop_lag":
            self._lag.append(batch.column("lag_ns").to_numpy())

    def cell_row(self, observed: dict | None, server: dict,
                 max_sched_lag_ns: int = DEFAULT_MAX_SCHED_LAG_NS) -> dict:
        """The cells row. `observed`: the cell process's final report, None when it died (the
        cell is then incomplete and what only it knew is null)."""
        lag = np.concatenate(self._sched_lag) if self._sched_lag else np.empty(0, np.int64)
        late = late_starts(lag, np.zeros_like(lag))
        observed = observed or {}
        starts = np.concatenate(self._starts) if self._starts else np.empty(0, np.int64)
        ends = np.concatenate(self._ends) if self._ends else np.empty(0, np.int64)
        loop_lag = np.concatenate(self._lag) if self._lag else np.empty(0, np.int64)
        extras = observed.get("extras") or {}
        counter = extras.get("counter")
        connects = np.asarray(extras.get(CONNECTS) or (), np.int64)
        has_loop = BACKENDS[self.constants["backend"]].has_loop
        return {
            **self.constants,
            "requests": self.rows, "errors": self.rows - self.ok,
            "makespan_ns": self.max_end_ns,
            "peak_in_flight": sweep_peak(starts, ends),
            "peak_in_flight_live": observed.get("peak_live"),
            "peak_in_flight_server": server.get("peak_in_flight"),
            "server_cpu_s": server.get("cpu_since_ready_s"),
            "server_loop_lag_p99_ns": server.get("loop_lag_p99_ns"),
            "interrupted": bool(observed.get("interrupted", False)),
            "cpu_user_s": observed.get("cpu_user_s"), "cpu_sys_s": observed.get("cpu_sys_s"),
            "loop_lag_p99_ns": (int(percentile(loop_lag, 99)) if has_loop and loop_lag.size
                                else None),
            "lost_updates": self.ok - counter if counter is not None else None,
            "released": observed.get("released"),
            "slots_lost": observed.get("slots_lost"),
            "complete": bool(observed.get("done", False)),
            "server_exit": server.get("exit"),
            "t0_unix_ns": observed.get("t0_unix_ns"),
            "late_starts": late.late,
            "late_p99_ns": None if np.isnan(late.late_p99_ns) else int(late.late_p99_ns),
            "generator_lagging": late.lagging(max_sched_lag_ns) if lag.size else None,
            "kernel_ns_per_unit": extras.get("kernel_ns_per_unit"),
            "gil_enabled": observed.get("gil_enabled"),
            "connect_p50_ns": int(percentile(connects, 50)) if connects.size else None,
            "connect_p99_ns": int(percentile(connects, 99)) if connects.size else None,
        }

