"""Arrival schedules (harness/arrivals.py), late starts, and the open model's scenario keys."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from harness.core.errors import ScenarioError
from harness.core.keys import AXIS_DEFAULTS, CELL_KEYS, NULLABLE_KEYS, CellKey, key_label
from harness.core.stats import (
    LATE_NS,
    achieved_per_s,
    inter_arrival_cv,
    late,
    late_starts,
    percentile,
)
from harness.core.units import format_rate, parse_rate_per_s
from harness.scenario.arrivals import CHUNK, Ramp, RateCurve, Schedule, arrival_seed, schedule_for
from harness.scenario.load import Load, default_max_in_flight
from harness.scenario.loader import parse_scenario
from harness.scenario.model import json_schema, plan_cells
from harness.scenario.thresholds import METRICS, evaluate, parse_threshold

S = 1_000_000_000



def mean_rate_per_s(curve: RateCurve, duration_ns: float | None = None) -> float:
    """Λ(T) ÷ T over [0, T): T the duration, default the curve's end."""
    end = curve.end_ns if duration_ns is None else min(duration_ns, curve.end_ns)
    if end == math.inf:
        return float(curve.rate_at(0))
    return float(curve.count(end)) / (end / 1e9)


def measured_ns(arrivals) -> np.ndarray:
    """The intended starts of the measured arrivals (the warm-up left out)."""
    return arrivals.at_ns[~arrivals.warmup]

def open_key(rate=1000.0, repetition=0, backend="threads", concurrency=100, **more) -> CellKey:
    return CellKey(backend=backend, concurrency=concurrency, repetition=repetition,
                   model="open", rate_per_s=rate, **more)


def seconds(times_ns, edges_s) -> np.ndarray:
    return np.histogram(times_ns, bins=np.asarray(edges_s, dtype=np.float64) * S)[0]


# ---- constant rates --------------------------------------------------------------------------


def test_uniform_spacing_is_exact():
    times = Schedule(RateCurve.constant(200), requests=1000).take().at_ns
    assert times[0] == 0
    assert set(np.diff(times).tolist()) == {5_000_000}


def test_uniform_spacing_does_not_drift_when_the_period_is_not_whole_ns():
    times = Schedule(RateCurve.constant(3), requests=100_000).take().at_ns
    assert set(np.diff(times).tolist()) == {333_333_333, 333_333_334}
    k = np.arange(100_000)
    assert np.array_equal(times, np.rint(k * S / 3).astype(np.int64))


@pytest.mark.parametrize("arrivals", ["uniform", "poisson"])
@pytest.mark.parametrize("repetition", [0, 1, 2])
def test_rate_achieved_within_1_percent_over_10_seconds(arrivals, repetition):
    rate = 5000.0  # Poisson: the count's sd over 10 s is 0.45 % of it
    schedule = Schedule(RateCurve.constant(rate), arrivals,
                        entropy=arrival_seed(1, open_key(rate, repetition)), duration_ns=10 * S)
    times = schedule.take().at_ns
    assert times.max() < 10 * S
    assert abs(len(times) / (rate * 10) - 1) <= 0.01
    if arrivals == "uniform":
        assert len(times) == 50_000


def test_poisson_inter_arrival_times_have_cv_1_and_mean_1_over_rate():
    # Seeded, so deterministic: measured CV 0.9966, mean gap 996 µs (target 1 ms).
    times = Schedule(RateCurve.constant(1000), "poisson", entropy=arrival_seed(1, open_key()),
                     requests=10_000).take().at_ns
    gaps = np.diff(times)
    cv = gaps.std() / gaps.mean()
    assert 0.95 <= cv <= 1.05, cv
    assert abs(gaps.mean() / 1e6 - 1) < 0.02
    # exponential, not merely CV 1: the share of gaps under the mean is 1 − 1/e
    assert abs((gaps < 1e6).mean() - (1 - math.exp(-1))) < 0.015


