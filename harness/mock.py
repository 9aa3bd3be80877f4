"""The mock server's aiohttp app: the scenario's endpoints, their faults, the server-wide stalls
and crash, and the harness's own routes under /_harness/.

A request's delay target is drawn from its endpoint's seeded distribution keyed by the `seq`
query parameter (or an arrival counter when absent, e.g. under wrk), plus a `delay` fault's
extra. The response starts once the target has passed and no stall is on (harness.deadline:
never early, late by little); the delay actually applied, arrival to the start of the response,
and the target go back in two headers. Every effect of a fault happens when the response would
start, except `hang`, which never answers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import struct
import time

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from harness.deadline import Deadlines
from harness.faults import fault_for
from harness.http import (
    BODY_BYTES_HEADER,
    DELAY_HEADER,
    DELAY_TARGET_HEADER,
    IN_FLIGHT_HEADER,
    OWN_ROUTES,
)
from harness.scenario import Endpoint, Server

TRICKLE_CHUNKS_PER_S = 20
_LINGER_0 = struct.pack("ii", 1, 0)  # close() sends RST instead of FIN


class _State:
    """Counts, the clock the stalls and the crash count from, and the server's shutdown."""

    def __init__(self, config: Server) -> None:
        self.config = config
        self.in_flight = self.peak = self.requests = self.arrivals = 0
        self.t0_ns = time.monotonic_ns()  # until the runner says when the cell's clock starts
        self.stopping = asyncio.Event()
        self.deadlines: Deadlines | None = None
        self._crash: asyncio.TimerHandle | None = None

    def arrive(self) -> int:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.arrivals += 1
        crash = self.config.crash_after
        if crash is not None and crash.requests is not None and self.arrivals >= crash.requests:
            _crash()
        return self.in_flight

    def set_t0(self, t0_ns: int) -> None:
        self.t0_ns = t0_ns
        crash = self.config.crash_after
        if crash is not None and crash.duration is not None:
            if self._crash is not None:
                self._crash.cancel()
            left_s = (t0_ns + crash.duration - time.monotonic_ns()) / 1e9
            self._crash = asyncio.get_running_loop().call_later(max(left_s, 0), _crash)

    def stall_end(self, now_ns: int) -> int | None:
        """When the stall holding responses at `now_ns` ends, None when none is on."""
        since = now_ns - self.t0_ns
        ends = [end for stall in self.config.stalls if (end := stall.end_ns(since)) is not None]
        return self.t0_ns + max(ends) if ends else None

    async def hold(self, deadline_ns: int) -> None:
        """Until the deadline has passed and no stall is on."""
        while True:
            await self.deadlines.wait_until(deadline_ns)
            if (end := self.stall_end(time.monotonic_ns())) is None:
                return
            deadline_ns = end

    async def stopped_by(self, deadline_ns: int) -> bool:
        """Sleep until the deadline; True when the server began to stop meanwhile."""
        left_s = (deadline_ns - time.monotonic_ns()) / 1e9
        if left_s > 0 and not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), left_s)
        return self.stopping.is_set()


def _not_bad_input(record: logging.LogRecord) -> bool:
    """Malformed requests are the client's doing: aiohttp answers them 400 and would log each
    with a traceback (a flood under abuse); everything else is still logged."""
    return not (record.exc_info and isinstance(record.exc_info[1], HttpProcessingError))


def _crash() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # abrupt, as a crash is: exit status −9


def _abort(request: web.Request, reset: bool = False) -> web.Response:
    """Drop the connection (with RST when `reset`); the response handed back is never sent."""
    transport = request.transport
    if transport is not None:
        if reset and (sock := transport.get_extra_info("socket")) is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
        transport.abort()
    return web.Response()


async def _drain(request: web.Request) -> int:
    """Read the whole request body, keeping none of it; its size."""
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
    return size


