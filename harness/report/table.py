"""Rendering the summary (computed by analysis.summarize) for the terminal, markdown and HTML.

The terminal table shows by default what fits a 100-column terminal — the cell's keys,
requests, errors, req/s, p50/p99, peak, flags; with open cells the achieved rate and the
scheduling-lag p99 in place of req/s and peak — and with `--wide` every column; markdown and
HTML always show every column. A column appears only where the scenario has something to show
in it (no server delay, no bound; no loop, no loop lag). LEGEND defines every figure shown,
once, and names where in the code it is computed (the README's legend is the same table)."""

from __future__ import annotations

import math

import pandas as pd
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from harness.core.units import format_duration_ns, format_rate

TERMINAL_WIDTH = 100  # what the default table is made to fit


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


def _little(row) -> str:
    if row.little_check == "not enough data":
        return "few"
    text = f"{100 * row.little_residual:.1f}%"
    return f"[yellow]{text}[/]" if row.little_check == "off" else text


def _rate(row) -> str:
    rate = getattr(row, "rate_per_s", None)
    return "-" if rate is None or pd.isna(rate) else format_rate(rate)


def _gil(row) -> str:
    value = getattr(row, "gil_enabled", None)
    return "-" if value is None or pd.isna(value) else ("on" if value else "off")


def _flags(row) -> str:
    flags = row.flags + (" interrupted" if row.interrupted else "")
    return f"[yellow]{escape(flags.strip())}[/]" if flags.strip() else ""


# header, cell text, the summary column whose presence decides whether the column is shown,
# shown by default (else with --wide only; CLOSED_ONLY: by default unless the scenario has open
# cells, whose started/s and sched p99 take the room of req/s and peak)
CLOSED_ONLY = "closed only"
_COLUMNS = [
    ("python", lambda r: escape(str(r.python)), "python", True),
    ("backend", lambda r: r.backend, None, True),
    ("strategy", lambda r: r.strategy, "strategy", True),
    ("variant", lambda r: r.variant, "variant", True),
    ("path", lambda r: escape(r.path) if isinstance(r.path, str) else "-", "path", True),
    ("rate", _rate, "rate_per_s", True),
    ("conc", lambda r: str(r.concurrency), None, True),
    ("gen", lambda r: str(r.generators), "generators", True),
    ("rep", lambda r: str(r.repetition), None, True),
    ("requests", lambda r: str(r.requests), None, True),
    ("errors", lambda r: f"[red]{r.errors}[/]" if r.errors else "0", None, True),
    ("req/s", lambda r: f"{r.throughput_rps:.1f}", None, CLOSED_ONLY),
    ("started/s", lambda r: _num(r.achieved_rps), "target_rps", True),
    ("target/s", lambda r: _num(r.target_rps), "target_rps", False),
    ("p50 ms", lambda r: _num(r.p50_ms), None, True),
    ("p90 ms", lambda r: _num(r.p90_ms), None, False),
    ("p99 ms", lambda r: _num(r.p99_ms), None, True),
    ("p99.9 ms", lambda r: _num(r.p999_ms), None, False),
    ("max ms", lambda r: _num(r.max_ms), None, False),
    ("svc p50", lambda r: _num(r.service_p50_ms), "service_p50_ms", False),
    ("svc p99", lambda r: _num(r.service_p99_ms), "service_p50_ms", False),
    ("sched p99", lambda r: _num(r.sched_lag_p99_ms), "target_rps", True),
    ("late", lambda r: _int(r.late_starts), "target_rps", False),
    ("ovh p50", lambda r: _num(r.overhead_p50_ms), "overhead_p50_ms", False),
    ("ovh p99", lambda r: _num(r.overhead_p99_ms), "overhead_p99_ms", False),
    ("cpu p50", lambda r: _num(r.cpu_p50_ms), "cpu_p50_ms", False),
    ("wait p50", lambda r: _num(r.cpu_wait_p50_ms), "cpu_wait_p50_ms", False),
    ("io p50", lambda r: _num(r.io_p50_ms), "io_p50_ms", False),
    ("db p50", lambda r: _num(r.db_p50_ms), "db_p50_ms", False),
    ("conn p50", lambda r: _num(r.connect_p50_ms), "connect_p50_ms", False),
    ("lag p99", lambda r: _num(r.loop_lag_p99_ms), "loop_lag_p99_ms", False),
    ("lost", lambda r: _int(r.lost_updates), "lost_updates", False),
    ("peak", lambda r: str(r.peak_in_flight), None, CLOSED_ONLY),
    ("peak s/l/srv", _peaks, None, False),
    ("makespan", lambda r: _s(r.makespan_s), None, False),
    ("bound", lambda r: _s(r.bound_s), "bound_s", False),
    ("eff", lambda r: "-" if pd.isna(r.efficiency) else f"{r.efficiency:.3f}", "bound_s", False),
    ("kernel", lambda r: _num(r.kernel_ns_per_unit), "kernel_ns_per_unit", False),
    ("gil", _gil, "gil_enabled", False),
    ("cores", lambda r: _num(r.normalised_rate), "normalised_rate", False),
    ("speedup", lambda r: _num(r.speedup), "speedup", False),
    ("cpu s", lambda r: _num(r.cpu_user_s + r.cpu_sys_s), "cpu_user_s", False),
    ("srv cpu s", lambda r: _num(r.server_cpu_s), "server_cpu_s", False),
    ("srv lag p99", lambda r: _num(r.server_loop_lag_p99_ms), "server_loop_lag_p99_ms", False),
    ("service lag p99", lambda r: _num(r.service_loop_lag_p99_ms), "service_loop_lag_p99_ms",
     True),
    ("service cpu s", lambda r: _num(r.service_cpu_s), "service_cpu_s", False),
    ("little %", _little, "little_check", False),
    ("flags", _flags, "flags", True),
]
_DEFAULT_KEYS = {"strategy": "inline", "variant": "default", "generators": 1}
_TEXT = ("python", "backend", "strategy", "variant", "flags")  # left-aligned