def test_inter_arrival_cv_as_bench_pacing_reads_it():
    poisson = Schedule(RateCurve.constant(1000), "poisson", entropy=arrival_seed(1, open_key()),
                       requests=10_000).take().at_ns
    assert inter_arrival_cv(poisson) == pytest.approx(0.9966, abs=1e-4)
    assert inter_arrival_cv(poisson[::-1]) == inter_arrival_cv(poisson)  # in time order
    assert inter_arrival_cv(Schedule(RateCurve.constant(100), requests=50).take().at_ns) == 0
    bursts = np.repeat(np.arange(100) * 10_000_000, 10)  # ten at once every 10 ms
    assert inter_arrival_cv(bursts) == pytest.approx(3.0, rel=0.01)
    assert math.isnan(inter_arrival_cv([1, 2]))


def test_poisson_arrivals_are_pinned_for_a_seed_and_key():
    """The stream is part of the results' meaning: a change to the hash or the sampler shows."""
    times = Schedule(RateCurve.constant(1000), "poisson", entropy=arrival_seed(1, open_key()),
                     requests=3).take().at_ns
    assert times.tolist() == [108366, 2298253, 2305263]


# ---- ramps and stages ------------------------------------------------------------------------


def test_uniform_ramp_each_second_within_5_percent_of_the_line():
    curve = RateCurve.ramps([Ramp(500, 10 * S)], start_rate_per_s=100)
    times = Schedule(curve).take().at_ns
    assert len(times) == 3000  # ∫ = (100 + 500) / 2 × 10 s
    for offset in (0.0, 0.5):  # whole seconds, and seconds straddling them
        edges = np.arange(0, 10 - offset + 1e-9) + offset
        counts = seconds(times, edges)
        line = np.diff(curve.count(edges * S))
        assert np.all(np.abs(counts - line) / line <= 0.05), (counts, line)
        assert np.all(np.abs(counts - line) <= 1)  # in fact within one arrival


def test_poisson_ramp_rescales_to_unit_exponentials():
    """Time-rescaling: Λ(t_k) − Λ(t_k−1) of a non-homogeneous Poisson process are Exp(1)."""
    curve = RateCurve.ramps([Ramp(500, 10 * S), Ramp(2000, 10 * S)], start_rate_per_s=100)
    times = Schedule(curve, "poisson", entropy=arrival_seed(3, open_key(2000.0))).take().at_ns
    assert abs(len(times) / curve.total - 1) < 0.03
    rescaled = np.diff(curve.count(times))
    assert abs(rescaled.mean() - 1) < 0.03
    assert 0.95 <= rescaled.std() / rescaled.mean() <= 1.05
    # and the arrivals follow the ramp: the last 5 s hold far more than the first 5 s
    assert seconds(times, [15, 20])[0] > 5 * seconds(times, [0, 5])[0]


def test_stages_chain_each_from_the_previous_rate():
    stages = [Ramp(100, 10 * S), Ramp(500, 10 * S), Ramp(500, 5 * S), Ramp(0, 5 * S)]
    curve = RateCurve.ramps(stages)
    assert curve.total == 500 + 3000 + 2500 + 1250
    assert curve.rate_at([0, 5 * S, 10 * S, 15 * S, 22 * S, 27.5 * S, 30 * S]).tolist() == [
        0, 50, 100, 300, 500, 250, 0]
    times = Schedule(curve).take().at_ns
    assert len(times) == 7250 and times.max() < 30 * S
    per_stage = seconds(times, [0, 10, 20, 25, 30])
    assert per_stage.tolist() == [500, 3000, 2500, 1250]
    assert np.all(np.diff(times) >= 0)


def test_a_stretch_at_rate_0_has_no_arrivals():
    curve = RateCurve.ramps([Ramp(0, 5 * S), Ramp(100, 5 * S)])  # from 0, stay at 0, ramp up
    times = Schedule(curve).take().at_ns
    assert times.min() == 5 * S and len(times) == 250


def test_inverse_of_the_cumulative_count():
    curve = RateCurve.ramps([Ramp(400, 2 * S), Ramp(100, 3 * S)], start_rate_per_s=200)
    counts = np.linspace(0, curve.total - 1e-6, 1001)
    assert np.allclose(curve.count(curve.time_ns(counts)), counts, atol=1e-6)
    assert curve.time_ns([curve.total]).tolist() == [math.inf]


def test_mean_rates_of_curves():
    ramp = RateCurve.ramps([Ramp(500, 10 * S)], start_rate_per_s=100)
    assert mean_rate_per_s(ramp) == 300 and mean_rate_per_s(ramp, 5 * S) == 200
    assert ramp.peak_rate_per_s == 500
    assert mean_rate_per_s(RateCurve.constant(200)) == 200
    assert mean_rate_per_s(RateCurve.constant(200), 3 * S) == pytest.approx(200)


