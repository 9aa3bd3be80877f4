"""The mock server in the foreground: `harness serve`, and the child process the runner starts
(`python -m harness.mock`, the scenario on stdin, its URL on stdout).

The process raises its open-file limit to the hard limit and listens with a deep backlog, so
thousands of idle or slow connections do not lock well-formed requests out; it says so on
stderr when the system caps either below what the scenario needs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from pathlib import Path

from aiohttp import web

from harness.core.system import raise_fd_limit
from harness.mock.aiohttp_engine import make_app
from harness.mock.listen import listening_socket, url_for
from harness.mock.process import STOP_WAIT_S
from harness.mock.tls import CERT_ENV, mint, server_context
from harness.scenario.loader import parse_wire
from harness.scenario.model import Scenario
from harness.scenario.server import Server

BACKLOG = 4096
MIN_FDS = 4096  # idle and slow-loris connections beyond the scenario's own concurrency
_SOMAXCONN = "/proc/sys/net/core/somaxconn"


def fds_wanted(scenario: Scenario) -> int:
    return MIN_FDS + scenario.peak_in_flight()


def backlog_for(scenario: Scenario) -> int:
    """Room in the listen queue for every connection a cell may open at once."""
    return max(BACKLOG, scenario.peak_in_flight())


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


async def _serve(config: Server, host: str, port: int, announce, backlog: int) -> None:
    runner = web.AppRunner(make_app(config), access_log=None, handle_signals=False,
                           handler_cancellation=True)  # a client that goes away ends its handler
    await runner.setup()
    tls = server_context(os.environ[CERT_ENV]) if config.tls else None
    if host == "::":  # asyncio would bind IPv6 only: our socket takes IPv4 too
        site = web.SockSite(runner, listening_socket(host, port, backlog), ssl_context=tls)
    else:
        site = web.TCPSite(runner, host, port, backlog=backlog, ssl_context=tls)
    await site.start()
    bound = site._server.sockets[0].getsockname()
    announce(url_for(host, bound[1], config.tls))
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


def serve(config: Server, host: str | None = None, port: int = 0, announce=print,
          fds: int = MIN_FDS, backlog: int = BACKLOG) -> None:
    """Run in the foreground until SIGINT/SIGTERM (used by `harness serve` and the child);
    `host`: the address to bind, default the scenario's server.listen."""
    host = config.listen if host is None else host
    with contextlib.ExitStack() as stack:
        if config.tls and CERT_ENV not in os.environ:  # in the foreground: its own CA
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="harness-tls-")))
            os.environ[CERT_ENV], ca_pem = mint(folder, host)
            (folder / "ca.pem").write_text(ca_pem)
            print(f"note: mock server: TLS with a throwaway CA: give clients {folder / 'ca.pem'}"
                  " (--tls-ca); it is removed when the server stops", file=sys.stderr, flush=True)
        _serve_on(config, host, port, announce, fds, backlog)


def _serve_on(config: Server, host: str, port: int, announce, fds: int, backlog: int) -> None:
    limit = raise_fd_limit(fds)
    for note in (limit and f"note: mock server: {limit}", backlog_note(backlog)):
        if note:
            print(note, file=sys.stderr, flush=True)
    if config.engine == "fast":
        from harness.mock.fast.supervisor import serve_fast

        return serve_fast(config, host, port, announce, backlog)
    try:
        import uvloop
    except ImportError:  # server.python names an interpreter without a uvloop wheel
        print("note: mock server: no uvloop under this interpreter: asyncio's loop",
              file=sys.stderr, flush=True)
        return asyncio.run(_serve(config, host, port, announce, backlog))
    uvloop.run(_serve(config, host, port, announce, backlog))


def main() -> None:
    """The scenario on stdin; an optional port as the one argument (`harness serve --python`
    runs the server this way under another interpreter)."""
    scenario = parse_wire(sys.stdin.read())
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    try:
        serve(scenario.server, port=port, announce=lambda url: (print(url, flush=True)),
              fds=fds_wanted(scenario), backlog=backlog_for(scenario))
    except OSError as exc:  # the port taken: one line for whoever started us
        where = url_for(scenario.server.listen, port).removeprefix("http://")
        print(f"error: cannot listen on {where}: {exc.strerror}", file=sys.stderr, flush=True)
        sys.exit(2)