# header → (definition, where the figure is computed). One entry per figure: the terminal
# legend, the README's legend and the tests use this table.
LEGEND: dict[str, tuple[str, str]] = {
    "path": ("the HTTP path the cell requested (shown when the cells differ in it)",
             "harness.core.keys.AXES"),
    "python": ("the interpreter the cell ran under: 3.12; 3.14t a free-threaded build; "
               "3.14t-gil that build with PYTHON_GIL=1 (shown when the cells differ in it)",
               "harness.core.keys.AXES"),
    "gil": ("whether the GIL was on in the cell's process after its imports and its run",
            "harness.cell.main.run_cell"),
    "rate": ("open model: the cell's arrival rate (a ramp's peak); - for a closed cell",
             "harness.core.keys.AXES"),
    "conc": ("the cell's limit on requests in flight (open model: max_in_flight)",
             "harness.core.keys.AXES"),
    "gen": ("generator processes the cell's load was split across (shown when not 1)",
            "harness.core.keys.AXES"),
    "rep": ("the repetition", "harness.core.keys.AXES"),
    "requests": ("measured rows of the cell (every request released to a slot, the warm-up "
                 "left out, as from every figure)", "harness.analysis.summary.measured"),
    "errors": ("measured rows that are not ok", "harness.analysis.summary.summarize"),
    "req/s": ("throughput: ok requests ÷ makespan", "harness.core.stats.throughput_per_s"),
    "started/s": ("achieved rate: requests started per second, (n − 1) ÷ (last start − first "
                  "start); target/s: the same over their scheduled starts (open cells)",
                  "harness.core.stats.achieved_per_s"),
    "p50 ms": ("response time (end − scheduled start: the intended start in the open model, "
               "getting a slot in the closed) of ok requests: p50, p90, p99, p99.9 and max; "
               "every percentile by linear interpolation", "harness.core.stats.response_ns"),
    "svc p50": ("service time (end − actual start) of ok requests: p50 and p99",
                "harness.core.stats.service_ns"),
    "sched p99": ("scheduling lag p99 ms: actual − scheduled start (early counts 0); late: "
                  "requests that started more than 1 ms late", "harness.core.stats.late_starts"),
    "ovh p50": ("client overhead p50 and p99: the HTTP step − the delay the server applied",
                "harness.analysis.summary.summarize"),
    "cpu p50": ("per-step p50 ms: the CPU step where it ran (cpu), the wait for a pool worker "
                "(wait), the HTTP call (io), the database write (db)",
                "harness.analysis.summary.summarize"),
    "conn p50": ("opening a connection, TLS handshake included, p50 ms: of those the cell opened "
                 "under its clock (the rows' connect_ns), else of those opened before it "
                 "(load.connect_rate: the cells' connect_p50_ns)",
                 "harness.analysis.summary._connect_p50_ms"),
    "lag p99": ("event-loop lag p99 ms: how late the loop's probe woke from 10 ms sleeps",
                "harness.store.writer.CellRows.cell_row"),
    "lost": ("race: increments made − the final counter", "harness.store.writer.CellRows.cell_row"),
    "peak": ("most requests in flight at once, by a sweep over the rows' intervals",
             "harness.core.stats.sweep_peak"),
    "peak s/l/srv": ("that sweep peak / the peak counted live / the mock server's own count",
                     "harness.store.writer.CellRows.cell_row"),
    "makespan": ("from the end of the warm-up (the first measured request's scheduled start; "
                 "the cell's start without one) to the last request's end",
                 "harness.analysis.summary.measured_span_ns"),
    "bound": ("lower bound of the makespan: Σ delay the server drew ÷ concurrency (closed "
              "cells whose request is the server call alone; the applied delay for runs "
              "before schema 4); eff = bound ÷ makespan",
              "harness.analysis.summary._bound_s"),
    "kernel": ("CPU workloads: the cell's own speed on its kernel, ns per unit, measured "
               "before its clock started (mean speed of the slot or pool processes)",
               "harness.core.kernels.kernel_ns_per_unit"),
    "cores": ("normalised rate: units done per second × kernel ns per unit ÷ 1e9 (busy cores)",
              "harness.core.stats.normalised_rate"),
    "speedup": ("a closed cell's rate ÷ that of the same backend/strategy/variant/client and "
                "repetition at the lowest concurrency; CPU workloads divide normalised rates "
                "(cores), others req/s", "harness.analysis.summary.cell_speedups"),
    "cpu s": ("CPU time (user + system) of the cell's process tree while its clock ran",
              "harness.cell.sampler.Sampler"),
    "srv cpu s": ("CPU time of the mock server from when it was ready",
                  "harness.mock.process.ServerProcess.stats"),
    "srv lag p99": ("the mock server's own event-loop lag p99 ms (its probe wakes from 10 ms "
                    "sleeps, as the loops' lag p99) while the cell's clock ran: a `cpu` "
                    "endpoint served inline shows here", "harness.mock.aiohttp_engine.LagSamples"),
    "service lag p99": ("the started service's own event-loop lag p99 ms over the cell, as its "
                        "`service.lag_path` reports it", "harness.run.service.ServiceProcess"),
    "service cpu s": ("CPU time of the started service's process tree over the cell",
                      "harness.run.service.tree_cpu_s"),
    "reps": ("across repetitions: the configuration's repetitions (cells)",
             "harness.analysis.summary.speedups"),
    "mean req/s": ("the mean over its repetitions, [bootstrap 95 % interval]; mean p99 ms "
                   "likewise", "harness.analysis.summary.mean_ci"),
    "median speedup": ("the median over its repetitions of the cells' speedup",
                       "harness.analysis.summary.speedups"),
    "little %": ("Little's law residual: the gap between the mean in flight sampled live and "
                 "Σ(end − start) ÷ the cell's time over all rows (warm-up included), relative "
                 "to the latter; few: the samples cannot measure the mean in flight within 5 %",
                 "harness.analysis.summary.little_check"),
    # the flags
    "little": ("flag: the Little's law residual exceeds 5 % and the samples are enough to tell",
               "harness.analysis.summary.little_check"),
    "peaks": ("flag: the live and sweep peaks differ (split across generators: the live sum "
              "exceeds the sweep), or the server saw more in flight",
              "harness.analysis.summary._self_checks"),
    "gen-cpu": ("flag: on a server workload, the generator's process tree averaged over 90 % of "
                "a core per generator (of every core of the run's machine for processes)",
                "harness.analysis.summary._self_checks"),
    "srv-cpu": ("flag: the mock server used over 90 % of a core, from ready to the cell's end",
                "harness.analysis.summary._self_checks"),
    "incomplete": ("flag: the cell's process died; its rows up to its last flush",
                   "harness.analysis.summary._self_checks"),
    "rows_missing": ("flag: the cell released more requests than it has rows",
                     "harness.analysis.summary._self_checks"),
    "server_died": ("flag: the mock server exited during the cell",
                    "harness.analysis.summary._self_checks"),
    "service_died": ("flag: the started service ended during the cell, or did not start for it",
                     "harness.analysis.summary._self_checks"),
    "gil-on": ("flag: a free-threaded build ran the cell with the GIL on: an extension module "
               "without free-threading support enabled it",
               "harness.analysis.summary._gil_back_on"),
    "lagging": ("flag: an open cell whose scheduling-lag p99 exceeds load.max_sched_lag (5 ms "
                "by default): its numbers describe the generator, not the server",
                "harness.core.stats.LateStarts.lagging"),
    "interrupted": ("the run was stopped during or before this cell",
                    "harness.store.writer.CellRows.cell_row"),
}
# Headers whose figure another legend entry defines (same definition, one entry).
_DEFINED_BY = {"target/s": "started/s", "svc p99": "svc p50", "late": "sched p99",
               "p90 ms": "p50 ms", "p99 ms": "p50 ms", "p99.9 ms": "p50 ms",
               "max ms": "p50 ms", "ovh p99": "ovh p50", "wait p50": "cpu p50",
               "io p50": "cpu p50", "db p50": "cpu p50", "eff": "bound",
               "mean p99 ms": "mean req/s"}
