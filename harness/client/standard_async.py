"""aiohttp client for the event-loop backends: one ClientSession, connector bounded by the
concurrency limit, keep-alive connections (HTTPS with `tls`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from contextvars import ContextVar

import aiohttp

from harness.core.checks import CHECK
from harness.core.schema import CONNECT, HTTP_STATUS, PROTOCOL, RESET, TIMEOUT, Outcome
from harness.core.tls import TlsSettings, client_context
from harness.core.wire import (
    DELAY_HEADER,
    DELAY_TARGET_HEADER,
    OWN_ROUTES,
    RequestMix,
    RequestSpec,
    as_request,
    header_int,
)

# (ns to open it, its slot label) of the connection the running task's request opened: the
# connector opens it inside that task (awaited by the request, no task of its own), so the
# request finds it here, whether it then succeeds or fails; None when it reused one.
_OPENED: ContextVar[tuple[int, str] | None] = ContextVar("opened", default=None)


def _label(transport) -> str:
    """A connection's slot label: its local port."""
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    return f"conn-{sockname[1]}" if sockname else "conn-?"


class _TimedConnector(aiohttp.TCPConnector):
    """Times opening each connection (TLS handshake included): aiohttp says nothing of it
    otherwise but through a trace, which would cost every request."""

    async def _create_connection(self, *args, **kwargs):
        started = time.perf_counter_ns()
        protocol = await super()._create_connection(*args, **kwargs)
        elapsed = time.perf_counter_ns() - started
        # The label now: a response with `Connection: close` closes the transport before
        # its request could look.
        _OPENED.set((elapsed, _label(protocol.transport)))
        return protocol


class AiohttpClient:
    def __init__(self, base_url: str, endpoint: str | RequestSpec | RequestMix, concurrency: int,
                 connect_timeout_s: float, total_timeout_s: float, ok_status: frozenset[int],
                 tls: TlsSettings | None = None) -> None:
        self._base = base_url.rstrip("/")
        if isinstance(endpoint, RequestMix):  # each request picks its entry: another path
            self._entries = [(e, dict(e.headers) or None) for e in endpoint.entries]
            self._pick = endpoint.picker()
            self.request = self._mix_request
            endpoint = endpoint.entries[0]  # what the entries share: mock, checks
        self._spec = as_request(endpoint)
        self._headers = dict(self._spec.headers) or None
        self._delays = self._spec.mock  # only the mock server's delay headers mean that
        self._ok_status = ok_status
        self._sni = {} if tls is None or not tls.sni else {"server_hostname": tls.sni}
        self._connector = _TimedConnector(limit=concurrency, force_close=False,
                                          ssl=True if tls is None else client_context(tls))
        self.connects: list[int] = []  # ns to open each connection opened before the clock
        self._session = aiohttp.ClientSession(
            connector=self._connector,
            timeout=aiohttp.ClientTimeout(total=total_timeout_s, connect=connect_timeout_s),
            auto_decompress=False,
        )

    def request(self, seq: int, body: bytes | None = None) -> Coroutine[
            None, None, tuple[Outcome, str]]:
        """Returns the outcome and the slot label: the local port of the connection used.
        `body` replaces the spec's body for this request (the pipeline's tensor)."""
        return self._send(self._spec, self._headers, seq, body)

    def _mix_request(self, seq: int, body: bytes | None = None) -> Coroutine[
            None, None, tuple[Outcome, str]]:
        """`request` with `workload.requests`: the entry request `seq` sends."""
        spec, headers = self._entries[self._pick(seq)]
        return self._send(spec, headers, seq, body)

    async def _send(self, spec: RequestSpec, headers: dict | None, seq: int,
                    body: bytes | None) -> tuple[Outcome, str]:
        body = spec.body if body is None else body
        slot, error = "conn-?", None
        try:
            async with self._session.request(spec.method, self._base + spec.path_for(seq),
                                             data=body or None, headers=headers,
                                             **self._sni) as resp:
                # aiohttp lets go of the connection as soon as the whole response is in its
                # buffer (`resp.connection` is then None): the protocol it kept says which
                protocol = (resp.connection.protocol if resp.connection is not None
                            else getattr(resp, "_protocol", None))
                if protocol is not None:
                    slot = _label(protocol.transport)
                content = await resp.read()
        except aiohttp.ConnectionTimeoutError:  # before TimeoutError: it is one too
            error = CONNECT
        except (TimeoutError, aiohttp.ServerTimeoutError):
            error = TIMEOUT
        except aiohttp.ClientConnectorError:
            error = CONNECT
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, ConnectionError):
            error = RESET
        except aiohttp.ClientError:
            error = PROTOCOL
        connect_ns, opened = None, _OPENED.get()
        if opened is not None:  # this request opened its connection
            _OPENED.set(None)
            connect_ns, slot = opened  # the connection it opened is the one it used
        if error is not None:
            return Outcome(False, 0, error, connect_ns=connect_ns), slot
        ok = resp.status in self._ok_status
        error, failed = None if ok else HTTP_STATUS, None
        if ok and spec.checks is not None:
            failed = spec.checks.failed(resp.headers.get, content)
            if failed is not None:
                ok, error = False, CHECK
        headers = resp.headers if self._delays else {}
        return Outcome(ok, resp.status, error,
                       header_int(headers.get(DELAY_HEADER)),
                       server_delay_target_ns=header_int(headers.get(DELAY_TARGET_HEADER)),
                       bytes_sent=len(body), bytes_received=len(content),
                       error_detail=failed, connect_ns=connect_ns), slot

    async def warm(self, n: int, rate_per_s: float | None = None) -> None:
        """Open up to n keep-alive connections before the clock (at most rate_per_s new ones a
        second): aiohttp opens a connection only for a request, so each is opened by a request
        to the mock server's own health route, which the measurement never sees. Not for an
        external target (its routes are the user's)."""
        if not self._delays:
            return
        loop = asyncio.get_running_loop()
        url, start = self._base + OWN_ROUTES + "/health", loop.time()

        async def one(i: int) -> None:  # a task of its own: _OPENED is its own
            if rate_per_s:
                await asyncio.sleep(max(0.0, start + i / rate_per_s - loop.time()))
            try:
                async with self._session.get(url, **self._sni) as resp:
                    await resp.read()
            except (aiohttp.ClientError, TimeoutError):
                pass  # the requests will say what is wrong
            if (opened := _OPENED.get()) is not None:
                self.connects.append(opened[0])

        await asyncio.gather(*(one(i) for i in range(n)))

    async def close(self) -> None:
        await self._session.close()
