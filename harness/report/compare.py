"""The comparison as people read it: a terminal or Markdown table of ratios with their
intervals, the title that says what was tested, and the note on configurations too few to test."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.analysis.compare import too_few_note
from harness.core.units import format_rate


def _ci(ratio: float, lo: float, hi: float) -> str:
    if np.isnan(ratio):
        return "-"
    if np.isnan(lo):
        return f"{ratio:.3f}"
    return f"{ratio:.3f} [{lo:.3f}, {hi:.3f}]"


def _rate(value: float) -> str:
    return "-" if np.isnan(value) else f"{100 * value:.2g} %"


def title(table: pd.DataFrame) -> str:
    levels = table["level"].dropna()
    if not len(levels):
        return "comparison: new ÷ base (too few repetitions to test)"
    m = int((~table["p_holm"].isna()).sum())
    return (f"comparison: new ÷ base, ratios of geometric means over repetitions, "
            f"simultaneous {100 * levels.iloc[0]:.3g} % intervals (95 % over {m} "
            f"configuration{'s' if m != 1 else ''}); throughput tested (Welch on logs, Holm)")


def comparison_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    headers = ["scenario", "cell", "base → new", "reps", "throughput ×", "p50 ×", "p99 ×",
               "errors", "Holm p", "verdict"]
    body = []
    # the other keys only where the configurations differ in them (an interpreter, a path)
    varying = [k for k in ("client", "generators", "path", "python")
               if k in table and table[k].nunique(dropna=False) > 1]
    for row in table.itertuples(index=False):
        cell = " ".join(f"{k}={getattr(row, k)}" for k in ("backend", "concurrency", "strategy",
                                                           "variant", *varying)
                        if hasattr(row, k))
        rate = getattr(row, "rate_per_s", None)
        if rate is not None and not pd.isna(rate):
            cell += f" rate={format_rate(rate)}"
        body.append([row.scenario, cell, f"{row.base} → {row.new}",
                     f"{row.reps_base} → {row.reps_new}",
                     _ci(row.throughput_ratio, row.throughput_lo, row.throughput_hi),
                     _ci(row.p50_ratio, row.p50_lo, row.p50_hi),
                     _ci(row.p99_ratio, row.p99_lo, row.p99_hi),
                     f"{_rate(row.error_rate_base)} → {_rate(row.error_rate_new)}",
                     "-" if np.isnan(row.p_holm) else f"{row.p_holm:.3g}", row.verdict])
    return headers, body


def comparison_markdown(table: pd.DataFrame) -> str:
    headers, body = comparison_rows(table)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    lines.append("")
    lines.append(title(table) + ". Latency below 1 and throughput above 1 mean new is faster; "
                 "only throughput decides the verdict.")
    note = too_few_note(table)
    if note:
        lines.append("")
        lines.append(note + ".")
    return "\n".join(lines)
