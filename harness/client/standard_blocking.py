"""Blocking keep-alive HTTP/1.1 client on http.client: one connection per thread or process slot
(HTTPS with `tls`)."""

from __future__ import annotations

import http.client
import socket
import time

from harness.core.checks import CHECK
from harness.core.schema import CONNECT, HTTP_STATUS, PROTOCOL, RESET, TIMEOUT, Outcome
from harness.core.tls import TlsSettings, client_context, server_name
from harness.core.wire import (
    DELAY_HEADER,
    DELAY_TARGET_HEADER,
    RequestMix,
    RequestSpec,
    as_request,
    header_int,
)

CHUNK = 256 * 1024


class _HttpsConnection(http.client.HTTPSConnection):
    """Sends `sni` as the server name (http.client sends the host it connects to)."""

    sni = ""

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.sni)


class BlockingHttpClient:
    def __init__(self, host: str, port: int, endpoint: str | RequestSpec | RequestMix,
                 connect_timeout_s: float, total_timeout_s: float, ok_status: frozenset[int],
                 tls: TlsSettings | None = None) -> None:
        if tls is None:
            self._conn = http.client.HTTPConnection(host, port, timeout=connect_timeout_s)
        else:
            self._conn = _HttpsConnection(host, port, timeout=connect_timeout_s,
                                          context=client_context(tls))
            self._conn.sni = server_name(tls, host)
        self.connects: list[int] = []  # ns to open each connection opened before the clock
        if isinstance(endpoint, RequestMix):  # each request picks its entry: another path
            self._entries = [(e, dict(e.headers)) for e in endpoint.entries]
            self._pick = endpoint.picker()
            self.request = self._mix_request
            endpoint = endpoint.entries[0]  # what the entries share: mock, checks
        self._spec = as_request(endpoint)
        self._headers = dict(self._spec.headers)
        self._delays = self._spec.mock  # only the mock server's delay headers mean that
        self._connect_timeout = connect_timeout_s
        self._total = total_timeout_s
        self._ok_status = ok_status

    def request(self, seq: int, body: bytes | None = None) -> Outcome:
        return self._send(self._spec, self._headers, seq, body)

    def _mix_request(self, seq: int, body: bytes | None = None) -> Outcome:
        """`request` with `workload.requests`: the entry request `seq` sends."""
        spec, headers = self._entries[self._pick(seq)]
        return self._send(spec, headers, seq, body)

    def _send(self, spec: RequestSpec, headers: dict, seq: int, body: bytes | None) -> Outcome:
        conn = self._conn
        body = spec.body if body is None else body
        deadline = time.monotonic() + self._total
        connect_ns = None
        try:
            if conn.sock is None:
                conn.timeout = min(self._connect_timeout, self._total)
                connect_ns = self._connect()
        except TimeoutError:  # cut short by the total timeout, when shorter: a `timeout`
            return self._fail(TIMEOUT if self._total < self._connect_timeout else CONNECT)
        except OSError:
            return self._fail(CONNECT)
        sock = conn.sock  # kept: http.client lets go of it after `Connection: close`
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            conn.request(spec.method, spec.path_for(seq), body=body or None, headers=headers)
            response = conn.getresponse()
        except TimeoutError:
            return self._fail(TIMEOUT, connect_ns)
        except (ConnectionError, http.client.RemoteDisconnected):  # before any response byte
            return self._fail(RESET, connect_ns)
        except (http.client.HTTPException, OSError, AttributeError):
            # AttributeError: the socket was shut down and released by abort() mid-request.
            return self._fail(PROTOCOL, connect_ns)
        checks = spec.checks
        kept: list[bytes] = []  # the body, only for checks
        try:  # the body against the same deadline: a trickle must not outlast the total timeout
            received = 0
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                if sock.fileno() != -1:  # -1 once http.client closed it (`Connection: close`);
                    sock.settimeout(left)  # the response's file still reads, at the last timeout
                chunk = response.read1(CHUNK)  # what has arrived: the deadline is checked
                if not chunk:                   # between reads, however slow the body
                    if response.length:  # closed before the declared Content-Length
                        raise http.client.IncompleteRead(b"", response.length)
                    break
                received += len(chunk)
                if checks is not None:
                    kept.append(chunk)
            response.close()  # read1 leaves a finished response open; the connection is reused
        except TimeoutError:
            return self._fail(TIMEOUT, connect_ns)
        except (http.client.HTTPException, OSError, AttributeError):  # cut short mid-body
            return self._fail(PROTOCOL, connect_ns)
        status = response.status
        ok = status in self._ok_status
        error, failed = None if ok else HTTP_STATUS, None
        if ok and checks is not None:
            failed = checks.failed(response.getheader, b"".join(kept))
            if failed is not None:
                ok, error = False, CHECK
        header = response.getheader if self._delays else (lambda name: None)
        return Outcome(ok, status, error, header_int(header(DELAY_HEADER)),
                       server_delay_target_ns=header_int(header(DELAY_TARGET_HEADER)),
                       bytes_sent=len(body), bytes_received=received, error_detail=failed,
                       connect_ns=connect_ns)

    def _connect(self) -> int:
        """Opens the connection (the TLS handshake included); returns how long it took."""
        started = time.perf_counter_ns()
        self._conn.connect()
        self._conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return time.perf_counter_ns() - started

    def warm(self) -> None:
        """Connect before the clock starts (a failure is left to the first request)."""
        try:
            if self._conn.sock is None:
                self._conn.timeout = self._connect_timeout
                self.connects.append(self._connect())
        except OSError:
            self._conn.close()

    def _fail(self, error: str, connect_ns: int | None = None) -> Outcome:
        """A failed request; `connect_ns` when it had opened its connection before failing."""
        self._conn.close()  # the next request reconnects
        return Outcome(False, 0, error, None, connect_ns=connect_ns)

    def abort(self) -> None:
        """From another thread: unblock a request in progress (used to cancel at shutdown)."""
        sock = self._conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._conn.close()
