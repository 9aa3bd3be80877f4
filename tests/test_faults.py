"""Faults, stalls and crash_after as scenarios write them, and the seeded choice of a fault
(harness.faults): deterministic, apart from the delays, shares honoured."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.errors import ScenarioError
from harness.scenario.faults import draw, fault_for, scheduled_fault
from harness.scenario.loader import parse_scenario

ROOT = Path(__file__).resolve().parent.parent
BASE = """\
name: t
server:
  seed: 7
  endpoints:
    api: {latency: {dist: uniform, min: 1ms, max: 9ms}, faults: FAULTS}
    other: {latency: 1ms, faults: FAULTS}
workload: {endpoint: api}
load: {requests: 5, concurrency: 2}
"""
MIX = "[{share: 10%, status: 503}, {share: 0.02, reset: true}, {share: 0.25, hang: true}, " \
      "{share: 0, truncate: true}, {share: 0.05, trickle: 2KiB/s}, {share: 0.08, delay: 2s}]"


def server(faults: str = MIX, extra: str = ""):
    text = BASE.replace("FAULTS", faults).replace("workload:", extra + "workload:")
    return parse_scenario(text).server


def effects(config, name="api", n=10_000):
    return [scheduled_fault(config, name, seq) for seq in range(n)]


def test_the_keys_as_written():
    faults = server().endpoints["api"].faults
    assert [f.effect for f in faults] == ["status", "reset", "hang", "truncate", "trickle",
                                          "delay"]
    assert [f.share for f in faults] == [0.1, 0.02, 0.25, 0.0, 0.05, 0.08]
    assert faults[0].status == 503 and faults[0].size is None
    assert faults[4].trickle == 2048 and faults[5].delay == 2_000_000_000
    with_size = server("[{share: 1, status: 429, size: 1KiB}]").endpoints["api"].faults[0]
    assert (with_size.status, with_size.size, with_size.share) == (429, 1024, 1.0)


def test_the_choice_is_a_pure_function_of_seed_endpoint_and_seq():
    first = effects(server())
    assert first == effects(server())  # a fresh parse: nothing cached, nothing random
    assert first != effects(server(), name="other")  # each endpoint draws apart
    assert first != effects(server(extra="").model_copy(update={"seed": 8}))
    # The same in another process (no PYTHONHASHSEED or per-process state in the draw).
    code = ("from harness.scenario.faults import draw; "
            "print(repr([draw(7, 'api', s) for s in range(5)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "123", "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == repr([draw(7, "api", s) for s in range(5)])


def test_shares_are_honoured_over_10000_seqs():
    n, counts = 10_000, {}
    for effect in effects(server(), n=n):
        counts[effect] = counts.get(effect, 0) + 1
    expected = {"status": 0.1, "reset": 0.02, "hang": 0.25, "trickle": 0.05, "delay": 0.08}
    assert "truncate" not in counts  # a share of 0 never happens
    for effect, share in expected.items():
        sigma = math.sqrt(n * share * (1 - share))
        assert abs(counts[effect] - n * share) < 4 * sigma, (effect, counts)
    assert abs(counts[None] - n * 0.5) < 4 * math.sqrt(n * 0.25)


def test_all_or_nothing():
    assert set(effects(server("[{share: 1, reset: true}]"), n=500)) == {"reset"}
    assert set(effects(server("[]"), n=500)) == {None}
    assert fault_for(server("[]").endpoints["api"], 7, 3, name="api") is None


def test_adding_faults_moves_no_fault_of_the_others_and_no_delay():
    """Faults take slices of the draw in order; the delays are another stream entirely."""
    one = server("[{share: 0.1, status: 503}]")
    two = server("[{share: 0.1, status: 503}, {share: 0.2, hang: true}]")
    a, b = effects(one, n=2000), effects(two, n=2000)
    assert [s for s, e in enumerate(a) if e] == [s for s, e in enumerate(b) if e == "status"]
    latency = one.endpoints["api"].latency
    assert latency == two.endpoints["api"].latency == server("[]").endpoints["api"].latency
    delays = [latency.sample_ns(7, seq) for seq in range(50)]
    for seq in range(2000):  # drawing faults consumes nothing of the delay stream
        fault_for(two.endpoints["api"], 7, seq, name="api")
    assert [latency.sample_ns(7, seq) for seq in range(50)] == delays


def test_draws_are_uniform_in_the_unit_interval():
    values = [draw(1, "api", seq) for seq in range(20_000)]
    assert 0 <= min(values) and max(values) < 1
    assert abs(sum(values) / len(values) - 0.5) < 0.01


@pytest.mark.parametrize("faults, message", [
    ("[{share: 0.1, status: 503, reset: true}]",
     "faults[0]: needs exactly one effect of status, reset, hang, trickle, truncate, delay "
     "(got status, reset)"),
    ("[{share: 0.1}]", "faults[0]: needs exactly one effect"),
    ("[{share: 1.5, status: 503}]",
     "faults[0].share: must be a fraction in [0, 1] or a percentage like 2% (got 1.5)"),
    ("[{share: 150%, status: 503}]", "faults[0].share: must be at most 100% (got '150%')"),
    ("[{share: -0.1, status: 503}]", "faults[0].share: must be a fraction"),
    ("[{share: 0.6, status: 503}, {share: 50%, hang: true}]",
     "faults: the shares add up to 1.1, more than 1"),
    ("[{share: 0.1, status: 200}]", "faults[0].status: must be a 4xx or 5xx status (got 200)"),
    ("[{share: 0.1, trickle: 0}]", "faults[0].trickle: must be a rate above 0"),
    ("[{share: 0.1, trickle: fast}]", "faults[0].trickle: must be a rate like 2KiB/s"),
    ("[{share: 0.1, reset: false}]", "faults[0].reset: must be true"),
    ("[{share: 0.1, size: 10, hang: true}]", "faults[0]: size goes only with status"),
    ("[{share: 0.1, delay: 0}]", "faults[0].delay: must be > 0 (got 0)"),
    ("[{share: 0.1, delay: 2h}]", "faults[0].delay: must be <= 1h"),
    ("[{share: 0.1, crash: true}]", "faults[0].crash: unknown key"),
])
def test_bad_faults_are_refused_naming_the_field(faults, message):
    with pytest.raises(ScenarioError) as info:
        server(faults)
    assert "server.endpoints.api." + message in str(info.value)


def test_shares_that_add_up_to_exactly_one_are_fine():
    config = server("[{share: 0.1, status: 500}, {share: 0.2, reset: true}, "
                    "{share: 0.7, hang: true}]")
    assert None not in set(effects(config, n=2000))


def test_truncate_needs_a_body():
    text = BASE.replace("FAULTS", "[]").replace("other: {latency: 1ms,",
                                                "other: {latency: 1ms, size: 0,")
    parse_scenario(text)
    with pytest.raises(ScenarioError, match="other.faults: truncate needs a body"):
        parse_scenario(text.replace("other: {latency: 1ms, size: 0, faults: []",
                                    "other: {latency: 1ms, size: 0, faults: "
                                    "[{share: 0.1, truncate: true}]"))


STALLS = "  stalls: [{at: 5s, for: 500ms}, {every: 2s, for: 200ms}, {every: 1s, at: 0, for: 1ms}]\n"


def test_stalls_and_crash_after_as_written():
    config = server("[]", STALLS + "  crash_after: 5000 requests\n")
    once, periodic, from_zero = config.stalls
    assert (once.at, once.length) == (5 * 10**9, 5 * 10**8)
    assert config.crash_after.requests == 5000 and config.crash_after.duration is None
    assert server("[]", "  crash_after: 1m30s\n").crash_after.duration == 90 * 10**9
    assert server("[]", "  stalls: {at: 1s, for: 1s}\n").stalls[0].at == 10**9  # one, unlisted
    ms = 1_000_000
    assert once.end_ns(4999 * ms) is None and once.end_ns(5000 * ms) == 5500 * ms
    assert once.end_ns(5499 * ms) == 5500 * ms and once.end_ns(5500 * ms) is None
    assert periodic.end_ns(1999 * ms) is None  # the first one a period in
    assert periodic.end_ns(2100 * ms) == 2200 * ms and periodic.end_ns(2200 * ms) is None
    assert periodic.end_ns(8150 * ms) == 8200 * ms and periodic.end_ns(9000 * ms) is None
    assert from_zero.end_ns(0) == ms and from_zero.end_ns(3 * 10**9) == 3001 * ms


@pytest.mark.parametrize("extra, message", [
    ("  stalls: [{every: 1s, for: 1s}]\n", "server.stalls[0]: for must be shorter than every"),
    ("  stalls: [{for: 1s}]\n", "server.stalls[0]: needs at (once) or every (periodic)"),
    ("  stalls: [{at: 1s}]\n", "server.stalls[0].for: required"),
    ("  stalls: [{at: 1s, for: 0}]\n", "server.stalls[0].for: must be > 0 (got 0)"),
    ("  stalls: [{at: 48h, for: 1s}]\n", "server.stalls[0].at: must be <= 24h (got '48h')"),
    ("  crash_after: 5000 reqs\n", "server.crash_after: must be a duration (30s) or a count of "
                                   "requests (5000 requests) (got '5000 reqs')"),
    ("  crash_after: 0 requests\n", "server.crash_after.requests: must be >= 1 (got 0)"),
    ("  crash_after: 0\n", "server.crash_after.duration: must be > 0 (got 0)"),
    ("  crash_after: {requests: 3, duration: 1s}\n",
     "server.crash_after: needs either a duration or a count of requests"),
])
def test_bad_stalls_and_crashes_are_refused(extra, message):
    with pytest.raises(ScenarioError) as info:
        server("[]", extra)
    assert message in str(info.value)


@pytest.mark.parametrize("name", ["_harness", "_harness_stats", "_harnessy"])
def test_endpoint_names_of_the_harness_own_routes_are_refused(name):
    text = BASE.replace("FAULTS", "[]").replace("other:", f"{name}:")
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml")
    assert str(info.value) == (f"s.yaml: server.endpoints: endpoint '{name}': names starting "
                               "with _harness are the harness's own routes")
