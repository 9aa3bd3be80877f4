"""The fast mock server engine (`server.engine: fast`, issue 10): an asyncio.Protocol on uvloop,
requests parsed by httptools (llhttp, C), responses built from bytes precomputed per endpoint.

The contract is the aiohttp engine's (harness/server.py): each request's delay is drawn from
its endpoint's seeded distribution keyed by the `seq` query parameter (or an arrival counter,
e.g. under wrk), the response has the endpoint's status and size, the delay headers and the
in-flight count at arrival, and the server counts its requests and peak. Every method is
accepted (HEAD gets the headers alone); a request's body is read to its end and dropped.

What one request costs: the parser's callbacks (the URL, one per header, the end of the
message), a dict lookup for the path, an int() of the seq, one draw, two clock reads, one `%`
into the endpoint's precomputed head, one write (the responses to the requests of one read
are written together). A zero delay is answered inside data_received. Any other waits for its
deadline on harness.deadline's timerfd (`Deadlines.call_at`: a kernel hrtimer at the deadline
itself, one timerfd for all the pending responses), not on the loop's timers: libuv counts whole
milliseconds, which made responses 0.2–0.3 ms late at the p50 and up to 1.7 ms at the p99. The
applied delay is never shorter than the target.

The headers: DELAY_HEADER is the delay applied, measured from the request's arrival (the end
of its message) to the start of its response; DELAY_TARGET_HEADER is the drawn target;
IN_FLIGHT_HEADER the server's in-flight count at arrival, this request included.

Pipelining: responses leave in request order. A connection keeps the responses not yet sent
in a queue; one that is ready waits for those before it. Reading pauses while the transport's
buffer is full or MAX_PIPELINE responses are pending.

Bad requests: 400 and the connection closes, like aiohttp, for anything llhttp refuses and for
a URL or header line over MAX_LINE bytes, more than MAX_HEADERS headers or a head over MAX_HEAD
bytes. 404 for other paths. Control routes: /_harness/health, /_harness/stats.

`server.processes: N` (N > 1) runs N copies on one port under a supervisor: each binds its own
socket with SO_REUSEPORT and the kernel spreads connections over them. The counts live in
shared memory (_SharedCounts); the supervisor exits when a copy dies, and a copy stops when the
supervisor dies."""

from __future__ import annotations

import asyncio
import json
import mmap
import os
import signal
import socket
import sys
import time
from collections import deque
from http import HTTPStatus
from urllib.parse import unquote_to_bytes

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from harness.deadline import Deadlines
from harness.http import DELAY_HEADER, DELAY_TARGET_HEADER, IN_FLIGHT_HEADER, OWN_ROUTES
from harness.latency import Fixed
from harness.procstat import process_cpu_s
from harness.scenario import Endpoint, Server

CONTROL = OWN_ROUTES + "/"
MAX_LINE = 8190  # bytes of the URL, and of one header's name and value: aiohttp's limit
MAX_HEADERS = 128
MAX_HEAD = 64 * 1024  # bytes of one request's head (request line and headers)
MAX_PIPELINE = 256  # responses pending on one connection before it stops reading
SMALL_BODY = 16 * 1024  # up to this, head and body are joined into one bytes for the write
BACKLOG = 1024
_backlog = BACKLOG  # set by serve_fast: sized to the scenario's peak in flight
START_TIMEOUT_S = 30.0
STOP_WAIT_S = 1.0  # the supervisor's wait for its copies to stop before it kills them

monotonic_ns = time.monotonic_ns


class _LimitExceeded(Exception):
    """A request's head is over one of the limits (raised in a parser callback)."""