# ---- bounds ----------------------------------------------------------------------------------


def test_bounded_by_requests_or_duration_whichever_comes_first():
    curve = RateCurve.constant(10)
    assert len(Schedule(curve, requests=50, duration_ns=60 * S).take()) == 50
    times = Schedule(curve, requests=1000, duration_ns=2 * S).take().at_ns
    assert len(times) == 20 and times.max() < 2 * S
    poisson = Schedule(curve, "poisson", entropy=7, requests=10**6, duration_ns=2 * S).take()
    assert poisson.at_ns.max() < 2 * S
    stages = RateCurve.ramps([Ramp(100, 10 * S)])
    assert len(Schedule(stages, requests=30).take()) == 30  # requests cap a ramp too
    assert len(Schedule(stages).take()) == 500  # the last stage's end bounds it


def test_lazy_iteration_matches_the_array_and_needs_no_bound():
    schedule = Schedule(RateCurve.constant(1000), "poisson", entropy=11,
                        requests=3 * CHUNK + 5, warmup_requests=CHUNK + 1)
    pulled = list(schedule)
    taken = schedule.take()
    assert [a.at_ns for a in pulled] == taken.at_ns.tolist()
    assert [a.warmup for a in pulled] == taken.warmup.tolist()
    endless = Schedule(RateCurve.constant(1000))
    first = [a.at_ns for a in itertools.islice(endless, 10)]
    assert first == endless.take(10).at_ns.tolist() == list(range(0, 10_000_000, 1_000_000))
    with pytest.raises(ValueError, match="unbounded"):
        endless.take()


# ---- seeds -----------------------------------------------------------------------------------


def poisson_for(seed: int, key: CellKey, n: int = 100) -> list[int]:
    return Schedule(RateCurve.constant(key.rate_per_s), "poisson",
                    entropy=arrival_seed(seed, key), requests=n).take().at_ns.tolist()


def test_same_seed_and_keys_give_the_same_schedule_on_every_backend():
    base = poisson_for(1, open_key())
    assert poisson_for(1, open_key()) == base
    for other in (open_key(backend="asyncio", concurrency=1000),
                  open_key(backend="processes", concurrency=4, strategy="thread_pool"),
                  open_key(variant="lock")):
        assert poisson_for(1, other) == base


def test_other_keys_or_seed_give_another_schedule():
    base = poisson_for(1, open_key())
    assert poisson_for(2, open_key()) != base
    assert poisson_for(1, open_key(repetition=1)) != base
    assert poisson_for(1, open_key(rate=1000.5))[:5] != base[:5]


def test_the_seed_is_a_stable_hash_not_pythons():
    key = open_key()
    assert arrival_seed(1, key) == arrival_seed(1, {"model": "open", "rate_per_s": 1000.0,
                                                     "repetition": 0})
    assert arrival_seed(1, key) == 79389227927923946497970407529626597195


# ---- warm-up ---------------------------------------------------------------------------------


def test_warmup_count_is_prepended_and_counted_apart():
    curve = RateCurve.constant(100)
    plain = Schedule(curve, requests=50).take()
    warm = Schedule(curve, requests=50, warmup_requests=20).take()
    assert warm.warmup.tolist() == [True] * 20 + [False] * 50
    assert warm.at_ns[:20].tolist() == list(range(0, 200_000_000, 10_000_000))
    assert np.array_equal(measured_ns(warm), plain.at_ns + 200_000_000)  # seamless spacing


def test_warmup_duration_shifts_the_measured_schedule_unchanged():
    curve = RateCurve.constant(500)
    plain = Schedule(curve, "poisson", entropy=5, duration_ns=3 * S).take()
    warm = Schedule(curve, "poisson", entropy=5, duration_ns=3 * S, warmup_ns=2 * S).take()
    warmup = warm.at_ns[warm.warmup]
    assert warmup.max() < 2 * S and abs(len(warmup) / 1000 - 1) < 0.1
    assert not warm.warmup[len(warmup):].any()  # warm-up first, then only measured
    assert np.array_equal(measured_ns(warm), plain.at_ns + 2 * S)


