"""The mock server's engines (`server.engine: aiohttp | fast`) and `server.processes`.

Behaviour both engines must share is written once, parametrized over the engines, against a
server started as a child process (ServerProcess) and spoken to over real sockets. Until the
aiohttp engine sends X-Harness-Delay-Target-Ns, its delay header stands for the target too."""

import json
import signal
import socket
import threading
import time

import psutil
import pytest
from httptools import HttpResponseParser

from harness.core.errors import ScenarioError
from harness.core.wire import DELAY_HEADER, DELAY_TARGET_HEADER, IN_FLIGHT_HEADER
from harness.mock.process import ServerProcess
from harness.scenario import server as scenario_module
from harness.scenario.loader import parse_scenario
from tests.conftest import harness

ENGINES = ["aiohttp", "fast"]
STATS_KEYS = {"in_flight", "peak_in_flight", "requests", "pid", "cpu_s"}


def scenario(engine="fast", api="{latency: 0, size: 128}", processes=1, more="") -> str:
    """`api` is the endpoint's settings, and may go on with more endpoints (4 spaces in)."""
    return (f"name: engines\nserver:\n  seed: 7\n  engine: {engine}\n  processes: {processes}\n"
            f"  endpoints:\n    api: {api}\n{more}workload: {{endpoint: api}}\n"
            "load: {requests: 1, concurrency: 1}\nbackends: [uvloop]\n")


class Responses:
    """httptools callbacks collecting whole responses: (status, headers, body)."""

    def __init__(self) -> None:
        self.parser = HttpResponseParser(self)
        self.items: list[tuple[int, dict, bytes]] = []

    def on_message_begin(self) -> None:
        self.headers, self.body = {}, bytearray()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.items.append((self.parser.get_status_code(), self.headers, bytes(self.body)))


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read(sock: socket.socket, count: int, until_eof: bool = False) -> tuple[list, bool]:
    """Read `count` responses (then, with until_eof, on to the connection's end): the
    responses, and whether the server closed the connection."""
    responses = Responses()
    deadline = time.monotonic() + 10
    while len(responses.items) < count or until_eof:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            break
        if not chunk:
            return responses.items, True
        responses.parser.feed_data(chunk)
    return responses.items, False


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


def exchange(url: str, data: bytes, count: int = 1, until_eof: bool = False):
    with connect(url) as sock:
        sock.sendall(data)
        return read(sock, count, until_eof)


def target_of(headers: dict) -> int:
    return int(headers.get(DELAY_TARGET_HEADER.lower(), headers[DELAY_HEADER.lower()]))


@pytest.fixture(params=ENGINES)
def engine(request):
    return request.param


# -- both engines ------------------------------------------------------------------------------


def test_status_size_and_bodyless_status(engine):
    api = "{latency: 0, size: 300, status: 503}\n    empty: {latency: 0, size: 50, status: 204}"
    with ServerProcess(scenario(engine, api)) as server:
        (status, headers, body), = exchange(server.url, get("/api?seq=1"))[0]
        assert status == 503 and len(body) == 300 and headers["content-length"] == "300"
        (status, headers, body), = exchange(server.url, get("/empty"))[0]
        assert status == 204 and body == b"" and "content-length" not in headers