def fault_effect(endpoint: Endpoint, seed: int, seq: int):
    """The hook for faults (issue 10): what a fault does to request `seq` of `endpoint`, or
    None for an ordinary response. The fast engine serves no faults yet: a scenario asking for
    one with `engine: fast` is refused (harness/scenario.py, ENGINE_LIMITS), so every request
    gets None and the hook is not called. Serving a fault means returning its effect here
    (a stall, a reset, a status, ...), applying it in _Connection._endpoint and dropping the
    feature's line in ENGINE_LIMITS."""
    return None


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _plain(status: int, text: str, close: bool = False) -> bytes:
    body = text.encode()
    connection = "Connection: close\r\n" if close else ""
    return (f"HTTP/1.1 {status} {_reason(status)}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n{connection}\r\n").encode() + body


def _json(payload: dict) -> bytes:
    body = json.dumps(payload).encode()
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


NOT_FOUND = _plain(404, "404: Not Found")
BAD_REQUEST = _plain(400, "400: Bad Request", close=True)
BAD_SEQ = _plain(400, "seq must be an integer")
HEALTH = _plain(200, "ok")
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _head_only(response: bytes) -> bytes:
    return response[:response.index(b"\r\n\r\n") + 4]


# --------------------------------------------------------------------------------------------
# Counts

IN_FLIGHT, PEAK, REQUESTS, PID = range(4)
FIELDS = 4  # int64 per process in the shared array


class _Counts:
    """The counts of a server in one process."""

    __slots__ = ("in_flight", "peak", "requests", "arrivals")

    def __init__(self) -> None:
        self.in_flight = self.peak = self.requests = self.arrivals = 0

    def arrive(self) -> int:
        """A request to an endpoint arrived: the in-flight count, this one included."""
        self.arrivals += 1
        n = self.in_flight = self.in_flight + 1
        if n > self.peak:
            self.peak = n
        return n

    def depart(self, count: int = 1) -> None:
        self.in_flight -= count
        self.requests += count

    def arrival_seq(self) -> int:
        """The seq of a request without one: the arrivals before it."""
        return self.arrivals - 1

    def stats(self) -> dict:
        return {"in_flight": self.in_flight, "peak_in_flight": self.peak,
                "requests": self.requests, "pid": os.getpid(), "cpu_s": time.process_time()}


class _SharedCounts:
    """The counts of one of N processes: its slot of a shared int64 array (FIELDS a process),
    written by its process alone, read by all. /_harness/stats, answered by whichever process
    the connection reached, sums the slots.

    In flight at arrival (the header, and the peak) is the sum of every process's in-flight
    count, read without a lock: exact unless another process's count changes during the read
    (a few hundred nanoseconds), when it is off by those requests. The peak reported is the
    largest such sum any process saw, so it is the server's peak, as one process counts it,
    within that margin (a sum of per-process peaks would only bound it from above). A request
    without a seq takes `index + N * (the process's arrivals before it)`: distinct across
    processes without a shared counter."""

    __slots__ = ("view", "base", "in_flights", "peaks", "index", "processes", "arrivals",
                 "supervisor")

    def __init__(self, array, index: int, processes: int, supervisor: int) -> None:
        self.view = view = memoryview(array).cast("q")
        self.base = index * FIELDS
        self.in_flights = view[IN_FLIGHT::FIELDS]
        self.peaks = view[PEAK::FIELDS]
        self.index, self.processes, self.supervisor = index, processes, supervisor
        self.arrivals = 0
        view[self.base + PID] = os.getpid()

    def arrive(self) -> int:
        self.arrivals += 1
        view, base = self.view, self.base
        view[base + IN_FLIGHT] += 1
        n = sum(self.in_flights)
        if n > view[base + PEAK]:
            view[base + PEAK] = n
        return n

    def depart(self, count: int = 1) -> None:
        view, base = self.view, self.base
        view[base + IN_FLIGHT] -= count
        view[base + REQUESTS] += count

    def arrival_seq(self) -> int:
        return self.index + self.processes * (self.arrivals - 1)

    def stats(self) -> dict:
        view, me = self.view, os.getpid()
        workers, cpu_s = [], 0.0
        for base in range(0, len(view), FIELDS):
            pid = view[base + PID]
            workers.append({"pid": pid, "in_flight": view[base + IN_FLIGHT],
                            "peak_in_flight": view[base + PEAK],
                            "requests": view[base + REQUESTS]})
            cpu_s += process_cpu_s(pid) if pid != me else time.process_time()
        return {"in_flight": sum(self.in_flights), "peak_in_flight": max(self.peaks),
                "requests": sum(w["requests"] for w in workers), "pid": self.supervisor,
                "cpu_s": cpu_s + process_cpu_s(self.supervisor), "processes": workers}