def test_warmup_of_a_ramp_runs_at_its_first_stage_rate():
    curve = RateCurve.ramps([Ramp(200, 10 * S), Ramp(400, 10 * S)], start_rate_per_s=50)
    warm = Schedule(curve, warmup_ns=1 * S, warmup_rate_per_s=200).take()
    assert warm.warmup.sum() == 200
    assert measured_ns(warm).min() == 1 * S and len(measured_ns(warm)) == round(curve.total)


def test_warmup_is_left_out_of_the_late_start_figures():
    scheduled = np.arange(10) * 10_000_000
    start = scheduled.copy()
    start[:3] += 50_000_000  # the warm-up started late
    warmup = np.arange(10) < 3
    assert late_starts(start, scheduled).late == 3
    measured = late_starts(start, scheduled, warmup)
    assert measured.requests == 7 and measured.late == 0 and measured.lag_p99_ns == 0


# ---- late starts -----------------------------------------------------------------------------


def test_late_means_more_than_1ms_after_the_intended_time():
    scheduled = np.array([0, 0, 0, 0, 5])
    start = np.array([0, LATE_NS, LATE_NS + 1, -3, 5 + 2 * LATE_NS])
    assert late(start, scheduled).tolist() == [False, False, True, False, True]
    assert late(start, scheduled, tolerance_ns=3 * LATE_NS).tolist() == [False] * 5


def test_late_start_count_and_their_p99():
    rng = np.random.default_rng(0)
    scheduled = np.arange(1000) * 1_000_000
    lag = np.where(rng.random(1000) < 0.1, rng.integers(2, 50, 1000) * LATE_NS,
                   rng.integers(0, LATE_NS, 1000))
    stats = late_starts(scheduled + lag, scheduled)
    is_late = lag > LATE_NS
    assert stats.requests == 1000 and stats.late == int(is_late.sum()) > 50
    assert stats.late_p99_ns == percentile(lag[is_late], 99)
    assert stats.lag_p99_ns == percentile(lag, 99)
    assert stats.lagging(5 * LATE_NS) and not stats.lagging(60 * LATE_NS)
    on_time = late_starts(scheduled, scheduled)
    assert on_time.late == 0 and math.isnan(on_time.late_p99_ns) and on_time.lag_p99_ns == 0


def test_achieved_and_target_rates():
    scheduled = np.arange(101) * 10_000_000  # 100/s
    assert achieved_per_s(scheduled) == pytest.approx(100)
    start = scheduled * 2  # the generator kept half the pace
    assert achieved_per_s(start) == pytest.approx(50)
    warmup = np.arange(101) < 51
    assert achieved_per_s(start, warmup) == pytest.approx(50)
    assert math.isnan(achieved_per_s([5]))


# ---- rates as written ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "rate"), [
    ("200/s", 200.0), ("12/m", 0.2), ("5/h", 5 / 3600), ("2.5 / s", 2.5), (40, 40.0),
    (0.5, 0.5), ("0/s", 0.0),
])
def test_rates(text, rate):
    assert parse_rate_per_s(text) == pytest.approx(rate, rel=1e-12)


@pytest.mark.parametrize("bad", ["fast", "200", "200/", "/s", "200/y", "200/s/s", "-5/s", -5,
                                 True, None, "1e3/s", float("inf"), "9" * 400 + "/s"])
def test_bad_rates(bad):
    with pytest.raises(ValueError):
        parse_rate_per_s(bad)


def test_rates_display_in_a_unit_that_reads():
    assert [format_rate(r) for r in (200, 0.2, 5 / 3600, 1 / 7200)] == [
        "200/s", "12/m", "5/h", "0.5/h"]


# ---- the open model in scenarios -------------------------------------------------------------

BASE = """\
name: t
server:
  seed: 9
  endpoints:
    api: {latency: 10ms}
workload: {endpoint: api}
"""


def scenario(load: str, extra: str = ""):
    return parse_scenario(BASE + load + "\n" + extra, "x.yaml")


