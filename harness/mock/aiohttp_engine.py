"""The mock server's aiohttp app: the scenario's endpoints, their faults, the server-wide stalls
and crash, and the harness's own routes under /_harness/.

A request's delay is drawn from its endpoint's seeded distribution keyed by the `seq`
query parameter (or an arrival counter when absent, e.g. under wrk), plus a `delay` fault's
extra. The response starts once that delay has passed and no stall is on (harness.mock.deadlines:
never early, late by little); the delay actually applied, arrival to the start of the response,
and the drawn one go back in two headers. Every effect of a fault happens when the response would
start, except `hang`, which never answers.

An endpoint with `cpu` first does that much CPU work per request (harness.mock.cpu: the
pipeline's image pre-processing, calibrated at start-up) in the event loop (`offload: inline`,
blocking every other request), a thread pool or a process pool (forkserver, warmed and
calibrated before the server is ready); the latency counts from when it is done. A probe
measures the server's own event-loop lag, reported by /_harness/stats."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import socket
import struct
import threading
import time
from array import array
from concurrent.futures import BrokenExecutor

import numpy as np
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from harness.core.clock import now_ns
from harness.core.stats import percentile
from harness.core.wire import (
    BODY_BYTES_HEADER,
    DELAY_HEADER,
    DELAY_TARGET_HEADER,
    IN_FLIGHT_HEADER,
    OWN_ROUTES,
)
from harness.mock.deadlines import Deadlines
from harness.mock.procstat import process_cpu_s
from harness.scenario.faults import fault_for
from harness.scenario.server import Endpoint, Server

TRICKLE_CHUNKS_PER_S = 20
_LINGER_0 = struct.pack("ii", 1, 0)  # close() sends RST instead of FIN
LAG_INTERVAL_NS = 10_000_000  # the loop-lag probe sleeps this long, as the backends' probe
LAG_KEEP = 100_000  # samples kept whole (16 min of probes); beyond, a uniform reservoir


class LagSamples:
    """The loop-lag probe's samples since t0, in bounded memory: every sample up to `keep`,
    then a uniform random sample of them all (reservoir sampling, seeded), so a long cell's
    p99 still describes the whole cell."""

    def __init__(self, keep: int = LAG_KEEP) -> None:
        self.keep, self.seen = keep, 0
        self.t_ns, self.lag_ns = array("q"), array("q")
        self._draw = random.Random(0)

    def add(self, t_ns: int, lag_ns: int) -> None:
        self.seen += 1
        if len(self.lag_ns) < self.keep:
            self.t_ns.append(t_ns)
            self.lag_ns.append(lag_ns)
        elif (slot := self._draw.randrange(self.seen)) < self.keep:
            self.t_ns[slot], self.lag_ns[slot] = t_ns, lag_ns

    def since(self, t0_ns: int) -> None:
        """Drop the samples taken before t0 (the clock is set right after the cell's start)."""
        kept = [i for i, t in enumerate(self.t_ns) if t >= t0_ns]
        self.t_ns = array("q", (self.t_ns[i] for i in kept))
        self.lag_ns = array("q", (self.lag_ns[i] for i in kept))
        self.seen = len(kept)

    def p99_ns(self) -> int | None:
        if not self.lag_ns:
            return None
        return int(percentile(np.frombuffer(self.lag_ns, dtype=np.int64), 99))


class ServerState:
    """Counts, the clock the stalls and the crash count from, and the server's shutdown."""

    def __init__(self, config: Server) -> None:
        self.config = config
        self.in_flight = self.peak = self.requests = self.arrivals = 0
        self.t0_ns = now_ns()  # until the runner says when the cell's clock starts
        self.stopping = asyncio.Event()
        self.deadlines: Deadlines | None = None
        self._crash: asyncio.TimerHandle | None = None
        self.lag = LagSamples()
        self.cpu = _CpuSteps(config)

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
        self.lag.since(t0_ns)
        crash = self.config.crash_after
        if crash is not None and crash.duration is not None:
            if self._crash is not None:
                self._crash.cancel()
            left_s = (t0_ns + crash.duration - now_ns()) / 1e9
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
            if (end := self.stall_end(now_ns())) is None:
                return
            deadline_ns = end

    async def probe(self) -> None:
        """Sleep 10 ms, record how late the loop woke (signed: a timer may fire a little
        early), again, until cancelled."""
        interval_s = LAG_INTERVAL_NS / 1e9
        while True:
            due = now_ns() + LAG_INTERVAL_NS
            await asyncio.sleep(interval_s)
            woke = now_ns()
            if woke >= self.t0_ns:
                self.lag.add(woke, woke - due)

    async def stopped_by(self, deadline_ns: int) -> bool:
        """Sleep until the deadline; True when the server began to stop meanwhile."""
        left_s = (deadline_ns - now_ns()) / 1e9
        if left_s > 0 and not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), left_s)
        return self.stopping.is_set()