def test_delay_headers_applied_at_least_the_seeded_target(engine):
    text = scenario(engine, "{latency: {dist: uniform, min: 5ms, max: 40ms}, size: 16}")
    latency = parse_scenario(text).server.endpoints["api"].latency
    results = {}
    with ServerProcess(text) as server:
        def one(seq):
            results[seq] = exchange(server.url, get(f"/api?seq={seq}"))[0][0]

        threads = [threading.Thread(target=one, args=(seq,)) for seq in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        no_seq = exchange(server.url, get("/api"))[0][0]  # the 13th arrival: seq 12
    for seq, (status, headers, _) in [*results.items(), (12, no_seq)]:
        target, applied = target_of(headers), int(headers[DELAY_HEADER.lower()])
        assert status == 200 and target == latency.sample_ns(7, seq)
        assert target <= applied < target + 500_000_000
        assert 1 <= int(headers[IN_FLIGHT_HEADER.lower()]) <= 12


def test_an_endpoint_without_latency_answers_at_once(engine):
    """`latency` defaults to a fixed 0 (it was the bare 0: the aiohttp engine answered 500)."""
    with ServerProcess(scenario(engine, "{size: 3}")) as server:
        (status, headers, body), = exchange(server.url, get("/api?seq=4"))[0]
    assert (status, body, target_of(headers)) == (200, b"xxx", 0)


def test_unknown_path_is_404_and_the_connection_stays(engine):
    with ServerProcess(scenario(engine)) as server, connect(server.url) as sock:
        sock.sendall(get("/nope") + get("/api"))
        (first, _, body), (second, _, _) = read(sock, 2)[0]
    assert (first, body, second) == (404, b"404: Not Found", 200)


@pytest.mark.parametrize("bad", [
    b"GARBAGE\r\n\r\n",
    b"GET /api HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: test\r\n\r\n",
], ids=["request-line", "long-header", "long-url"])
def test_malformed_request_is_400_and_closed_and_the_server_keeps_serving(engine, bad):
    with ServerProcess(scenario(engine)) as server:
        responses, closed = exchange(server.url, bad, until_eof=True)
        assert [status for status, _, _ in responses] == [400] and closed
        (status, _, _), = exchange(server.url, get("/api"))[0]
        assert status == 200


def test_a_header_that_never_ends_is_400_and_closed(engine):
    """Sent in pieces, so no one read holds the limit: the server must count across reads."""
    with ServerProcess(scenario(engine)) as server, connect(server.url) as sock:
        sock.sendall(b"GET /api HTTP/1.1\r\nHost: test\r\nX-Long: ")
        try:
            for _ in range(100):  # up to 400 KiB, 4 KiB at a time
                sock.sendall(b"a" * 4096)
                time.sleep(0.002)
        except OSError:
            pass  # closed by the server, as it should
        responses, closed = read(sock, 1, until_eof=True)
    assert [status for status, _, _ in responses] == [400] and closed


def test_keep_alive_many_requests_on_one_connection(engine):
    with ServerProcess(scenario(engine)) as server:
        with connect(server.url) as sock:
            for seq in range(300):
                sock.sendall(get(f"/api?seq={seq}"))
                (status, _, body), = read(sock, 1)[0]
                assert status == 200 and len(body) == 128
        assert server.stats()["requests"] == 300


def test_pipelined_requests_are_answered_in_order(engine):
    text = scenario(engine, "{latency: {dist: uniform, min: 1ms, max: 30ms}, size: 8}")
    latency = parse_scenario(text).server.endpoints["api"].latency
    seqs = list(range(100, 130))
    with ServerProcess(text) as server:
        responses, _ = exchange(server.url, b"".join(get(f"/api?seq={s}") for s in seqs),
                                count=len(seqs))
    assert [target_of(headers) for _, headers, _ in responses] == [
        latency.sample_ns(7, s) for s in seqs]


def test_head_gets_the_headers_alone(engine):
    with ServerProcess(scenario(engine)) as server:
        with connect(server.url) as sock:
            sock.sendall(b"HEAD /api HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\n")
    assert b"\r\ncontent-length: 128\r\n" in data.lower()


def test_stats_count_requests_and_in_flight(engine):
    with ServerProcess(scenario(engine, "{latency: 500ms, size: 8}")) as server:
        socks = [connect(server.url) for _ in range(6)]
        for i, sock in enumerate(socks):
            sock.sendall(get(f"/api?seq={i}"))
        time.sleep(0.1)
        during = server.stats()
        for sock in socks:
            assert read(sock, 1)[0][0][0] == 200
            sock.close()
        exchange(server.url, get("/api?seq=x"))  # a bad seq is a request too (400)
        after = server.stats()
    assert set(during) >= STATS_KEYS and set(after) >= STATS_KEYS
    assert during["in_flight"] == 6 and during["requests"] == 0
    assert after["in_flight"] == 0 and after["requests"] == 7 and after["peak_in_flight"] == 6
    assert after["pid"] == server.proc.pid and after["cpu_s"] > 0


def test_a_client_gone_mid_delay_leaves_nothing_in_flight(engine):
    with ServerProcess(scenario(engine, "{latency: 200ms, size: 8}")) as server:
        with connect(server.url) as sock:
            sock.sendall(get("/api?seq=1"))
            time.sleep(0.05)
        time.sleep(0.4)
        stats = server.stats()
    assert stats["in_flight"] == 0 and stats["requests"] == 1


# -- the fast engine ----------------------------------------------------------------------------


def test_fast_engine_answers_every_method_and_reads_bodies_to_their_end():
    body = b"b" * 100_000
    chunked = b"5\r\nhello\r\n0\r\n\r\n"
    with ServerProcess(scenario("fast")) as server, connect(server.url) as sock:
        sock.sendall(b"POST /api?seq=1 HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                     % len(body) + body
                     + b"PUT /api HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + chunked + b"DELETE /api HTTP/1.1\r\nHost: t\r\n\r\n" + get("/api"))
        responses, closed = read(sock, 4)
        # Expect: 100-continue: the interim response comes before the body is sent
        sock.sendall(b"POST /api HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abc")
        last, _ = read(sock, 1)
    assert [status for status, _, _ in responses + last] == [200] * 5 and not closed
    assert server.proc.poll() is not None  # stopped


def test_fast_engine_control_routes_live_under_harness():
    text = scenario("fast", more="").replace(
        "api: {latency: 0, size: 128}", "api: {latency: 0, size: 128}\n    stats: {size: 3}")
    with ServerProcess(text) as server:
        health = exchange(server.url, get("/_harness/health"))[0][0]
        exchange(server.url, get("/api"))
        stats = exchange(server.url, get("/_harness/stats"))[0][0]
        endpoint = exchange(server.url, get("/stats"))[0][0]  # an endpoint takes the name
    assert health[0] == 200 and health[2] == b"ok"
    assert json.loads(stats[2])["requests"] == 1 and set(json.loads(stats[2])) == STATS_KEYS
    assert endpoint[0] == 200 and endpoint[2] == b"xxx"


def test_fast_engine_delays_are_never_early_under_many_timers():
    text = scenario("fast", "{latency: {dist: exponential, mean: 3ms, max: 20ms}, size: 8}")
    latency = parse_scenario(text).server.endpoints["api"].latency
    seqs = range(400)
    with ServerProcess(text) as server:
        socks = [connect(server.url) for _ in range(20)]
        for i, sock in enumerate(socks):  # 20 connections × 20 pipelined requests
            sock.sendall(b"".join(get(f"/api?seq={s}") for s in seqs[i::20]))
        responses = [read(sock, 20)[0] for sock in socks]
        for sock in socks:
            sock.close()
    for i, batch in enumerate(responses):
        assert len(batch) == 20
        for seq, (_, headers, _) in zip(seqs[i::20], batch, strict=True):
            assert target_of(headers) == latency.sample_ns(7, seq)
            assert int(headers[DELAY_HEADER.lower()]) >= target_of(headers)


def test_processes_share_one_port_and_their_stats_add_up():
    api = "{latency: 800ms, size: 8}\n    quick: {latency: 0, size: 8}"
    with ServerProcess(scenario("fast", api, processes=2)) as server:
        assert exchange(server.url, get("/_harness/health"))[0][0][0] == 200
        socks = []
        for i in range(8):  # spaced: each arrival sees the ones before it
            socks.append(connect(server.url))
            socks[-1].sendall(get(f"/api?seq={i}"))
            time.sleep(0.005)
        answers = [read(sock, 1)[0][0] for sock in socks]
        for _ in range(40):  # the kernel spreads connections: 2**-39 that all go to one
            assert exchange(server.url, get("/quick"))[0][0][0] == 200
        with connect(server.url) as sock:
            for _ in range(2):
                sock.sendall(b"GET /api?seq=x HTTP/1.1\r\nHost: t\r\n\r\n")
                assert read(sock, 1)[0][0][0] == 400
        stats = server.stats()
        assert [a[0] for a in answers] == [200] * 8
        assert max(int(a[1][IN_FLIGHT_HEADER.lower()]) for a in answers) == 8
        assert stats["requests"] == 50 and stats["in_flight"] == 0
        assert stats["peak_in_flight"] == 8  # across both processes, not per process
        assert stats["pid"] == server.proc.pid
        workers = stats["processes"]
        pids = {w["pid"] for w in workers}
        assert len(workers) == 2 and len(pids) == 2 and server.proc.pid not in pids
        assert sum(w["requests"] for w in workers) == 50
        assert all(w["requests"] > 0 for w in workers)


def test_processes_stop_when_the_supervisor_is_killed():
    with ServerProcess(scenario("fast", processes=2)) as server:
        pids = [w["pid"] for w in server.stats()["processes"]]
        server.kill()
    assert _gone(pids)


def test_a_dead_process_takes_the_server_down():
    with ServerProcess(scenario("fast", processes=2)) as server:
        pids = [w["pid"] for w in server.stats()["processes"]]
        psutil.Process(pids[0]).send_signal(signal.SIGKILL)
        assert server.proc.wait(10) != 0  # the cell sees its server died
    assert _gone(pids)


def _gone(pids, wait_s: float = 10.0) -> bool:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p)
                 and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.05)
    return False


