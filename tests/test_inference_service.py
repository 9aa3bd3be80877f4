"""The inference service as the system under test: endpoints with `cpu` do the
pipeline's pre-processing in the mock server — inline (blocking its loop), in a thread pool or in
a process pool — and the server reports its own event-loop lag."""

from __future__ import annotations

import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.analysis.summary import load_runs, summarize
from harness.core.errors import ScenarioError
from harness.core.keys import CellKey, key_dict
from harness.core.schema import CELLS_SCHEMA
from harness.mock import cpu as mock_cpu
from harness.mock.aiohttp_engine import LAG_INTERVAL_NS, LagSamples
from harness.mock.process import STOP_WAIT_S, ServerProcess
from harness.scenario.loader import parse_scenario
from harness.store.writer import CellRows
from tests.conftest import harness

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
MS = 1_000_000
CPU_MS = 60
MODES = ("inline", "thread_pool", "process_pool")
SERVICE = f"""\
name: service
server:
  endpoints:
    inline: {{cpu: {CPU_MS}ms}}
    thread_pool: {{cpu: {CPU_MS}ms, offload: thread_pool, pool_size: 1}}
    process_pool: {{cpu: {CPU_MS}ms, offload: process_pool, pool_size: 1}}
    plain: {{latency: 1ms}}
workload: {{endpoint: inline}}
load: {{requests: 5, concurrency: 2}}
"""


def get(url: str) -> bytes:
    with OPENER.open(url, timeout=30) as response:
        return response.read()


@pytest.fixture(scope="module")
def service():
    with ServerProcess(SERVICE) as server:
        yield server


def load(server: ServerProcess, endpoint: str, requests: int, clients: int = 2) -> dict:
    """`requests` calls from `clients` threads, the server's clock (and loop-lag samples)
    restarted just before; the server's stats after, with its CPU time spent meanwhile."""
    before = server.stats()["cpu_s"]
    server.set_t0(time.monotonic_ns())
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda seq: get(f"{server.url}/{endpoint}?seq={seq}"), range(requests)))
    stats = server.stats()
    stats["spent_s"] = stats["cpu_s"] - before
    return stats


@pytest.mark.parametrize("mode", MODES)
def test_each_request_spends_about_its_cpu_time_in_the_server(service, mode):
    requests = 12
    stats = load(service, mode, requests)
    expected_s = requests * CPU_MS / 1000
    # the pool process's CPU time counts as the server's; calibrated on CPU time, not wall
    assert 0.75 * expected_s < stats["spent_s"] < 1.6 * expected_s, stats
    plans = stats["cpu_plans"][mode]
    assert len(plans) == 1 and plans[0]["side"] <= mock_cpu.MAX_SIDE
    assert (plans[0]["pid"] == stats["pid"]) == (mode != "process_pool")


def lag_p99_ms(server: ServerProcess, endpoint: str, under: float = 0.0) -> float:
    """The server's loop-lag p99 under 16 requests from 2 clients; with `under`, the least of
    up to 3 attempts, stopping below it: a busy shared machine only ever adds lag (a core the
    loop waits for), while a step that blocks the loop adds it every time."""
    best = float("inf")
    for _ in range(3 if under else 1):
        best = min(best, load(server, endpoint, 16)["loop_lag_p99_ns"] / MS)
        if best < under:
            break
    return best


def test_inline_blocks_the_server_loop_and_the_pools_do_not(service):
    # Steps back to back: the probe runs between two of them, sleeps its interval and wakes
    # behind the next whole step, so it is late by the step less the interval (more when two
    # steps run in a row); the step's wall time is calibrated on CPU time, to within 25 %.
    inline = lag_p99_ms(service, "inline")
    assert inline >= 0.75 * (CPU_MS - LAG_INTERVAL_NS / MS)
    for endpoint in ("thread_pool", "process_pool", "plain"):
        assert lag_p99_ms(service, endpoint, under=CPU_MS / 2) < CPU_MS / 2, (endpoint, inline)


def test_stats_report_the_loop_lag_since_the_clock_started(service):
    service.set_t0(time.monotonic_ns())
    time.sleep(0.3)
    stats = service.stats()
    assert isinstance(stats["loop_lag_p99_ns"], int)
    assert 5 <= stats["loop_lag_samples"] <= 31  # one probe every 10 ms, or less often
    service.set_t0(time.monotonic_ns() + 10**9)  # the clock starts in a second: none yet
    stats = service.stats()
    assert stats["loop_lag_samples"] == 0 and stats["loop_lag_p99_ns"] is None


