"""`harness export` keeps one row group in memory: its peak RSS on a 5-million-row run, CSV and
JSON lines, against the 400 MB target. The run is made here (ten cells of 500 000 rows, the
request schema's every column), written once into a temporary folder.

    .venv/bin/python -m bench.export_memory [--rows 5000000] [--cells 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from harness.core.schema import REQUESTS_SCHEMA, SCHEMA_VERSION, VERSION_KEY

TARGET_MB = 400


def _cell(rows: int, index: int) -> pa.Table:
    seq = np.arange(rows, dtype=np.int64)
    start = seq * 1_000_000
    columns = {}
    for field in REQUESTS_SCHEMA:
        name, kind = field.name, field.type
        if name == "seq":
            columns[name] = seq
        elif name in ("scheduled_ns", "start_ns", "enqueued_ns"):
            columns[name] = start
        elif name == "end_ns":
            columns[name] = start + 50_000_000 + (seq % 997) * 1000
        elif name == "ok":
            columns[name] = np.ones(rows, dtype=bool)
        elif name == "status":
            columns[name] = np.full(rows, 200, dtype=np.int64)
        elif name == "phase":
            columns[name] = pa.array(["measure"] * rows)
        elif name == "backend":
            columns[name] = pa.array(["asyncio"] * rows)
        elif pa.types.is_integer(kind):
            columns[name] = np.full(rows, index, dtype=np.int64)
        elif pa.types.is_string(kind):
            columns[name] = pa.nulls(rows, kind) if field.nullable else pa.array(["x"] * rows)
        else:
            columns[name] = pa.nulls(rows, kind)
    return pa.table(columns, schema=REQUESTS_SCHEMA)


def make_run(folder: Path, rows: int, cells: int) -> None:
    (folder / "requests").mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION,
                                                 "run_id": "bench-export", "scenarios": []}))
    meta = {VERSION_KEY: str(SCHEMA_VERSION).encode()}
    for index in range(cells):
        table = _cell(rows // cells, index)
        pq.write_table(table.replace_schema_metadata(meta),
                       folder / "requests" / f"cell-{index:04d}.parquet", row_group_size=65_536)


def peak_rss_mb(argv: list[str]) -> tuple[float, float]:
    """(the command's peak RSS in MB, by GNU time's %M; wall seconds)."""
    start = time.monotonic()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], check=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - start
    return int(done.stderr.strip().splitlines()[-1]) / 1024, wall  # KiB → MiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--cells", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="harness-export-") as tmp:
        run = Path(tmp) / "run"
        make_run(run, args.rows, args.cells)
        size = sum(p.stat().st_size for p in (run / "requests").iterdir()) / 1e6
        print(f"run: {args.rows} rows in {args.cells} cells, {size:.0f} MB of Parquet")
        worst = 0.0
        for fmt in ("csv", "jsonl"):
            mb, wall = peak_rss_mb([sys.executable, "-m", "harness", "export", str(run),
                                    "--format", fmt, "--out", "/dev/null"])
            worst = max(worst, mb)
            print(f"export --format {fmt}: peak RSS {mb:.0f} MB, "
                  f"{wall:.1f} s, {args.rows / wall / 1e6:.2f} M rows/s")
        verdict = "met" if worst < TARGET_MB else "missed"
        print(f"target: peak RSS < {TARGET_MB} MB: {verdict}")
        return 0 if worst < TARGET_MB else 1


if __name__ == "__main__":
    sys.exit(main())