INVALID = [
    ("load: {requests: 5, rate: 200/s, concurrency: 2}",
     "load: concurrency is for the closed model; with rate or stages, max_in_flight"),
    ("load: {requests: 5, rate: fast}",
     "load.rate: must be a rate like 200/s, 12/m or 5/h (got 'fast')"),
    ("load: {requests: 5, rate: [10/s, 10/x]}", "load.rate[1]: must be a rate like 200/s"),
    ("load: {requests: 5, rate: 0}", "load.rate: must be at least 1/h (got 0)"),
    ("load: {requests: 5, rate: -3}", "load.rate: must not be negative (got -3)"),
    ("load: {requests: 5, rate: 2000000/s}", "load.rate: must be <= 1000000/s"),
    ("load: {requests: 5, rate: [10/s, 600/m]}", "load: rates repeat (got ['10/s', '10/s'])"),
    ("load: {rate: 10/s}", "load: needs requests or duration"),
    ("load: {requests: 1000000, rate: 1/h}",
     "load: 1000000 requests at 1/h take more than 24h: add a duration"),
    ("load: {stages: [{rate: 10/s}]}", "load.stages[0].duration: required"),
    ("load: {stages: [{duration: 10s}]}", "load.stages[0].rate: required"),
    ("load: {stages: [{rate: 10/s, duration: 0}]}", "load.stages[0].duration: must be > 0"),
    ("load: {stages: []}", "load.stages: must not be empty"),
    ("load: {stages: [{rate: 0, duration: 10s}]}", "load.stages: every rate is 0"),
    ("load: {stages: [{rate: 1/s, duration: 20h}, {rate: 1/s, duration: 5h}]}",
     "load.stages: last more than 24h in all"),
    ("load: {stages: [{rate: 10/s, duration: 1s}], duration: 10s}",
     "load: duration does not go with stages"),
    ("load: {stages: [{rate: 10/s, duration: 1s}], rate: 5/s}", "load: rate or stages, not both"),
    ("load: {requests: 5, rate: 5/s, start_rate: 1/s}", "load: start_rate is where stages ramp"),
    ("load: {requests: 5, concurrency: 2, max_in_flight: 3}",
     "load: max_in_flight is for the open model"),
    ("load: {requests: 5, concurrency: 2, arrivals: poisson}",
     "load: arrivals is for the open model"),
    ("load: {requests: 5, rate: 5/s, arrivals: gauss}",
     "load.arrivals: must be 'uniform' or 'poisson' (got 'gauss')"),
    ("load: {requests: 5}", "load: needs concurrency (closed model), or rate or stages"),
    ("load: {requests: 5, model: open}", "load: the open model needs rate or stages"),
    ("load: {requests: 5, model: closed, rate: 5/s}",
     "load: rate and stages make the open model"),
    ("load: {requests: 5, rate: 5/s, warmup: 2.5}",
     "load.warmup: must be a request count (an integer) or a duration like 5s (got 2.5)"),
    ("load: {requests: 5, rate: 5/s, warmup: -1}", "load.warmup: must not be negative (got -1)"),
    ("load: {requests: 5, rate: 5/s, warmup: soon}", "load.warmup: must be a duration like"),
    ("load: {requests: 5, rate: 5/s, warmup: 48h}", "load.warmup: must be <= 24h (got '48h')"),
    ("load: {requests: 5, rate: 5/s, warmup: {requests: 3, duration: 1s}}",
     "load.warmup: a request count or a duration, not both"),
    ("load: {requests: 5, rate: 5/s, max_sched_lag: 0}", "load.max_sched_lag: must be > 0"),
    ("load: {requests: 5, rate: 5/s, max_in_flight: 0}", "load.max_in_flight: must be >= 1"),
    ("load: [{requests: 5, concurrency: 2}, {requests: 5, concurrency: [3, 2]}]",
     "load[1]: plans the same cells as load[0] (concurrency 2 on threads)"),
    ("load: [{requests: 5, rate: 5/s}, {duration: 9s, rate: 5/s, max_in_flight: 100}]",
     "load[1]: plans the same cells as load[0] (rate 5/s with max_in_flight 100 on threads)"),
    ("load: [{requests: 5, concurrency: 2}, {requests: 5, rate: [5/s, 0]}]",
     "load[1].rate[1]: must be at least 1/h (got 0)"),
    ("load: [{requests: 5, concurrency: 2}, {requests: 5, rate: 1/s, bogus: 1}]",
     "load[1].bogus: unknown key"),
    ("load: []", "load: must not be empty"),
    ("load: [1]", "load[0]: must be a mapping (got 1)"),
    ("load: {requests: 5, concurrency: 2}\nexpect: [sched_lag_p99_ms < 5]",
     "expect[0]: sched_lag_p99_ms is an open-model figure and no load block has rate or stages"),
]