def test_harness_serve_names_the_engine_and_stops_every_process(tmp_path):
    import re
    import subprocess
    import sys

    path = tmp_path / "s.yaml"
    path.write_text(scenario("fast", processes=2))
    proc = subprocess.Popen([sys.executable, "-m", "harness", "serve", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "fast engine, 2 processes" in line
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        (status, _, _), = exchange(url, get("/api"))[0]
        pids = [w["pid"] for w in json.loads(exchange(url, get("/_harness/stats"))[0][0][2])
                ["processes"]]
        assert status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    assert proc.returncode == 0 and _gone(pids)


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("server", "message"), [
    ("engine: nginx", "server.engine: must be 'aiohttp' or 'fast' (got 'nginx')"),
    ("engine: fast\n  processes: 65", "server.processes: must be <= 64 (got 65)"),
    ("engine: fast\n  processes: 0", "server.processes: must be >= 1 (got 0)"),
    ("processes: 2", "server.processes: not served by engine: aiohttp (got 2)"),
])
def test_bad_engine_settings_are_one_line_errors(server, message):
    text = scenario("fast").replace("engine: fast\n  processes: 1", server)
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "s.yaml")
    assert str(caught.value) == f"s.yaml: {message}"


def test_a_feature_an_engine_does_not_serve_is_named(monkeypatch):
    """One line in ENGINE_LIMITS refuses a feature; an endpoint's field is named with it."""
    limits = (*scenario_module.ENGINE_LIMITS,
              ("fast", "endpoints.*.status", lambda endpoint: endpoint.status == 418))
    monkeypatch.setattr(scenario_module, "ENGINE_LIMITS", limits)
    text = scenario("fast", "{status: 418}")
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "s.yaml")
    assert str(caught.value) == "s.yaml: server.endpoints.api.status: not served by engine: " \
                                "fast (got 418)"
    assert parse_scenario(text.replace("engine: fast", "engine: aiohttp")).server.engine == \
        "aiohttp"