def test_the_lag_samples_stay_bounded_and_keep_describing_the_whole_cell():
    samples = LagSamples(keep=1000)
    for i in range(20_000):  # the first half calm, the second half 100 ms late
        samples.add(i, 0 if i < 10_000 else 100 * MS)
    assert len(samples.lag_ns) == len(samples.t_ns) == 1000 and samples.seen == 20_000
    assert 400 < sum(1 for lag in samples.lag_ns if lag) < 600  # a uniform sample of them all
    assert samples.p99_ns() == 100 * MS
    fresh = LagSamples(keep=1000)
    for i in range(100):
        fresh.add(i, i)
    fresh.since(90)
    assert list(fresh.lag_ns) == list(range(90, 100)) and fresh.seen == 10
    assert LagSamples().p99_ns() is None


@pytest.mark.parametrize("cpu_ms", [2, 12])
def test_calibration_sizes_the_preprocessing_to_the_cpu_time(cpu_ms):
    plan = mock_cpu.calibrate(cpu_ms * MS)
    assert mock_cpu.MIN_SIDE <= plan.side <= mock_cpu.MAX_SIDE
    assert 0.8 * cpu_ms * MS < plan.cost_ns < 1.25 * cpu_ms * MS, plan
    spent = sorted(mock_cpu.work(cpu_ms * MS, seq) for seq in range(3))
    assert 0.7 * cpu_ms * MS < spent[1] < 1.5 * cpu_ms * MS, spent


def test_a_long_step_is_many_bounded_images_and_calibrates_without_running_it():
    start = time.monotonic()
    plan = mock_cpu.calibrate(3600 * 10**9)
    assert time.monotonic() - start < 5
    assert plan.side <= mock_cpu.MAX_SIDE and plan.repeats > 10_000
    assert 0.8 * 3600 * 10**9 < plan.cost_ns < 1.25 * 3600 * 10**9


@pytest.mark.parametrize("mode", ["thread_pool", "process_pool"])
def test_a_pool_step_in_progress_does_not_hold_up_the_stop(mode):
    text = SERVICE.replace(f"{CPU_MS}ms", "20s")
    with ServerProcess(text) as server:
        host, port = server.url.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)), timeout=5)
        sock.sendall(f"GET /{mode}?seq=1 HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        time.sleep(0.3)
        assert server.stats()["in_flight"] == 1
        start = time.monotonic()
        server.stop()
        took = time.monotonic() - start
    assert server.proc.returncode == 0  # it stopped by itself, not killed after the wait
    assert took < STOP_WAIT_S + 0.5
    assert sock.recv(65536) == b""  # cut short: dropped, never a 200 for work not done
    sock.close()


@pytest.mark.parametrize(("endpoint", "problem"), [
    ("{offload: thread_pool}",
     "server.endpoints.api.offload: only with cpu (the work to offload) (got 'thread_pool')"),
    ("{cpu: 15ms, offload: threads}", "server.endpoints.api.offload: must be 'inline', "
                                      "'thread_pool' or 'process_pool' (got 'threads')"),
    ("{cpu: 15ms, pool_size: 4}",
     "server.endpoints.api.pool_size: only with offload: thread_pool or process_pool (got 4)"),
    ("{cpu: 61m}", "server.endpoints.api.cpu: must be <= 1h (got '61m')"),
    ("{cpu: 0ms}", "server.endpoints.api.cpu: must be > 0 (got '0ms')"),
])
def test_bad_cpu_endpoints_are_refused_naming_the_field(endpoint, problem):
    text = f"name: t\nserver:\n  endpoints:\n    api: {endpoint}\n" \
           "workload: {endpoint: api}\nload: {requests: 5, concurrency: 2}\n"
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "s.yaml")
    assert str(caught.value) == f"s.yaml: {problem}"


