"""The knee search as people read it: one line per probe while it runs, the final table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from harness.core.units import format_rate
from harness.report.table import new_table
from harness.saturate.search import KneeResult, ProbeStep


def step_line(step: ProbeStep, folder: Path) -> str:
    """One probe, for the progress log."""
    result = step.result
    lag = result.metrics.get("sched_lag_p99_ms", math.nan)
    verdict = "pass" if step.passed else f"fail: {step.failed}"
    who = f"{step.python} " if step.python else ""
    return (f"{who}{step.backend} {step.client} {step.phase:<6} {format_rate(step.rate_per_s):>9}  "
            f"p99 {result.p99_ms:.1f}ms  errors {result.error_rate:.2%}  "
            f"sched lag p99 {lag:.2f}ms  started {result.achieved_rps:.1f}/s  "
            f"[{folder.name}]  {verdict}")


def results_table(results: Sequence[KneeResult], title: str):
    """The final table: backend, client, max sustainable rate per second, p99 there, the range
    from the repeats (from the highest rate that passed every time to the lowest above it that
    failed every time; ? where none did), the probes run."""
    several = len({r.python for r in results}) > 1
    table = new_table(title, [*(("python",) if several else ()), "backend", "client",
                              "max rate/s", "p99 ms", "range", "probes"],
                      text=("client", "range"))
    for r in results:
        low, high = r.range_per_s
        found = r.max_rate_per_s is not None
        top = "(ceiling)" if r.status == "ceiling" else "?"  # ?: no rate failed every time
        span = ("fails at the start rate" if r.status == "fails_at_start" else
                f"{format_rate(low) if low else '?'} – {format_rate(high) if high else top}")
        table.add_row(*((r.python or "-",) if several else ()), r.backend, r.client or "-",
                      f"{r.max_rate_per_s:.1f}" if found else "-",
                      f"{r.p99_ms:.1f}" if found else "-", span, str(len(r.steps)))
    return table
