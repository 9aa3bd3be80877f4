"""The lean client in a thread or process slot: one keep-alive connection on a blocking socket
(an SSL socket with `tls`)."""

from __future__ import annotations

import socket
import time

from httptools import HttpResponseParser

from harness.client.lean_parser import (
    FAILED,
    NO_SLOT,
    PARSE_ERRORS,
    Exchange,
    ResponseReader,
    request_template,
)
from harness.core.schema import CONNECT, HTTP_STATUS, PROTOCOL, RESET, TIMEOUT, Outcome
from harness.core.tls import TlsSettings, client_context, server_name
from harness.core.wire import RequestMix, RequestSpec


class LeanBlockingClient(ResponseReader):
    """One keep-alive connection on a blocking socket (TCP_NODELAY), for one thread or process
    slot. The total timeout is a deadline: every recv waits at most what is left of it.

    Like BlockingHttpClient: a connect that fails or times out is `connect` (but `timeout`
    when the total timeout is the shorter and cut it short, as in LeanAsyncClient); a failed
    connection is closed and the next request reconnects; no retry on a stale connection."""

    _BUFSIZE = 65536

    def __init__(self, host: str, port: int, endpoint: str | RequestSpec | RequestMix,
                 connect_timeout_s: float,
                 total_timeout_s: float, ok_status: frozenset[int],
                 tls: TlsSettings | None = None) -> None:
        self._host, self._port = host, port
        self._tls = None if tls is None else (client_context(tls), server_name(tls, host))
        self.connects: list[int] = []  # ns to open each connection opened before the clock
        self._connect_ns: int | None = None  # the new connection's, for its first request
        self._template = request_template(f"{host}:{port}", endpoint)
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
                return Exchange(FAILED[error], NO_SLOT, 0, 0)
            except OSError:  # refused, unreachable
                return Exchange(FAILED[CONNECT], NO_SLOT, 0, 0)
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
            outcome = FAILED[TIMEOUT]
        except PARSE_ERRORS:
            outcome = FAILED[PROTOCOL]
        except (OSError, ValueError):  # ValueError: abort() and close() raced a recv
            outcome = FAILED[RESET if self.received == 0 else PROTOCOL]
        if not self.reusable or outcome.error not in (None, HTTP_STATUS):
            self.close()
        if self._connect_ns is not None:  # this request opened the connection
            outcome, self._connect_ns = outcome._replace(connect_ns=self._connect_ns), None
        return Exchange(outcome, label, len(data), self.received)

    def _connect(self, timeout: float) -> socket.socket:
        started = time.perf_counter_ns()
        sock = socket.create_connection((self._host, self._port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.label = f"conn-{sock.getsockname()[1]}"
            if self._tls is not None:  # the handshake, under the same connect timeout
                sock = self._tls[0].wrap_socket(sock, server_hostname=self._tls[1])
        except OSError:
            sock.close()
            raise
        self._connect_ns = time.perf_counter_ns() - started
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
                return
            self.connects.append(self._connect_ns)
            self._connect_ns = None

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
