"""Reading run folders back: every kind as one table, older schema versions upgraded, a killed
cell's spool read as its rows up to the last flush (incomplete)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from harness.core.errors import HarnessError
from harness.core.keys import python_key
from harness.core.schema import CELLS_SCHEMA, META_KEY, SCHEMA_VERSION, VERSION_KEY, upgrade
from harness.store.layout import CELLS, KINDS, MANIFEST, RUN_FILE
from harness.store.spool import SPOOL_DIR
from harness.store.writer import CellRows

HTTP_TYPES = ("io", "http", "pipeline")  # the workloads that request a path


def read_table(path: Path, kind: str | None = None, meta: dict | None = None) -> pa.Table:
    """Read one of our Parquet files, checking its schema version; older versions are
    upgraded (`meta`: its run's metadata, which fills key columns added since)."""
    kind = kind or path.stem
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
    return upgrade(table, int(version), KINDS[kind], legacy_columns(meta or {}))


def legacy_columns(meta: dict) -> dict[str, dict[str, str]]:
    """The key columns added since a file's version, per scenario, from its run's metadata."""
    return {"path": legacy_paths(meta), "python": legacy_pythons(meta)}


def legacy_pythons(meta: dict) -> dict[str, str]:
    """Each scenario's interpreter, for files from before the `python` key: the runner's own,
    as its run recorded it (`3.11`; `3.13t` for a free-threaded build)."""
    python = meta.get("python") or {}
    version = str(python.get("version") or "")
    if version.count(".") < 1:
        return {}
    tag = python_key(version, bool(python.get("free_threaded_build")))
    return {entry.get("name"): tag for entry in meta.get("scenarios") or ()}


def legacy_paths(meta: dict) -> dict[str, str]:
    """Each scenario's HTTP path, for files from before the `path` key: its one workload.path,
    `/name` of its mock endpoint, `/` of a target (the values newer runs record)."""
    found = {}
    for entry in meta.get("scenarios") or ():
        try:
            data = yaml.safe_load(entry.get("text") or "")
        except yaml.YAMLError:
            continue
        workload = data.get("workload") if isinstance(data, dict) else None
        if not isinstance(workload, dict) or workload.get("type", "io") not in HTTP_TYPES:
            continue
        path, endpoint = workload.get("path"), workload.get("endpoint")
        if isinstance(path, str):
            found[entry.get("name")] = path
        elif isinstance(endpoint, str):
            found[entry.get("name")] = f"/{endpoint}"
        elif data.get("target"):
            found[entry.get("name")] = "/"
    return found


def read_run(run_dir: Path) -> dict[str, pa.Table]:
    """Every kind of a run folder as one table each: finished cells, then any cell a killed
    run left in its spool (incomplete)."""
    tables: dict[str, list[pa.Table]] = {kind: [] for kind in KINDS}
    try:
        meta = read_metadata(run_dir) if is_run_dir(run_dir) else {}
    except (OSError, ValueError):  # unreadable: read_table below says so, for its file
        meta = {}
    for kind in KINDS:
        legacy = run_dir / f"{kind}.parquet"  # schema versions 1 and 2
        if legacy.exists():
            tables[kind].append(read_table(legacy, kind, meta))
        folder = run_dir / kind
        if folder.is_dir():
            tables[kind].extend(read_table(p, kind, meta)
                                for p in sorted(folder.glob("*.parquet")))
    spools = run_dir / SPOOL_DIR
    if spools.is_dir():
        for spool in sorted(p for p in spools.iterdir() if (p / MANIFEST).exists()):
            if (run_dir / CELLS / f"{spool.name}.parquet").exists():
                continue  # done; only the clean-up was cut short
            for kind, table in _recover(spool, meta).items():
                tables[kind].append(table)
    return {kind: pa.concat_tables(parts) if parts else KINDS[kind].empty_table()
            for kind, parts in tables.items()}


def _recover(spool: Path, meta: dict) -> dict[str, pa.Table]:
    constants = json.loads((spool / MANIFEST).read_text())
    if "python" not in constants:  # a spool from before the key: its runner's interpreter
        constants["python"] = legacy_pythons(meta).get(constants.get("scenario"))
    rows = CellRows(constants)
    found = {kind: pa.concat_tables(list(rows.read(spool, kind)))
             for kind in ("requests", "loop_lag", "timeline")}
    found[CELLS] = pa.Table.from_pylist([rows.cell_row(None, {})], schema=CELLS_SCHEMA)
    return found


def read_metadata(run_dir: Path) -> dict:
    if (run_dir / RUN_FILE).exists():
        return json.loads((run_dir / RUN_FILE).read_text())
    meta = pq.read_schema(run_dir / f"{CELLS}.parquet").metadata or {}  # versions 1 and 2
    return json.loads(meta.get(META_KEY, b"{}"))


def is_run_dir(path: Path) -> bool:
    return (path / RUN_FILE).exists() or (path / f"{CELLS}.parquet").exists()


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Run directories under the given paths: a run dir itself, or any folder containing some."""
    found = []
    for path in paths:
        if is_run_dir(path):
            found.append(path)
        elif path.is_dir():
            found.extend(sorted({p.parent for p in path.rglob(RUN_FILE)}
                                | {p.parent for p in path.rglob(f"{CELLS}.parquet")}))
        else:
            raise HarnessError(f"{path}: no such results directory")
    if not found:
        raise HarnessError(f"{', '.join(map(str, paths))}: no harness run found "
                           f"(no {RUN_FILE} or {CELLS}.parquet)")
    return found