@pytest.mark.parametrize(("load", "message"), INVALID)
def test_invalid_open_loads_give_one_line(load, message):
    with pytest.raises(ScenarioError) as info:
        scenario(load)
    line = str(info.value)
    assert line.startswith("x.yaml: ") and "\n" not in line
    assert message in line
    assert "(+" not in line  # one problem, not a union's echo


def test_closed_scenarios_read_as_before():
    s = scenario("load: {requests: 5, concurrency: [1, 4], workers: 2}")
    assert isinstance(s.load, Load) and s.loads == (s.load,)
    assert s.load.model == "closed" and s.load.concurrency == (1, 4)
    assert s.load.rate is None and not s.load.warmup
    keys = plan_cells(s)
    assert {(k.model, k.rate_per_s) for k in keys} == {("closed", None)}
    assert keys[0] == CellKey(backend="threads", concurrency=1, repetition=0, path="/api")


def test_open_load_fields_and_defaults():
    s = scenario("load: {duration: 30s, rate: [100/s, 12/m], arrivals: poisson, warmup: 5s, "
                 "max_sched_lag: 2ms, max_in_flight: 64}")
    load = s.load
    assert load.model == "open" and load.rate == (100.0, 0.2) and load.arrivals == "poisson"
    assert load.warmup.duration == 5 * S and load.warmup.requests == 0
    assert load.max_sched_lag == 2_000_000 and load.max_in_flight == 64
    assert scenario("load: {requests: 5, rate: 5/s, warmup: 300}").load.warmup.requests == 300
    defaults = scenario("load: {requests: 5, rate: 5/s}").load
    assert defaults.arrivals == "uniform" and defaults.max_sched_lag == 5_000_000
    assert not defaults.warmup and defaults.max_in_flight is None
    ramp = scenario("load: {stages: [{rate: 100/s, duration: 10s}, {rate: 50/s, duration: 5s}], "
                    "start_rate: 20/s}").load
    assert ramp.stages[1].rate == 50 and ramp.stages[1].duration == 5 * S
    assert ramp.start_rate == 20 and ramp.rates_per_s() == (100.0,)


def test_max_in_flight_defaults_per_backend():
    assert default_max_in_flight("threads") == 100
    assert default_max_in_flight("asyncio") == default_max_in_flight("uvloop") == 1000
    assert default_max_in_flight("processes", cores=2) == 4
    assert default_max_in_flight("processes", cores=8) == 16


def test_a_list_of_load_blocks_plans_each_into_its_cells():
    s = scenario("""load:
  - {requests: 5, concurrency: [1, 2]}
  - {duration: 10s, rate: [100/s, 200/s], arrivals: poisson}
  - {stages: [{rate: 300/s, duration: 5s}], max_in_flight: 7}
backends: [threads, processes, asyncio]
repeat: 2""")
    keys = plan_cells(s, cores=2)
    assert len(keys) == 2 * (2 + 2 + 1) * 3
    rep0 = [(k.backend, k.model, k.concurrency, k.rate_per_s) for k in keys if k.repetition == 0]
    assert rep0 == [
        ("threads", "closed", 1, None), ("processes", "closed", 1, None),
        ("asyncio", "closed", 1, None), ("threads", "closed", 2, None),
        ("processes", "closed", 2, None), ("asyncio", "closed", 2, None),
        ("threads", "open", 100, 100.0), ("processes", "open", 4, 100.0),
        ("asyncio", "open", 1000, 100.0), ("threads", "open", 100, 200.0),
        ("processes", "open", 4, 200.0), ("asyncio", "open", 1000, 200.0),
        ("threads", "open", 7, 300.0), ("processes", "open", 7, 300.0),
        ("asyncio", "open", 7, 300.0),
    ]
    assert keys[len(rep0)].repetition == 1
    blocks = s.loads
    for key in keys:
        block = s.load_for(key)
        assert block is blocks[0 if key.model == "closed" else 1 if key.concurrency != 7 else 2]
    assert len(set(keys)) == len(keys)


