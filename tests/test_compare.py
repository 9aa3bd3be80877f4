"""`harness compare`: the statistics core on simulated per-cell values (calibration and power),
and the glue and the CLI on synthetic `Runs`."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.analysis.compare import (
    FASTER,
    MIN_REPETITIONS,
    MORE_ERRORS,
    SAME,
    SLOWER,
    TOO_FEW,
    compare,
    decide,
    holm,
    log_ratio_test,
    regressed,
    verdicts,
)
from harness.analysis.summary import Runs, summarize
from harness.core.keys import CELL_KEYS

CV = 0.05
SIGMA = np.sqrt(np.log(1 + CV**2))  # the lognormal σ whose coefficient of variation is CV
CONFIGURATIONS = 12
SIMULATIONS = 4000


def _cells(rng, shape, slowdown=None, normal=False):
    """Per-cell throughputs, lognormal (or normal) with CV 5 %; `slowdown` divides the first
    configuration."""
    values = 100 * (1 + rng.normal(0, CV, shape) if normal else np.exp(rng.normal(0, SIGMA, shape)))
    if slowdown:
        values[:, 0, :] /= slowdown
    return values


def _simulate(reps: int, slowdown=None, seed=0, simulations=SIMULATIONS, normal=False):
    """Verdicts of `simulations` compares of CONFIGURATIONS configurations, `reps` a side."""
    rng = np.random.default_rng(seed)
    shape = (simulations, CONFIGURATIONS, reps)
    base, new = _cells(rng, shape, normal=normal), _cells(rng, shape, slowdown, normal)
    no_errors = np.zeros(shape[:2])
    return decide(base, new, no_errors, no_errors).verdict


# Seeded: the same compares every run, so these are exact figures, not estimates that may
# stray. Seen (gate / any claim): 3 repetitions 1.10 % / 2.35 %; 5: 2.05 % / 3.80 %; 5, normal:
# 1.90 % / 3.82 %; 10: 2.17 % / 4.30 %.
@pytest.mark.parametrize(("reps", "normal"),
                         [(MIN_REPETITIONS, False), (5, False), (5, True), (10, False)])
def test_a_a_false_alarms_stay_within_five_percent_for_a_whole_compare(reps, normal):
    verdict = _simulate(reps, seed=reps + 50 * normal, normal=normal)
    gate = (verdict == SLOWER).any(axis=1).mean()  # what --fail-on-regression fails on
    any_claim = (verdict != SAME).any(axis=1).mean()  # any "slower" or "faster" at all
    print(f"\nA/A, {'normal' if normal else 'lognormal'}, {CONFIGURATIONS} configurations × "
          f"{reps} repetitions a side, "
          f"{SIMULATIONS} compares: --fail-on-regression fails {gate:.2%}, "
          f"any claim {any_claim:.2%}")
    assert gate <= 0.03 and any_claim <= 0.05
    assert set(np.unique(verdict)) <= {SLOWER, FASTER, SAME}


def test_a_10_percent_slowdown_is_found_in_80_percent_of_compares_at_10_repetitions():
    """The hardest case for Holm: one configuration of 12 is 10 % slower, the rest unchanged,
    so the slow one must pass the smallest threshold, 0.05/12."""
    simulations = 5 * SIMULATIONS  # the target is close: a standard error of 0.3 points
    power = {reps: (_simulate(reps, 1.1, 100 + reps, simulations)[:, 0] == SLOWER).mean()
             for reps in (5, 10)}
    print(f"\npower, 10 % slower in 1 of {CONFIGURATIONS} configurations, CV 5 %: "
          f"{power[5]:.1%} at 5 repetitions, {power[10]:.1%} at 10")
    assert power[10] >= 0.80
    assert 0.15 < power[5] < 0.35


def test_a_slowdown_of_every_configuration_is_found_at_5_repetitions():
    rng = np.random.default_rng(3)
    shape = (SIMULATIONS // 4, CONFIGURATIONS, 5)
    base, new = _cells(rng, shape), _cells(rng, shape) / 1.1
    verdict = decide(base, new, np.zeros(shape[:2]), np.zeros(shape[:2])).verdict
    found = (verdict == SLOWER).any(axis=1).mean()
    print(f"\nevery configuration 10 % slower, 5 repetitions: the gate fails in {found:.1%}")
    assert found >= 0.9
    assert not (verdict == FASTER).any()


def test_welch_on_logs_agrees_with_scipy():
    rng = np.random.default_rng(4)
    base, new = np.exp(rng.normal(0, 0.1, 5)), np.exp(rng.normal(0.2, 0.3, 7))
    ratio, low, high, p, nb, nn = log_ratio_test(base, new, 0.9)
    expected = stats.ttest_ind(np.log(new), np.log(base), equal_var=False)
    assert p == pytest.approx(expected.pvalue, rel=1e-9)
    assert ratio == pytest.approx(stats.gmean(new) / stats.gmean(base))
    ci = expected.confidence_interval(0.9)
    assert (low, high) == pytest.approx((np.exp(ci.low), np.exp(ci.high)))
    assert (nb, nn) == (5, 7)
    padded = log_ratio_test(np.append(base, np.nan), np.append(new, [np.nan, np.nan]), 0.9)
    assert padded[3] == pytest.approx(p)  # NaN marks a missing repetition
    same = log_ratio_test([2.0, 2.0, 2.0], [2.0, 2.0, 2.0])
    assert same[0] == 1 and same[3] == 1
    one = log_ratio_test([2.0], [2.0, 3.0])
    assert np.isnan(one[3]) and np.isnan(one[1])


def test_holm_matches_its_definition():
    rng = np.random.default_rng(5)
    p = rng.uniform(0, 0.05, (200, 6))
    p[rng.random(p.shape) < 0.2] = np.nan
    adjusted = holm(p)
    for row, adj in zip(p, adjusted, strict=True):
        tested = ~np.isnan(row)
        m, order = tested.sum(), np.argsort(np.where(tested, row, np.inf))
        running = 0.0
        for rank, i in enumerate(order[:m]):
            running = max(running, min(1.0, (m - rank) * row[i]))
            assert adj[i] == pytest.approx(running)
        assert np.isnan(adj[~tested]).all()


def test_verdicts_never_call_more_errors_faster():
    ratio = np.array([1.3, 1.3, 0.7, 0.7, 1.3, 1.3, 1.0])
    p_holm = np.array([0.001, 0.001, 0.001, 0.001, np.nan, np.nan, 0.5])
    errors_up = np.array([False, True, False, True, True, False, True])
    assert list(verdicts(ratio, p_holm, errors_up)) == [
        FASTER, MORE_ERRORS, SLOWER, SLOWER, MORE_ERRORS, SAME, MORE_ERRORS]


def test_below_the_minimum_repetitions_nothing_is_tested():
    rng = np.random.default_rng(6)
    base = _cells(rng, (1, 3, MIN_REPETITIONS - 1))[0]
    new = base / 2  # halved throughput, yet too few repetitions to say so
    decision = decide(base, new, np.zeros(3), np.zeros(3))
    assert (decision.verdict == TOO_FEW).all()
    assert np.isnan(decision.p_holm).all() and np.isnan(decision.low).all()
    assert decision.ratio == pytest.approx(0.5)
    # one side short is enough; the other configurations are tested without it (m = 2)
    base = _cells(rng, (1, 3, 5))[0]
    base[0, MIN_REPETITIONS - 1:] = np.nan
    decision = decide(base, base / 2, np.zeros(3), np.zeros(3))
    assert list(decision.verdict) == [TOO_FEW, SLOWER, SLOWER]
    assert decision.level == pytest.approx(1 - 0.05 / 2)


# --- compare() on synthetic runs ------------------------------------------------------------

def synthetic_runs(plan, seed=0, requests=200, run_id="run") -> Runs:
    """Runs with, per configuration (backend, concurrency) → (throughputs per repetition,
    errors per repetition, latency factor): requests of 10 ms × factor (± 20 %)."""
    rng = np.random.default_rng(seed)
    cells, rows = [], []
    for (backend, concurrency), (throughputs, errors, factor) in plan.items():
        for rep, (rps, err) in enumerate(zip(throughputs, errors, strict=True)):
            key = dict(zip(CELL_KEYS, (run_id, "synth", backend, concurrency, rep, "inline",
                                       "default", "standard", "closed", None, 1, "/", "3.11"),
                                   strict=True))
            ok = requests - err
            makespan_ns = int(max(ok, 1) / rps * 1e9)
            latency_ns = (10e6 * factor * rng.uniform(0.8, 1.2, requests)).astype(np.int64)
            start_ns = np.sort(rng.integers(0, max(makespan_ns - latency_ns.max(), 1), requests))
            flags = np.arange(requests) >= err
            rows.append(pd.DataFrame({
                **key, "worker": "w0", "slot": "s0", "seq": np.arange(requests),
                "enqueued_ns": start_ns, "scheduled_ns": start_ns, "start_ns": start_ns,
                "end_ns": start_ns + latency_ns, "server_delay_ns": np.nan, "ok": flags,
                "status": np.where(flags, 200, 500), "error": np.where(flags, None, "http_status"),
                "in_flight": 1, "cpu_ns": np.nan, "cpu_wait_ns": np.nan, "io_ns": np.nan,
                "db_ns": np.nan, "error_detail": None, "phase": "measure"}))
            cells.append({**key, "requests": requests, "errors": err, "makespan_ns": makespan_ns,
                          "peak_in_flight": concurrency, "peak_in_flight_live": concurrency,
                          "peak_in_flight_server": np.nan, "interrupted": False,
                          "cpu_user_s": np.nan, "cpu_sys_s": np.nan, "loop_lag_p99_ns": np.nan,
                          "lost_updates": np.nan, "speedup": np.nan, "server_cpu_s": np.nan,
                          "released": requests, "slots_lost": 0, "complete": True,
                          "server_exit": None, "late_starts": 0, "generator_lagging": None})
    return Runs([], pd.concat(rows, ignore_index=True), pd.DataFrame(cells),
                pd.DataFrame(columns=[*CELL_KEYS, "t_ns"]), pd.DataFrame(), [])


def _noisy(rng, reps, rps=100.0):
    return rps * np.exp(rng.normal(0, SIGMA, reps))


def test_throughput_is_ok_requests_over_makespan():
    runs = synthetic_runs({("asyncio", 4): ([50.0], [40], 1.0)})
    row = summarize(runs).iloc[0]
    assert row["throughput_rps"] == pytest.approx(160 / row["makespan_s"])
    assert row["throughput_rps"] == pytest.approx(50.0, rel=1e-6)
    assert row["error_rate"] == pytest.approx(0.2)


def test_compare_finds_a_known_difference_and_only_that():
    """asyncio's NEW cells are its BASE cells ÷ 1.25 in another order: the ratio of geometric
    means is exactly 0.8. threads: two independent draws of the same distribution."""
    rng = np.random.default_rng(8)
    reps = 6
    asyncio = _noisy(rng, reps)
    base = synthetic_runs({("asyncio", 4): (asyncio, [0] * reps, 1.0),
                           ("threads", 4): (_noisy(rng, reps), [0] * reps, 1.0)}, seed=1)
    new = synthetic_runs({("asyncio", 4): (asyncio[::-1] / 1.25, [0] * reps, 1.25),
                          ("threads", 4): (_noisy(rng, reps), [0] * reps, 1.0)}, seed=2)
    table = compare(base, new).set_index("backend")
    slow, same = table.loc["asyncio"], table.loc["threads"]
    assert slow["verdict"] == SLOWER and same["verdict"] == SAME
    assert slow["throughput_ratio"] == pytest.approx(0.8, rel=1e-6)
    assert slow["throughput_lo"] < 0.8 < slow["throughput_hi"] < 1
    assert 1 < slow["p50_lo"] < 1.25 < slow["p50_hi"]
    assert same["throughput_lo"] < 1 < same["throughput_hi"]
    assert slow["p_holm"] == pytest.approx(min(1, 2 * slow["p_value"]))
    assert table["level"].iloc[0] == pytest.approx(1 - 0.05 / 2)
    assert (table[["reps_base", "reps_new"]] == reps).all().all()
    assert regressed(table.reset_index())


def test_compare_of_like_with_like_finds_nothing():
    rng = np.random.default_rng(9)
    plan = {(b, c): (_noisy(rng, 5), [0] * 5, 1.0)
            for b in ("asyncio", "threads") for c in (1, 4)}
    again = {k: (_noisy(rng, 5), [0] * 5, 1.0) for k in plan}
    table = compare(synthetic_runs(plan, seed=1), synthetic_runs(again, seed=2))
    assert len(table) == 4 and (table["verdict"] == SAME).all()
    assert (table["p_holm"] > 0.05).all() and not regressed(table)
    assert ((table["throughput_lo"] < 1) & (table["throughput_hi"] > 1)).all()


def test_a_build_that_fails_fast_is_never_faster():
    """NEW fails 20 % of its requests at once: completed ÷ makespan would be 43 % up, ok ÷
    makespan is 14 % up — and the higher error rate still withholds "faster"."""
    rng = np.random.default_rng(10)
    base = synthetic_runs({("asyncio", 4): (_noisy(rng, 5), [0] * 5, 1.0)}, seed=1)
    new = synthetic_runs({("asyncio", 4): (_noisy(rng, 5, 114.0), [40] * 5, 1.0)}, seed=2)
    row = compare(base, new).iloc[0]
    assert row["throughput_ratio"] == pytest.approx(1.14, rel=0.05)
    assert row["p_holm"] < 0.05 and row["verdict"] == MORE_ERRORS
    assert row["error_rate_new"] == pytest.approx(0.2) and row["error_rate_base"] == 0
    fewer = compare(new, base).iloc[0]  # the other way round it is slower, fewer errors
    assert fewer["verdict"] == SLOWER
    tolerated = synthetic_runs({("asyncio", 4): (_noisy(rng, 5, 130.0), [0] * 4 + [1], 1.0)})
    assert compare(base, tolerated).iloc[0]["verdict"] == FASTER  # 0.1 % more errors: tolerated


def test_a_build_that_fails_everything_is_never_faster():
    """No ok request: throughput 0, no logarithm, nothing to test — and fast failures must not
    read as speed."""
    rng = np.random.default_rng(11)
    base = synthetic_runs({("asyncio", 4): (_noisy(rng, 5), [0] * 5, 1.0)})
    broken = synthetic_runs({("asyncio", 4): (_noisy(rng, 5, 1000.0), [200] * 5, 1.0)})
    row = compare(base, broken).iloc[0]
    assert row["verdict"] == MORE_ERRORS and row["error_rate_new"] == 1
    assert row["throughput_ratio"] != row["throughput_ratio"]  # NaN: no ok request
    assert np.isnan(row["p_holm"]) and np.isnan(row["p50_ratio"])


def test_compare_between_backends_of_one_run():
    rng = np.random.default_rng(12)
    runs = synthetic_runs({("asyncio", 4): (_noisy(rng, 5), [0] * 5, 1.0),
                           ("threads", 4): (_noisy(rng, 5) / 1.3, [0] * 5, 1.3)})
    row = compare(runs, between=("asyncio", "threads")).iloc[0]
    assert (row["base"], row["new"], row["verdict"]) == ("asyncio", "threads", SLOWER)
    assert "backend" not in row.index


# --- the CLI --------------------------------------------------------------------------------

@pytest.fixture
def cli_with(cli, monkeypatch):
    """The CLI in this process, with `load_runs` handing out synthetic runs by path."""
    from harness.analysis import summary as analysis

    def call(runs: dict, *args):
        monkeypatch.setattr(analysis, "load_runs", lambda paths: runs[str(paths[0])])
        return cli("compare", *args)

    return call


def _pair(reps: int, slowdown: float):
    rng = np.random.default_rng(reps)
    return {"a": synthetic_runs({("asyncio", 4): (_noisy(rng, reps), [0] * reps, 1.0)}),
            "b": synthetic_runs({("asyncio", 4): (_noisy(rng, reps) / slowdown, [0] * reps,
                                                  slowdown)})}


def test_cli_fails_on_a_regression_in_every_format(cli_with):
    runs = _pair(5, 1.5)
    for fmt in ("table", "markdown", "json"):
        result = cli_with(runs, "a", "b", "--format", fmt, "--fail-on-regression")
        assert result.returncode == 1, result.stderr
        assert "slower" in result.stdout
    rows = json.loads(cli_with(runs, "a", "b", "--format", "json").stdout)
    assert rows[0]["verdict"] == SLOWER and rows[0]["p_holm"] < 0.05
    assert cli_with(runs, "a", "b").returncode == 0  # without the flag: 0 whatever the verdict
    faster = cli_with(runs, "b", "a", "--fail-on-regression")
    assert faster.returncode == 0 and "faster" in faster.stdout
    markdown = cli_with(runs, "a", "b", "--format", "markdown").stdout
    assert markdown.startswith("| scenario |") and "Holm" in markdown


def test_cli_says_too_few_repetitions_and_exits_0_even_with_fail_on_regression(cli_with):
    runs = _pair(MIN_REPETITIONS - 1, 2.0)  # halved throughput, too few repetitions
    for fmt in ("table", "markdown"):
        result = cli_with(runs, "a", "b", "--format", fmt, "--fail-on-regression")
        assert result.returncode == 0, result.stderr
        assert "too few repetitions" in result.stdout
    result = cli_with(runs, "a", "b", "--format", "json", "--fail-on-regression")
    assert result.returncode == 0 and "too few repetitions" in result.stderr
    assert json.loads(result.stdout)[0]["verdict"] == TOO_FEW
