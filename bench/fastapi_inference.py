"""The seed's lesson on the real inference service (scenarios/fastapi_inference.yaml): per
client backend, at one rate, the inline variant's response-time p99 and the service's own
loop-lag p99 against the thread and process variants', and every database row accounted for
(the rows each cell's service wrote = that cell's ok requests, warm-up included).

    python -m bench.fastapi_inference [DIR] [--out RUN]   # default: the newest run
    python -m bench.fastapi_inference --run [--out RUN]   # runs the scenario first

Figures come from harness.analysis.summary (one definition each); the rows are counted in the
PostgreSQL the run used (harness.core.postgres.dsn: $HARNESS_POSTGRES_DSN, else .pg/dsn) for
the run's id and cell numbers (the service's {run_id} and {cell}).
Writes RUN/summary.md; exits 0 when every target is met, 1 when one is missed, 2 without a run
or a database, 3 when the run failed."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

from bench import ROOT, evidence
from bench.evidence import MET, MISSED, NO_SETUP, Verdict
from harness.analysis.summary import load_runs, summarize
from harness.core.postgres import dsn
from harness.core.stats import median
from harness.store.reader import find_run_dirs, read_metadata

SCENARIO = ROOT / "scenarios" / "fastapi_inference.yaml"
FACTOR = 3.0  # inline's p99s ≥ this × each pool's, at the same rate
POOLS = ("/predict/thread", "/predict/process")
INLINE = "/predict/inline"


def figures(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[["backend", "path", "rate_per_s", "repetition", "requests", "errors",
                    "p50_ms", "p99_ms", "service_loop_lag_p99_ms", "service_cpu_s", "flags"]]


def verdicts(rows: pd.DataFrame) -> list[Verdict]:
    """Per client backend and rate: inline's figures ÷ each pool's, each the median over the
    configuration's repetitions (a tail varies from run to run)."""
    found = []
    for (backend, rate), cells in rows.groupby(["backend", "rate_per_s"], sort=False):
        by = cells.groupby("path")[["p99_ms", "service_loop_lag_p99_ms"]].agg(median)
        if INLINE not in by.index:
            continue
        for pool in POOLS:
            if pool not in by.index:
                continue
            for figure, name in (("p99_ms", "response-time p99"),
                                 ("service_loop_lag_p99_ms", "service loop-lag p99")):
                inline, other = by.at[INLINE, figure], by.at[pool, figure]
                ratio = inline / other if other > 0 else float("nan")
                found.append(Verdict(
                    f"{backend} client at {rate:g}/s: inline's {name} ÷ "
                    f"{pool.rsplit('/', 1)[1]}'s (medians of {len(cells) // len(by)})",
                    f"{ratio:.1f} × ({inline:.1f} ms ÷ {other:.1f} ms)", f"≥ {FACTOR:g}",
                    bool(ratio >= FACTOR)))
    return found


def ok_rows(run_dir: Path) -> dict[int, int]:
    """Per cell number (the service's {cell}): its ok requests, warm-up included."""
    import pyarrow.parquet as pq

    found = {}
    for path in sorted((run_dir / "requests").glob("cell-*.parquet")):
        table = pq.read_table(path, columns=["ok"])
        found[int(path.stem.split("-")[1])] = int(table.column("ok").to_numpy().sum())
    return found


def written_rows(run_id: str, cells: list[int]) -> dict[int, int] | None:
    """Per cell number: the rows the service wrote in run `run_id`; None without a database."""
    target = dsn()
    if target is None:
        return None
    import psycopg

    with psycopg.connect(target) as conn:
        counted = dict(conn.execute("SELECT cell, count(*) FROM predictions WHERE run = %s"
                                    " GROUP BY cell", (run_id,)).fetchall())
    return {cell: int(counted.pop(cell, 0)) for cell in cells} | counted


def rows_verdict(run_dir: Path) -> tuple[Verdict, list[str]]:
    expected = ok_rows(run_dir)
    written = written_rows(read_metadata(run_dir)["run_id"], sorted(expected))
    if written is None:
        return Verdict("database rows = ok requests, every cell", "no database",
                       "every cell", None, "no DSN: set HARNESS_POSTGRES_DSN or make postgres"), []
    lines = [f"cell {c:>4}: ok requests {expected.get(c, 0):>6}, rows written {written[c]:>6}"
             for c in sorted(written)]
    off = [c for c in written if expected.get(c, 0) != written[c]]
    total = sum(expected.values())
    shown = f"{sum(written.values())} of {total}" + (f"; off in cells {off}" if off else "")
    return Verdict("database rows = ok requests, every cell", shown, "every cell",
                   not off), lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", type=Path)
    parser.add_argument("--run", action="store_true", help="run the scenario first")
    parser.add_argument("--out", type=Path, help="RUN: summary.md (and the run with --run)")
    args = parser.parse_args(argv)
    sitting = evidence.Sitting()
    out = evidence.run_folder("fastapi_inference", args.out)
    ran = MET
    if args.run:
        done = subprocess.run([sys.executable, "-m", "harness", "run", str(SCENARIO), "--out",
                               str(out / "run")], check=False, stdout=subprocess.DEVNULL)
        ran = MET if done.returncode in (MET, MISSED) else done.returncode
        args.dir = out / "run"
    root = args.dir or ROOT / "results" / "fastapi_inference"
    runs = sorted(find_run_dirs([root])) if root.exists() else []
    if not runs:
        print(f"bench.fastapi_inference: no run under {root}; try --run", file=sys.stderr)
        return evidence.worst(ran, NO_SETUP)
    run_dir = runs[-1]
    rows = figures(summarize(load_runs([run_dir])))
    found = verdicts(rows)
    counted, lines = rows_verdict(run_dir)
    found.append(counted)
    text = rows.to_string(index=False, float_format=lambda v: f"{v:.1f}")
    print(text, *lines, evidence.table(found), sep="\n")
    code = evidence.worst(ran, evidence.status(found), NO_SETUP if counted.met is None else MET)
    notes = [f"run: `{run_dir}`; rate, image and variants from "
             f"`{SCENARIO.relative_to(ROOT)}`"]
    path = sitting.write_summary(out, "The inference service: where the CPU step runs", found,
                                 notes, evidence.printed([*text.splitlines(), *lines]), code)
    print(f"summary: {path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
