"""The lean client on the event loops (asyncio and uvloop): an asyncio.Protocol per keep-alive
connection.

What one request costs here: one bytes concatenation for the request line (the rest is
precomputed), one write, one timer (`loop.call_at` on the deadline, cancelled when the response
completes; no wait_for, no extra task), one future, and the parser callbacks."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from urllib.parse import urlsplit

from httptools import HttpResponseParser

from harness.client.lean_parser import (
    FAILED,
    NO_SLOT,
    PARSE_ERRORS,
    Exchange,
    MixTemplate,
    ResponseReader,
    request_template,
)
from harness.core.schema import CONNECT, HTTP_STATUS, PROTOCOL, RESET, TIMEOUT, Outcome
from harness.core.tls import TlsSettings, client_context, server_name
from harness.core.wire import RequestMix, RequestSpec


class ClientConnection(asyncio.Protocol, ResponseReader):
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
        self.connect_ns: int | None = None  # opening it; taken by its first request
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
        except PARSE_ERRORS:
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

    # httptools (the rest is in ResponseReader)

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
            self._deliver(FAILED[error])
        self.kill()

    def kill(self) -> None:
        self.reusable = False
        if self.transport is not None and self.alive:
            self.transport.abort()  # connection_lost follows: the slot is released there


class MixConnection(ClientConnection):
    """A connection of a client sending `workload.requests`: the response's reader takes
    `head` from the request line this request sends (a response to HEAD has no body)."""

    def start(self, fut: asyncio.Future, data: bytes, deadline: float, body_sent: int) -> None:
        self._template = self._client._template.by_head[data.startswith(b"HEAD ")]
        super().start(fut, data, deadline, body_sent)


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

    def __init__(self, base_url: str, endpoint: str | RequestSpec | RequestMix,
                 concurrency: int,
                 connect_timeout_s: float,
                 total_timeout_s: float, ok_status: frozenset[int],
                 tls: TlsSettings | None = None) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"lean client: only http(s)://host[:port] URLs, not {base_url!r}")
        self._host, self._port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
        self._tls = {} if tls is None else {"ssl": client_context(tls),
                                             "server_hostname": server_name(tls, url.hostname)}
        self.connects: list[int] = []  # ns to open each connection opened before the clock
        self._template = request_template(url.netloc, endpoint)
        self._connection = (MixConnection if isinstance(self._template, MixTemplate)
                            else ClientConnection)
        self._limit = max(1, concurrency)
        self._connect_timeout = connect_timeout_s
        self._total = total_timeout_s
        self._ok_status = ok_status
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[ClientConnection] = []
        self._all: set[ClientConnection] = set()
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
                    return Exchange(FAILED[conn], NO_SLOT, sent, received)
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
            if conn.connect_ns is not None:  # this request opened the connection
                outcome, conn.connect_ns = outcome._replace(connect_ns=conn.connect_ns), None
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
                self.connects.append(conn.connect_ns)
                conn.connect_ns = None
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

    async def _acquire(self, deadline: float) -> ClientConnection | str:
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

    async def _connect(self, deadline: float) -> ClientConnection | str:
        """Opens a connection in a slot already counted in `_open`; on failure frees it."""
        loop = self._loop
        conn = self._connection(self)
        conn.counted = True
        self._all.add(conn)
        connect_deadline = loop.time() + self._connect_timeout
        started = time.perf_counter_ns()
        try:
            async with asyncio.timeout_at(min(deadline, connect_deadline)):
                await loop.create_connection(lambda: conn, self._host, self._port, **self._tls)
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
        conn.connect_ns = time.perf_counter_ns() - started
        return conn

    def _release(self, conn: ClientConnection) -> None:
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

    def _discard(self, conn: ClientConnection) -> None:
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


