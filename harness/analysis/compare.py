"""Comparing configurations: two runs (BASE → NEW), or two backends inside the same runs.

A *configuration* is what `compare` matches: scenario, backend, concurrency, strategy, variant,
client, model, rate, generators, path and python — the interpreter, so a run on 3.13t is
compared with runs on 3.13t (backend excepted with `--between`). Its repetitions — one cell each —
are the unit of every figure here: throughput (ok requests ÷ makespan) and the p50/p99
response times are computed per cell by `analysis.summarize` from its measured rows (warm-up
left out), and only these per-cell values are compared. Requests are never
pooled across cells: requests of one cell share its drift, so they are not independent samples.

The method (the statistics core below works on plain arrays of per-cell values):

- Per configuration, **Welch's t-test on the logarithms of the per-cell throughputs**, NEW
  against BASE. The estimate is the ratio of geometric means NEW ÷ BASE, exp(mean log new −
  mean log base), with a Welch t interval. Logarithms because benchmark noise is
  multiplicative (a coefficient of variation, not a fixed spread); Welch because the two sides
  need not be equally noisy. Why not a permutation or rank test on the per-cell values: with 5
  repetitions a side the smallest two-sided p of any such test is 2/252 ≈ 0.008, which can
  never pass a multiple-comparison threshold (0.05/12 ≈ 0.004 for 12 configurations); the t
  test reaches small p with few repetitions, at the price of assuming per-cell log values are
  roughly normal. Heavy tails make it conservative (simulated with one repetition in ten 30 %
  slow: A/A false alarms fell from 3.5 % to about 1 %); tests/test_compare.py checks the level.
- **Throughput is the only tested metric** (one test per configuration). In the closed model
  the harness runs (fixed requests, fixed concurrency) throughput is work ÷ time, the direct
  measure of speed, and mean latency is tied to it by Little's law. Testing p50 and p99 as well
  would triple the family: with m = 36 tests Holm's first threshold is 0.05/36 and the power to
  find a 10 % throughput change in one of 12 configurations at 10 repetitions and a 5 %
  coefficient of variation falls from about 81 % to about 66 % (simulated). The p50 and p99
  ratios (ratios of geometric means of the per-cell percentiles) are reported with intervals
  of the same level, as estimates: they do not decide a verdict.
- **Holm's correction over the configurations of one `compare`**, so that the chance of any
  false "slower" or "faster" in a whole comparison stays ≤ 5 % (family-wise, both directions;
  `--fail-on-regression` acts on "slower" only, so its false-alarm rate is ≤ 5 % too). Every
  interval shown is at level 1 − 0.05/m (Bonferroni over the m tested configurations), so the
  intervals hold simultaneously; an interval that excludes 1 always comes with a verdict
  (Holm rejects whatever Bonferroni rejects).
- **At least 3 repetitions a side** (MIN_REPETITIONS). With 2 a side Welch's test has 1 to 2
  degrees of freedom: its level then rests entirely on the normality of two numbers per side
  and its simultaneous interval spans orders of magnitude. Below 3 the configuration is
  "too few repetitions": it is not tested, does not count in m and cannot fail
  `--fail-on-regression`.
- **Errors**: a configuration whose NEW error rate (errors ÷ requests over all its cells)
  exceeds BASE's by more than ERROR_TOLERANCE (0.1 percentage point) is never "faster": its
  verdict is "more errors" unless it is significantly slower. This rule is descriptive, outside
  the tested family: it can only withhold "faster", never fail the gate (error budgets are the
  job of `expect: error_rate <= …` thresholds). Throughput counts ok requests only, so failing
  fast does not raise it by itself. A cell without a single ok request has throughput 0 and no
  logarithm: it is left out of the test (its errors still count).

Measured by the simulations in tests/test_compare.py (12 configurations, per-cell throughput
lognormal with a 5 % coefficient of variation): in A/A compares at 5 repetitions a side,
`--fail-on-regression` fails about 2 % of the time and some "slower" or "faster" appears in
about 4 % (Welch is slightly conservative when both sides are equally noisy). The power to
find a 10 % slowdown of one configuration out of 12 is about 23 % at 5 repetitions and 81 %
at 10; a 10 % slowdown of every configuration fails the gate in about 96 % of compares already
at 5. Known weakness: when one side is much noisier than the other (3× the spread) at 5
repetitions, Welch's approximation in the far tail lets the family-wise rate rise to about
6.5 %.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from harness.analysis.summary import Runs, by_cell, summarize
from harness.core.errors import HarnessError

MATCH = ["scenario", "backend", "concurrency", "strategy", "variant", "client", "model",
         "rate_per_s", "generators", "path", "python"]
ALPHA = 0.05  # family-wise, over every test of one compare
MIN_REPETITIONS = 3  # per side, for a configuration to be tested
ERROR_TOLERANCE = 0.001  # NEW's error rate above BASE's by more than this: never "faster"

SLOWER, FASTER, SAME = "slower", "faster", "no significant difference"
MORE_ERRORS, TOO_FEW = "more errors", "too few repetitions"


# --- the statistics core: arrays of per-cell values, no pandas ------------------------------

def log_ratio_test(base, new, confidence: float = 1 - ALPHA):
    """Welch's t-test on log values along the last axis; NaN entries are left out.

    `base` (…, n_base) and `new` (…, n_new) hold positive per-cell values. Returns arrays over
    the leading axes: ratio of geometric means new ÷ base, its interval at `confidence`, the
    two-sided p-value and the number of values a side. Fewer than 2 values a side give NaN."""
    log_b, log_n = np.log(np.asarray(base, float)), np.log(np.asarray(new, float))
    nb, nn = np.sum(~np.isnan(log_b), axis=-1), np.sum(~np.isnan(log_n), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = _nanmean(log_n) - _nanmean(log_b)
        vb, vn = _nanvar(log_b) / nb, _nanvar(log_n) / nn
        se = np.sqrt(vb + vn)
        df = (vb + vn) ** 2 / (vb**2 / (nb - 1) + vn**2 / (nn - 1))
        df = np.where(se > 0, df, nb + nn - 2)  # no spread at all: the interval is a point
        t = np.abs(diff) / se
        p = np.where(se > 0, 2 * stats.t.sf(t, df), np.where(diff == 0, 1.0, 0.0))
        half = stats.t.ppf(0.5 + confidence / 2, df) * se
        low, high = np.exp(diff - half), np.exp(diff + half)
    few = (nb < 2) | (nn < 2)
    nan = np.full(np.shape(diff), np.nan)
    return (np.exp(diff), np.where(few, nan, low), np.where(few, nan, high),
            np.where(few, nan, p), nb, nn)


def _nanmean(x: np.ndarray) -> np.ndarray:
    return np.nansum(x, axis=-1) / np.sum(~np.isnan(x), axis=-1)


def _nanvar(x: np.ndarray) -> np.ndarray:
    n = np.sum(~np.isnan(x), axis=-1)
    dev = x - _nanmean(x)[..., None]
    return np.nansum(dev * dev, axis=-1) / (n - 1)


def holm(p) -> np.ndarray:
    """Holm-adjusted p-values along the last axis (NaN: not tested, not counted in m).
    Reject where the adjusted p is ≤ ALPHA: family-wise error ≤ ALPHA for any dependence."""
    p = np.asarray(p, float)
    m = np.sum(~np.isnan(p), axis=-1, keepdims=True)
    order = np.argsort(p, axis=-1)  # NaN last
    ranked = np.take_along_axis(p, order, axis=-1)
    factor = m - np.arange(p.shape[-1])
    adjusted = np.minimum(1.0, np.maximum.accumulate(factor * ranked, axis=-1))
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, axis=-1)
    return out


def more_errors(error_rate_base, error_rate_new) -> np.ndarray:
    """NEW fails more than BASE beyond the tolerance (pooled error rates of the two sides)."""
    return np.asarray(error_rate_new) > np.asarray(error_rate_base) + ERROR_TOLERANCE


def verdicts(ratio, p_holm, errors_up, alpha: float = ALPHA) -> np.ndarray:
    """One verdict per configuration. Significant (Holm p ≤ alpha) and lower → "slower";
    otherwise more errors → "more errors"; significant and higher → "faster"; else "no
    significant difference". Too few repetitions are marked by the caller."""
    ratio, p_holm = np.asarray(ratio, float), np.asarray(p_holm, float)
    significant = p_holm <= alpha  # False for NaN (not tested)
    return np.select([significant & (ratio < 1), np.asarray(errors_up), significant & (ratio > 1)],
                     [SLOWER, MORE_ERRORS, FASTER], default=SAME)


