"""The mock server under `harness serve`, abused: malformed request lines, a 64 KiB
header, 2 000 idle connections, slow-loris clients. It answers what it can with 400, keeps
serving well-formed requests, stays quiet on stderr, and says when the system caps its
open-file limit or its listen backlog."""

import re
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.core.system import raise_fd_limit
from harness.mock import serve as server_module
from harness.mock.serve import backlog_note

SCENARIO = """\
name: abuse
server:
  endpoints:
    api: {latency: 1ms, size: 16}
workload: {endpoint: api}
load: {requests: 5, concurrency: 2}
"""


def start_serve(path: Path, preexec_fn=None) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "harness", "serve", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=preexec_fn)
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, int(match[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    path = tmp_path_factory.mktemp("abuse") / "abuse.yaml"
    path.write_text(SCENARIO)
    proc, port = start_serve(path)
    yield proc, port
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert err == "", err[-2000:]  # no traceback per malformed request


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send `data`, half-close, read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        return answer


def well_formed(port: int, timeout: float = 5.0) -> tuple[bytes, float]:
    start = time.monotonic()
    answer = exchange(port, b"GET /api?seq=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                      timeout)
    return answer, time.monotonic() - start


def assert_serves(port: int, within_s: float = 2.0) -> None:
    answer, took = well_formed(port)
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"x" * 16), answer[:200]
    assert took < within_s


def stats(port: int) -> dict:
    import json

    answer = exchange(port, b"GET /_harness/stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    return json.loads(answer.partition(b"\r\n\r\n")[2])


MALFORMED = [
    b"GARBAGE\r\n\r\n",
    b"GET /api HTTP/9.9\r\n\r\n",
    b"\x00\x01\x02\xff\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello on the plain port
    b"GET /api?" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",  # a 100 kB request line
    b"GET /api HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"GET /api HTTP/1.1\r\nno colon here\r\n\r\n",
    b"POST /api HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
]


def test_malformed_requests_get_400_and_the_server_still_serves(served):
    _, port = served
    for data in MALFORMED:
        answer = exchange(port, data)
        assert re.match(rb"HTTP/1\.[01] 400 ", answer), (data[:40], answer[:80])
        assert_serves(port)
    assert stats(port)["in_flight"] == 0


def test_a_64_kib_header_is_refused_cleanly_and_the_server_still_serves(served):
    _, port = served
    big = b"GET /api HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 65536 + b"\r\n\r\n"
    assert exchange(port, big).startswith(b"HTTP/1.0 400 Bad Request")
    many = b"GET /api HTTP/1.1\r\nConnection: close\r\n" + b"".join(
        b"X-H%d: %s\r\n" % (i, b"v" * 56) for i in range(1024)) + b"\r\n"  # 64 KiB in 1 024 lines
    assert re.match(rb"HTTP/1\.[01] (200|400|431) ", exchange(port, many))
    assert_serves(port)


def held_by(pid: int) -> int:
    return sum(1 for fd in Path(f"/proc/{pid}/fd").iterdir()
               if fd.is_symlink() and fd.readlink().name.startswith("socket:"))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(),
                    reason="counts the server's sockets in /proc")
def test_2000_idle_connections_held_while_a_request_still_succeeds(served):
    proc, port = served
    need = 2000 + 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"the open-file limit here is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    idle: list[socket.socket] = []
    try:
        for _ in range(2000):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        deadline = time.monotonic() + 10
        while held_by(proc.pid) < 2000 and time.monotonic() < deadline:  # all accepted
            time.sleep(0.05)
        assert held_by(proc.pid) >= 2000
        assert_serves(port)
        readable, _, _ = select.select(idle[:500], [], [], 0)  # none closed by the server
        assert readable == []
    finally:
        for sock in idle:
            sock.close()


def test_slow_loris_clients_do_not_stop_well_formed_requests(served):
    _, port = served
    loris = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(50)]
    header = b"GET /api HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"s" * 64
    stop = threading.Event()

    def drip() -> None:  # a header byte per connection every 100 ms, never the end of it
        for i in range(len(header)):
            for sock in loris:
                sock.send(header[i:i + 1])
            if stop.wait(0.1):
                return

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        started = time.monotonic()
        for _ in range(20):
            assert_serves(port, within_s=1.0)
            time.sleep(0.1)
        assert time.monotonic() - started >= 2  # the drip went on all the while
        assert dripper.is_alive()
    finally:
        stop.set()
        dripper.join(5)
        for sock in loris:
            sock.close()


def test_the_server_says_when_the_system_caps_its_open_files():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert raise_fd_limit(8) is None
    if hard == resource.RLIM_INFINITY:
        pytest.skip("the hard open-file limit here is unlimited: no limit to say "
                    "(test_harness_serve_raises_its_open_file_limit_or_says_so lowers one)")
    note = raise_fd_limit(hard + 1)
    assert note.startswith(f"open-file limit {hard} (hard {hard})")


def test_the_server_says_when_the_system_caps_its_backlog(tmp_path, monkeypatch):
    path = tmp_path / "somaxconn"
    path.write_text("128\n")
    monkeypatch.setattr(server_module, "_SOMAXCONN", str(path))
    assert backlog_note(4096) == ("note: mock server: listen backlog 4096 capped at 128 by "
                                  "net.core.somaxconn")
    assert backlog_note(100) is None
    path.write_text("8192\n")
    assert backlog_note(4096) is None


def test_harness_serve_raises_its_open_file_limit_or_says_so(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 8192:
        pytest.skip(f"the hard open-file limit here is {hard}")
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    for limits, note in (((1024, 8192), False), ((1024, 1024), True)):
        proc, port = start_serve(path, lambda lim=limits: resource.setrlimit(
            resource.RLIMIT_NOFILE, lim))
        try:
            limit = int(re.search(r"Max open files\s+(\d+)",
                                  Path(f"/proc/{proc.pid}/limits").read_text())[1])
            assert limit == limits[1]  # the soft limit raised to the hard one
            assert_serves(port)
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=20)
        assert ("note: mock server: open-file limit 1024 (hard 1024), below the 4098" in err) \
            == note, err