class _CpuSteps:
    """The `cpu` endpoints' work and where it runs: each endpoint's own pool (`pool_size`
    workers, default the core count), created, warmed and calibrated at start-up; the loop's
    (and its threads') plans calibrated in this process."""

    def __init__(self, config: Server) -> None:
        self.endpoints = {name: e for name, e in config.endpoints.items() if e.cpu is not None}
        self.pools: dict[str, object] = {}  # endpoint → harness.core.offload.Offload
        self.plans: dict[str, list] = {}  # endpoint → the plans of the processes running it
        self.stop = threading.Event()  # pool threads end their work early once it is set
        self.work = None  # harness.mock.cpu.work, imported only when an endpoint has cpu

    async def start(self) -> None:
        if not self.endpoints:
            return
        from harness.core.offload import Offload
        from harness.mock.cpu import calibrate_all, plan_for, work

        self.work = work
        for name, endpoint in self.endpoints.items():
            offload = Offload(endpoint.offload, endpoint.pool_size)
            if endpoint.offload == "process_pool":
                found = await offload.start(calibrate_all, (endpoint.cpu,))
                self.plans[name] = [plans[0] for plans in found]
            else:
                await offload.start()
                self.plans[name] = [plan_for(endpoint.cpu)]
            if offload.pool is not None:
                self.pools[name] = offload

    async def run(self, name: str, endpoint: Endpoint, seq: int) -> None:
        offload, work = self.pools.get(name), self.work
        if offload is None:
            work(endpoint.cpu, seq)  # inline: the loop does nothing else meanwhile
            return
        loop = asyncio.get_running_loop()
        if endpoint.offload == "thread_pool":
            await loop.run_in_executor(offload.pool, work, endpoint.cpu, seq, self.stop)
        else:
            await loop.run_in_executor(offload.pool, work, endpoint.cpu, seq)

    def pool_pids(self) -> list[int]:
        return [pid for offload in self.pools.values()
                for pid in getattr(offload.pool, "_processes", None) or {}]

    def close(self) -> None:
        """Without waiting for work in progress: pool threads stop after their current image,
        pool processes are terminated (their requests fail; the server is going away)."""
        self.stop.set()
        for offload in self.pools.values():
            processes = list((getattr(offload.pool, "_processes", None) or {}).values())
            for process in processes:
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    process.terminate()
            for process in processes:  # pure computation: SIGTERM ends it at once
                process.join(1)
            # The threads finish their image; the process pool's manager sees its workers gone.
            offload.pool.shutdown(wait=not processes or all(
                p.exitcode is not None for p in processes), cancel_futures=True)
        self.pools.clear()


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


