"""The mock server's latency distributions, checked statistically with generous tolerances."""

import math
import statistics

import pytest

from harness.scenario.loader import parse_scenario

N = 4000


def dist(spec: str):
    text = f"""
name: t
server: {{endpoints: {{api: {{latency: {spec}}}}}}}
workload: {{endpoint: api}}
load: {{requests: 1, concurrency: 1}}
"""
    return parse_scenario(text).server.endpoints["api"].latency


def samples(d, seed=1):
    return [d.sample_ns(seed, seq) / 1e6 for seq in range(N)]  # ms


def test_fixed():
    assert set(samples(dist("25ms"))) == {25.0}


def test_uniform_range_mean_and_spread():
    xs = samples(dist("{dist: uniform, min: 100ms, max: 500ms}"))
    assert min(xs) >= 100 and max(xs) <= 500
    assert statistics.fmean(xs) == pytest.approx(300, abs=6)  # σ/√N ≈ 1.8 ms
    assert statistics.pstdev(xs) == pytest.approx(400 / math.sqrt(12), rel=0.05)
    assert sum(x < 200 for x in xs) / N == pytest.approx(0.25, abs=0.03)


def test_exponential_mean_and_median():
    xs = samples(dist("{dist: exponential, mean: 50ms}"))
    assert statistics.fmean(xs) == pytest.approx(50, rel=0.06)
    assert statistics.median(xs) == pytest.approx(50 * math.log(2), rel=0.08)


def test_exponential_cap():
    xs = samples(dist("{dist: exponential, mean: 50ms, max: 60ms}"))
    assert max(xs) == 60


def test_lognormal_median_and_mean():
    d = dist("{dist: lognormal, median: 20ms, sigma: 0.5}")
    xs = samples(d)
    assert statistics.median(xs) == pytest.approx(20, rel=0.05)
    assert statistics.fmean(xs) == pytest.approx(d.mean_ns / 1e6, rel=0.05)


def test_delay_is_a_function_of_seed_and_seq_only():
    d = dist("{dist: uniform, min: 1ms, max: 100ms}")
    forward = [d.sample_ns(3, seq) for seq in range(100)]
    backward = [d.sample_ns(3, seq) for seq in reversed(range(100))][::-1]
    assert forward == backward
    assert forward != [d.sample_ns(4, seq) for seq in range(100)]
