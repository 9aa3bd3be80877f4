"""The lean HTTP clients: outcomes, failure categories, keep-alive, the pool.

Every behaviour is checked on the blocking client and on the async client under both event
loops, against the real mock server and against small raw socket servers (threads in this
process) that misbehave on purpose. The last test runs the same cases through the standard
clients and the lean ones and compares their categories."""

from __future__ import annotations

import asyncio
import re
import socket
import socketserver
import struct
import threading
import time
from contextlib import ExitStack, contextmanager

import pytest
import uvloop

from harness.client.lean_async import LeanAsyncClient
from harness.client.lean_blocking import LeanBlockingClient
from harness.client.lean_parser import RequestTemplate
from harness.client.standard_async import AiohttpClient
from harness.client.standard_blocking import BlockingHttpClient
from harness.core.wire import RequestSpec, endpoint_request
from harness.mock.process import ServerProcess

OK = frozenset(range(200, 300))
CONNECT_S, TOTAL_S = 0.3, 0.5
LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
KINDS = ["blocking", "asyncio", "uvloop"]  # the blocking client, or the async one on a loop

MOCK = """\
name: lean
server:
  seed: 7
  endpoints:
    api: {latency: 5ms, size: 128}
    down: {latency: 5ms, size: 0, status: 503}
    slow: {latency: 2s, size: 16}
workload: {endpoint: api}
load: {requests: 10, concurrency: 2, workers: 1}
backends: [threads]
"""


@pytest.fixture(scope="module")
def mock():
    with ServerProcess(MOCK) as server:
        yield server.url


def run_on(loop: str, coro_fn):
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        return runner.run(coro_fn())


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def requests(kind: str, url: str, seqs=(1,), endpoint="api", lean=True, concurrency=1,
             connect_s=CONNECT_S, total_s=TOTAL_S) -> list[tuple]:
    """(outcome, slot) of each seq, one after the other, on one client of the given kind."""
    if kind == "blocking":
        cls = LeanBlockingClient if lean else BlockingHttpClient
        client = cls(*host_port(url), endpoint, connect_s, total_s, OK)
        try:
            if lean:
                return [(x.outcome, x.slot) for x in map(client.exchange, seqs)]
            return [(client.request(seq), None) for seq in seqs]
        finally:
            client.close()

    async def go():
        cls = LeanAsyncClient if lean else AiohttpClient
        client = cls(url, endpoint, concurrency, connect_s, total_s, OK)
        try:
            return [await client.request(seq) for seq in seqs]
        finally:
            await client.close()

    return run_on(kind, go)


def one(kind: str, url: str, **kw):
    return requests(kind, url, **kw)[0][0]


# --------------------------------------------------------------------------------------------
# Raw servers: one handler per connection, in a thread


