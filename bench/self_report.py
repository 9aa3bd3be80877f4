"""bench-self's report: a figure as the table shows it, the Markdown table, and the files it
writes (results/bench-self/<UTC time>/bench-self.{parquet,md})."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from bench import ROOT


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    target: str | None = None
    met: bool | None = None

    def shown(self) -> str:
        if self.value is None or math.isnan(self.value):
            return "not measured"
        if self.unit in ("×", "ms") or (self.unit == "µs" and self.value < 100):
            return f"{self.value:,.2f}"
        if self.unit in ("s",):
            return f"{self.value:,.3f}"
        return f"{self.value:,.0f}"


def table(figures: list[Figure]) -> str:
    lines = ["| figure | value | unit | target | met |", "| --- | ---: | --- | --- | --- |"]
    for f in figures:
        met = "-" if f.met is None else ("met" if f.met else "**missed**")
        lines.append(f"| {f.name} | {f.shown()} | {f.unit} | {f.target or '-'} | {met} |")
    return "\n".join(lines)


def write(figures: list[Figure], when: str, header: list[str]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = ROOT / "results" / "bench-self" / when
    out.mkdir(parents=True, exist_ok=True)
    parquet = pa.table({
        "name": pa.array([f.name for f in figures], pa.string()),
        "value": pa.array([f.value for f in figures], pa.float64()),
        "unit": pa.array([f.unit for f in figures], pa.string()),
        "target": pa.array([f.target for f in figures], pa.string()),
        "met": pa.array([f.met for f in figures], pa.bool_()),
    })
    pq.write_table(parquet, out / "bench-self.parquet")
    (out / "bench-self.md").write_text("\n".join(header) + "\n\n" + table(figures) + "\n")
    return out
