"""The lean HTTP/1.1 clients (issue 10): keep-alive connections, the response parsed by httptools.

`LeanAsyncClient` is an asyncio.Protocol per connection, for the event loops (asyncio and
uvloop); `LeanBlockingClient` is one blocking socket, for a thread or process slot. They take
the same settings and have the same methods as AiohttpClient and BlockingHttpClient, and
classify failures into the same categories (schema.CONNECT, TIMEOUT, RESET, PROTOCOL,
HTTP_STATUS), so a workload can swap one for the other.

Why httptools: it wraps llhttp, the C parser of Node.js, and is what uvicorn parses with. The
per-response Python work is a handful of callbacks (one per header, one each for the end of the
headers and of the message); the bytes are scanned in C. The alternatives cost more per
response: h11 is a pure-Python state machine (regular expressions and an event object per
step); http.client reads the status line and headers line by line through a buffered file and
builds an email.message.Message; aiohttp's own parser is C too but comes with the whole client
(request/response objects, cookie jar, connector, timeout contexts) around it. httptools has
no feed_eof, so a body delimited by the connection's close (neither Content-Length nor chunked)
is completed here, in connection_lost. It also cannot be told a response answers a HEAD
request: when methods arrive (issue 8), a HEAD response must be completed at the end of its
headers.

What one request costs here: one bytes concatenation for the request line (the rest is
precomputed), one write, one timer (`loop.call_at` on the deadline, cancelled when the response
completes; no wait_for, no extra task), one future, and the parser callbacks.

Byte counts (for issue 8): `exchange(seq)` returns an `Exchange` with the bytes sent and
received besides the outcome and slot; `request(seq)` keeps the standard clients' return."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from typing import NamedTuple
from urllib.parse import urlsplit

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from harness.http import DELAY_HEADER, DELAY_TARGET_HEADER, RequestSpec, as_request
from harness.schema import CONNECT, HTTP_STATUS, PROTOCOL, RESET, TIMEOUT, Outcome

_DELAY = DELAY_HEADER.lower().encode()
_TARGET = DELAY_TARGET_HEADER.lower().encode()
_FRAMING = (b"content-length", b"transfer-encoding")
_FAILED = {e: Outcome(False, 0, e, None) for e in (CONNECT, TIMEOUT, RESET, PROTOCOL)}
_PARSE_ERRORS = (HttpParserError, HttpParserUpgrade)  # an upgrade is not a response we expect
NO_SLOT = "conn-?"


class Exchange(NamedTuple):
    """One request as the wire saw it: the outcome, the connection, and the bytes each way
    (over all attempts when a stale keep-alive connection made the client retry)."""

    outcome: Outcome
    slot: str
    bytes_sent: int
    bytes_received: int


class RequestTemplate:
    """The request's bytes, precomputed around the sequence number: `prefix + seq + suffix`
    (the whole request when it carries no seq). Method, headers and the spec's body go into
    the prefix and suffix once, here, so the per-request work stays one concatenation; a
    per-request body (the pipeline's tensor) adds its Content-Length."""

    __slots__ = ("prefix", "suffix", "head_end", "seq_query", "body_len", "head")

    def __init__(self, host: str, request: RequestSpec | str) -> None:
        request = as_request(request)
        marker = 9_876_543_210_123
        target = request.target(marker)
        self.seq_query = str(marker) in target
        before, _, after = target.partition(str(marker))
        lines = "".join(f"{k}: {v}\r\n" for k, v in (("Host", host), *request.headers))
        self.prefix = f"{request.method} {before}".encode("latin-1")
        self.head_end = f"{after} HTTP/1.1\r\n{lines}".encode("latin-1")
        self.suffix = self.head_end + _length(request.body) + request.body
        self.body_len = len(request.body)
        self.head = request.method == "HEAD"

    def render(self, seq: int, body: bytes | None = None) -> bytes:
        if body is None:
            if not self.seq_query:
                return self.prefix + self.suffix
            return self.prefix + b"%d" % seq + self.suffix
        start = self.prefix + (b"%d" % seq if self.seq_query else b"")
        return start + self.head_end + _length(body) + body


def _int(value: bytes) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _length(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) if body else b"\r\n"


class _Response:
    """httptools callbacks for one response at a time on one connection. The parser lives as
    long as the connection (llhttp resets itself between keep-alive messages)."""

    def _reset(self) -> None:
        self.status = 0
        self.delay_ns: int | None = None
        self.framed = False  # Content-Length or Transfer-Encoding seen: the body has an end
        self.headers_done = False
        self.complete = False
        self.received = 0
        self.body_bytes = 0
        self.target_ns: int | None = None
        self.stale_parser = False

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if not self._template.seq_query:  # an external target: its headers are its own
            if name in _FRAMING:
                self.framed = True
        elif name == _DELAY:
            self.delay_ns = _int(value)
        elif name == _TARGET:
            self.target_ns = _int(value)
        elif name in _FRAMING:
            self.framed = True

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.headers_done = True
        if self._template.head and not (100 <= self.status < 200):
            # A response to HEAD has no body whatever its Content-Length says; httptools cannot
            # be told so: the message ends here and the connection gets a fresh parser.
            self.stale_parser = True
            self.on_message_complete()

    def on_message_begin(self) -> None:
        if self.complete:  # a second response to one request: do not trust this connection
            self.reusable = False

    def _interim(self) -> bool:
        """A 1xx response (not 101) precedes the real one: start over and keep reading."""
        if 100 <= self.status < 200 and self.status != 101:
            received = self.received
            self._reset()
            self.received = received
            return True
        return False

    def _outcome(self, ok_status: frozenset[int]) -> Outcome:
        status = self.status
        ok = status in ok_status
        return Outcome(ok, status, None if ok else HTTP_STATUS, self.delay_ns,
                       server_delay_target_ns=self.target_ns, bytes_sent=self.body_sent,
                       bytes_received=self.body_bytes)

    def _eof_outcome(self, ok_status: frozenset[int], clean: bool = True) -> Outcome:
        """The connection closed before the message completed (`clean`: by a FIN, not a
        reset or an error)."""
        if clean and self.headers_done and not self.framed:
            self.complete = True  # the body was delimited by the close: a whole response
            return self._outcome(ok_status)
        return _FAILED[RESET if self.received == 0 else PROTOCOL]


# --------------------------------------------------------------------------------------------
# Event loops


class _Connection(asyncio.Protocol, _Response):
    """One keep-alive connection of LeanAsyncClient."""

    def __init__(self, client: LeanAsyncClient) -> None:
        self._client = client
        self._template = client._template
        self.body_sent = 0
        self._parser = HttpResponseParser(self)
        self._feed = self._parser.feed_data
        self.transport: asyncio.Transport | None = None
        self.label = NO_SLOT
        self.alive = False
        self.reusable = False
        self.counted = False  # holds one of the client's `concurrency` connection slots
        self.used = False  # has completed a request (a reused connection may be stale)
        self.sent = 0
        self._fut: asyncio.Future | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reset()

    # asyncio.Protocol

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.alive = self.reusable = True
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        sockname = transport.get_extra_info("sockname")
        if sockname:
            self.label = f"conn-{sockname[1]}"

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self._fut is None:  # nothing asked: unsolicited bytes, the connection is unusable
            self.reusable = False
            self.transport.abort()
            return
        try:
            self._feed(data)
        except _PARSE_ERRORS:
            self._fail(PROTOCOL)
        if self.stale_parser:  # after a response to HEAD
            self._parser = HttpResponseParser(self)
            self._feed = self._parser.feed_data
            self.stale_parser = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = self.reusable = False
        if self._fut is not None:
            self._deliver(self._eof_outcome(self._client._ok_status, exc is None))
        else:
            self._client._discard(self)

    # httptools (the rest is in _Response)

    def on_message_complete(self) -> None:
        if self._interim():
            return
        self.complete = True
        if not self._parser.should_keep_alive():
            self.reusable = False
        self.used = True
        self._deliver(self._outcome(self._client._ok_status))

    # the client's side

    def start(self, fut: asyncio.Future, data: bytes, deadline: float, body_sent: int) -> None:
        self._reset()
        self.body_sent = body_sent
        self._fut = fut
        self.sent = len(data)
        self._timer = self._client._loop.call_at(deadline, self._fail, TIMEOUT)
        self.transport.write(data)

    def _deliver(self, outcome: Outcome) -> None:
        fut, self._fut = self._fut, None
        self._timer.cancel()
        if not outcome.ok and outcome.error != HTTP_STATUS:
            self.reusable = False
        if not fut.done():  # it is cancelled when the request's task was
            fut.set_result(outcome)

    def _fail(self, error: str) -> None:
        if self._fut is not None:
            self._deliver(_FAILED[error])
        self.kill()

    def kill(self) -> None:
        self.reusable = False
        if self.transport is not None and self.alive:
            self.transport.abort()  # connection_lost follows: the slot is released there


class LeanAsyncClient:
    """At most `concurrency` keep-alive connections to one server; a request takes an idle one
    (the most recently used first), opens a new one while under the limit, or waits for one.

    `total_timeout_s` bounds the whole request from the call (waiting for a connection
    included, as aiohttp's total does); `connect_timeout_s` bounds opening a connection, and a
    connection that did not open in time is a `connect` error (as BlockingHttpClient says;
    AiohttpClient says `timeout`) — unless the request's deadline came first (it waited for a
    connection, or the total is the shorter timeout): then it is a `timeout`.

    A connection that failed is closed, never reused. A request that finds its reused
    keep-alive connection closed by the server before any response byte is retried once on a
    new connection (RFC 9112 §9.3.1; aiohttp does so too)."""

    def __init__(self, base_url: str, endpoint: str | RequestSpec, concurrency: int,
                 connect_timeout_s: float,
                 total_timeout_s: float, ok_status: frozenset[int]) -> None:
        url = urlsplit(base_url)
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"lean client: only http://host[:port] URLs, not {base_url!r}")
        self._host, self._port = url.hostname, url.port or 80
        self._template = RequestTemplate(url.netloc, endpoint)
        self._limit = max(1, concurrency)
        self._connect_timeout = connect_timeout_s
        self._total = total_timeout_s
        self._ok_status = ok_status
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        self._open = 0  # connections open or opening (≤ concurrency)
        self._waiters: deque[asyncio.Future] = deque()
        self._closed = False

    @property
    def open_connections(self) -> int:
        return self._open

    async def request(self, seq: int, body: bytes | None = None) -> tuple[Outcome, str]:
        """Returns the outcome and the slot label: the local port of the connection used.
        `body` replaces the spec's body for this request."""
        exchange = await self.exchange(seq, body)
        return exchange[0], exchange[1]

    async def exchange(self, seq: int, body: bytes | None = None) -> Exchange:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        deadline = loop.time() + self._total
        data = self._template.render(seq, body)
        body_sent = self._template.body_len if body is None else len(body)
        sent = received = 0
        retry = True
        while True:
            conn = None
            idle = self._idle
            while idle:
                conn = idle.pop()
                if conn.reusable:
                    break
                conn = None
            if conn is None:
                conn = await self._acquire(deadline)
                if conn.__class__ is str:
                    return Exchange(_FAILED[conn], NO_SLOT, sent, received)
                if not conn.reusable:  # died between being handed over and now
                    self._discard(conn)
                    continue
            fut = loop.create_future()
            conn.start(fut, data, deadline, body_sent)
            try:
                outcome = await fut
            except asyncio.CancelledError:
                conn.kill()  # a response is on its way: the connection cannot be reused
                raise
            finally:
                sent += conn.sent
                received += conn.received
                self._release(conn)
            if (retry and outcome.error == RESET and conn.used and conn.received == 0
                    and loop.time() < deadline):
                retry = False
                continue
            return Exchange(outcome, conn.label, sent, received)

    async def warm(self, n: int, rate_per_s: float | None = None) -> int:
        """Open connections before the clock starts, up to n open in all (and ≤ concurrency),
        at most `rate_per_s` new ones a second when given. Returns how many are open; a
        connection that failed to open is not retried here (the requests will say so)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        want = min(n, self._limit) - self._open
        interval = 1.0 / rate_per_s if rate_per_s else 0.0
        start = loop.time()
        tasks = []
        for i in range(max(0, want)):
            if interval and i:
                await asyncio.sleep(max(0.0, start + i * interval - loop.time()))
            if self._open >= self._limit:
                break
            self._open += 1
            tasks.append(loop.create_task(self._connect(loop.time() + self._connect_timeout)))
        for conn in await asyncio.gather(*tasks):
            if conn.__class__ is not str:
                self._release(conn)
        return self._open

    async def close(self) -> None:
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(CONNECT)
        for conn in list(self._all):
            conn.kill()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run connection_lost

    # the pool

    async def _acquire(self, deadline: float) -> _Connection | str:
        """A connection (new or handed over by a finished request) or a failure category."""
        if self._closed:
            return CONNECT
        if self._open < self._limit:
            self._open += 1
            return await self._connect(deadline)
        loop = self._loop
        waiter = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            got = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed over as we were cancelled
                self._give_back(waiter.result())
            raise
        finally:
            timer.cancel()
        if got is None:  # a slot was freed for us (already counted): open a connection
            return await self._connect(deadline)
        return got

    def _give_back(self, got) -> None:
        if got is None:
            self._open -= 1
            self._slot_freed()
        elif got.__class__ is not str:
            self._release(got)

    async def _connect(self, deadline: float) -> _Connection | str:
        """Opens a connection in a slot already counted in `_open`; on failure frees it."""
        loop = self._loop
        conn = _Connection(self)
        conn.counted = True
        self._all.add(conn)
        connect_deadline = loop.time() + self._connect_timeout
        try:
            async with asyncio.timeout_at(min(deadline, connect_deadline)):
                await loop.create_connection(lambda: conn, self._host, self._port)
        except TimeoutError:  # the request's own deadline, when it came first, is a `timeout`
            self._discard(conn)
            return TIMEOUT if deadline < connect_deadline else CONNECT
        except OSError:  # refused, unreachable
            self._discard(conn)
            return CONNECT
        except BaseException:
            self._discard(conn)
            raise
        if self._closed:
            conn.kill()
            return CONNECT
        return conn

    def _release(self, conn: _Connection) -> None:
        if conn.reusable and not self._closed:
            waiters = self._waiters
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(conn)
                    return
            self._idle.append(conn)
        else:
            self._discard(conn)

    def _discard(self, conn: _Connection) -> None:
        """Closes a connection for good and frees its slot (once, however often called)."""
        conn.kill()
        if conn.counted:
            conn.counted = False
            self._all.discard(conn)
            try:
                self._idle.remove(conn)
            except ValueError:
                pass
            self._open -= 1
            self._slot_freed()

    def _slot_freed(self) -> None:
        waiters = self._waiters
        while waiters and not self._closed:
            waiter = waiters.popleft()
            if not waiter.done():
                self._open += 1
                waiter.set_result(None)
                return


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(TIMEOUT)


# --------------------------------------------------------------------------------------------
# Threads and processes


class LeanBlockingClient(_Response):
    """One keep-alive connection on a blocking socket (TCP_NODELAY), for one thread or process
    slot. The total timeout is a deadline: every recv waits at most what is left of it.

    Like BlockingHttpClient: a connect that fails or times out is `connect` (but `timeout`
    when the total timeout is the shorter and cut it short, as in LeanAsyncClient); a failed
    connection is closed and the next request reconnects; no retry on a stale connection."""

    _BUFSIZE = 65536

    def __init__(self, host: str, port: int, endpoint: str | RequestSpec,
                 connect_timeout_s: float,
                 total_timeout_s: float, ok_status: frozenset[int]) -> None:
        self._host, self._port = host, port
        self._template = RequestTemplate(f"{host}:{port}", endpoint)
        self._connect_timeout = connect_timeout_s
        self._total = total_timeout_s
        self._ok_status = ok_status
        self._sock: socket.socket | None = None
        self._parser: HttpResponseParser | None = None
        self._buf = bytearray(self._BUFSIZE)
        self._view = memoryview(self._buf)
        self.label = NO_SLOT
        self.reusable = False
        self._reset()

    def request(self, seq: int, body: bytes | None = None) -> Outcome:
        return self.exchange(seq, body)[0]

    def exchange(self, seq: int, body: bytes | None = None) -> Exchange:
        deadline = time.monotonic() + self._total
        sock = self._sock
        if sock is None:
            try:
                sock = self._connect(min(self._connect_timeout, self._total))
            except TimeoutError:  # cut short by the total timeout, when shorter: a `timeout`
                error = TIMEOUT if self._total < self._connect_timeout else CONNECT
                return Exchange(_FAILED[error], NO_SLOT, 0, 0)
            except OSError:  # refused, unreachable
                return Exchange(_FAILED[CONNECT], NO_SLOT, 0, 0)
        data = self._template.render(seq, body)
        self._reset()
        self.body_sent = self._template.body_len if body is None else len(body)
        label = self.label
        feed, recv_into, view = self._parser.feed_data, sock.recv_into, self._view
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.sendall(data)
            while not self.complete:
                n = recv_into(self._buf)
                if n == 0:
                    outcome = self._eof_outcome(self._ok_status)
                    self.reusable = False
                    break
                self.received += n
                feed(view[:n])
                if self.stale_parser:  # after a response to HEAD
                    self._parser = HttpResponseParser(self)
                    feed = self._parser.feed_data
                    self.stale_parser = False
                if not self.complete:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    sock.settimeout(left)
            else:
                outcome = self._outcome(self._ok_status)
        except TimeoutError:
            outcome = _FAILED[TIMEOUT]
        except _PARSE_ERRORS:
            outcome = _FAILED[PROTOCOL]
        except (OSError, ValueError):  # ValueError: abort() and close() raced a recv
            outcome = _FAILED[RESET if self.received == 0 else PROTOCOL]
        if not self.reusable or outcome.error not in (None, HTTP_STATUS):
            self.close()
        return Exchange(outcome, label, len(data), self.received)

    def _connect(self, timeout: float) -> socket.socket:
        sock = socket.create_connection((self._host, self._port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.label = f"conn-{sock.getsockname()[1]}"
        except OSError:
            sock.close()
            raise
        self._parser = HttpResponseParser(self)
        self._sock = sock
        self.reusable = True
        return sock

    def on_message_complete(self) -> None:
        if self._interim():
            return
        self.complete = True
        if not self._parser.should_keep_alive():
            self.reusable = False

    def warm(self) -> None:
        """Connect before the clock starts (a failure is left to the first request)."""
        if self._sock is None:
            try:
                self._connect(self._connect_timeout)
            except OSError:
                pass

    def abort(self) -> None:
        """From another thread: unblock a request in progress (used to cancel at shutdown)."""
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        sock, self._sock = self._sock, None
        self.reusable = False
        if sock is not None:
            sock.close()
