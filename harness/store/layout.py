"""A run folder: written as the run goes, each cell once, never rewritten; read back whole.

    RUN/run.json                      the run's metadata (schema version, scenarios, machine)
    RUN/requests/cell-NNNN.parquet    one file per cell and kind, row groups of <= 64 Ki rows
    RUN/loop_lag/cell-NNNN.parquet
    RUN/timeline/cell-NNNN.parquet
    RUN/cells/cell-NNNN.parquet       the cell's one row: written last, it marks the cell done
    RUN/.spool/cell-NNNN/*.arrows     while a cell runs (harness.store.spool); gone once it is done

Every file is written under a temporary name (`.cell-NNNN.parquet.tmp`) and renamed, so no
half-written file is ever read as a cell. A spool left behind by a killed run is read as that
cell's rows up to its last flush, marked incomplete. Runs of schema versions 1 and 2 (one
`requests.parquet` etc. per run) are read too."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.schema import CELLS_SCHEMA, LOOP_LAG_SCHEMA, REQUESTS_SCHEMA, TIMELINE_SCHEMA
from harness.store.spool import SPOOL_DIR, reason

RUN_FILE = "run.json"
CELLS = "cells"
# kind → schema; every finished cell writes one file of each kind (possibly with no rows)
KINDS = {"requests": REQUESTS_SCHEMA, "loop_lag": LOOP_LAG_SCHEMA, "timeline": TIMELINE_SCHEMA,
         CELLS: CELLS_SCHEMA}
ROW_GROUP_ROWS = 64 * 1024
DEFAULT_MAX_SCHED_LAG_NS = 5_000_000  # load.max_sched_lag's default
MANIFEST = "cell.json"  # in a cell's spool folder: its keys, so a killed cell can be read


def cell_name(index: int) -> str:
    return f"cell-{index:04d}"


def prepare_out_dir(path: Path, force: bool) -> Path:
    """A run never overwrites another: a non-empty directory is refused unless `force`, which
    removes the harness files of the earlier run there (and nothing else), so none of its rows
    can pass for this run's."""
    if path.exists() and not path.is_dir():
        raise HarnessError(f"{path}: --out exists and is not a directory")
    if path.exists() and any(path.iterdir()):
        if not force:
            raise HarnessError(f"{path}: --out is not empty (another run's results?); "
                               "use --force")
        _remove_run(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"{path}: cannot create the output directory ({exc.strerror})") from None
    return path


def _remove_run(path: Path) -> None:
    try:
        for name in (*KINDS, SPOOL_DIR):
            if (path / name).is_dir():
                shutil.rmtree(path / name)
        for name in (RUN_FILE, *(f"{kind}.parquet" for kind in KINDS)):  # and version 1-2 files
            (path / name).unlink(missing_ok=True)
    except OSError as exc:
        raise HarnessError(f"{path}: cannot remove the earlier run ({exc.strerror})") from None


def _disk_error(path: Path, exc: BaseException) -> HarnessError:
    return HarnessError(f"{path}: cannot write ({reason(exc)}); rows flushed so far are kept")