class Decision(NamedTuple):
    """Arrays over the configurations (NaN where not tested)."""

    ratio: np.ndarray  # throughput, ratio of geometric means new ÷ base
    low: np.ndarray  # its interval at `level`
    high: np.ndarray
    p: np.ndarray  # Welch, two-sided
    p_holm: np.ndarray  # Holm-adjusted over the tested configurations
    level: np.ndarray  # 1 − alpha/m, m = tested configurations (keeps the last axis, size 1)
    verdict: np.ndarray


def decide(base_throughput, new_throughput, error_rate_base, error_rate_new,
           alpha: float = ALPHA) -> Decision:
    """The whole decision for a set of configurations (the last axis of the error-rate
    arrays; the per-cell throughput arrays have one more axis, the repetitions, NaN where a
    configuration has fewer). A configuration with fewer than MIN_REPETITIONS cells a side is
    "too few repetitions". Cells without any ok request (throughput 0) have no logarithm: they
    are left out of the test (their errors count in the error rate); a configuration left with
    fewer than MIN_REPETITIONS testable cells a side is not tested."""
    base_throughput = np.asarray(base_throughput, float)
    new_throughput = np.asarray(new_throughput, float)
    enough = ((np.sum(~np.isnan(base_throughput), axis=-1) >= MIN_REPETITIONS)
              & (np.sum(~np.isnan(new_throughput), axis=-1) >= MIN_REPETITIONS))
    base_throughput = np.where(base_throughput > 0, base_throughput, np.nan)
    new_throughput = np.where(new_throughput > 0, new_throughput, np.nan)
    tested = (enough & (np.sum(base_throughput > 0, axis=-1) >= MIN_REPETITIONS)
              & (np.sum(new_throughput > 0, axis=-1) >= MIN_REPETITIONS))
    level = simultaneous_level(np.maximum(tested.sum(axis=-1, keepdims=True), 1), alpha)
    ratio, low, high, p, _, _ = log_ratio_test(base_throughput, new_throughput, level)
    p, low, high = (np.where(tested, x, np.nan) for x in (p, low, high))
    p_holm = holm(p)
    verdict = verdicts(ratio, p_holm, more_errors(error_rate_base, error_rate_new), alpha)
    return Decision(ratio, low, high, p, p_holm, level, np.where(enough, verdict, TOO_FEW))


