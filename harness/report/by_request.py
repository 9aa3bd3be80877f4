"""`report --by request`: the per-entry figures (analysis.by_request) as tables, one per
scenario and run, a row per cell and entry name."""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.report.table import new_table, plain

# key columns shown beside backend and concurrency when the cells of a table differ in them
_VARYING = ("python", "client", "strategy", "variant", "model", "rate_per_s", "generators",
            "repetition")
_FIGURES = {"requests": "requests", "errors": "errors", "share": "share %",
            "throughput_rps": "req/s", "p50_ms": "p50 ms", "p99_ms": "p99 ms"}
LEGEND = ("by request: each cell's measured requests per workload.requests entry; share %: "
          "of the cell's requests; req/s: the entry's ok requests ÷ the cell's makespan; "
          "p50/p99 ms: response time of its ok requests; `-`: a single request (no mix)")


def _figure(column: str, value) -> str:
    if value is None or pd.isna(value):
        return "-"
    if column in ("requests", "errors"):
        return str(int(value))
    value = value * 100 if column == "share" else value
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def request_grid(frame: pd.DataFrame):
    """(title, headers, rows of text) per scenario and run."""
    for (scenario, run_id), rows in frame.groupby(["scenario", "run_id"], sort=False):
        keys = ["backend", *(k for k in _VARYING if rows[k].nunique(dropna=False) > 1),
                "concurrency"]
        headers = [*("conc" if k == "concurrency" else k for k in keys), "request",
                   *_FIGURES.values()]
        body = [[escape(str(getattr(row, k))) for k in keys]
                + [escape(row.request) if isinstance(row.request, str) else "-"]
                + [_figure(c, getattr(row, c)) for c in _FIGURES]
                for row in rows.itertuples(index=False)]
        yield f"{scenario}  {run_id}", headers, body


def print_by_request(frame: pd.DataFrame, console: Console, legend_shown: bool = True) -> None:
    if frame.empty:
        console.print("no finished cell")
        return
    for title, headers, body in request_grid(frame):
        name, run_id = title.split("  ")
        table: Table = new_table(f"{escape(name)}  [dim]{run_id}[/]  by request", headers,
                                 text=("request", "client", "python", "strategy", "variant",
                                       "model"))
        for cells in body:
            table.add_row(*cells)
        console.print(table)
    if legend_shown:
        console.print(LEGEND, style="dim", highlight=False, markup=False)


def by_request_markdown(frame: pd.DataFrame) -> str:
    out = []
    for title, headers, body in request_grid(frame):
        out.append(f"### {title} by request\n")
        out.append("| " + " | ".join(headers) + " |")
        out.append("|" + "|".join("---:" if h in _FIGURES.values() or h == "conc" else "---"
                                  for h in headers) + "|")
        out.extend("| " + " | ".join(plain(c) for c in cells) + " |" for cells in body)
        out.append("")
    return "\n".join(out)