# --------------------------------------------------------------------------------------------
# Routes and connections


class _Route:
    """An endpoint's precomputed response: the head up to the three header values, formatted
    with `%`, and the body."""

    __slots__ = ("endpoint", "dist", "seed", "fixed", "head", "body", "small")

    def __init__(self, endpoint: Endpoint, seed: int) -> None:
        self.endpoint, self.dist, self.seed = endpoint, endpoint.latency, seed
        self.fixed = self.dist.value if isinstance(self.dist, Fixed) else None
        status = endpoint.status
        bodyless = status < 200 or status in (204, 304)  # no body, no length (like aiohttp)
        self.body = b"" if bodyless else b"x" * endpoint.size
        length = "" if bodyless else f"Content-Length: {endpoint.size}\r\n"
        self.head = (f"HTTP/1.1 {status} {_reason(status)}\r\n{length}"
                     "Content-Type: application/octet-stream\r\n"
                     f"{DELAY_HEADER}: %d\r\n{DELAY_TARGET_HEADER}: %d\r\n"
                     f"{IN_FLIGHT_HEADER}: %d\r\n\r\n").encode("latin-1")
        self.small = len(self.body) <= SMALL_BODY

    def render(self, applied_ns: int, target_ns: int, in_flight: int, head_only: bool):
        """The response as bytes, or (head, body) for a large body (written without a copy)."""
        head = self.head % (applied_ns, target_ns, in_flight)
        if head_only:
            return head
        return head + self.body if self.small else (head, self.body)


class _App:
    """What the connections of one process share."""

    __slots__ = ("loop", "counts", "routes", "control", "deadlines")

    def __init__(self, config: Server, counts, loop) -> None:
        self.loop, self.counts = loop, counts
        self.deadlines = Deadlines(loop)  # a timerfd: libuv's timers count whole milliseconds
        self.routes = {f"/{name}".encode(): _Route(endpoint, config.seed_of(name))
                       for name, endpoint in config.endpoints.items()}
        self.control = {f"{CONTROL}health".encode(): self.health,
                        f"{CONTROL}stats".encode(): self.stats}

    def health(self) -> bytes:
        return HEALTH

    def stats(self) -> bytes:
        return _json(self.counts.stats())


class _Pending:
    """A delayed response: its timer, then its bytes."""

    __slots__ = ("conn", "route", "arrival", "deadline", "target", "in_flight", "head_only",
                 "handle", "data")

    def __init__(self, conn, route, arrival, target, in_flight, head_only) -> None:
        self.conn, self.route, self.arrival, self.target = conn, route, arrival, target
        self.deadline = arrival + target
        self.in_flight, self.head_only = in_flight, head_only
        self.data = None
        self.handle = conn.app.deadlines.call_at(self.deadline, self.fire)

    def fire(self) -> None:
        now = monotonic_ns()  # past the deadline: Deadlines.call_at is never early
        self.handle = None
        self.data = self.route.render(now - self.arrival, self.target, self.in_flight,
                                      self.head_only)
        self.conn.app.counts.depart()
        self.conn.drain()