def test_blocks_at_one_rate_are_told_apart_by_max_in_flight():
    s = scenario("load: [{requests: 5, rate: 5/s, max_in_flight: 10},"
                 " {requests: 9, rate: 5/s, max_in_flight: 20}]")
    for key in plan_cells(s):
        assert s.load_for(key).max_in_flight == key.concurrency
    with pytest.raises(KeyError):
        s.load_for(open_key(5.0, concurrency=30))


def test_schedule_for_a_planned_cell():
    s = scenario("load: {requests: 40, rate: [100/s, 200/s], warmup: 10}", "seed: 4")
    assert s.arrival_seed == 4
    keys = [k for k in plan_cells(s) if k.backend == "threads"]
    first = schedule_for(s.load_for(keys[0]), s.arrival_seed, keys[0]).take()
    assert first.warmup.sum() == 10 and len(measured_ns(first)) == 40
    assert np.diff(first.at_ns).tolist() == [10_000_000] * 49
    second = schedule_for(s.load_for(keys[1]), s.arrival_seed, keys[1]).take()
    assert np.diff(second.at_ns).tolist() == [5_000_000] * 49
    short = scenario("load: {requests: 1000, duration: 1s, rate: 100/s}")
    key = plan_cells(short)[0]
    assert len(schedule_for(short.load, 1, key).take()) == 100  # the duration comes first
    ramp = scenario("load: {stages: [{rate: 100/s, duration: 2s}], arrivals: poisson}")
    assert ramp.arrival_seed == 9  # the server's seed when the scenario has none of its own
    key = plan_cells(ramp)[0]
    times = schedule_for(ramp.load, ramp.arrival_seed, key).take().at_ns
    assert times.max() < 2 * S and 60 < len(times) < 140
    closed = scenario("load: {requests: 5, concurrency: 2}")
    with pytest.raises(ValueError, match="closed"):
        schedule_for(closed.load, 1, plan_cells(closed)[0])


def test_the_scenario_schema_describes_the_open_model():
    load = json_schema()["$defs"]["Load"]["properties"]
    assert {"rate", "arrivals", "stages", "start_rate", "max_in_flight", "warmup",
            "max_sched_lag"} <= set(load)
    assert load["warmup"]["default"] == 0 and load["max_sched_lag"]["default"] == "5.0ms"


# ---- keys and thresholds ---------------------------------------------------------------------


def test_model_and_rate_are_key_columns_with_defaults():
    assert CELL_KEYS[-5:] == ["model", "rate_per_s", "generators", "path", "python"]
    assert AXIS_DEFAULTS["model"] == "closed" and AXIS_DEFAULTS["rate_per_s"] is None
    assert NULLABLE_KEYS == {"rate_per_s", "path", "python"}
    key = CellKey(backend="asyncio", concurrency=10, repetition=0)
    assert (key.model, key.rate_per_s) == ("closed", None)
    assert key_label(key) == "asyncio c=10 r=0"
    assert key_label(open_key(200.0)) == "threads c=100 r=0 open 200/s"


def test_open_model_threshold_metrics():
    for metric in ("service_p50_ms", "service_p99_ms", "sched_lag_p99_ms", "late_starts",
                   "achieved_rps", "target_rps"):
        assert metric in METRICS
        assert parse_threshold(f"{metric} < 1", ("threads",)).metric == metric
    summary = pd.DataFrame([
        {"scenario": "t", "backend": "threads", "strategy": "inline", "variant": "default",
         "concurrency": 2, "repetition": 0, "model": "closed", "late_starts": np.nan,
         "p99_ms": 5.0},
        {"scenario": "t", "backend": "threads", "strategy": "inline", "variant": "default",
         "concurrency": 100, "repetition": 0, "model": "open", "late_starts": 3.0,
         "p99_ms": 5.0},
    ])
    scenario = parse_scenario(
        "name: t\nworkload: {type: fake}\nbackends: [threads]\n"
        "load: [{rate: 10/s, requests: 5}, {concurrency: 2, requests: 5}]\n"
        "expect: [late_starts <= 1]\n")
    rows = evaluate(summary, {"t": scenario})
    status = dict(zip(rows["concurrency"], rows["status"], strict=True))
    assert status == {2: "not applicable", 100: "failed"}  # never a pass on a closed cell
