"""The mock server in its own process, fresh for each cell (the app itself: harness.mock).

The process raises its open-file limit to the hard limit and listens with a deep backlog, so
thousands of idle or slow connections do not lock well-formed requests out; it says so on
stderr when the system caps either below what the scenario needs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import signal
import subprocess
import sys
import time
import urllib.request

from aiohttp import web

from harness.errors import HarnessError
from harness.http import OWN_ROUTES
from harness.mock import make_app
from harness.scenario import Scenario, Server, parse_scenario

STOP_WAIT_S = 0.3
BACKLOG = 4096
MIN_FDS = 4096  # idle and slow-loris connections beyond the scenario's own concurrency
_SOMAXCONN = "/proc/sys/net/core/somaxconn"


def fds_wanted(scenario: Scenario) -> int:
    """MIN_FDS + the most requests any cell may hold in flight: a closed block's largest
    concurrency, an open block's max_in_flight (its default per backend)."""
    return MIN_FDS + max(level for block in scenario.loads for backend in scenario.backends
                         for _, level, _ in block.cell_levels(backend))


def raise_fd_limit(wanted: int) -> str | None:
    """Soft open-file limit up to the hard limit; a note when it stays below `wanted`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (hard, wanted):  # macOS refuses an unlimited soft limit: then ask for less
        if soft < target and (hard == resource.RLIM_INFINITY or target <= hard):
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
                break
    if soft != resource.RLIM_INFINITY and soft < wanted:
        return (f"note: mock server: open-file limit {soft} (hard {hard}), below the {wanted} "
                "connections it may need; raise it with `ulimit -n`")
    return None


def backlog_note(backlog: int = BACKLOG) -> str | None:
    try:
        with open(_SOMAXCONN) as file:
            cap = int(file.read())
    except (OSError, ValueError):
        return None
    if cap < backlog:
        return (f"note: mock server: listen backlog {backlog} capped at {cap} by "
                "net.core.somaxconn")
    return None


async def _serve(config: Server, host: str, port: int, announce) -> None:
    runner = web.AppRunner(make_app(config), access_log=None, handle_signals=False,
                           handler_cancellation=True)  # a client that goes away ends its handler
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=BACKLOG)
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
    # Hanging and trickling responses see the app shut down and drop their connections.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(runner.cleanup(), STOP_WAIT_S)


def serve(config: Server, host: str = "127.0.0.1", port: int = 0, announce=print,
          fds: int = MIN_FDS) -> None:
    """Run in the foreground until SIGINT/SIGTERM (used by `harness serve` and the child)."""
    if config.engine == "fast":
        from harness.server_fast import serve_fast

        return serve_fast(config, host, port, announce)
    import uvloop

    for note in (raise_fd_limit(fds), backlog_note()):
        if note:
            print(note, file=sys.stderr, flush=True)
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
                with _LOCAL.open(self.url + OWN_ROUTES + "/health", timeout=1) as resp:
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
            with _LOCAL.open(self.url + OWN_ROUTES + "/stats", timeout=5) as resp:
                found = json.loads(resp.read())
        except (OSError, ValueError):
            return {}
        found["cpu_since_ready_s"] = found["cpu_s"] - self.ready_cpu_s
        return found

    def set_t0(self, t0_ns: int) -> None:
        """Tell the server when the cell's clock started (time.monotonic_ns() of any process):
        its stalls and a crash_after duration count from there."""
        request = urllib.request.Request(
            self.url + OWN_ROUTES + "/clock", data=json.dumps({"t0_ns": t0_ns}).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with _LOCAL.open(request, timeout=5) as resp:
            resp.read()

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
    scenario = parse_scenario(sys.stdin.read())
    serve(scenario.server, announce=lambda url: (print(url, flush=True)),
          fds=fds_wanted(scenario))


if __name__ == "__main__":
    _child_main()