class _Connection(asyncio.Protocol):
    """One client connection: an llhttp parser and the queue of responses not yet sent."""

    __slots__ = ("app", "transport", "parser", "url", "head_size", "headers", "read_head",
                 "in_head", "events", "expect", "queue", "out", "closing", "write_paused",
                 "read_paused")

    def __init__(self, app: _App) -> None:
        self.app = app
        self.transport = None
        self.parser = HttpRequestParser(self)
        self.url = b""
        self.head_size = self.headers = self.read_head = self.events = 0
        self.in_head, self.expect = True, False  # a head is what comes next
        self.queue: deque = deque()  # _Pending, or bytes ready behind one
        self.out: list = []  # ready responses, in order, written at the end of the read
        self.closing = self.write_paused = self.read_paused = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    # -- parser callbacks (inside feed_data); the state is reset at the end of each message --

    def on_url(self, url: bytes) -> None:
        self.url = self.url + url if self.url else url
        if len(self.url) > MAX_LINE:
            raise _LimitExceeded("URL")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers += 1
        size = len(name) + len(value)
        self.head_size += size
        if size > MAX_LINE or self.headers > MAX_HEADERS or self.head_size > MAX_HEAD:
            raise _LimitExceeded("headers")
        if len(name) == 6 and name.lower() == b"expect":
            self.expect = value.lower() == b"100-continue"

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.events += 1
        if self.expect and not self.queue:  # the client waits for it before the body
            self.out.append(CONTINUE)
            self.flush()

    def on_message_complete(self) -> None:
        arrival = monotonic_ns()
        url, parser = self.url, self.parser
        query = b""
        if (mark := url.find(b"?")) >= 0:
            url, query = url[:mark], url[mark + 1:]
        if b"%" in url:
            url = unquote_to_bytes(url)
        head_only = parser.get_method() == b"HEAD"
        route = self.app.routes.get(url)
        if route is not None:
            self._endpoint(route, query, arrival, head_only)
        else:
            control = self.app.control.get(url)
            response = NOT_FOUND if control is None else control()
            self.respond(_head_only(response) if head_only else response)
        if not parser.should_keep_alive():
            self.close_after()
        self.url = b""
        self.head_size = self.headers = self.read_head = 0
        self.in_head, self.expect = True, False
        self.events += 1

    # -- requests and responses --

    def _endpoint(self, route: _Route, query: bytes, arrival: int, head_only: bool) -> None:
        counts = self.app.counts
        in_flight = counts.arrive()
        try:
            seq = _seq(query) if query else None
        except ValueError:
            counts.depart()
            self.respond(_head_only(BAD_SEQ) if head_only else BAD_SEQ)
            return
        if seq is None:
            seq = counts.arrival_seq()
        target = route.fixed if route.fixed is not None else route.dist.sample_ns(route.seed, seq)
        if target > 0:
            self.queue.append(_Pending(self, route, arrival, target, in_flight, head_only))
            if len(self.queue) >= MAX_PIPELINE and not self.read_paused:
                self.read_paused = True
                self.transport.pause_reading()
            return
        response = route.render(monotonic_ns() - arrival, target, in_flight, head_only)
        if not self.queue and type(response) is bytes:  # the common case: out at once
            self.out.append(response)
        else:
            self.respond(response)
        counts.depart()

    def respond(self, response) -> None:
        """A ready response: out now, or in the queue behind the pending ones."""
        if self.queue:
            self.queue.append(response)
        elif type(response) is bytes:
            self.out.append(response)
        else:
            self.out.extend(response)

    def drain(self) -> None:
        """A pending response became ready: send what is ready at the head of the queue."""
        queue, out = self.queue, self.out
        while queue:
            item = queue[0]
            if type(item) is _Pending:
                if item.data is None:
                    break
                item = item.data
            queue.popleft()
            if type(item) is bytes:
                out.append(item)
            else:
                out.extend(item)
        self.flush()
        if self.read_paused and len(queue) < MAX_PIPELINE // 2 and not self.write_paused \
                and not self.closing:
            self.read_paused = False
            self.transport.resume_reading()

    def flush(self) -> None:
        out = self.out
        if out:
            transport = self.transport
            if len(out) == 1:
                transport.write(out[0])
            else:
                transport.writelines(out)
            out.clear()
        if self.closing and not self.queue:
            self.transport.close()  # after what is buffered

    def close_after(self) -> None:
        """Read no more; close once the responses so far are sent."""
        if not self.closing:
            self.closing = True
            self.transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        events = self.events
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade:
            self.close_after()  # what follows an upgrade request is not HTTP/1.1 we read
        except HttpParserError:  # malformed, or over a limit (a callback's _LimitExceeded)
            self.respond(BAD_REQUEST)
            self.close_after()
        else:
            # A head's lines are counted once whole (on_url, on_header), but llhttp keeps the
            # line it is in: reads that neither end a head nor a message are all head, and
            # count too (the read that began the head is not counted: at most one read more).
            if self.in_head and self.events == events:
                self.read_head += len(data)
                if self.read_head > MAX_HEAD:
                    self.respond(BAD_REQUEST)
                    self.close_after()
        out = self.out
        if len(out) == 1 and not self.closing:  # the common case: one response to write
            self.transport.write(out[0])
            out.clear()
        else:
            self.flush()

    def eof_received(self) -> bool:
        self.close_after()  # the client sent all it will: answer it, then close
        self.flush()
        return True

    def pause_writing(self) -> None:
        self.write_paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.closing and len(self.queue) < MAX_PIPELINE:
            self.read_paused = False
            self.transport.resume_reading()

    def connection_lost(self, exc) -> None:
        pending = 0
        for item in self.queue:
            if type(item) is _Pending and item.handle is not None:
                item.handle.cancel()
                pending += 1
        self.queue.clear()
        if pending:  # their responses will never be sent: they are done
            self.app.counts.depart(pending)


