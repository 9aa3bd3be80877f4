import pytest

from harness.core.errors import ScenarioError
from harness.core.units import parse_duration_ns, parse_size_bytes
from harness.scenario.loader import load_scenario, parse_scenario
from harness.scenario.model import plan_cells

BASE = """\
name: t
server:
  endpoints:
    api: {latency: 10ms}
workload: {endpoint: api}
load: {requests: 5, concurrency: 2}
"""


def with_(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new)


INVALID = [
    (with_("concurrency: 2", "concurrency: 0"), "load.concurrency: must be >= 1 (got 0)"),
    (with_("concurrency: 2", "concurrency: [1, 0]"), "load.concurrency[1]: must be >= 1 (got 0)"),
    (with_("concurrency: 2", "concurrency: [2, 2]"), "load: concurrency levels repeat"),
    (with_("concurrency: 2", "concurrency: two"), "load.concurrency: must be an integer"),
    (with_("requests: 5, ", ""), "load: needs requests or duration"),
    (with_("requests: 5", "requests: 5, ramp: 10"), "load.ramp: unknown key"),
    (with_("requests: 5", "requests: 5, duration: soon"),
     "load.duration: must be a duration like 250ms, 30s or 1m30s (got 'soon')"),
    (with_("name: t", "name: 'bad name'"), "name: must be letters, digits"),
    (with_("latency: 10ms", "latency: {dist: gauss}"),
     "server.endpoints.api.latency: must be one of 'fixed', 'uniform', 'exponential', "
     "'lognormal' (got 'gauss')"),
    (with_("latency: 10ms", "latency: {dist: uniform, min: 1s}"),
     "server.endpoints.api.latency.max: required"),
    (with_("latency: 10ms", "latency: {dist: uniform, min: 1s, max: 10ms}"),
     "server.endpoints.api.latency: max must be >= min (got min=1.00s, max=10.0ms)"),
    (with_("latency: 10ms", "latency: {dist: lognormal, median: 10ms, sigma: 0}"),
     "server.endpoints.api.latency.sigma: must be > 0"),
    (with_("latency: 10ms", "latency: 10ms, status: 700"),
     "server.endpoints.api.status: must be <= 599 (got 700)"),
    (with_("latency: 10ms", "latency: 10ms, size: huge"),
     "server.endpoints.api.size: must be a size like 512, 4KiB or 1MB (got 'huge')"),
    (with_("endpoint: api", "endpoint: nope"),
     "workload.endpoint: no endpoint 'nope' (known: api)"),
    (with_("endpoint: api", "endpoint: api, type: grpc"),
     "workload: must be one of 'io', 'http', 'cpu', 'cpu_release', 'race', 'pipeline', 'fake' "
     "(got 'grpc')"),
    (with_("endpoint: api", "endpoint: api, ok_status: [2xx, 99]"),
     "workload.ok_status: must be status codes (100-599) or classes like 2xx (got 99)"),
    (with_("endpoint: api", "endpoint: api, timeout: {total: 0}"),
     "workload.timeout.total: must be > 0 (got 0)"),
    (BASE + "backends: [threads, trio]\n",
     "backends: unknown backend 'trio' (known: threads, processes, asyncio, uvloop)"),
    (BASE + "repeat: 0\n", "repeat: must be >= 1 (got 0)"),
    (BASE + "name: again\n", "line 7: duplicate key 'name'"),
    (BASE + "load: [\n", "line 8:"),
    ("- just a list\n", "must be a YAML mapping"),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid_scenarios_give_one_line_naming_file_and_field(text, message):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "scenarios/x.yaml")
    line = str(info.value)
    assert line.startswith("scenarios/x.yaml: ")
    assert message in line
    assert "\n" not in line


def test_missing_file_is_a_scenario_error(tmp_path):
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario(tmp_path / "absent.yaml")


def test_defaults_and_human_units():
    s = parse_scenario(BASE)
    assert s.backends == ("threads", "processes", "asyncio", "uvloop")
    assert s.load.workers is None and s.load.generators == (1,) and s.repeat == 1
    assert s.workload.timeout.connect == 2_000_000_000
    assert 200 in s.workload.ok_status and 299 in s.workload.ok_status
    assert 404 not in s.workload.ok_status
    assert s.server.endpoints["api"].latency.value == 10_000_000


def test_models_are_immutable():
    s = parse_scenario(BASE)
    with pytest.raises(ValueError):
        s.load.workers = 3


@pytest.mark.parametrize(("text", "ns"), [
    ("30s", 30 * 10**9), ("1m30s", 90 * 10**9), ("250ms", 250 * 10**6), ("1.5s", 1_500_000_000),
    ("100us", 100_000), (2, 2 * 10**9), (0.25, 250 * 10**6),
])
def test_durations(text, ns):
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize("bad", ["", "10", "s", "10x", "1m-3s", True, None, -1])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration_ns(bad)


def test_sizes():
    assert parse_size_bytes("4KiB") == 4096
    assert parse_size_bytes("1MB") == 1_000_000
    assert parse_size_bytes(512) == 512


def test_cells_are_interleaved_across_backends_and_levels():
    s = parse_scenario(with_("concurrency: 2", "concurrency: [1, 4]") + "repeat: 2\n"
                       + "backends: [asyncio, threads]\n")
    cells = [(c.repetition, c.concurrency, c.backend) for c in plan_cells(s)]
    assert cells[:4] == [(0, 1, "asyncio"), (0, 1, "threads"), (0, 4, "asyncio"),
                         (0, 4, "threads")]
    assert len(cells) == 8 and cells[4][0] == 1