FLAGS = ("little", "peaks", "gen-cpu", "srv-cpu", "gil-on", "lagging", "incomplete", "rows_missing",
         "server_died", "service_died", "interrupted")


def _shown(rows: pd.DataFrame, column: str | None) -> bool:
    if column is None:
        return True
    if column not in rows and column != "flags":  # a figure the summary's source lacks
        return False
    if column in _DEFAULT_KEYS:
        return bool((rows[column] != _DEFAULT_KEYS[column]).any())
    if column in ("path", "python"):  # axes without a default: shown when they vary
        return column in rows and rows[column].nunique(dropna=False) > 1
    if column == "flags":
        return bool((rows[column] != "").any() | rows["interrupted"].any())
    if column == "little_check":
        return bool(rows["little_residual"].notna().any())
    return bool(rows[column].notna().any())


def summary_grid(summary: pd.DataFrame, wide: bool = True):
    """Per (run, scenario): a title, the headers shown, and the rows' cell texts (rich markup).
    The one layout behind the terminal table, markdown and HTML; `wide=False` keeps the
    default columns only."""
    for (run_id, scenario), rows in summary.groupby(["run_id", "scenario"], sort=False):
        has_open = _shown(rows, "target_rps")
        columns = [(h, fmt) for h, fmt, col, default in _COLUMNS
                   if (wide or default is True or (default == CLOSED_ONLY and not has_open))
                   and _shown(rows, col)]
        if not wide:  # the short peak; --wide has the triple
            columns = [c for c in columns if c[0] != "peak s/l/srv"]
        else:
            columns = [c for c in columns if c[0] != "peak"]
        body = [[fmt(row) for _, fmt in columns] for row in rows.itertuples(index=False)]
        yield f"{scenario}  {run_id}", [h for h, _ in columns], body


