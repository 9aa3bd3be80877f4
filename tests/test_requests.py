"""Requests as real services need them, on every backend and client: method, headers, body,
byte counts; an external target behind the loopback guard."""

import pytest

from harness.mock.process import ServerProcess
from harness.run.runner import run_scenarios
from harness.scenario.loader import parse_scenario
from harness.scenario.model import LoadedScenario
from harness.store.reader import read_run
from tests.conftest import BACKENDS, harness

MOCK = """name: {name}
server:
  seed: 3
  endpoints:
    api: {{latency: {{dist: uniform, min: 2ms, max: 6ms}}, size: 300}}
workload:
  endpoint: api
  method: {method}
  headers: {{X-Tenant: blue}}
  body: {body}
  client: [standard, lean]
load: {{requests: 24, concurrency: 3}}
"""


def run(tmp_path, text, **kwargs):
    out = tmp_path / "out"
    run_scenarios([LoadedScenario("r.yaml", text, parse_scenario(text))], out=out, **kwargs)
    tables = read_run(out)
    return tables["requests"].to_pandas(), tables["cells"].to_pandas()


@pytest.fixture(scope="module")
def posts(tmp_path_factory):
    return run(tmp_path_factory.mktemp("post"), MOCK.format(name="post", method="POST",
                                                             body="1KiB"))


@pytest.mark.parametrize("client", ["standard", "lean"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_post_with_a_body_on_every_backend_and_client(posts, backend, client):
    rows, cells = posts
    mine = rows[(rows.backend == backend) & (rows.client == client)]
    assert len(mine) == 24 and mine.ok.all(), mine.error.value_counts()
    assert (mine.bytes_sent == 1024).all() and (mine.bytes_received == 300).all()
    latency = parse_scenario(MOCK.format(name="x", method="GET", body=0)).server \
        .endpoints["api"].latency
    targets = [latency.sample_ns(3, seq) for seq in mine.sort_values("seq").seq]
    assert mine.sort_values("seq").server_delay_target_ns.tolist() == targets
    cell = cells[(cells.backend == backend) & (cells.client == client)]
    assert len(cell) == 1 and cell.released.iloc[0] == 24


def test_the_client_is_an_axis_of_the_matrix(posts):
    _, cells = posts
    assert sorted(cells.client.value_counts().items()) == [("lean", 4), ("standard", 4)]


@pytest.mark.parametrize("backend", ["threads", "uvloop"])
def test_head_has_no_body(tmp_path, backend):
    text = MOCK.format(name="head", method="HEAD", body=0).replace(
        "load: {requests: 24", f"backends: [{backend}]\nload: {{requests: 24")
    rows, _ = run(tmp_path, text)
    assert rows.ok.all() and (rows.bytes_received == 0).all() and len(rows) == 48


TARGET = """name: ext
target: {url}
workload: {{path: /api, client: [standard, lean]}}
load: {{requests: 12, concurrency: 2}}
backends: [threads, uvloop]
"""


def test_an_external_loopback_target(tmp_path):
    mock = ("name: m\nserver:\n  endpoints:\n    api: {latency: 1ms, size: 10}\n"
            "workload: {endpoint: api}\nload: {requests: 1, concurrency: 1}\n")
    with ServerProcess(mock) as server:
        rows, cells = run(tmp_path, TARGET.format(url=server.url))
    assert len(rows) == 48 and rows.ok.all()
    assert rows.server_delay_ns.isna().all() and rows.server_delay_target_ns.isna().all()
    assert (rows.bytes_received == 10).all()
    assert cells.peak_in_flight_server.isna().all()


def test_a_remote_target_is_refused_without_allow_remote(write_scenario, tmp_path):
    path = write_scenario(TARGET.format(url="http://10.20.30.40:8080"))
    result = harness("run", path, "--out", tmp_path / "out")
    assert result.returncode == 2
    line = result.stderr.strip()
    assert line == (f"error: {path}: target: 10.20.30.40 is not a loopback address; pass "
                    "--allow-remote to load a remote service")
    assert not (tmp_path / "out").exists()
    named = write_scenario(TARGET.format(url="http://example.com"), "named.yaml")
    assert "--allow-remote" in harness("run", named).stderr  # a name counts as remote


@pytest.mark.parametrize("url, problem", [
    ("https://127.0.0.1:8443/api", "target: must be scheme, host and port only"),
    ("http://127.0.0.1:8080/api", "target: must be scheme, host and port only"),
    ("ftp://127.0.0.1", "target: must look like http://127.0.0.1:8080"),
])
def test_bad_targets(write_scenario, url, problem):
    result = harness("validate", write_scenario(TARGET.format(url=url)))
    assert result.returncode == 2 and problem in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_target_and_server_rules():
    base = "workload: {path: /x}\nload: {requests: 1, concurrency: 1}\n"
    with pytest.raises(Exception, match="service: required by workload.path"):
        parse_scenario("name: a\nserver: {endpoints: {api: {}}}\n"
                       "workload: {endpoint: api, path: /x}\nload: {requests: 1, concurrency: 1}\n")
    with pytest.raises(Exception, match="target: the cpu workload needs the mock server"):
        parse_scenario("name: a\ntarget: http://127.0.0.1:1\nworkload: {type: cpu}\n"
                       "load: {requests: 1, concurrency: 1}\n")
    assert parse_scenario("name: a\ntarget: http://[::1]:8080\n" + base).target