def test_harness_validate_refuses_processes_on_aiohttp(write_scenario):
    done = harness("validate", write_scenario(scenario("aiohttp", processes=3)))
    assert done.returncode == 2
    assert done.stderr.strip().endswith(
        "scenario.yaml: server.processes: not served by engine: aiohttp (got 3)")
    assert len(done.stderr.strip().splitlines()) == 1


def test_engine_defaults():
    server = parse_scenario(scenario("fast").replace("  engine: fast\n  processes: 1\n", "")
                            ).server
    assert (server.engine, server.processes) == ("aiohttp", 1)


class _CountedWrites:
    """A transport that counts the engine's writes and passes everything through."""

    def __init__(self, transport, writes: list) -> None:
        self._transport, self._writes = transport, writes

    def write(self, data) -> None:
        self._writes.append(len(data))
        self._transport.write(data)

    def writelines(self, items) -> None:
        items = list(items)
        self._writes.append(sum(map(len, items)))
        self._transport.writelines(items)

    def __getattr__(self, name):
        return getattr(self._transport, name)


@pytest.mark.parametrize("latency", ["0", "1ms"])
def test_fast_engine_answers_in_one_write_on_a_nodelay_socket(latency):
    """A response written in two pieces without TCP_NODELAY waits for the client's delayed
    ACK (~40 ms) before its second piece: the shape once suspected of 50 ms start stalls
    behind the standard client. Each response leaves in one write, with Nagle off."""
    import asyncio

    import uvloop

    from harness.mock.fast.counts import LocalCounts
    from harness.mock.fast.protocol import EngineState, ServerConnection

    config = parse_scenario(scenario("fast", f"{{latency: {latency}, size: 64}}")).server
    writes, sockets = [], []

    class Counted(ServerConnection):
        def connection_made(self, transport) -> None:
            super().connection_made(_CountedWrites(transport, writes))
            sockets.append(transport.get_extra_info("socket"))

    async def exchange_five() -> list:
        loop = asyncio.get_running_loop()
        app = EngineState(config, LocalCounts(), loop)
        server = await loop.create_server(lambda: Counted(app), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sizes = []
        for seq in range(5):  # one at a time, as the standard client sends on a connection
            writer.write(get(f"/api?seq={seq}"))
            responses = Responses()
            while not responses.items:
                data = await asyncio.wait_for(reader.read(1 << 16), 10)
                assert data, "the engine closed the connection"
                sizes.append(len(data))
                responses.parser.feed_data(data)
            assert responses.items[0][0] == 200 and len(responses.items[0][2]) == 64
        nodelay = [sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for sock in sockets]
        assert nodelay and all(nodelay), "Nagle is on for the engine's accepted sockets"
        writer.close()
        server.close()
        app.deadlines.close()
        return sizes

    received = uvloop.run(exchange_five())
    assert len(writes) == 5, f"5 responses took {len(writes)} writes"
    assert sum(writes) == sum(received)