def new_table(title: str, headers: list[str], text: tuple[str, ...] = ()) -> Table:
    """Every command's table, in one style: a rule under the header, no frame; text columns
    (`text`, and the keys) to the left, figures to the right."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, collapse_padding=True)
    for header in headers:
        table.add_column(header, justify="left" if header in (*_TEXT, *text) else "right")
    return table


_table = new_table


def summary_tables(summary: pd.DataFrame, wide: bool = False) -> list[Table]:
    tables = []
    for title, headers, body in summary_grid(summary, wide):
        name, run_id = title.split("  ")
        table = _table(f"{escape(name)}  [dim]{run_id}[/]", headers)
        for cells in body:
            table.add_row(*cells)
        tables.append(table)
    return tables


def legend(headers: list[str], flags: set[str], defined: set[str] | None = None) -> str:
    """Each figure among `headers` (and each flag raised) defined once, in table order, but
    for those in `defined` (already given; updated)."""
    defined = set() if defined is None else defined
    keys: list[str] = []
    for header in headers:
        key = _DEFINED_BY.get(header, header)
        if key in LEGEND and key not in keys and key not in defined:
            keys.append(key)
    keys += [f for f in FLAGS if f in flags and f not in defined]
    defined.update(keys)
    return "; ".join(f"{key}: {LEGEND[key][0]}" for key in keys)


def plain(markup: str) -> str:
    return Text.from_markup(markup).plain


def summary_markdown(summary: pd.DataFrame) -> str:
    out = []
    for title, headers, body in summary_grid(summary, wide=True):
        out.append(f"### {title}\n")
        out.append("| " + " | ".join(headers) + " |")
        out.append("|" + "|".join("---" if h in _TEXT else "---:" for h in headers) + "|")
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


def speedup_tables(speedups: pd.DataFrame, wide: bool = False) -> list[Table]:
    """One table per scenario: per backend/strategy/variant and level, the repetitions, mean
    req/s with its interval (p99 too with `wide`) and the median speedup."""
    tables = []
    for scenario, rows in speedups.groupby("scenario", sort=False):
        headers = (["python"] if _shown(rows, "python") else []) + ["backend"] + [
            k for k in ("strategy", "variant")
                                 if (rows[k] != _DEFAULT_KEYS[k]).any()]
        headers += ["path"] if _shown(rows, "path") else []
        if "rate_per_s" in rows and rows["rate_per_s"].notna().any():
            headers.append("rate")
        headers += ["conc"] + (["gen"] if _shown(rows, "generators") else [])
        headers += ["reps", "mean req/s"] + (["mean p99 ms"] if wide else [])
        headers += ["median speedup"]
        table = _table(f"{escape(scenario)}  [dim]across repetitions[/]", headers)
        for row in rows.itertuples(index=False):
            cells = {"python": escape(str(getattr(row, "python", None))),
                     "backend": row.backend, "strategy": row.strategy, "variant": row.variant,
                     "path": escape(str(getattr(row, "path", None))),
                     "rate": _rate(row), "conc": str(row.concurrency),
                     "gen": str(getattr(row, "generators", 1)),
                     "reps": str(row.repetitions),
                     "mean req/s": _ci(row.mean_rps, row.rps_lo, row.rps_hi),
                     "mean p99 ms": _ci(row.mean_p99_ms, row.p99_lo, row.p99_hi),
                     "median speedup": _num(row.speedup)}
            table.add_row(*(cells[h] for h in headers))
        tables.append(table)
    return tables


def interpreter_tables(summary: pd.DataFrame) -> list[Table]:
    """Where a scenario has several interpreters: per interpreter its single-thread cost and
    how each backend scaled (harness.analysis.summary.interpreters)."""
    from harness.analysis.summary import interpreters

    table = interpreters(summary)
    tables = []
    for scenario, rows in table.groupby("scenario", sort=False) if len(table) else ():
        backends = [c for c in rows.columns if c.startswith("speedup:")
                    and rows[c].notna().any()]
        high = int(rows["concurrency"].max())
        headers = ["python", "gil", "kernel ns/unit", "cost"] + [
            f"{c.removeprefix('speedup:')} ×c={high}" for c in backends]
        out = _table(f"{escape(scenario)}  [dim]by interpreter[/]", headers)
        for row in rows.to_dict("records"):
            cost = row["relative_cost"]
            out.add_row(escape(str(row["python"])), row["gil"], _num(row["kernel_ns_per_unit"]),
                        "-" if pd.isna(cost) else f"{cost:.2f}×",
                        *(_num(row[c]) for c in backends))
        tables.append(out)
    return tables


def _print(console: Console, renderable, wide: bool) -> None:
    """With `wide`, at the renderable's natural width even past the terminal's (the terminal
    wraps the lines; nothing is cut or squeezed)."""
    if not wide:
        console.print(renderable)
        return
    natural = Measurement.get(console, console.options.update(max_width=10_000),
                              renderable).maximum
    width = console.width
    console.width = max(width, natural)
    try:
        console.print(renderable)
    finally:
        console.width = width


def print_summary(summary: pd.DataFrame, console: Console | None = None,
                  wide: bool = False, legend_shown: bool = True) -> None:
    console = console or Console()
    if summary.empty:
        console.print("no finished cell")
        return
    headers: list[str] = []
    for table in summary_tables(summary, wide):
        _print(console, table, wide)
        headers += [c.header for c in table.columns if c.header not in headers]
    flags = {f for text in summary["flags"] for f in text.split()} if len(summary) else set()
    if len(summary) and summary["interrupted"].any():
        flags.add("interrupted")
    defined: set[str] = set()
    if legend_shown:
        _print_legend(console, legend(headers, flags, defined))
    print_speedups(summary, console, wide, defined, legend_shown)


def print_speedups(summary: pd.DataFrame, console: Console, wide: bool = False,
                   defined: set[str] | None = None, legend_shown: bool = True) -> None:
    """The "across repetitions" tables and their legend, where a scenario has several levels
    (speedup) or several repetitions (intervals); nothing otherwise."""
    from harness.analysis.summary import speedups

    table = speedups(summary)
    closed = table["model"].fillna("closed") != "open"
    levels = table["concurrency"].where(closed).groupby(table["scenario"]).transform("nunique")
    shown = ((levels > 1) & closed) | (table["repetitions"] > 1)
    if shown.any():
        headers = []
        for speedup_table in speedup_tables(table[shown], wide):
            _print(console, speedup_table, wide)
            headers += [c.header for c in speedup_table.columns if c.header not in headers]
        if legend_shown:
            _print_legend(console, legend(headers, set(), defined))
    for interpreter_table in interpreter_tables(summary):
        _print(console, interpreter_table, wide)
    if interpreter_tables(summary) and legend_shown:
        _print_legend(console, INTERPRETER_LEGEND)


INTERPRETER_LEGEND = ("by interpreter: kernel ns/unit: the single-thread cost, the median of the "
                      "CPU kernel's speed in its cells at the lowest concurrency; cost: that ÷ "
                      "the first interpreter's; gil: the GIL in its cells' processes; "
                      "<backend> ×c=N: the median speedup at concurrency N")


def print_check_failures(requests: pd.DataFrame, console: Console) -> None:
    """Per scenario, backend, client and check: the measured responses that failed it
    (`error` = `check`, `error_detail` naming the check); nothing when none did."""
    if "error" not in requests or not (requests["error"] == "check").any():
        return
    failed = requests[requests["error"] == "check"]
    failed = failed[failed["phase"].fillna("measure") != "warmup"]
    keys = ["scenario", "backend", "client", "error_detail"]
    counts = failed.groupby(keys, dropna=False).size().reset_index(name="failed")
    table = new_table("failed checks", ["scenario", "backend", "client", "check", "failed"],
                      text=("scenario", "client", "check"))
    for row in counts.itertuples(index=False):
        table.add_row(row.scenario, row.backend, str(row.client), str(row.error_detail),
                      str(row.failed))
    console.print(table)


def print_notes(metadata: list[dict], console: Console) -> None:
    """What a run recorded it left out: an optional interpreter absent, cells skipped where a
    library has no wheel (run.json, each scenario's `notes`)."""
    for meta in metadata:
        for scenario in meta.get("scenarios") or ():
            for note in scenario.get("notes") or ():
                console.print(f"note: {scenario.get('name')}: {note}", highlight=False,
                              markup=False, soft_wrap=True)


def _print_legend(console: Console, text: str) -> None:
    console.print(f"[dim]{escape(text)}[/]", width=min(console.width, TERMINAL_WIDTH))