def test_the_fast_engine_refuses_cpu_and_the_bounds_are_valid():
    text = "name: t\nserver:\n  engine: fast\n  endpoints:\n    api: {cpu: 15ms}\n" \
           "workload: {endpoint: api}\nload: {requests: 5, concurrency: 2}\n"
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "s.yaml")
    assert str(caught.value) == \
        "s.yaml: server.endpoints.api.cpu: not served by engine: fast (got 15.0ms)"
    edge = parse_scenario(text.replace("  engine: fast\n", "").replace(
        "{cpu: 15ms}", "{cpu: 1h, offload: process_pool, pool_size: 1024}"))
    api = edge.server.endpoints["api"]
    assert (api.cpu, api.offload, api.pool_size) == (3600 * 10**9, "process_pool", 1024)
    assert parse_scenario(text.replace("  engine: fast\n", "")).server.endpoints["api"] \
        .offload == "inline"


def test_the_cells_row_carries_the_server_loop_lag():
    key = CellKey(backend="asyncio", concurrency=10, repetition=0)
    constants = {"run_id": "r", "scenario": "s", **key_dict(key)}
    row = CellRows(constants).cell_row(None, {"loop_lag_p99_ns": 31 * MS, "cpu_since_ready_s": 1})
    assert row["server_loop_lag_p99_ns"] == 31 * MS
    table = pa.Table.from_pylist([row, CellRows(constants).cell_row(None, {})],
                                 schema=CELLS_SCHEMA)
    assert table.column("server_loop_lag_p99_ns").to_pylist() == [31 * MS, None]
    assert CELLS_SCHEMA.field("server_loop_lag_p99_ns").type == pa.int64()


def test_a_run_records_the_server_loop_lag_of_each_cell(tmp_path):
    scenario = tmp_path / "service.yaml"
    scenario.write_text("name: service\nserver:\n  endpoints:\n    api: {cpu: 20ms}\n"
                        "workload: {endpoint: api}\n"
                        "load: {rate: 40/s, duration: 1s}\nbackends: [asyncio]\n"
                        "expect: [server_loop_lag_p99_ms < 5]\n")
    out = tmp_path / "run"
    result = harness("run", scenario, "--out", out)
    assert result.returncode == 1, result.stderr  # the threshold on the server's lag failed
    assert "server_loop_lag_p99_ms < 5" in result.stdout + result.stderr
    cells = pq.read_table(next((out / "cells").glob("*.parquet"))).to_pylist()
    assert len(cells) == 1
    # an arrival every 25 ms, a 20 ms step each: the probe mostly wakes behind a step
    assert cells[0]["server_loop_lag_p99_ns"] >= 10 * MS, cells[0]
    assert cells[0]["server_cpu_s"] > 0.5 * 40 * 0.020
    summary = summarize(load_runs([out]))
    assert summary["server_loop_lag_p99_ms"].tolist() == [cells[0]["server_loop_lag_p99_ns"] / MS]
    wide = harness("report", out, "--wide")
    assert "srv lag p99" in wide.stdout and wide.returncode == 1


@pytest.mark.parametrize(("server", "why"), [
    ("server:\n  engine: fast\n  endpoints:\n    api: {latency: 1ms}\n", "engine: fast"),
    ("target: http://127.0.0.1:9\n", "target:"),
])
def test_a_server_lag_threshold_without_the_aiohttp_mock_is_refused(server, why):
    workload = "{endpoint: api}" if "engine" in server else "{type: io, path: /}"
    text = (f"name: t\n{server}workload: {workload}\nload: {{requests: 5, concurrency: 2}}\n"
            "expect: [server_loop_lag_p99_ms < 20]\n")
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "s.yaml")
    assert str(caught.value) == (
        "s.yaml: expect[0]: server_loop_lag_p99_ms < 20 applies to no cell of this scenario: "
        f"server_loop_lag_p99_ms needs the aiohttp mock server (not {why})")


def test_a_cell_without_the_server_lag_is_not_applicable_not_failed():
    import numpy as np
    import pandas as pd

    from harness.scenario.thresholds import evaluate

    scenario = parse_scenario(SERVICE + "backends: [asyncio]\n"
                              "expect: [server_loop_lag_p99_ms < 20]\n")
    summary = pd.DataFrame([
        {"scenario": "service", "backend": "asyncio", "strategy": "inline",
         "variant": "default", "concurrency": 2, "repetition": rep, "model": "closed",
         "server_loop_lag_p99_ms": lag} for rep, lag in enumerate([np.nan, 5.0, 45.0])])
    rows = evaluate(summary, {"service": scenario})
    assert rows["status"].tolist() == ["not applicable", "passed", "failed"]
