"""The mock server in its own process, on 127.0.0.1 port 0: delays (applied and target), every
fault effect over real HTTP, stalls, crash_after, its own routes, methods and bodies."""

import json
import re
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.core.wire import (
    BODY_BYTES_HEADER,
    DELAY_HEADER,
    DELAY_TARGET_HEADER,
    IN_FLIGHT_HEADER,
    OWN_ROUTES,
)
from harness.mock.process import STOP_WAIT_S, ServerProcess
from harness.scenario.faults import fault_for
from harness.scenario.loader import parse_scenario
from tests.conftest import small_scenario

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
MS = 1_000_000


def get(url, method="GET", data=None, headers=None):
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with OPENER.open(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def delays(headers) -> tuple[int, int]:
    return int(headers[DELAY_HEADER]), int(headers[DELAY_TARGET_HEADER])


def connect(url, timeout=5.0) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def raw_get(url, path, timeout=5.0) -> tuple[bytes, str, float]:
    """Send one GET; read until the server closes (or the response is complete). The bytes
    received, how it ended (complete, eof, reset, timeout) and the seconds it took."""
    sock, start, data = connect(url, timeout), time.monotonic(), b""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    try:
        while chunk := sock.recv(65536):
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: (\d+)", head)
            if sep and length and len(body) >= int(length[1]):
                return data, "complete", time.monotonic() - start
        return data, "eof", time.monotonic() - start
    except ConnectionResetError:
        return data, "reset", time.monotonic() - start
    except TimeoutError:
        return data, "timeout", time.monotonic() - start
    finally:
        sock.close()


def test_applied_delay_is_never_below_the_seeded_target_and_stats_count_in_flight():
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
        applied, target = delays(headers)
        assert target == latency.sample_ns(7, seq)
        assert target <= applied < target + 50 * MS
        assert 1 <= int(headers[IN_FLIGHT_HEADER]) <= 8
    assert stats["requests"] == 8 and stats["in_flight"] == 0
    assert 2 <= stats["peak_in_flight"] <= 8  # 8 concurrent 100ms+ requests overlap
    assert server.proc.poll() is not None, f"server {pid} still running after stop"


def test_status_code_and_no_seq():
    text = small_scenario(latency="1ms").replace("size: 128", "size: 0, status: 503")
    with ServerProcess(text) as server:
        status, headers, _ = get(f"{server.url}/api")
        assert status == 503 and headers[DELAY_TARGET_HEADER] == str(MS)
        assert int(headers[DELAY_HEADER]) >= MS
        assert json.loads(OPENER.open(server.url + "/_harness/stats").read())["requests"] == 1


OWN = """\
name: own
server:
  endpoints:
    stats: {latency: 0, size: 5, status: 201}
    health: {latency: 0, size: 7}
    api: {latency: 2ms, size: 3}
workload: {endpoint: stats}
load: {requests: 5, concurrency: 2}
"""


def test_the_harness_routes_live_under_harness_and_endpoints_own_their_names():
    with ServerProcess(OWN) as server:
        assert get(server.url + "/stats")[0::2] == (201, b"xxxxx")
        assert get(server.url + "/health")[0::2] == (200, b"x" * 7)
        assert get(server.url + OWN_ROUTES + "/health")[0::2] == (200, b"ok")
        stats = json.loads(get(server.url + OWN_ROUTES + "/stats")[2])
        assert stats["requests"] == 2 and stats["arrivals"] == 2
        assert server.stats()["pid"] == server.proc.pid
        assert get(server.url + OWN_ROUTES + "/clock", "POST", b"{}")[0] == 400
        assert get(server.url + OWN_ROUTES + "/clock", "POST", b'{"t0_ns": "x"}')[0] == 400
        assert get(server.url + "/nope")[0] == 404


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def test_every_method_is_served_and_the_whole_body_read(method):
    with ServerProcess(OWN) as server:
        for size in (0, 10, 3 << 20):  # beyond aiohttp's 1 MiB limit on request.read()
            data = b"b" * size if size or method != "GET" else None
            status, headers, body = get(f"{server.url}/api?seq=4", method, data)
            assert status == 200, (method, size)
            assert int(headers[BODY_BYTES_HEADER]) == size
            assert body == (b"" if method == "HEAD" else b"xxx")
            assert delays(headers)[0] >= delays(headers)[1] == 2 * MS


def test_a_chunked_body_is_counted():
    def chunks():
        yield from (b"a" * 1000, b"b" * 24)

    with ServerProcess(OWN) as server:
        status, headers, _ = get(server.url + "/api", "POST", chunks(),
                                 {"Transfer-Encoding": "chunked"})
        assert status == 200 and headers[BODY_BYTES_HEADER] == "1024"


FAULTS = """\
name: faults
server:
  seed: 3
  endpoints:
    status: {latency: 5ms, size: 100, faults: [{share: 1, status: 503, size: 10}]}
    status_default_size: {latency: 5ms, size: 100, faults: [{share: 1, status: 429}]}
    reset: {latency: 5ms, faults: [{share: 100%, reset: true}]}
    hang: {latency: 5ms, faults: [{share: 1, hang: true}]}
    trickle: {latency: 5ms, size: 8KiB, faults: [{share: 1, trickle: 16KiB/s}]}
    long_trickle: {latency: 0, size: 1MiB, faults: [{share: 1, trickle: 1KiB/s}]}
    truncate: {latency: 5ms, size: 1000, faults: [{share: 1, truncate: true}]}
    delay: {latency: 5ms, faults: [{share: 1, delay: 200ms}]}
    mixed:
      latency: {dist: uniform, min: 1ms, max: 4ms}
      faults: [{share: 0.3, status: 500}, {share: 0.2, truncate: true}, {share: 0.2, delay: 3ms}]
    plain: {latency: {dist: uniform, min: 1ms, max: 4ms}}
workload: {endpoint: plain}
load: {requests: 5, concurrency: 2}
"""


@pytest.fixture(scope="module")
def faulty():
    with ServerProcess(FAULTS) as server:
        yield server


def test_status_fault_answers_with_its_status_and_size(faulty):
    status, headers, body = get(faulty.url + "/status?seq=1")
    assert (status, body) == (503, b"x" * 10)
    assert delays(headers)[0] >= delays(headers)[1] == 5 * MS
    assert get(faulty.url + "/status_default_size?seq=1")[0::2] == (429, b"x" * 100)


def test_reset_fault_resets_the_connection_before_any_byte(faulty):
    data, ending, took = raw_get(faulty.url, "/reset?seq=1")
    assert (data, ending) == (b"", "reset")
    assert took >= 0.005  # when the response would have started


def test_hang_fault_never_answers_and_the_client_timeout_ends_it(faulty):
    data, ending, took = raw_get(faulty.url, "/hang?seq=1", timeout=0.5)
    assert (data, ending) == (b"", "timeout") and took >= 0.5
    deadline = time.monotonic() + 5  # the client went away: the handler ends with it
    while faulty.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert faulty.stats()["in_flight"] == 0


def test_trickle_fault_sends_the_body_no_faster_than_its_rate(faulty):
    data, ending, took = raw_get(faulty.url, "/trickle?seq=1")
    head, _, body = data.partition(b"\r\n\r\n")
    assert ending == "complete" and body == b"x" * 8192 and b"200 OK" in head
    chunk = 16384 // 20  # the first chunk goes at once, each next one when the rate allows it
    assert took >= (8192 - chunk) / 16384 + 0.005
    assert took < 2


def test_truncate_fault_declares_more_than_it_sends(faulty):
    data, ending, _ = raw_get(faulty.url, "/truncate?seq=1")
    head, _, body = data.partition(b"\r\n\r\n")
    assert ending == "eof" and b"Content-Length: 1000" in head
    assert 0 < len(body) < 1000
    applied, target = delays({k: v for k, _, v in (
        line.decode().partition(": ") for line in head.split(b"\r\n")[1:])})
    assert applied >= target == 5 * MS


def test_delay_fault_is_a_slow_success(faulty):
    status, headers, body = get(faulty.url + "/delay?seq=1")
    applied, target = delays(headers)
    assert status == 200 and len(body) == 64
    assert target == 205 * MS and applied >= target


def test_the_same_seq_gets_the_same_fault_and_faults_change_no_delay(faulty):
    config = parse_scenario(FAULTS).server
    mixed, plain = config.endpoints["mixed"], config.endpoints["plain"]
    seen = set()
    for seq in range(40):
        fault = fault_for(mixed, 3, seq, name="mixed")
        effect = fault.effect if fault else None
        seen.add(effect)
        if effect == "truncate":
            data, ending, _ = raw_get(faulty.url, f"/mixed?seq={seq}")
            assert ending == "eof" and b"Content-Length: 64" in data
            continue
        status, headers, _ = get(f"{faulty.url}/mixed?seq={seq}")
        assert status == (500 if effect == "status" else 200)
        _, plain_headers, _ = get(f"{faulty.url}/plain?seq={seq}")
        extra = 3 * MS if effect == "delay" else 0
        assert delays(headers)[1] == delays(plain_headers)[1] + extra
        assert delays(plain_headers)[1] == plain.latency.sample_ns(3, seq)
    assert seen == {None, "status", "truncate", "delay"}


def test_hanging_and_trickling_responses_do_not_hold_up_the_server_stop():
    with ServerProcess(FAULTS) as server:
        hung, slow = connect(server.url), connect(server.url)
        hung.sendall(b"GET /hang?seq=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        slow.sendall(b"GET /long_trickle?seq=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert slow.recv(65536).startswith(b"HTTP/1.1 200")
        time.sleep(0.2)
        start = time.monotonic()
        server.proc.terminate()
        # Timed to when the server lets both connections go, not to its exit: the interpreter's
        # teardown after it (0.2 s here, more on a loaded machine) is not the clean-up's wait.
        hung_bytes, slow_bytes = until_closed(hung), until_closed(slow)
        took = time.monotonic() - start
        server.proc.wait(STOP_WAIT_S + 5)  # one SIGTERM: a second would meet its teardown
    assert server.proc.returncode == 0  # it stopped by itself, not killed after the wait
    assert took < STOP_WAIT_S  # not cut off by the clean-up's time limit: they let go
    assert hung_bytes == 0  # both connections dropped, the trickle cut short
    assert slow_bytes < 1 << 20


def until_closed(sock: socket.socket) -> int:
    """Bytes received until the peer closed (EOF or reset); a timeout fails the test."""
    received = 0
    try:
        while chunk := sock.recv(65536):
            received += len(chunk)
    except ConnectionResetError:
        pass
    sock.close()
    return received


STALLING = """\
name: stalls
server:
  endpoints:
    api: {latency: 10ms, size: 8}
  stalls: [{at: 400ms, for: 300ms}, {every: 1s, at: 1200ms, for: 200ms}]
workload: {endpoint: api}
load: {requests: 5, concurrency: 2}
"""


def test_stalls_hold_responses_and_count_in_the_applied_delay():
    with ServerProcess(STALLING) as server:
        t0 = time.monotonic_ns()
        server.set_t0(t0)

        def at(offset_ms, seq):
            time.sleep(max(0, t0 / 1e9 + offset_ms / 1e3 - time.monotonic()))
            sent = time.monotonic_ns()
            headers = get(f"{server.url}/api?seq={seq}")[1]
            return sent - t0, time.monotonic_ns() - t0, *delays(headers)

        with ThreadPoolExecutor(4) as pool:
            # sent well inside the windows: a request a loaded machine sends after a stall
            # ended is not held, which would fail the test for the machine's sake
            results = list(pool.map(lambda a: at(*a), [(100, 0), (450, 1), (600, 2), (1250, 3)]))
    (s0, e0, a0, t0_), (s1, e1, a1, _), (s2, e2, a2, _), (s3, e3, a3, _) = results
    assert t0_ == 10 * MS and 10 * MS <= a0 < 100 * MS and e0 < 400 * MS  # before any stall
    for sent, end, applied, until in ((s1, e1, a1, 700), (s2, e2, a2, 700), (s3, e3, a3, 1400)):
        assert end >= until * MS  # held until the stall ended
        # The wait is in the applied delay: without it, 10 ms; at least half the wait from the
        # send to the stall's end, the rest room for a loaded machine's connect (6 ms beside a
        # CPU hog) between the client's stamp and the server's arrival.
        assert applied >= (until * MS - sent) / 2
        assert applied >= 10 * MS


def test_crash_after_requests_kills_the_server_when_the_nth_arrives():
    text = small_scenario(latency="1ms").replace(
        "  endpoints:", "  crash_after: 3 requests\n  endpoints:")
    with ServerProcess(text) as server:
        assert get(server.url + "/api?seq=0")[0] == 200
        assert get(server.url + "/api?seq=1")[0] == 200
        with pytest.raises(OSError):  # the third never gets an answer
            get(server.url + "/api?seq=2")
        assert server.proc.wait(5) == -9


def test_crash_after_a_duration_counts_from_the_cell_t0():
    text = small_scenario(latency="1ms").replace(
        "  endpoints:", "  crash_after: 800ms\n  endpoints:")
    with ServerProcess(text) as server:
        time.sleep(0.4)
        t0 = time.monotonic_ns()
        server.set_t0(t0)  # the clock restarts: alive past 800 ms after the server's start
        time.sleep(0.6)
        assert server.proc.poll() is None and get(server.url + "/api")[0] == 200
        assert server.proc.wait(5) == -9
        assert time.monotonic_ns() - t0 >= 800 * MS


def test_harness_serve_runs_in_the_foreground_until_interrupted(tmp_path):
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
        assert f"{url}/_harness/stats" in line and f"{url}/api" in line
        status, headers, _ = get(url + "/api?seq=1")
        assert status == 200 and headers[DELAY_TARGET_HEADER] == "1000000"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and err == ""