def simultaneous_level(m, alpha: float = ALPHA):
    """Bonferroni: m intervals at this level all hold together with probability ≥ 1 − alpha."""
    return 1 - alpha / np.asarray(m)


# --- the glue: per-cell values from the runs ------------------------------------------------

def _error_rate(cells: pd.DataFrame) -> float:
    requests = cells["requests"].sum()
    return float(cells["errors"].sum() / requests) if requests else float("nan")


def _padded(arrays: list[np.ndarray]) -> np.ndarray:
    width = max(len(a) for a in arrays)
    return np.array([np.pad(a, (0, width - len(a)), constant_values=np.nan) for a in arrays])


def compare(base: Runs, new: Runs | None = None, between: tuple[str, str] | None = None
            ) -> pd.DataFrame:
    """`between=(A, B)` compares backend B against A inside `base`; otherwise NEW vs BASE.
    One row per configuration present on both sides."""
    if between:
        a, b = between
        summary = summarize(base)
        base_sum = summary[summary["backend"] == a]
        new_sum = summary[summary["backend"] == b]
        keys = [k for k in MATCH if k != "backend"]
    else:
        base_sum, new_sum = summarize(base), summarize(new)
        keys = MATCH
    new_groups = by_cell(new_sum, keys)
    pairs = [(key, cells, new_groups[key])
             for key, cells in by_cell(base_sum, keys).items() if key in new_groups]
    if not pairs:
        raise HarnessError("nothing to compare: no cell of one side matches a cell of the other "
                           f"(cells are matched on {', '.join(keys)})")
    thr_b = _padded([b["throughput_rps"].to_numpy(float) for _, b, _ in pairs])
    thr_n = _padded([n["throughput_rps"].to_numpy(float) for _, _, n in pairs])
    err_b = np.array([_error_rate(b) for _, b, _ in pairs])
    err_n = np.array([_error_rate(n) for _, _, n in pairs])
    ratio, low, high, p, p_holm, level, verdict = decide(thr_b, thr_n, err_b, err_n)
    level = float(level[0])
    tested = ~np.isnan(p)
    rows = []
    for i, (key, b, n) in enumerate(pairs):
        latency = {}
        for metric in ("p50", "p99"):
            values_b, values_n = (_positive(x[f"{metric}_ms"]) for x in (b, n))
            r, lo, hi, *_ = log_ratio_test(values_b, values_n, level)
            lo, hi = (lo, hi) if tested[i] else (np.nan, np.nan)
            latency |= {f"{metric}_ratio": float(r), f"{metric}_lo": float(lo),
                        f"{metric}_hi": float(hi)}
        rows.append({
            **dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True)),
            "base": between[0] if between else "base", "new": between[1] if between else "new",
            "reps_base": len(b), "reps_new": len(n),
            "throughput_ratio": float(ratio[i]), "throughput_lo": float(low[i]),
            "throughput_hi": float(high[i]), **latency,
            "error_rate_base": float(err_b[i]), "error_rate_new": float(err_n[i]),
            "p_value": float(p[i]), "p_holm": float(p_holm[i]),
            "level": level if tested[i] else float("nan"), "verdict": str(verdict[i]),
        })
    return pd.DataFrame(rows)


def _positive(series: pd.Series) -> np.ndarray:
    values = series.to_numpy(float)
    return np.where(values > 0, values, np.nan)


def regressed(table: pd.DataFrame) -> bool:
    """What `--fail-on-regression` acts on: some configuration is significantly slower."""
    return bool((table["verdict"] == SLOWER).any())


def too_few_note(table: pd.DataFrame) -> str | None:
    few = int((table["verdict"] == TOO_FEW).sum())
    if not few:
        return None
    return (f"too few repetitions: {few} of {len(table)} configurations have fewer than "
            f"{MIN_REPETITIONS} repetitions a side; they are not tested and cannot fail "
            "--fail-on-regression")
