"""Rendering the summary (computed by analysis.summarize) for the terminal. A column appears
only where the scenario has something to show in it (no server delay, no bound; no loop, no
loop lag)."""

from __future__ import annotations

import math

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from harness.units import format_duration_ns


def _num(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _int(value) -> str:
    return "-" if value is None or pd.isna(value) else str(int(value))


def _s(seconds: float) -> str:
    return "-" if pd.isna(seconds) else format_duration_ns(seconds * 1e9)


def _peaks(row) -> str:
    return (f"{row.peak_in_flight}/{_int(row.peak_in_flight_live)}/"
            f"{_int(row.peak_in_flight_server)}")


# header, cell text, the summary column whose presence decides whether the column is shown
_COLUMNS = [
    ("backend", lambda r: r.backend + (" [red](interrupted)[/]" if r.interrupted else "")
     + ("" if r.complete else " [red](incomplete)[/]"), None),
    ("strategy", lambda r: r.strategy, "strategy"),
    ("variant", lambda r: r.variant, "variant"),
    ("conc", lambda r: str(r.concurrency), None),
    ("rep", lambda r: str(r.repetition), None),
    ("requests", lambda r: str(r.requests), None),
    ("errors", lambda r: f"[red]{r.errors}[/]" if r.errors else "0", None),
    ("req/s", lambda r: f"{r.throughput_rps:.1f}", None),
    ("p50 ms", lambda r: _num(r.p50_ms), None),
    ("p90 ms", lambda r: _num(r.p90_ms), None),
    ("p99 ms", lambda r: _num(r.p99_ms), None),
    ("p99.9 ms", lambda r: _num(r.p999_ms), None),
    ("max ms", lambda r: _num(r.max_ms), None),
    ("ovh p50", lambda r: _num(r.overhead_p50_ms), "overhead_p50_ms"),
    ("ovh p99", lambda r: _num(r.overhead_p99_ms), "overhead_p99_ms"),
    ("cpu p50", lambda r: _num(r.cpu_p50_ms), "cpu_p50_ms"),
    ("wait p50", lambda r: _num(r.cpu_wait_p50_ms), "cpu_wait_p50_ms"),
    ("io p50", lambda r: _num(r.io_p50_ms), "io_p50_ms"),
    ("db p50", lambda r: _num(r.db_p50_ms), "db_p50_ms"),
    ("lag p99", lambda r: _num(r.loop_lag_p99_ms), "loop_lag_p99_ms"),
    ("lost", lambda r: _int(r.lost_updates), "lost_updates"),
    ("peak s/l/srv", _peaks, None),
    ("makespan", lambda r: _s(r.makespan_s), None),
    ("bound", lambda r: _s(r.bound_s), "bound_s"),
    ("eff", lambda r: "-" if pd.isna(r.efficiency) else f"{r.efficiency:.3f}", "bound_s"),
    ("speedup", lambda r: _num(r.speedup), "speedup"),
    ("flags", lambda r: f"[yellow]{r.flags}[/]" if r.flags else "", "flags"),
]
_DEFAULT_KEYS = {"strategy": "inline", "variant": "default"}


def _shown(rows: pd.DataFrame, column: str | None) -> bool:
    if column is None:
        return True
    if column in _DEFAULT_KEYS:
        return bool((rows[column] != _DEFAULT_KEYS[column]).any())
    if column == "flags":
        return bool((rows[column] != "").any())
    return bool(rows[column].notna().any())


def summary_grid(summary: pd.DataFrame):
    """Per (run, scenario): a title, the headers shown, and the rows' cell texts (rich markup).
    The one layout behind the terminal table, markdown and HTML."""
    for (run_id, scenario), rows in summary.groupby(["run_id", "scenario"], sort=False):
        columns = [(h, fmt) for h, fmt, col in _COLUMNS if _shown(rows, col)]
        body = [[fmt(row) for _, fmt in columns] for row in rows.itertuples(index=False)]
        yield f"{scenario}  {run_id}", [h for h, _ in columns], body


def summary_tables(summary: pd.DataFrame) -> list[Table]:
    tables = []
    for title, headers, body in summary_grid(summary):
        name, run_id = title.split("  ")
        table = Table(title=f"{name}  [dim]{run_id}[/]", title_justify="left")
        for header in headers:
            table.add_column(header, justify="left" if header == "backend" else "right")
        for cells in body:
            table.add_row(*cells)
        tables.append(table)
    return tables


def plain(markup: str) -> str:
    return Text.from_markup(markup).plain


def summary_markdown(summary: pd.DataFrame) -> str:
    out = []
    for title, headers, body in summary_grid(summary):
        out.append(f"### {title}\n")
        out.append("| " + " | ".join(headers) + " |")
        out.append("|" + "|".join("---" if h == "backend" else "---:" for h in headers) + "|")
        out.extend("| " + " | ".join(plain(c) for c in cells) + " |" for cells in body)
        out.append("")
    return "\n".join(out)


def print_thresholds(results: pd.DataFrame, console: Console) -> None:
    if results.empty:
        return
    count = results["status"].value_counts()
    line = f"thresholds: {count.get('passed', 0)} passed, {count.get('failed', 0)} failed"
    if count.get("not applicable", 0):
        line += f", {count['not applicable']} cells not applicable"
    console.print(line)
    for row in results[results["status"] == "failed"].itertuples(index=False):
        console.print(f"  [red]FAIL[/] {row.scenario} {row.backend} c={row.concurrency} "
                      f"r={row.repetition}: {escape(row.threshold)} (actual {_num(row.actual)})")
    for row in results[results["status"] == "skipped"].itertuples(index=False):
        console.print(f"  skipped {row.scenario}: {escape(row.threshold)} (none of its cells "
                      "ran)")


def _ci(mean: float, lo: float, hi: float) -> str:
    if pd.isna(lo):
        return _num(mean)
    return escape(f"{_num(mean)} [{_num(lo)}, {_num(hi)}]")


def speedup_table(speedups: pd.DataFrame) -> Table:
    table = Table(title="across repetitions: mean \\[bootstrap 95 % interval]; speedup = median "
                        "over repetitions of the cells' speedup", title_justify="left")
    for header in ("scenario", "backend", "strategy", "variant", "conc", "reps", "req/s",
                   "p99 ms", "speedup"):
        table.add_column(header, justify="left" if header in ("scenario", "backend") else "right")
    for row in speedups.itertuples(index=False):
        table.add_row(row.scenario, row.backend, row.strategy, row.variant,
                      str(row.concurrency), str(row.repetitions),
                      _ci(row.mean_rps, row.rps_lo, row.rps_hi),
                      _ci(row.mean_p99_ms, row.p99_lo, row.p99_hi), _num(row.speedup))
    return table


def print_summary(summary: pd.DataFrame, console: Console | None = None) -> None:
    from harness.analysis import speedups

    console = console or Console()
    for table in summary_tables(summary):
        console.print(table)
    console.print("[dim]latency = end − start of ok requests; ovh = client overhead (latency − "
                  "server delay); bound = Σ server delay ÷ concurrency; eff = bound ÷ makespan; "
                  "cpu/wait/io/db = per-step p50 ms; lag = event-loop lag p99 ms; flags: "
                  "little = Little's law off by > 5 %, peaks = peak counts disagree, gen-cpu / "
                  "srv-cpu = load generator / mock server above 90 % CPU, incomplete = the cell's "
                  "process died (rows up to its last flush), rows_missing = released ≠ rows, "
                  "server_died = the mock server exited during the cell[/]")
    table = speedups(summary)
    levels = table.groupby("scenario")["concurrency"].transform("nunique")
    shown = (levels > 1) | (table["repetitions"] > 1)
    if shown.any():  # several levels (speedup) or several repetitions (intervals)
        console.print(speedup_table(table[shown]))