async def _trickle(request: web.Request, state: ServerState, status: int, headers: dict,
                   body: bytes, rate: int) -> web.StreamResponse:
    """Send the body in small chunks, never ahead of `rate` bytes a second."""
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = len(body)
    await response.prepare(request)
    if request.method != "HEAD":
        chunk, start, view = max(1, rate // TRICKLE_CHUNKS_PER_S), now_ns(), \
            memoryview(body)
        for offset in range(0, len(body), chunk):
            if await state.stopped_by(start + offset * 1_000_000_000 // rate):
                return _abort(request)
            await response.write(view[offset:offset + chunk])
    await response.write_eof()
    return response


def _endpoint_handler(state: ServerState, name: str, endpoint: Endpoint):
    seed, dist = state.config.seed_of(name), endpoint.latency
    body = b"x" * endpoint.size
    bodies = {f.size: b"x" * f.size for f in endpoint.faults if f.size is not None}

    async def handle(request: web.Request) -> web.StreamResponse:
        arrival_ns = now_ns()
        at_arrival = state.arrive()
        try:
            raw = request.query.get("seq")
            try:
                seq = int(raw) if raw is not None else state.arrivals - 1
            except ValueError:
                return web.Response(status=400, text="seq must be an integer")
            body_bytes = await _drain(request)
            start_ns = arrival_ns
            if endpoint.cpu is not None:
                try:
                    await state.cpu.run(name, endpoint, seq)
                except BrokenExecutor:
                    if not state.stopping.is_set():
                        raise
                if state.stopping.is_set():  # the work was cut short: no answer
                    return _abort(request)
                start_ns = now_ns()  # the latency follows the CPU step
            drawn_ns = dist.sample_ns(seed, seq)
            fault = fault_for(endpoint, seed, seq, name=name)
            if fault is not None and fault.hang:
                await state.stopping.wait()  # or the client gives up, which cancels the handler
                return _abort(request)
            if fault is not None and fault.delay:
                drawn_ns += fault.delay
            await state.hold(start_ns + drawn_ns)
            applied_ns = now_ns() - arrival_ns
            headers = {DELAY_HEADER: str(applied_ns), DELAY_TARGET_HEADER: str(drawn_ns),
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


STATE = web.AppKey("state", ServerState)


def make_app(config: Server) -> web.Application:
    state = ServerState(config)
    app = web.Application()
    app[STATE] = state
    _add_own_routes(app, state)
    _add_lifecycle(app, state)
    for name, endpoint in config.endpoints.items():
        app.router.add_route("*", f"/{name}", _endpoint_handler(state, name, endpoint))
    return app


def _add_own_routes(app: web.Application, state: ServerState) -> None:
    """/_harness/stats (the server's counts and CPU), /health, and POST /clock."""

    async def stats(request: web.Request) -> web.Response:
        cpu_s = time.process_time() + sum(process_cpu_s(pid) for pid in state.cpu.pool_pids())
        return web.json_response({"in_flight": state.in_flight, "peak_in_flight": state.peak,
                                  "requests": state.requests, "arrivals": state.arrivals,
                                  "t0_ns": state.t0_ns, "pid": os.getpid(),
                                  "cpu_s": cpu_s,
                                  "loop_lag_p99_ns": state.lag.p99_ns(),
                                  "loop_lag_samples": state.lag.seen,
                                  "cpu_plans": {name: [plan._asdict() for plan in plans]
                                                for name, plans in state.cpu.plans.items()}})

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
        return web.json_response({"t0_ns": t0_ns, "now_ns": now_ns()})

    app.router.add_get(OWN_ROUTES + "/stats", stats)
    app.router.add_get(OWN_ROUTES + "/health", health)
    app.router.add_post(OWN_ROUTES + "/clock", clock)


def _add_lifecycle(app: web.Application, state: ServerState) -> None:
    """Start: the CPU pools calibrated and warm, the loop-lag probe; stop: without waiting for
    hung responses or CPU steps in progress."""
    server_log = logging.getLogger("aiohttp.server")
    probe: list[asyncio.Task] = []

    async def startup(app: web.Application) -> None:
        server_log.addFilter(_not_bad_input)
        state.deadlines = Deadlines(asyncio.get_running_loop())
        await state.cpu.start()  # calibrated and warm before the server is ready
        # Until the cell's clock starts, stalls, crash_after and the loop lag count from here.
        state.set_t0(now_ns())
        probe.append(asyncio.create_task(state.probe()))

    async def shutdown(app: web.Application) -> None:
        state.stopping.set()  # hung and trickling responses drop their connections
        state.cpu.close()  # without waiting for CPU steps in progress
        for task in probe:
            task.cancel()

    async def cleanup(app: web.Application) -> None:
        server_log.removeFilter(_not_bad_input)
        state.deadlines.close()

    app.on_startup.append(startup)
    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(cleanup)