def _seq(query: bytes) -> int | None:
    """The first `seq` parameter of a query, as int() reads it (ValueError when it cannot);
    None when there is none."""
    if not query:
        return None
    for part in query.split(b"&") if b"&" in query else (query,):
        name, _, value = part.partition(b"=")
        if b"%" in name or b"+" in name:
            name = unquote_to_bytes(name.replace(b"+", b" "))
        if name == b"seq":
            if b"%" in value or b"+" in value:
                value = unquote_to_bytes(value.replace(b"+", b" "))
            return int(value)
    return None


# --------------------------------------------------------------------------------------------
# Serving: one process, or N on one port


def serve_fast(config: Server, host: str = "127.0.0.1", port: int = 0, announce=print,
               backlog: int = BACKLOG) -> None:
    """Run in the foreground until SIGINT/SIGTERM; `announce` gets the URL once it listens."""
    global _backlog
    _backlog = backlog  # the workers of processes: N are forked: they inherit it
    if config.processes > 1:
        _supervise(config, host, port, announce)
        return
    import uvloop

    sock = socket.create_server((host, port), backlog=backlog)
    url = f"http://{host}:{sock.getsockname()[1]}"
    uvloop.run(_run(config, sock, _Counts(), lambda: announce(url)))


async def _run(config: Server, sock: socket.socket, counts, ready, life_fd=None) -> None:
    loop = asyncio.get_running_loop()
    app = _App(config, counts, loop)
    server = await loop.create_server(lambda: _Connection(app), sock=sock, backlog=_backlog)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if life_fd is not None:  # readable (at EOF) once the supervisor is gone
        loop.add_reader(life_fd, stop.set)
    ready()
    await stop.wait()
    server.close()  # open connections and pending timers go with the loop
    app.deadlines.close()


