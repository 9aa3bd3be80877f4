"""Rendering the summary (computed by analysis.summarize) for the terminal."""

from __future__ import annotations

import math

import pandas as pd
from rich.console import Console
from rich.table import Table

from harness.units import format_duration_ns


def _ms(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _s(seconds: float) -> str:
    return format_duration_ns(seconds * 1e9)


def summary_tables(summary: pd.DataFrame) -> list[Table]:
    tables = []
    for (run_id, scenario), rows in summary.groupby(["run_id", "scenario"], sort=False):
        table = Table(title=f"{scenario}  [dim]{run_id}[/]", title_justify="left")
        for name in ("backend", "conc", "rep", "requests", "errors", "req/s", "p50 ms",
                     "p90 ms", "p99 ms", "max ms", "ovh p50", "ovh p99",
                     "peak sweep/live/srv", "makespan", "bound", "eff"):
            table.add_column(name, justify="left" if name == "backend" else "right")
        for row in rows.itertuples(index=False):
            peaks = f"{row.peak_in_flight}/{row.peak_in_flight_live}/" + (
                "-" if pd.isna(row.peak_in_flight_server) else f"{int(row.peak_in_flight_server)}")
            table.add_row(
                row.backend + (" [red](interrupted)[/]" if row.interrupted else ""),
                str(row.concurrency), str(row.repetition), str(row.requests),
                f"[red]{row.errors}[/]" if row.errors else "0",
                f"{row.throughput_rps:.1f}", _ms(row.p50_ms), _ms(row.p90_ms), _ms(row.p99_ms),
                _ms(row.max_ms), _ms(row.overhead_p50_ms), _ms(row.overhead_p99_ms), peaks,
                _s(row.makespan_s), _s(row.bound_s), f"{row.efficiency:.3f}",
            )
        tables.append(table)
    return tables


def print_summary(summary: pd.DataFrame, console: Console | None = None) -> None:
    console = console or Console()
    for table in summary_tables(summary):
        console.print(table)
    console.print("[dim]latency = end − start of ok requests; ovh = client overhead (latency − "
                  "server delay); bound = Σ server delay ÷ concurrency; eff = bound ÷ makespan[/]")
