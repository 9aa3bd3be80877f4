"""Comparing cells: two runs (BASE → NEW), or two backends inside the same runs.

For each matching cell: ratios NEW ÷ BASE of throughput and of p50/p99 latency with bootstrap
95 % confidence intervals (scipy.stats.bootstrap, percentile method), a Mann-Whitney U test on
the latencies, and a verdict. Repetitions are pooled: latencies over all of them; throughput
over the per-repetition values (its interval needs at least two repetitions per side)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from harness.analysis import PERCENTILE_METHOD, Runs, summarize
from harness.errors import HarnessError

MATCH = ["scenario", "backend", "concurrency", "strategy", "variant"]
ALPHA = 0.05
RESAMPLES = 2000


def _latencies_ms(requests: pd.DataFrame) -> pd.Series:
    ok = requests[requests["ok"]]
    return (ok["end_ns"] - ok["start_ns"]) / 1e6


def _ratio_ci(base: np.ndarray, new: np.ndarray, statistic) -> tuple[float, float, float]:
    point = statistic(new) / statistic(base)
    if len(base) < 2 or len(new) < 2:
        return point, float("nan"), float("nan")
    result = stats.bootstrap(
        (base, new), lambda b, n, axis: statistic(n, axis=axis) / statistic(b, axis=axis),
        n_resamples=RESAMPLES, confidence_level=1 - ALPHA, method="percentile",
        vectorized=True, rng=np.random.default_rng(0))
    return point, float(result.confidence_interval.low), float(result.confidence_interval.high)


def _quantile(q):
    return lambda x, axis=-1: np.percentile(x, q, axis=axis, method=PERCENTILE_METHOD)


def compare(base: Runs, new: Runs | None = None, between: tuple[str, str] | None = None
            ) -> pd.DataFrame:
    """`between=(A, B)` compares backend B against A inside `base`; otherwise NEW vs BASE."""
    if between:
        a, b = between
        summary = summarize(base)
        base_sum = summary[summary["backend"] == a]
        new_sum = summary[summary["backend"] == b]
        base_req = base.requests[base.requests["backend"] == a]
        new_req = base.requests[base.requests["backend"] == b]
        keys = [k for k in MATCH if k != "backend"]
    else:
        base_sum, new_sum = summarize(base), summarize(new)
        base_req, new_req = base.requests, new.requests
        keys = MATCH
    rows = []
    new_groups = dict(tuple(new_sum.groupby(keys, sort=False)))
    base_req_groups = dict(tuple(base_req.groupby(keys, sort=False)))
    new_req_groups = dict(tuple(new_req.groupby(keys, sort=False)))
    for key, base_cells in base_sum.groupby(keys, sort=False):
        if key not in new_groups:
            continue
        new_cells = new_groups[key]
        lat_base = _latencies_ms(base_req_groups[key]).to_numpy()
        lat_new = _latencies_ms(new_req_groups[key]).to_numpy()
        if not len(lat_base) or not len(lat_new):
            continue
        thr = _ratio_ci(base_cells["throughput_rps"].to_numpy(),
                        new_cells["throughput_rps"].to_numpy(), np.mean)
        p50 = _ratio_ci(lat_base, lat_new, _quantile(50))
        p99 = _ratio_ci(lat_base, lat_new, _quantile(99))
        p_value = float(stats.mannwhitneyu(lat_new, lat_base, alternative="two-sided").pvalue)
        rows.append({
            **dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True)),
            "base": between[0] if between else "base", "new": between[1] if between else "new",
            "reps_base": len(base_cells), "reps_new": len(new_cells),
            "throughput_ratio": thr[0], "throughput_lo": thr[1], "throughput_hi": thr[2],
            "p50_ratio": p50[0], "p50_lo": p50[1], "p50_hi": p50[2],
            "p99_ratio": p99[0], "p99_lo": p99[1], "p99_hi": p99[2],
            "mannwhitney_p": p_value, "verdict": _verdict(thr, p50, p_value),
        })
    if not rows:
        raise HarnessError("nothing to compare: no cell of one side matches a cell of the other "
                           f"(cells are matched on {', '.join(keys)})")
    return pd.DataFrame(rows)


def _verdict(thr: tuple[float, float, float], p50: tuple[float, float, float],
             p_value: float) -> str:
    """Throughput decides when its interval (two or more repetitions a side) excludes 1 — in a
    closed model lower latency can come with less work done; otherwise latency decides, when
    Mann-Whitney finds a difference and the p50 ratio's interval excludes 1."""
    ratio, lo, hi = thr
    if not np.isnan(lo) and not (lo <= 1.0 <= hi):
        return "faster" if ratio > 1 else "slower"
    ratio, lo, hi = p50
    if p_value < ALPHA and not (lo <= 1.0 <= hi):
        return "faster" if ratio < 1 else "slower"
    return "no significant difference"


def _ci(ratio: float, lo: float, hi: float) -> str:
    if np.isnan(lo):
        return f"{ratio:.3f}"
    return f"{ratio:.3f} [{lo:.3f}, {hi:.3f}]"


def comparison_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    headers = ["scenario", "cell", "base → new", "throughput ×", "p50 ×", "p99 ×",
               "Mann-Whitney p", "verdict"]
    body = []
    for row in table.itertuples(index=False):
        cell = " ".join(f"{k}={getattr(row, k)}" for k in ("backend", "concurrency", "strategy",
                                                           "variant") if hasattr(row, k))
        body.append([row.scenario, cell, f"{row.base} → {row.new}",
                     _ci(row.throughput_ratio, row.throughput_lo, row.throughput_hi),
                     _ci(row.p50_ratio, row.p50_lo, row.p50_hi),
                     _ci(row.p99_ratio, row.p99_lo, row.p99_hi),
                     f"{row.mannwhitney_p:.3g}", row.verdict])
    return headers, body


def comparison_markdown(table: pd.DataFrame) -> str:
    headers, body = comparison_rows(table)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    lines.append("")
    lines.append("Ratios are new ÷ base with bootstrap 95 % intervals; latency below 1 and "
                 "throughput above 1 mean new is faster.")
    return "\n".join(lines)
