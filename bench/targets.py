"""The seed's claims as measured targets, evaluated from the Parquet files of the newest run of
each scenario under results/ (or the run directories given). A benchmark, not a test: it
reports what was measured and whether each target was met; it does not fail the build.

Speedups are the analysis's one definition (harness.analysis.summary.cell_speedups, median over
the repetitions): for the CPU scenarios, ratios of normalised rates (busy cores), so a cell that
ran in a process with a faster or slower kernel does not pass or fail a GIL target by luck.

    python -m bench.targets [DIR...]
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from harness.analysis.summary import load_runs, measured, speedups, summarize
from harness.core.stats import median, response_ns
from harness.store.reader import is_run_dir


def newest_runs(root: Path) -> list[Path]:
    """results/<scenario>/<run id>/: run ids sort by time, so the last is the newest."""
    runs = []
    for scenario in sorted(p for p in root.iterdir() if p.is_dir()):
        done = sorted(p for p in scenario.iterdir() if is_run_dir(p))
        if done:
            runs.append(done[-1])
    return runs


Rows = list[tuple[str, str, bool | None]]  # (target, what was measured, met; None: not judged)
Check = Callable[..., None]  # check(name, value, ok, fmt="{:.2f}"): one row


def evaluate(summary: pd.DataFrame, requests: pd.DataFrame | None = None) -> Rows:
    """Every target on the summary; `requests` (the rows) for those that count requests."""
    rows: Rows = []
    check = functools.partial(_check, rows)
    _gil_targets(check, speedups(summary))
    _gil_io_targets(check, summary)
    _inference_targets(check, summary)
    _race_targets(check, summary)
    _open_stall_targets(check, summary, requests)
    _lab_targets(check, summary)
    return rows


def _check(rows: Rows, name, value, ok, fmt="{:.2f}") -> None:
    if value is None:
        rows.append((name, "not run", None))
    elif pd.isna(value):  # ran, but the figure could not be computed (e.g. no base cell)
        rows.append((name, "no data", None))
    else:
        rows.append((name, fmt.format(value), bool(ok(value))))


def _gil_targets(check: Check, table: pd.DataFrame) -> None:
    def speedup(scenario, backend, concurrency, strategy="inline"):
        sel = table[(table.scenario == scenario) & (table.backend == backend)
                    & (table.concurrency == concurrency) & (table.strategy == strategy)]
        return float(sel["speedup"].iloc[0]) if len(sel) else None

    check("gil_cpu: threads speedup (normalised) at 2 ≤ 1.2",
          speedup("gil_cpu", "threads", 2), lambda v: v <= 1.2)
    check("gil_cpu: processes speedup (normalised) at 2 ≥ 1.6",
          speedup("gil_cpu", "processes", 2), lambda v: v >= 1.6)
    check("gil_release: threads speedup at 2 ≥ 1.5", speedup("gil_release", "threads", 2),
          lambda v: v >= 1.5)


def _gil_io_targets(check: Check, summary: pd.DataFrame) -> None:
    io = summary[(summary.scenario == "gil_io") & (summary.concurrency == 10)]
    for backend, cells in io.groupby("backend", sort=False):
        ideal = 10 / median(cells["bound_s"] * 10 / cells["requests"])  # c ÷ mean delay
        check(f"gil_io: {backend} at 10 ≥ 0.8 × ideal", median(cells["throughput_rps"]) / ideal,
              lambda v: v >= 0.8, "{:.3f} × ideal")


def _inference_targets(check: Check, summary: pd.DataFrame) -> None:
    inf = summary[summary.scenario == "inference"]
    for backend in ("asyncio", "uvloop"):
        mine = inf[inf.backend == backend]
        if mine.empty:
            continue
        lag = mine.groupby("strategy")["loop_lag_p99_ms"].agg(median)
        cpu_inline = median(mine.loc[mine.strategy == "inline", "cpu_p50_ms"])
        check(f"inference: {backend} inline lag p99 ≥ CPU step ({cpu_inline:.1f} ms)",
              lag.get("inline"), lambda v, c=cpu_inline: v >= c, "{:.1f} ms")
        for pool in ("thread_pool", "process_pool"):
            check(f"inference: {backend} {pool} lag p99 < 20 ms and ≤ ¼ inline",
                  lag.get(pool), lambda v, i=lag.get("inline", float("nan")): v < 20
                  and v <= i / 4, "{:.1f} ms")


def _race_targets(check: Check, summary: pd.DataFrame) -> None:
    race = summary[summary.scenario == "race"]
    for backend, cells in race.groupby("backend", sort=False):
        lost = cells.groupby("variant")["lost_updates"]
        if backend in ("asyncio", "uvloop"):
            check(f"race: {backend} no-lock loses updates (min over reps)",
                  lost.min().get("no-lock"), lambda v: v > 0, "{:.0f}")
        check(f"race: {backend} lock loses none (max over reps)", lost.max().get("lock"),
              lambda v: v == 0, "{:.0f}")


def _open_stall_targets(check: Check, summary: pd.DataFrame,
                        requests: pd.DataFrame | None) -> None:
    stall = summary[summary.scenario == "open_stall"]
    slow = _slow_requests(requests, "open_stall", STALL_SLOW_MS)
    for backend, cells in stall.groupby("backend", sort=False):
        by_model = cells.groupby("model")
        check(f"open_stall: {backend} open response-time p99 ≥ 350 ms",
              by_model["p99_ms"].agg(median).get("open"), lambda v: v >= 350, "{:.1f} ms")
        for model, (low, high) in (("open", (50, 150)), ("closed", (0, 10))):
            what = "about a hundred" if model == "open" else "a handful (≤ 10)"
            count = slow.get((backend, model)) if slow is not None else None
            check(f"open_stall: {backend} {model} requests over {STALL_SLOW_MS} ms: {what}",
                  count, lambda v, lo=low, hi=high: lo <= v <= hi, "{:.0f}")
        check(f"open_stall: {backend} service-time p50 near 10 ms in both models (≤ 12 ms)",
              by_model["service_p50_ms"].agg(median).max() if len(cells) else None,
              lambda v: v <= 12, "{:.1f} ms (the larger)")


def _lab_targets(check: Check, summary: pd.DataFrame) -> None:
    lab = summary[summary.scenario == "lab"]
    for backend, cells in lab.groupby("backend", sort=False):
        check(f"lab: {backend} efficiency ≥ 0.9 (bound {median(cells.bound_s):.2f} s)",
              median(cells["efficiency"]), lambda v: v >= 0.9, "{:.3f}")
        check(f"lab: {backend} under 15 s", median(cells["makespan_s"]), lambda v: v < 15,
              "{:.2f} s")


STALL_SLOW_MS = 100


def _slow_requests(requests: pd.DataFrame | None, scenario: str, over_ms: float):
    """Per (backend, model): ok measured requests of the scenario whose response time exceeds
    over_ms (median over repetitions); None without the rows."""
    if requests is None:
        return None
    rows = measured(requests[requests["scenario"] == scenario])
    rows = rows[rows["ok"]]
    slow = response_ns(rows["scheduled_ns"], rows["end_ns"]) > over_ms * 1e6
    counts = rows.assign(slow=slow).groupby(["backend", "model", "repetition"])["slow"].sum()
    return counts.groupby(["backend", "model"]).agg(median).to_dict()


def main(argv: list[str]) -> None:
    dirs = [Path(a) for a in argv] or newest_runs(Path("results"))
    runs = load_runs(dirs)
    summary = summarize(runs)
    table = Table(title="targets", title_justify="left")
    for header in ("target", "measured", "met"):
        table.add_column(header)
    for name, value, ok in evaluate(summary, runs.requests):
        verdict = "-" if ok is None else ("[green]yes[/]" if ok else "[red]no[/]")
        table.add_row(name, value, verdict)
    Console(width=None if sys.stdout.isatty() else 160).print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