def _truncated(request: web.Request, status: int, headers: dict, body: bytes) -> web.Response:
    """Declare the whole body's Content-Length, send half of it, close."""
    transport = request.transport
    if transport is not None:
        lines = [f"HTTP/1.1 {status} {'OK' if status < 400 else 'Error'}",
                 f"Content-Length: {len(body)}", "Connection: close",
                 *(f"{k}: {v}" for k, v in headers.items())]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        part = b"" if request.method == "HEAD" else body[: len(body) // 2]
        transport.write(head + part)
        transport.close()  # after what was written has gone out
    return web.Response()


async def _trickle(request: web.Request, state: _State, status: int, headers: dict,
                   body: bytes, rate: int) -> web.StreamResponse:
    """Send the body in small chunks, never ahead of `rate` bytes a second."""
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = len(body)
    await response.prepare(request)
    if request.method != "HEAD":
        chunk, start, view = max(1, rate // TRICKLE_CHUNKS_PER_S), time.monotonic_ns(), \
            memoryview(body)
        for offset in range(0, len(body), chunk):
            if await state.stopped_by(start + offset * 1_000_000_000 // rate):
                return _abort(request)
            await response.write(view[offset:offset + chunk])
    await response.write_eof()
    return response


def _endpoint_handler(state: _State, name: str, endpoint: Endpoint):
    seed, dist = state.config.seed_of(name), endpoint.latency
    body = b"x" * endpoint.size
    bodies = {f.size: b"x" * f.size for f in endpoint.faults if f.size is not None}

    async def handle(request: web.Request) -> web.StreamResponse:
        arrival_ns = time.monotonic_ns()
        at_arrival = state.arrive()
        try:
            raw = request.query.get("seq")
            try:
                seq = int(raw) if raw is not None else state.arrivals - 1
            except ValueError:
                return web.Response(status=400, text="seq must be an integer")
            body_bytes = await _drain(request)
            target_ns = dist.sample_ns(seed, seq)
            fault = fault_for(endpoint, seed, seq, name=name)
            if fault is not None and fault.hang:
                await state.stopping.wait()  # or the client gives up, which cancels the handler
                return _abort(request)
            if fault is not None and fault.delay:
                target_ns += fault.delay
            await state.hold(arrival_ns + target_ns)
            applied_ns = time.monotonic_ns() - arrival_ns
            headers = {DELAY_HEADER: str(applied_ns), DELAY_TARGET_HEADER: str(target_ns),
                       IN_FLIGHT_HEADER: str(at_arrival), BODY_BYTES_HEADER: str(body_bytes)}
            if fault is None or fault.delay:
                return web.Response(body=body, status=endpoint.status, headers=headers)
            if fault.status:
                own = body if fault.size is None else bodies[fault.size]
                return web.Response(body=own, status=fault.status, headers=headers)
            if fault.reset:
                return _abort(request, reset=True)
            if fault.truncate:
                return _truncated(request, endpoint.status, headers, body)
            return await _trickle(request, state, endpoint.status, headers, body, fault.trickle)
        finally:
            state.in_flight -= 1
            state.requests += 1

    return handle


STATE = web.AppKey("state", _State)


def make_app(config: Server) -> web.Application:
    state = _State(config)
    app = web.Application()
    app[STATE] = state

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"in_flight": state.in_flight, "peak_in_flight": state.peak,
                                  "requests": state.requests, "arrivals": state.arrivals,
                                  "t0_ns": state.t0_ns, "pid": os.getpid(),
                                  "cpu_s": time.process_time()})

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def clock(request: web.Request) -> web.Response:
        """POST {"t0_ns": N}: the cell's clock started at N (CLOCK_MONOTONIC ns)."""
        try:
            t0_ns = json.loads(await request.read())["t0_ns"]
            if not isinstance(t0_ns, int) or isinstance(t0_ns, bool):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return web.Response(status=400, text='expected JSON {"t0_ns": <int>}')
        state.set_t0(t0_ns)
        return web.json_response({"t0_ns": t0_ns, "now_ns": time.monotonic_ns()})

    server_log = logging.getLogger("aiohttp.server")

    async def startup(app: web.Application) -> None:
        server_log.addFilter(_not_bad_input)
        state.deadlines = Deadlines(asyncio.get_running_loop())
        state.set_t0(state.t0_ns)  # arms a crash_after duration counted from the start

    async def shutdown(app: web.Application) -> None:
        state.stopping.set()  # hung and trickling responses drop their connections

    async def cleanup(app: web.Application) -> None:
        server_log.removeFilter(_not_bad_input)
        state.deadlines.close()

    app.on_startup.append(startup)
    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(cleanup)
    app.router.add_get(OWN_ROUTES + "/stats", stats)
    app.router.add_get(OWN_ROUTES + "/health", health)
    app.router.add_post(OWN_ROUTES + "/clock", clock)
    for name, endpoint in config.endpoints.items():
        app.router.add_route("*", f"/{name}", _endpoint_handler(state, name, endpoint))
    return app
