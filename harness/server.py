"""The mock server: an aiohttp app in its own process, fresh for each cell.

Each request's delay is drawn from its endpoint's seeded distribution keyed by the `seq` query
parameter (or an arrival counter when absent, e.g. under wrk), slept on the event loop, and
returned in a header. The server counts its own in-flight requests and peak (`/stats`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from aiohttp import web

from harness.errors import HarnessError
from harness.http import DELAY_HEADER, DELAY_TARGET_HEADER, IN_FLIGHT_HEADER
from harness.scenario import Server, parse_scenario

STOP_WAIT_S = 0.3


class _Stats:
    __slots__ = ("in_flight", "peak", "requests", "arrivals")

    def __init__(self) -> None:
        self.in_flight = self.peak = self.requests = self.arrivals = 0


def make_app(config: Server) -> web.Application:
    stats = _Stats()
    app = web.Application()

    def endpoint_handler(name: str):
        endpoint = config.endpoints[name]
        seed, dist, status = config.seed_of(name), endpoint.latency, endpoint.status
        body = b"x" * endpoint.size

        async def handle(request: web.Request) -> web.Response:
            arrival_ns = time.monotonic_ns()
            stats.in_flight += 1
            at_arrival = stats.in_flight
            if at_arrival > stats.peak:
                stats.peak = at_arrival
            stats.arrivals += 1
            try:
                if request.can_read_body:
                    await request.read()  # a real service reads what it is sent
                raw = request.query.get("seq")
                seq = int(raw) if raw is not None else stats.arrivals - 1
                delay_ns = dist.sample_ns(seed, seq)
                # libuv timers have millisecond resolution and can fire early: sleep until the
                # full delay has passed, so the applied delay is never less than the header says.
                due_ns = arrival_ns + delay_ns
                while (left_ns := due_ns - time.monotonic_ns()) > 0:
                    await asyncio.sleep(left_ns / 1e9)
                return web.Response(body=body, status=status, headers={
                    DELAY_HEADER: str(delay_ns), DELAY_TARGET_HEADER: str(delay_ns),
                    IN_FLIGHT_HEADER: str(at_arrival),
                })
            except ValueError:
                return web.Response(status=400, text="seq must be an integer")
            finally:
                stats.in_flight -= 1
                stats.requests += 1

        return handle

    async def stats_handler(request: web.Request) -> web.Response:
        return web.json_response({"in_flight": stats.in_flight, "peak_in_flight": stats.peak,
                                  "requests": stats.requests, "pid": os.getpid(),
                                  "cpu_s": time.process_time()})

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/stats", stats_handler)
    app.router.add_get("/health", health)
    for name in config.endpoints:
        app.router.add_route("*", f"/{name}", endpoint_handler(name))  # every method
    return app


async def _serve(config: Server, host: str, port: int, announce) -> None:
    runner = web.AppRunner(make_app(config), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound = site._server.sockets[0].getsockname()
    announce(f"http://{host}:{bound[1]}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # Requests may be hanging in handlers: stopping must not wait for them (a Ctrl-C keeps its
    # word even when the server is stuck), so the clean-up gets a short while, then we go.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(runner.cleanup(), STOP_WAIT_S)


def serve(config: Server, host: str = "127.0.0.1", port: int = 0, announce=print) -> None:
    """Run in the foreground until SIGINT/SIGTERM (used by `harness serve` and the child)."""
    if config.engine == "fast":
        from harness.server_fast import serve_fast

        return serve_fast(config, host, port, announce)
    import uvloop

    uvloop.run(_serve(config, host, port, announce))


# Loopback only: never route the harness's own control requests through an environment proxy.
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerProcess:
    """Starts the mock server in a child process on 127.0.0.1:0 and hands back its URL."""

    def __init__(self, scenario_text: str, startup_timeout_s: float = 15.0) -> None:
        self._text = scenario_text  # the child re-parses the source: one parser, no re-encoding
        self._timeout = startup_timeout_s
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.ready_cpu_s = 0.0  # the server's CPU time when it was ready: its start-up

    def __enter__(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness.server"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
            # Its own process group: the parent decides when the server stops, so a terminal
            # Ctrl-C cannot kill it while the cell's in-flight requests are still finishing.
            start_new_session=True,
        )
        try:
            self.proc.stdin.write(self._text)
            self.proc.stdin.close()
            self.url = self.proc.stdout.readline().strip()
            if not self.url.startswith("http://"):
                raise HarnessError(f"mock server failed to start (exit {self.proc.wait(5)})")
            self._wait_ready()
            self.ready_cpu_s = self.stats().get("cpu_s", 0.0)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                with _LOCAL.open(self.url + "/health", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                if time.monotonic() > deadline:
                    raise HarnessError(f"mock server at {self.url} not ready") from None
                time.sleep(0.02)

    def stats(self) -> dict:
        """The server's own counts; empty when it no longer answers. `cpu_since_ready_s`: its
        CPU time since it was ready, without its start-up (imports, binding)."""
        try:
            with _LOCAL.open(self.url + "/stats", timeout=5) as resp:
                found = json.loads(resp.read())
        except (OSError, ValueError):
            return {}
        found["cpu_since_ready_s"] = found["cpu_s"] - self.ready_cpu_s
        return found

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_WAIT_S + 1)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __exit__(self, *exc) -> None:
        self.stop()


def _child_main() -> None:
    config = parse_scenario(sys.stdin.read()).server
    serve(config, announce=lambda url: (print(url, flush=True)))


if __name__ == "__main__":
    _child_main()
