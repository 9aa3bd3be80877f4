"""bench-self's report: a figure as the tables show it and its verdict, the exit status the
figures give, and the files written into RUN = results/bench-self/<UTC time>/: bench-self.parquet
(one row per figure; the run's metadata in the Parquet key-value metadata under b"harness", as
in every run's files) and summary.md (bench/evidence.py: machine, commit, date, CPU pressure,
every figure with its target and verdict)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import evidence, machine
from harness.core.schema import META_KEY

QUICK = "quick: not judged"
TABLE = "bench-self"
TABLE_VERSION = 2  # 1: name, value, unit, target, met, and no metadata


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    target: str | None = None
    met: bool | None = None
    why: str = ""  # "quick: not judged", "not measured: no wrk", …

    def shown(self) -> str:
        if self.value is None or math.isnan(self.value):
            return "not measured"
        if self.unit in ("×", "ms") or (self.unit == "µs" and self.value < 100):
            return f"{self.value:,.2f}"
        if self.unit in ("s",):
            return f"{self.value:,.3f}"
        return f"{self.value:,.0f}"

    def verdict(self) -> str:
        """As the Parquet's `verdict` column and the printed lines say it."""
        if self.met is None:
            return self.why or "-"
        word = "met" if self.met else "missed"
        return f"{word} ({self.why})" if self.why else word


def judge(name: str, value: float, unit: str, target: str | None,
          ok: Callable[[float], bool] | None, quick: bool) -> Figure:
    """A figure and its verdict: none without a target; none under --quick (its conditions are
    not the targets'); missed when the target's figure was not measured."""
    if target is None or ok is None:
        return Figure(name, value, unit, target)
    if quick:
        return Figure(name, value, unit, target, None, QUICK)
    if value is None or math.isnan(value):
        return Figure(name, value, unit, target, False, "not measured")
    return Figure(name, value, unit, target, bool(ok(value)))


def verdicts(figures: list[Figure]) -> list[evidence.Verdict]:
    return [evidence.Verdict(f.name, f.shown() if f.shown() == "not measured"
                             else f"{f.shown()} {f.unit}".rstrip(),
                             f.target or "-", f.met, f.why) for f in figures]


def outcome(figures: list[Figure], failed: list[str], quick: bool,
            report_only: bool) -> tuple[int, str]:
    """The exit status and, where the verdicts alone do not give it, why: 1 a judged target
    missed, 3 a section failed (its figures are missing), 0 otherwise; 0 whatever happened
    under --report-only."""
    code = evidence.worst(evidence.status(verdicts(figures)),
                          evidence.FAILED if failed else evidence.MET)
    why = f"failed: {', '.join(failed)}" if failed else ""
    if quick and code == evidence.MET:
        why = "--quick: no target judged"
    if report_only and code != evidence.MET:
        return evidence.MET, f"--report-only (exit {code} without it" + \
            (f"; {why})" if why else ")")
    return code, why


def table(figures: list[Figure]) -> str:
    return evidence.table(verdicts(figures))


def metadata(args, when: str) -> dict:
    """The run's metadata as a harness run records it (harness.store.meta.run_metadata:
    Python, packages, CPU, platform, git commit, start), and bench-self's own: this table's
    name and version, its arguments, the machine line, `git describe`, the CPU pressure now."""
    from harness.store.meta import run_metadata

    meta = run_metadata(f"bench-self-{when}", [])
    meta.update(table=TABLE, table_version=TABLE_VERSION, machine=evidence.describe_machine(),
                git_describe=evidence.git_describe(), judged=not args.quick,
                args={"seconds": args.seconds, "rounds": args.rounds, "quick": args.quick,
                      "report_only": args.report_only},
                cpu_pressure_before=machine.cpu_pressure())
    return meta


def finish(meta: dict, wall_s: float, code: int, notes: list[str]) -> dict:
    return {**meta, "ended_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_s": round(wall_s, 1), "cpu_pressure_after": machine.cpu_pressure(),
            "exit_code": code, "notes": notes}


def write_parquet(out: Path, figures: list[Figure], meta: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    columns = {
        "name": pa.array([f.name for f in figures], pa.string()),
        "value": pa.array([f.value for f in figures], pa.float64()),
        "unit": pa.array([f.unit for f in figures], pa.string()),
        "target": pa.array([f.target for f in figures], pa.string()),
        "met": pa.array([f.met for f in figures], pa.bool_()),
        "verdict": pa.array([f.verdict() for f in figures], pa.string()),
    }
    table = pa.table(columns).replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    path = out / "bench-self.parquet"
    pq.write_table(table, path)
    return path


def read_metadata(path: Path) -> dict:
    """bench-self.parquet's run metadata."""
    import pyarrow.parquet as pq

    return json.loads((pq.read_schema(path).metadata or {}).get(META_KEY, b"{}"))
