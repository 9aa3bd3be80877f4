"""Writing and reading a run's Parquet files.

Each finished cell is appended and both files are rewritten atomically (temporary name, then
rename), so an interrupted or killed run keeps every finished cell. Each cell is one row group."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from harness.errors import HarnessError
from harness.schema import (
    CELLS_SCHEMA,
    LOOP_LAG_SCHEMA,
    META_KEY,
    REQUESTS_SCHEMA,
    SCHEMA_VERSION,
    TIMELINE_SCHEMA,
    VERSION_KEY,
    upgrade,
)

REQUESTS_FILE = "requests.parquet"
CELLS_FILE = "cells.parquet"
# file stem → schema; every run writes all of them (possibly with no rows)
FILES = {"requests": REQUESTS_SCHEMA, "cells": CELLS_SCHEMA, "loop_lag": LOOP_LAG_SCHEMA,
         "timeline": TIMELINE_SCHEMA}


def prepare_out_dir(path: Path, force: bool) -> Path:
    """A run never overwrites another: a non-empty directory is refused unless `force`."""
    if path.exists() and not path.is_dir():
        raise HarnessError(f"{path}: --out exists and is not a directory")
    if path.exists() and any(path.iterdir()) and not force:
        raise HarnessError(f"{path}: --out is not empty (another run's results?); use --force")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"{path}: cannot create the output directory ({exc.strerror})") from None
    return path


class ResultsWriter:
    def __init__(self, out_dir: Path, metadata: dict) -> None:
        self.out_dir = out_dir
        self._meta = {VERSION_KEY: str(SCHEMA_VERSION).encode(),
                      META_KEY: json.dumps(metadata).encode()}
        self._tables: dict[str, list[pa.Table]] = {name: [] for name in FILES}

    def add_cell(self, tables: dict[str, pa.Table], cell: dict) -> None:
        """`tables`: the cell's requests, loop_lag and timeline rows; `cell`: its cells row."""
        tables = {**tables, "cells": pa.Table.from_pylist([cell], schema=CELLS_SCHEMA)}
        for name, schema in FILES.items():
            self._tables[name].append(tables[name].select(schema.names).cast(schema))
            self._write(f"{name}.parquet", self._tables[name], schema)

    def _write(self, name: str, tables: list[pa.Table], schema: pa.Schema) -> None:
        final = self.out_dir / name
        tmp = final.with_name(f".{name}.tmp")
        with pq.ParquetWriter(tmp, schema.with_metadata(self._meta)) as writer:
            for table in tables:  # one row group per cell
                writer.write_table(table)
        os.replace(tmp, final)


def read_table(path: Path) -> pa.Table:
    """Read one of our files, checking its schema version; older versions are upgraded."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise HarnessError(f"{path}: not a readable Parquet file ({exc})") from None
    version = (table.schema.metadata or {}).get(VERSION_KEY)
    if version is None:
        raise HarnessError(f"{path}: not a harness results file (no schema version)")
    if int(version) > SCHEMA_VERSION:
        raise HarnessError(f"{path}: schema version {int(version)} is newer than this harness "
                           f"({SCHEMA_VERSION}); upgrade harness")
    return upgrade(table, int(version), FILES[path.stem])


def read_metadata(path: Path) -> dict:
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(META_KEY, b"{}"))


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Run directories under the given paths: a run dir itself, or any folder containing some."""
    found = []
    for path in paths:
        if (path / CELLS_FILE).exists():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p.parent for p in path.rglob(CELLS_FILE)))
        else:
            raise HarnessError(f"{path}: no such results directory")
    if not found:
        raise HarnessError(f"{', '.join(map(str, paths))}: no {CELLS_FILE} found")
    return found
