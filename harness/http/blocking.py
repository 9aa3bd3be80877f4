"""Blocking keep-alive HTTP/1.1 client on http.client: one connection per thread or process slot."""

from __future__ import annotations

import http.client
import socket
import time

from harness.http import DELAY_HEADER, request_path
from harness.schema import CONNECT, HTTP_STATUS, PROTOCOL, RESET, TIMEOUT, Outcome


class BlockingHttpClient:
    def __init__(self, host: str, port: int, endpoint: str, connect_timeout_s: float,
                 total_timeout_s: float, ok_status: frozenset[int]) -> None:
        self._conn = http.client.HTTPConnection(host, port, timeout=connect_timeout_s)
        self._endpoint = endpoint
        self._connect_timeout = connect_timeout_s
        self._total = total_timeout_s
        self._ok_status = ok_status

    def request(self, seq: int) -> Outcome:
        conn = self._conn
        deadline = time.monotonic() + self._total
        try:
            if conn.sock is None:
                conn.timeout = min(self._connect_timeout, self._total)
                conn.connect()
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except TimeoutError:
            return self._fail(CONNECT)  # connect timeouts count as connect failures
        except OSError:
            return self._fail(CONNECT)
        try:
            conn.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            conn.request("GET", request_path(self._endpoint, seq))
            response = conn.getresponse()
            conn.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            response.read()
        except TimeoutError:
            return self._fail(TIMEOUT)
        except (ConnectionError, http.client.RemoteDisconnected):
            return self._fail(RESET)
        except (http.client.HTTPException, OSError, AttributeError):
            # AttributeError: the socket was shut down and released by abort() mid-request.
            return self._fail(PROTOCOL)
        delay = response.getheader(DELAY_HEADER)
        status = response.status
        ok = status in self._ok_status
        return Outcome(ok, status, None if ok else HTTP_STATUS, int(delay) if delay else None)

    def _fail(self, error: str) -> Outcome:
        self._conn.close()  # the next request reconnects
        return Outcome(False, 0, error, None)

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
