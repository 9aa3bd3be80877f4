"""The knee search (harness/saturate.py) on fake probes with a known knee."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harness.saturate.search import (
    ProbeResult,
    SearchOptions,
    describe,
    exit_code,
    parse_slo,
    probe_scenario_text,
    result_rows,
    results_json,
    saturate,
    search_knee,
)
from harness.scenario.loader import parse_scenario
from harness.scenario.model import plan_cells

KNEE = 730.0
SLO = parse_slo("p99 < 50ms")


class FakeCell:
    """A system whose p99 is 50 ms at KNEE and climbs steeply past it, with ±1 % noise;
    optionally an error rate and a lagging generator past rates of their own."""

    def __init__(self, knee=KNEE, seed=0, errors_from=math.inf, lags_from=math.inf,
                 noise=0.01):
        self.knee, self.noise = knee, noise
        self.errors_from, self.lags_from = errors_from, lags_from
        self.rng = np.random.default_rng(seed)
        self.calls: list[tuple[str, str | None, float]] = []

    def __call__(self, backend: str, client: str | None, rate: float) -> ProbeResult:
        self.calls.append((backend, client, rate))
        p99 = 50.0 * (rate / self.knee) ** 4 * math.exp(self.rng.normal(0, self.noise))
        return ProbeResult(p99_ms=p99, error_rate=0.05 if rate > self.errors_from else 0.0,
                           lagging=rate > self.lags_from, achieved_rps=rate,
                           metrics={"p50_ms": p99 / 3})


def test_finds_the_knee_within_the_precision():
    options = SearchOptions(start_rate_per_s=100, precision=0.05, repeats=0, confirm=0)
    for seed in range(5):
        result = search_knee(FakeCell(seed=seed), "asyncio", None, [SLO], options)
        assert result.status == "found"
        assert KNEE * (1 - 0.05) <= result.max_rate_per_s <= KNEE * 1.005
        low, high = result.range_per_s
        assert low == result.max_rate_per_s and (high - low) / low <= 0.05
        assert high >= KNEE * 0.995
        assert result.p99_ms < 50


def test_doubles_then_bisects():
    probe = FakeCell(noise=0)
    result = search_knee(probe, "threads", None, [SLO],
                         SearchOptions(start_rate_per_s=100, precision=0.05, repeats=0,
                                       confirm=0))
    rates = [step.rate_per_s for step in result.steps]
    assert rates[:4] == [100, 200, 400, 800]
    assert [s.phase for s in result.steps[:4]] == ["start", "double", "double", "double"]
    assert rates[4:] == [600, 700, 750, 725]  # bisection of [400, 800] down to 3.4 %
    assert result.max_rate_per_s == 725 and result.range_per_s == (725, 750)
    confirmed = search_knee(FakeCell(noise=0), "threads", None, [SLO],
                            SearchOptions(start_rate_per_s=100, precision=0.05, repeats=0))
    assert [(s.rate_per_s, s.phase) for s in confirmed.steps][3:] == [
        (800, "double"), (800, "confirm"), (600, "bisect"), (700, "bisect"), (750, "bisect"),
        (750, "confirm"), (725, "bisect")]  # each failure tried once more (confirm=1)
    assert confirmed.max_rate_per_s == 725


def test_finer_precision_costs_more_probes_and_lands_closer():
    coarse = search_knee(FakeCell(noise=0), "threads", None, [SLO],
                         SearchOptions(start_rate_per_s=100, precision=0.1, repeats=0))
    fine = search_knee(FakeCell(noise=0), "threads", None, [SLO],
                       SearchOptions(start_rate_per_s=100, precision=0.005, repeats=0))
    assert len(fine.steps) > len(coarse.steps)
    assert KNEE - fine.max_rate_per_s < KNEE - coarse.max_rate_per_s
    assert KNEE * 0.995 <= fine.max_rate_per_s <= KNEE


def test_failing_at_the_start_rate_is_reported_and_exits_1():
    probe = FakeCell(knee=50)
    results = saturate(probe, ["threads", "asyncio"], [SLO],
                       options=SearchOptions(start_rate_per_s=100))
    assert [r.status for r in results] == ["fails_at_start"] * 2
    assert all(r.max_rate_per_s is None and len(r.steps) == 2 for r in results)
    assert [s.phase for s in results[0].steps] == ["start", "confirm"]  # tried again first
    assert "p99 < 50ms failed" in results[0].reason
    assert exit_code(results) == 1
    document = json.loads(json.dumps(results_json(results), allow_nan=False))  # NaN → null
    assert document["results"][0]["max_rate_per_s"] is None
    assert document["results"][0]["p99_ms"] is None
    assert document["results"][0]["status"] == "fails_at_start"
    found = search_knee(FakeCell(), "uvloop", None, [SLO], SearchOptions(start_rate_per_s=100))
    assert exit_code([found]) == 0 and exit_code([found, *results]) == 1  # one is enough
    assert "fails at the start rate" in describe(results[0])


def test_a_failure_that_does_not_repeat_does_not_stop_the_search():
    """A stall of a shared machine fails one probe: tried again, the rate passes and the
    search goes on above it; without the confirmation it would end at the start rate, or cap
    the doubling far below the knee."""
    script = {100: "-+", 200: "+", 400: "-+", 800: "--", 600: "+", 700: "--", 650: "+",
              675: "+"}
    options = SearchOptions(start_rate_per_s=100, repeats=0, precision=0.05)
    result = search_knee(Scripted(script), "uvloop", None, [SLO], options)
    assert [(s.rate_per_s, s.phase, s.passed) for s in result.steps] == [
        (100, "start", False), (100, "confirm", True), (200, "double", True),
        (400, "double", False), (400, "confirm", True), (800, "double", False),
        (800, "confirm", False), (600, "bisect", True), (700, "bisect", False),
        (700, "confirm", False), (650, "bisect", True), (675, "bisect", True)]
    assert result.status == "found" and result.max_rate_per_s == 675
    assert result.range_per_s == (675, 700)
    strict = search_knee(Scripted(script), "uvloop", None, [SLO],
                         SearchOptions(start_rate_per_s=100, repeats=0, confirm=0))
    assert strict.status == "fails_at_start" and len(strict.steps) == 1


def test_the_error_rate_bounds_the_knee():
    probe = FakeCell(errors_from=500, noise=0)
    result = search_knee(probe, "threads", None, [SLO],
                         SearchOptions(start_rate_per_s=100, repeats=0))
    assert 500 * 0.95 <= result.max_rate_per_s <= 500
    assert any("error rate 5.00% > 1.00%" in (s.failed or "") for s in result.steps)
    lenient = search_knee(FakeCell(errors_from=500, noise=0), "threads", None, [SLO],
                          SearchOptions(start_rate_per_s=100, repeats=0, max_error_rate=0.1))
    assert lenient.max_rate_per_s > 700  # 5 % errors pass under a 10 % budget


def test_a_lagging_generator_bounds_the_knee():
    result = search_knee(FakeCell(lags_from=300, noise=0), "threads", None, [SLO],
                         SearchOptions(start_rate_per_s=100, repeats=0))
    assert 300 * 0.95 <= result.max_rate_per_s <= 300
    assert any("lagged" in (s.failed or "") for s in result.steps)


def test_repeats_give_a_range_that_widens_on_a_noisy_knee():
    steady = search_knee(FakeCell(seed=1, noise=0.001), "threads", None, [SLO],
                         SearchOptions(start_rate_per_s=100, repeats=3))
    repeats = [s for s in steady.steps if s.phase == "repeat"]
    assert len(repeats) == 6  # 3 at each end of the final step
    low, high = steady.range_per_s
    assert low == steady.max_rate_per_s and high is not None and (high - low) / low <= 0.05
    noisy = search_knee(FakeCell(seed=1, noise=0.3), "threads", None, [SLO],
                        SearchOptions(start_rate_per_s=100, precision=0.02, repeats=5))
    low, high = noisy.range_per_s
    assert low is not None and high is not None
    assert (high - low) / low > 0.05  # the spread of the p99 shows as an honest range
    assert low <= noisy.max_rate_per_s < high


class Scripted:
    """Pass or fail by a script per rate, in turn (the last verdict repeats)."""

    def __init__(self, script: dict[float, str]):
        self.script = {rate: list(verdicts) for rate, verdicts in script.items()}

    def __call__(self, backend, client, rate):
        verdicts = self.script[rate]
        passed = (verdicts.pop(0) if len(verdicts) > 1 else verdicts[0]) == "+"
        return ProbeResult(p99_ms=10.0 if passed else 100.0, error_rate=0.0, lagging=False)


def test_the_range_runs_from_always_passed_to_always_failed():
    script = {100: "+", 200: "+", 400: "+", 800: "-", 600: "+", 700: "-", 650: "++-",
              675: "--+-"}  # 650 and 675 flaky in their repeats
    options = SearchOptions(start_rate_per_s=100, precision=0.05, repeats=2)
    result = search_knee(Scripted(script), "threads", None, [SLO], options)
    assert [s.rate_per_s for s in result.steps][-4:] == [650, 675, 650, 675]
    assert result.max_rate_per_s == 650  # passed 2 of 3
    assert result.range_per_s == (600, 700)  # 650 and 675 went both ways
    script[650] = "+--"  # passed 1 of 3: the answer falls back to what always passed
    result = search_knee(Scripted(script), "threads", None, [SLO], options)
    assert result.max_rate_per_s == 600 and result.range_per_s == (600, 700)
    assert result.p99_ms == 10.0


def test_a_system_that_never_fails_stops_at_the_ceiling():
    result = search_knee(FakeCell(knee=1e9), "threads", None, [SLO],
                         SearchOptions(start_rate_per_s=100, max_rate_per_s=1000, repeats=1))
    assert result.status == "ceiling" and result.max_rate_per_s == 1000
    assert result.range_per_s == (1000, None)
    assert [s.rate_per_s for s in result.steps] == [100, 200, 400, 800, 1000, 1000]
    assert exit_code([result]) == 0


def test_every_backend_and_client_is_searched_and_reported():
    probe = FakeCell(noise=0)
    seen = []
    results = saturate(probe, ["threads", "asyncio"], [SLO], clients=["aiohttp", "lean"],
                       options=SearchOptions(start_rate_per_s=100, repeats=0),
                       progress=seen.append)
    assert [(r.backend, r.client) for r in results] == [
        ("threads", "aiohttp"), ("threads", "lean"), ("asyncio", "aiohttp"), ("asyncio", "lean")]
    assert len(seen) == len(probe.calls) == sum(len(r.steps) for r in results)
    assert {c[:2] for c in probe.calls} == {(r.backend, r.client) for r in results}
    assert exit_code(results) == 0
    rows = result_rows(results)
    assert list(rows[0])[:4] == ["backend", "client", "max_rate_per_s", "p99_ms"]
    document = json.loads(json.dumps(results_json(results), allow_nan=False))
    assert document["results"][0]["max_rate_per_s"] == 725
    assert document["results"][0]["range_per_s"] == [725, 750]


def test_an_slo_for_one_backend_applies_to_it_alone():
    strict = parse_slo("asyncio: p99 < 5ms")
    results = saturate(FakeCell(noise=0), ["threads", "asyncio"], [SLO, strict],
                       options=SearchOptions(start_rate_per_s=100, repeats=0))
    assert results[0].max_rate_per_s == 725
    knee = KNEE * (5 / 50) ** 0.25  # where the fake's p99 reaches 5 ms: 410/s
    assert knee * 0.95 <= results[1].max_rate_per_s <= knee


def test_slos_on_other_metrics_read_the_probes_figures():
    median = parse_slo("p50_ms < 10")  # p50 = p99 / 3 in the fake: 10 ms at 0.67 × KNEE
    result = search_knee(FakeCell(noise=0), "threads", None, [median],
                         SearchOptions(start_rate_per_s=100, repeats=0))
    knee = KNEE * (10 * 3 / 50) ** 0.25
    assert knee * 0.95 <= result.max_rate_per_s <= knee
    unknown = search_knee(FakeCell(noise=0), "threads", None, [parse_slo("max_ms < 10")],
                          SearchOptions(start_rate_per_s=100, repeats=0))
    assert unknown.status == "fails_at_start"  # a figure the probe does not give fails


@pytest.mark.parametrize(("text", "metric", "op", "value"), [
    ("p99 < 50ms", "p99_ms", "<", 50.0), ("p50<=2s", "p50_ms", "<=", 2000.0),
    ("p999 < 250us", "p999_ms", "<", 0.25), ("p99_ms < 50", "p99_ms", "<", 50.0),
    ("error_rate <= 0.001", "error_rate", "<=", 0.001), ("max < 1m", "max_ms", "<", 60_000.0),
])
def test_slo_grammar(text, metric, op, value):
    slo = parse_slo(text)
    assert (slo.metric, slo.op, slo.value) == (metric, op, value)


@pytest.mark.parametrize(("text", "message"), [
    ("p99 < 50", "needs a unit, like 'p99 < 50ms'"),
    ("p99 < soon", "must be a duration like"),
    ("p98 < 50ms", "must look like 'p99 < 50ms' or 'p99_ms < 50'"),
    ("fast", "must look like"),
    ("p99_ms == 50", "an SLO is a bound"),
    ("latency_ms < 5", "unknown metric 'latency_ms'"),
    ("trio: p99 < 5ms", "backend 'trio'"),
])
def test_bad_slos(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_slo(text)


@pytest.mark.parametrize(("options", "message"), [
    ({"start_rate_per_s": 0}, "--start-rate: must be > 0"),
    ({"precision": 0}, "--precision"), ({"precision": 1.5}, "--precision"),
    ({"max_error_rate": -0.1}, "--max-error-rate"), ({"repeats": -1}, "--final-probes"),
    ({"confirm": 11}, "--confirm: must be an integer from 0 to 10"),
    ({"start_rate_per_s": 100, "max_rate_per_s": 10}, "--max-rate"),
])
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        SearchOptions(**options)


def test_a_probe_scenario_is_one_open_block_at_the_rate():
    text = """\
