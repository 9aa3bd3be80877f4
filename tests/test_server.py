"""The mock server in its own process, on 127.0.0.1 port 0."""

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from harness.http import DELAY_HEADER, IN_FLIGHT_HEADER
from harness.scenario import parse_scenario
from harness.server import ServerProcess
from tests.conftest import small_scenario

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url):
    with OPENER.open(url, timeout=10) as resp:
        return resp.status, dict(resp.headers), resp.read()


def test_delay_header_follows_the_seeded_distribution_and_stats_count_in_flight():
    text = small_scenario(latency="{dist: uniform, min: 100ms, max: 200ms}")
    latency = parse_scenario(text).server.endpoints["api"].latency
    with ServerProcess(text) as server:
        assert server.url.startswith("http://127.0.0.1:")
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda seq: get(f"{server.url}/api?seq={seq}"), range(8)))
        stats = server.stats()
        pid = stats["pid"]
    for seq, (status, headers, body) in enumerate(results):
        assert status == 200 and len(body) == 128
        assert int(headers[DELAY_HEADER]) == latency.sample_ns(7, seq)
        assert 1 <= int(headers[IN_FLIGHT_HEADER]) <= 8
    assert stats["requests"] == 8 and stats["in_flight"] == 0
    assert 2 <= stats["peak_in_flight"] <= 8  # 8 concurrent 100ms+ requests overlap
    assert server.proc.poll() is not None, f"server {pid} still running after stop"


def test_status_code_and_no_seq():
    text = small_scenario(latency="1ms").replace("size: 128", "size: 0, status: 503")
    with ServerProcess(text) as server:
        try:
            get(f"{server.url}/api")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
            assert exc.headers[DELAY_HEADER] == str(1_000_000)
        assert json.loads(OPENER.open(server.url + "/stats").read())["requests"] == 1


def test_harness_serve_runs_in_the_foreground_until_interrupted(tmp_path):
    import re
    import signal
    import subprocess
    import sys

    path = tmp_path / "s.yaml"
    path.write_text(small_scenario(latency="1ms"))
    proc = subprocess.Popen([sys.executable, "-m", "harness", "serve", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        status, headers, _ = get(url + "/api?seq=1")
        assert status == 200 and headers[DELAY_HEADER] == "1000000"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