def read_request(sock: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
    return data


def seq_of(request: bytes) -> int:
    return int(re.search(rb"seq=(\d+)", request).group(1))


def rst_close(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def wait_for_close(sock: socket.socket) -> None:
    try:
        while sock.recv(4096):
            pass
    except OSError:
        pass


def answering(reply, then=wait_for_close):
    """A handler that reads one request, sends `reply`, then runs `then` on the socket."""

    def handle(sock):
        if read_request(sock) is not None:
            sock.sendall(reply)
            then(sock)

    return handle


def keep_alive(answer):
    """A handler answering every request on its connection with answer(i, seq) — bytes, or
    None to close the connection without answering (i counts requests on this connection)."""

    def handle(sock):
        i = 0
        while (request := read_request(sock)) is not None:
            reply = answer(i, seq_of(request))
            if reply is None:
                return
            sock.sendall(reply)
            i += 1

    return handle


def response(body=b"hello", status="200 OK", headers="X-Harness-Delay-Ns: 7\r\n") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n").encode() + body


CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Harness-Delay-Ns: 7\r\n\r\n"
           b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
TRUNCATED = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"


def _truncated_then_rst(sock):
    time.sleep(0.05)  # the partial response arrives first
    rst_close(sock)


HANDLERS = {
    "close_at_accept": lambda sock: sock.close(),
    "close_after_request": answering(b"", then=lambda sock: sock.close()),
    "rst_after_request": answering(b"", then=rst_close),
    "silent": answering(b""),
    "truncated_body": answering(TRUNCATED, then=lambda sock: sock.close()),
    "truncated_body_rst": answering(TRUNCATED, then=_truncated_then_rst),
    "partial_headers": answering(b"HTTP/1.1 200 OK\r\nContent-Len", then=lambda s: s.close()),
    "garbage": answering(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"),
    "bad_chunk": answering(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
    "chunked": keep_alive(lambda i, seq: CHUNKED),
    "eof_body": answering(b"HTTP/1.1 200 OK\r\nX-Harness-Delay-Ns: 7\r\n\r\nhello world",
                          then=lambda sock: sock.close()),
    "connection_close": keep_alive(
        lambda i, seq: None if i else response(headers="Connection: close\r\n")),
    # answers the first request on a connection, closes on the second: a stale keep-alive
    "stale_keep_alive": keep_alive(lambda i, seq: None if i else response()),
    # seq 1 never answered (the client times out), the rest answered at once
    "silent_on_seq_1": keep_alive(lambda i, seq: (time.sleep(2) if seq == 1 else response())),
}


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def raw_server(handler):
    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            try:
                handler(self.request)
            except OSError:
                pass

    server = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def raw(request):
    with raw_server(HANDLERS[request.param]) as url:
        yield url


def free_port_url() -> str:
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextmanager
def full_backlog():
    """A listener whose accept queue is full: the kernel drops new SYNs, connects hang."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for sock in [*fillers, listener]:
            sock.close()


# --------------------------------------------------------------------------------------------
# The lean clients


@pytest.mark.parametrize("kind", KINDS)
def test_ok_carries_the_server_delay_and_the_byte_counts(mock, kind):
    template = RequestTemplate(mock.removeprefix("http://"), "api")
    if kind == "blocking":
        client = LeanBlockingClient(*host_port(mock), "api", CONNECT_S, TOTAL_S, OK)
        try:
            x = client.exchange(3)
        finally:
            client.close()
    else:
        async def go():
            client = LeanAsyncClient(mock, "api", 2, CONNECT_S, TOTAL_S, OK)
            try:
                return await client.exchange(3)
            finally:
                await client.close()

        x = run_on(kind, go)
    assert x.outcome.ok and x.outcome.status == 200 and x.outcome.error is None
    assert x.outcome.server_delay_target_ns == 5_000_000 <= x.outcome.server_delay_ns
    assert x.bytes_sent == len(template.render(3))
    assert x.bytes_received > 128  # the body and the headers
    assert re.fullmatch(r"conn-\d+", x.slot)


def test_the_request_bytes():
    template = RequestTemplate("127.0.0.1:8080", "api")
    assert template.render(42) == b"GET /api?seq=42 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
    with_body = RequestTemplate("h", endpoint_request("api", method="POST",
                                                      headers=(("X-A", "1"),), body=b"hey"))
    assert with_body.render(1) == (b"POST /api?seq=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n"
                                   b"Content-Length: 3\r\n\r\nhey")
    # a body of its own for one request (the pipeline's tensor)
    assert with_body.render(2, b"hello") == (b"POST /api?seq=2 HTTP/1.1\r\nHost: h\r\n"
                                             b"X-A: 1\r\nContent-Length: 5\r\n\r\nhello")
    external = RequestTemplate("h", RequestSpec(path="/items?x=1", seq_query=False))
    assert external.render(7) == b"GET /items?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"


@pytest.mark.parametrize("kind", KINDS)
def test_status_outside_ok_status(mock, kind):
    outcome = one(kind, mock, endpoint="down")
    assert not outcome.ok and outcome.status == 503 and outcome.error == "http_status"
    assert outcome.server_delay_target_ns == 5_000_000 <= outcome.server_delay_ns


@pytest.mark.parametrize("kind", KINDS)
def test_nothing_listening_is_a_connect_error(kind):
    outcome = one(kind, free_port_url())
    assert not outcome.ok and outcome.status == 0 and outcome.error == "connect"


@pytest.mark.parametrize("kind", KINDS)
def test_connect_timeout_is_a_connect_error(kind):
    with full_backlog() as url:
        start = time.monotonic()
        outcome = one(kind, url, connect_s=0.2, total_s=5.0)
        elapsed = time.monotonic() - start
    assert outcome.error == "connect" and outcome.status == 0
    assert 0.15 < elapsed < 2.0


@pytest.mark.parametrize("kind", KINDS)
def test_a_connect_cut_short_by_the_total_is_a_timeout(kind):
    with full_backlog() as url:
        start = time.monotonic()
        outcome = one(kind, url, connect_s=5.0, total_s=0.2)
        elapsed = time.monotonic() - start
    assert outcome.error == "timeout" and outcome.status == 0
    assert 0.15 < elapsed < 2.0


@pytest.mark.parametrize("raw", ["silent"], indirect=True)
@pytest.mark.parametrize("kind", KINDS)
def test_no_answer_times_out_within_the_total(raw, kind):
    start = time.monotonic()
    outcome = one(kind, raw, total_s=0.3)
    elapsed = time.monotonic() - start
    assert outcome.error == "timeout" and outcome.status == 0 and not outcome.ok
    assert 0.28 < elapsed < 1.5


@pytest.mark.parametrize("kind", KINDS)
def test_slow_mock_endpoint_times_out(mock, kind):
    outcome = one(kind, mock, endpoint="slow", total_s=0.2)
    assert outcome.error == "timeout" and outcome.status == 0


@pytest.mark.parametrize("raw, error", [
    ("close_at_accept", "reset"),
    ("close_after_request", "reset"),
    ("rst_after_request", "reset"),
    ("truncated_body", "protocol"),
    ("truncated_body_rst", "protocol"),
    ("partial_headers", "protocol"),
    ("garbage", "protocol"),
    ("bad_chunk", "protocol"),
], indirect=["raw"])
@pytest.mark.parametrize("kind", KINDS)
def test_failure_categories(raw, error, kind):
    """Closed or reset before any response byte: reset; after some: protocol."""
    outcome = one(kind, raw)
    assert (outcome.ok, outcome.status, outcome.error) == (False, 0, error)


@pytest.mark.parametrize("raw", ["chunked"], indirect=True)
@pytest.mark.parametrize("kind", KINDS)
def test_chunked_body_on_a_kept_alive_connection(raw, kind):
    results = requests(kind, raw, seqs=(1, 2, 3))
    assert [o.ok for o, _ in results] == [True] * 3
    assert {o.server_delay_ns for o, _ in results} == {7}
    assert len({slot for _, slot in results}) == 1


@pytest.mark.parametrize("raw", ["eof_body"], indirect=True)
@pytest.mark.parametrize("kind", KINDS)
def test_body_delimited_by_the_close(raw, kind):
    outcome = one(kind, raw)
    assert outcome.ok and outcome.status == 200 and outcome.server_delay_ns == 7


@pytest.mark.parametrize("raw", ["connection_close"], indirect=True)
@pytest.mark.parametrize("kind", KINDS)
def test_connection_close_is_honoured(raw, kind):
    results = requests(kind, raw, seqs=(1, 2, 3))
    assert [o.ok for o, _ in results] == [True] * 3
    assert len({slot for _, slot in results}) == 3  # a new connection each time


@pytest.mark.parametrize("raw", ["silent_on_seq_1"], indirect=True)
@pytest.mark.parametrize("kind", KINDS)
def test_a_connection_that_failed_is_not_reused(raw, kind):
    (a, slot_a), (b, _), (c, slot_c), (d, slot_d) = requests(kind, raw, seqs=(0, 1, 2, 3),
                                                             total_s=0.3)
    assert (a.ok, b.error, c.ok, d.ok) == (True, "timeout", True, True)
    assert slot_a != slot_c and slot_c == slot_d


@pytest.mark.parametrize("raw", ["stale_keep_alive"], indirect=True)
@pytest.mark.parametrize("kind", KINDS)
def test_stale_keep_alive(raw, kind):
    """The async client retries once on a new connection (as aiohttp does); the blocking one
    does not (as http.client does)."""
    (first, slot_1), (second, slot_2) = requests(kind, raw, seqs=(0, 1))
    assert first.ok
    if kind == "blocking":
        assert second.error == "reset"
    else:
        assert second.ok and slot_2 != slot_1


@pytest.mark.parametrize("loop", LOOPS)
def test_keep_alive_pool_never_exceeds_the_concurrency(mock, loop):
    async def go():
        client = LeanAsyncClient(mock, "api", 4, CONNECT_S, 5.0, OK)
        try:
            results = await asyncio.gather(*(client.request(i) for i in range(200)))
            return results, client.open_connections
        finally:
            await client.close()

    results, still_open = run_on(loop, go)
    assert all(o.ok and o.server_delay_target_ns == 5_000_000 <= o.server_delay_ns
               for o, _ in results)
    slots = {slot for _, slot in results}
    assert 1 <= len(slots) <= 4 and all(re.fullmatch(r"conn-\d+", s) for s in slots)
    assert still_open == len(slots)


def test_blocking_keep_alive_uses_one_connection(mock):
    results = requests("blocking", mock, seqs=range(20))
    assert all(o.ok for o, _ in results) and len({slot for _, slot in results}) == 1


@pytest.mark.parametrize("raw", ["silent"], indirect=True)
@pytest.mark.parametrize("loop", LOOPS)
def test_waiting_for_a_connection_counts_against_the_total(raw, loop):
    """With one connection busy on a silent server, the second request waits for it and times
    out at its own deadline, not after the first's."""
    async def go():
        client = LeanAsyncClient(raw, "api", 1, CONNECT_S, 1.0, OK)
        try:
            start = time.monotonic()
            results = await asyncio.gather(client.request(1), client.request(2))
            return results, time.monotonic() - start
        finally:
            await client.close()

    results, elapsed = run_on(loop, go)
    assert [o.error for o, _ in results] == ["timeout", "timeout"]
    assert elapsed < 1.6  # after the first's deadline, it would be 2 s


@pytest.mark.parametrize("loop", LOOPS)
def test_warm_opens_connections_ahead_at_a_bounded_rate(mock, loop):
    async def go():
        client = LeanAsyncClient(mock, "api", 5, CONNECT_S, 5.0, OK)
        try:
            start = time.monotonic()
            opened = await client.warm(3, rate_per_s=20)
            took = time.monotonic() - start
            results = await asyncio.gather(*(client.request(i) for i in range(3)))
            return opened, took, results, client.open_connections
        finally:
            await client.close()

    opened, took, results, still_open = run_on(loop, go)
    assert opened == 3 and took >= 0.09  # two intervals of 50 ms between three connects
    assert all(o.ok for o, _ in results) and still_open == 3  # the warm ones were used


@pytest.mark.parametrize("raw", ["silent"], indirect=True)
@pytest.mark.parametrize("loop", LOOPS)
def test_a_cancelled_request_closes_its_connection(raw, loop):
    async def go():
        client = LeanAsyncClient(raw, "api", 2, CONNECT_S, 5.0, OK)
        try:
            task = asyncio.ensure_future(client.request(1))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.05)
            return client.open_connections
        finally:
            await client.close()

    assert run_on(loop, go) == 0


@pytest.mark.parametrize("raw", ["silent"], indirect=True)
def test_blocking_abort_from_another_thread(raw):
    client = LeanBlockingClient(*host_port(raw), "api", CONNECT_S, 5.0, OK)
    threading.Timer(0.1, client.abort).start()
    start = time.monotonic()
    outcome = client.request(1)
    assert not outcome.ok and outcome.error == "reset" and time.monotonic() - start < 1.0
    client.close()


# --------------------------------------------------------------------------------------------
# Standard and lean clients, the same cases


CASES = {  # name: (where, endpoint, seqs, timeouts); the categories of every seq are compared
    "ok": ("mock", "api", (1,), {}),
    "http_status": ("mock", "down", (1,), {}),
    "mock_timeout": ("mock", "slow", (1,), {}),
    "refused": ("refused", "api", (1,), {}),
    "connect_timeout": ("backlog", "api", (1,), {}),
    "total_cuts_connect": ("backlog", "api", (1,), {"connect_s": 5.0, "total_s": 0.3}),
    **{name: (name, "api", (1,), {}) for name in [
        "close_at_accept", "close_after_request", "rst_after_request", "silent",
        "truncated_body", "truncated_body_rst", "partial_headers", "garbage", "bad_chunk",
        "chunked", "eof_body"]},
    "connection_close": ("connection_close", "api", (1, 2), {}),
    "stale_keep_alive": ("stale_keep_alive", "api", (0, 1), {}),
}

# Where the standard client says otherwise: (case, "blocking" | "async") → its categories.
STANDARD_DIFFERS = {
    # aiohttp reports a close inside the headers as ServerDisconnectedError, which cannot be
    # told from a close before any byte.
    ("partial_headers", "async"): ["reset"],
    # http.client takes a close inside the headers for their end, and the body for empty.
    ("partial_headers", "blocking"): [None],
}


@pytest.fixture(scope="module")
def case_urls(mock):
    with ExitStack() as stack:
        urls = {name: stack.enter_context(raw_server(HANDLERS[where]))
                for name, (where, *_) in CASES.items() if where in HANDLERS}
        urls.update(mock=mock, refused=free_port_url(), backlog=stack.enter_context(full_backlog()))
        yield urls


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind", KINDS)
def test_standard_and_lean_say_the_same(case_urls, case, kind):
    where, endpoint, seqs, timeouts = CASES[case]
    url = case_urls[case if where in HANDLERS else where]
    lean = [o.error for o, _ in requests(kind, url, seqs=seqs, endpoint=endpoint, **timeouts)]
    standard = [o.error for o, _ in requests(kind, url, seqs=seqs, endpoint=endpoint,
                                             lean=False, **timeouts)]
    family = "blocking" if kind == "blocking" else "async"
    if (case, family) in STANDARD_DIFFERS:
        assert standard == STANDARD_DIFFERS[case, family]
        assert lean != standard
    else:
        assert lean == standard
