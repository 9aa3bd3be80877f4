"""Serving with the fast engine: one process, or N on one port under a supervisor. Each of N
binds its own socket with SO_REUSEPORT and the kernel spreads connections over them; the
counts live in shared memory; the supervisor exits when a copy dies, and a copy stops when the
supervisor dies."""

from __future__ import annotations

import asyncio
import mmap
import os
import signal
import socket
import sys
import time

from harness.mock.fast.counts import FIELDS, LocalCounts, SharedCounts
from harness.mock.fast.protocol import EngineState, ServerConnection
from harness.mock.listen import family, listening_socket, url_for
from harness.mock.tls import CERT_ENV, server_context
from harness.scenario.server import Server

BACKLOG = 1024
_backlog = BACKLOG  # set by serve_fast: sized to the scenario's peak in flight
START_TIMEOUT_S = 30.0
STOP_WAIT_S = 1.0  # the supervisor's wait for its copies to stop before it kills them



def serve_fast(config: Server, host: str = "127.0.0.1", port: int = 0, announce=print,
               backlog: int = BACKLOG) -> None:
    """Run in the foreground until SIGINT/SIGTERM; `announce` gets the URL once it listens."""
    global _backlog
    _backlog = backlog  # the N server processes are forked: they inherit it
    if config.processes > 1:
        _supervise(config, host, port, announce)
        return
    import uvloop

    sock = listening_socket(host, port, backlog)
    url = url_for(host, sock.getsockname()[1], config.tls)
    uvloop.run(_run(config, sock, LocalCounts(), lambda: announce(url)))


async def _run(config: Server, sock: socket.socket, counts, ready, life_fd=None) -> None:
    loop = asyncio.get_running_loop()
    app = EngineState(config, counts, loop)
    tls = server_context(os.environ[CERT_ENV]) if config.tls else None
    server = await loop.create_server(lambda: ServerConnection(app), sock=sock, backlog=_backlog,
                                      ssl=tls)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if life_fd is not None:  # readable (at EOF) once the supervisor is gone
        loop.add_reader(life_fd, stop.set)
    ready()
    await stop.wait()
    server.close()  # open connections and pending timers go with the loop
    app.deadlines.close()


def _serve_process(config: Server, host: str, port: int, array, index: int, supervisor: int,
            ready_fd: int, life_fd: int, close_fds: tuple[int, ...]) -> None:
    """One of N processes (forked by the supervisor): its own SO_REUSEPORT socket on the port."""
    import uvloop

    signal.set_wakeup_fd(-1)  # the supervisor's; uvloop sets its own
    for sig in (signal.SIGTERM, signal.SIGINT):  # until the loop's handlers take over
        signal.signal(sig, signal.SIG_DFL)
    for fd in close_fds:
        os.close(fd)
    sock = listening_socket(host, port, _backlog, reuse_port=True)
    counts = SharedCounts(array, index, config.processes, supervisor)

    def ready() -> None:
        os.write(ready_fd, b"+")
        os.close(ready_fd)

    uvloop.run(_run(config, sock, counts, ready, life_fd))


def _supervise(config: Server, host: str, port: int, announce) -> None:
    """N server processes on one port; announce the URL once all listen; stop them on
    SIGINT/SIGTERM. A process that exits on its own (killed, crashed) stops the others and the
    supervisor, with an error: the server the cell measures is gone. A process that exits
    cleanly was told to stop (a terminal's Ctrl-C reaches the whole process group): the
    supervisor stops too."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")  # nothing runs yet: no threads, no loop
    n = config.processes
    array = mmap.mmap(-1, n * FIELDS * 8)  # anonymous and shared: the processes see one array
    # Holds the port (bound, never listening: it takes no connections) until the others listen.
    holder = socket.socket(family(host), socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if host == "::":  # as the servers' own sockets: IPv4 too, so the port is held for both
        holder.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    holder.bind((host, port))
    port = holder.getsockname()[1]
    ready_r, ready_w = os.pipe()
    life_r, life_w = os.pipe()  # the supervisor holds the write end until it exits
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    stopping = []
    previous = {sig: signal.signal(sig, lambda *_: stopping.append(True))
                for sig in (signal.SIGTERM, signal.SIGINT)}
    old_wakeup = signal.set_wakeup_fd(wake_w)
    processes = []
    failure = None
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        close_fds = (holder.fileno(), ready_r, life_w, wake_r, wake_w)
        for index in range(n):
            process = ctx.Process(target=_serve_process, name=f"harness-server-{index}", args=(
                config, host, port, array, index, os.getpid(), ready_w, life_r, close_fds))
            process.start()
            processes.append(process)
        os.close(ready_w)
        ready_w = -1
        failure = _await_ready(ready_r, processes, stopping, wake_r)
        holder.close()
        if failure is None and not stopping:
            announce(url_for(host, port, config.tls))
            failure = _watch(processes, stopping, wake_r)
    finally:
        signal.set_wakeup_fd(old_wakeup)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop_processes(processes)
        holder.close()
        for fd in (ready_r, ready_w, life_r, life_w, wake_r, wake_w):
            if fd >= 0:
                os.close(fd)
    if failure:
        raise SystemExit(f"error: mock server: {failure}")


def _await_ready(ready_r: int, processes, stopping: list, wake_r: int) -> str | None:
    from multiprocessing.connection import wait

    deadline, got = time.monotonic() + START_TIMEOUT_S, 0
    while got < len(processes) and not stopping:
        left = deadline - time.monotonic()
        ready = wait([ready_r, wake_r, *(w.sentinel for w in processes)], timeout=max(left, 0))
        if not ready:
            return f"{len(processes) - got} of {len(processes)} processes not listening after " \
                   f"{START_TIMEOUT_S:.0f}s"
        if wake_r in ready:
            os.read(wake_r, 512)
        if ready_r in ready:
            got += len(os.read(ready_r, 64))
        for process in processes:
            if process.exitcode is not None:
                return f"process {process.pid} exited during start (exit {process.exitcode})"
    return None


def _watch(processes, stopping: list, wake_r: int) -> str | None:
    from multiprocessing.connection import wait

    while not stopping:
        ready = wait([wake_r, *(w.sentinel for w in processes)])
        if wake_r in ready:
            os.read(wake_r, 512)
        for process in processes:
            code = process.exitcode
            if code is not None and not stopping:
                return None if code == 0 else f"process {process.pid} exited (exit {code})"
    return None


def _stop_processes(processes) -> None:
    for process in processes:
        if process.exitcode is None:
            process.terminate()
    deadline = time.monotonic() + STOP_WAIT_S
    for process in processes:
        process.join(max(deadline - time.monotonic(), 0))
        if process.exitcode is None:
            process.kill()
            process.join()