name: t
server:
  endpoints:
    api: {latency: 10ms}
workload: {endpoint: api}
load:
  - {requests: 50, concurrency: [1, 2], workers: 3}
  - {stages: [{rate: 10/s, duration: 5s}], arrivals: poisson, max_in_flight: 40, warmup: 2s}
repeat: 5
"""
    probe = parse_scenario(probe_scenario_text(text, 733.59375, 3_000_000_000))
    load = probe.load
    assert (load.model, load.rate, load.duration, load.stages) == (
        "open", (733.59375,), 3_000_000_000, None)
    assert (load.arrivals, load.max_in_flight, load.warmup.duration) == (
        "poisson", 40, 2_000_000_000)
    assert probe.repeat == 1 and len(plan_cells(probe)) == 4
    closed = parse_scenario(probe_scenario_text(text.replace(
        "  - {stages: [{rate: 10/s, duration: 5s}], arrivals: poisson, max_in_flight: 40, "
        "warmup: 2s}\n", ""), 100.0, 1_000_000_000))
    assert closed.load.rate == (100.0,) and closed.load.workers == 3
    assert closed.load.concurrency is None


def test_a_failed_probe_cell_fails_the_probe_whatever_its_figures():
    from harness.saturate.search import failure

    clean = ProbeResult(p99_ms=1.0, error_rate=0.0, lagging=False)
    assert failure(clean, [SLO], "threads", 0.01) is None
    broken = ProbeResult(p99_ms=1.0, error_rate=0.0, lagging=False, problem="server_died")
    assert failure(broken, [SLO], "threads", 0.01) == "the probe's cell failed: server_died"


def test_a_probe_reads_its_verdict_from_the_cells_summary_row():
    """The real probe's glue (harness.knee): p99, error rate, the lagging flag and every figure
    for other SLOs come from analysis.summarize's row of the probe's one cell."""
    from harness.analysis.summary import summarize
    from harness.saturate.probes import probe_result
    from tests import synthetic

    ms = 1_000_000
    scheduled = np.arange(200, dtype=np.int64) * 5 * ms
    start = scheduled + np.where(np.arange(200) % 10 == 0, 8 * ms, 0)
    cell = synthetic.from_times(scheduled, start, start + 3 * ms, model="open", rate_per_s=200.0,
                                ok=np.arange(200) % 50 != 0, generator_lagging=True)
    row = summarize(synthetic.runs(cell)).iloc[0]
    result = probe_result(row)
    assert result.p99_ms == row["p99_ms"] and result.error_rate == pytest.approx(0.02)
    assert result.lagging and result.problem is None
    assert result.value("sched_lag_p99_ms") == pytest.approx(8.0)
    assert result.value("service_p99_ms") == pytest.approx(3.0)
    assert result.achieved_rps == row["achieved_rps"]
    assert not probe_result(row.copy().replace({"lagging": ""})).lagging
    assert probe_result(row, ["cell tiny asyncio failed: killed"]).problem.startswith("cell")
    died = summarize(synthetic.runs(synthetic.from_times(scheduled, start, start + 3 * ms,
                                                         model="open", rate_per_s=200.0,
                                                         server_exit=-9))).iloc[0]
    assert probe_result(died).problem == "server_died"


def test_a_probe_scenario_is_one_cell_per_backend():
    from harness.saturate.probes import default_start_rate
    from harness.scenario.model import LoadedScenario

    text = """\
name: t
server:
  endpoints:
    api: {latency: 10ms}
workload: {endpoint: api, client: [standard, lean]}
strategies: [inline, thread_pool]
load: {rate: [50/s, 20/s], duration: 5s}
"""
    probe = parse_scenario(probe_scenario_text(text, 100.0, 1_000_000_000, client="lean"))
    assert probe.clients() == ("lean",) and probe.strategies == ("inline",)
    assert len(plan_cells(probe, backends=("asyncio",))) == 1
    assert default_start_rate(LoadedScenario("t.yaml", text, parse_scenario(text))) == 20.0
    closed = text.replace("load: {rate: [50/s, 20/s], duration: 5s}",
                          "load: {requests: 5, concurrency: 2}")
    assert default_start_rate(LoadedScenario("t.yaml", closed, parse_scenario(closed))) == 10.0