def _worker(config: Server, host: str, port: int, array, index: int, supervisor: int,
            ready_fd: int, life_fd: int, close_fds: tuple[int, ...]) -> None:
    """One of N processes (forked by the supervisor): its own SO_REUSEPORT socket on the port."""
    import uvloop

    signal.set_wakeup_fd(-1)  # the supervisor's; uvloop sets its own
    for sig in (signal.SIGTERM, signal.SIGINT):  # until the loop's handlers take over
        signal.signal(sig, signal.SIG_DFL)
    for fd in close_fds:
        os.close(fd)
    sock = socket.create_server((host, port), backlog=_backlog, reuse_port=True)
    counts = _SharedCounts(array, index, config.processes, supervisor)

    def ready() -> None:
        os.write(ready_fd, b"+")
        os.close(ready_fd)

    uvloop.run(_run(config, sock, counts, ready, life_fd))


def _supervise(config: Server, host: str, port: int, announce) -> None:
    """N workers on one port; announce the URL once all listen; stop them on SIGINT/SIGTERM.
    A worker that exits on its own (killed, crashed) stops the others and the supervisor, with
    an error: the server the cell measures is gone. A worker that exits cleanly was told to
    stop (a terminal's Ctrl-C reaches the whole process group): the supervisor stops too."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")  # nothing runs yet: no threads, no loop
    n = config.processes
    array = mmap.mmap(-1, n * FIELDS * 8)  # anonymous and shared: the workers see one array
    # Holds the port (bound, never listening: it takes no connections) until the workers listen.
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
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
    workers = []
    failure = None
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        close_fds = (holder.fileno(), ready_r, life_w, wake_r, wake_w)
        for index in range(n):
            worker = ctx.Process(target=_worker, name=f"harness-server-{index}", args=(
                config, host, port, array, index, os.getpid(), ready_w, life_r, close_fds))
            worker.start()
            workers.append(worker)
        os.close(ready_w)
        ready_w = -1
        failure = _await_ready(ready_r, workers, stopping, wake_r)
        holder.close()
        if failure is None and not stopping:
            announce(f"http://{host}:{port}")
            failure = _watch(workers, stopping, wake_r)
    finally:
        signal.set_wakeup_fd(old_wakeup)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop_workers(workers)
        holder.close()
        for fd in (ready_r, ready_w, life_r, life_w, wake_r, wake_w):
            if fd >= 0:
                os.close(fd)
    if failure:
        raise SystemExit(f"error: mock server: {failure}")


def _await_ready(ready_r: int, workers, stopping: list, wake_r: int) -> str | None:
    from multiprocessing.connection import wait

    deadline, got = time.monotonic() + START_TIMEOUT_S, 0
    while got < len(workers) and not stopping:
        left = deadline - time.monotonic()
        ready = wait([ready_r, wake_r, *(w.sentinel for w in workers)], timeout=max(left, 0))
        if not ready:
            return f"{len(workers) - got} of {len(workers)} processes not listening after " \
                   f"{START_TIMEOUT_S:.0f}s"
        if wake_r in ready:
            os.read(wake_r, 512)
        if ready_r in ready:
            got += len(os.read(ready_r, 64))
        for worker in workers:
            if worker.exitcode is not None:
                return f"process {worker.pid} exited during start (exit {worker.exitcode})"
    return None


def _watch(workers, stopping: list, wake_r: int) -> str | None:
    from multiprocessing.connection import wait

    while not stopping:
        ready = wait([wake_r, *(w.sentinel for w in workers)])
        if wake_r in ready:
            os.read(wake_r, 512)
        for worker in workers:
            code = worker.exitcode
            if code is not None and not stopping:
                return None if code == 0 else f"process {worker.pid} exited (exit {code})"
    return None


def _stop_workers(workers) -> None:
    for worker in workers:
        if worker.exitcode is None:
            worker.terminate()
    deadline = time.monotonic() + STOP_WAIT_S
    for worker in workers:
        worker.join(max(deadline - time.monotonic(), 0))
        if worker.exitcode is None:
            worker.kill()
            worker.join()
