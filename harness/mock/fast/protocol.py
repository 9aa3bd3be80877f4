"""The fast mock server engine (`server.engine: fast`): an asyncio.Protocol on uvloop,
requests parsed by httptools (llhttp, C), responses built from bytes precomputed per endpoint.

The contract is the aiohttp engine's (harness.mock.aiohttp_engine): each request's delay is
drawn from its endpoint's seeded distribution keyed by the `seq` query parameter (or an arrival
counter, e.g. under wrk), the response has the endpoint's status and size, the delay headers and the
in-flight count at arrival, and the server counts its requests and peak. Every method is
accepted (HEAD gets the headers alone); a request's body is read to its end and dropped.

What one request costs: the parser's callbacks (the URL, one per header, the end of the
message), a dict lookup for the path, an int() of the seq, one draw, two clock reads, one `%`
into the endpoint's precomputed head, one write (the responses to the requests of one read
are written together). A zero delay is answered inside data_received. Any other waits for its
deadline on harness.mock.deadlines' timerfd (`Deadlines.call_at`: a kernel hrtimer at the deadline
itself, one timerfd for all the pending responses), not on the loop's timers: libuv counts whole
milliseconds, which made responses 0.2–0.3 ms late at the p50 and up to 1.7 ms at the p99. The
applied delay is never shorter than the drawn delay.

The headers: DELAY_HEADER is the delay applied, measured from the request's arrival (the end
of its message) to the start of its response; DELAY_TARGET_HEADER is the drawn delay;
IN_FLIGHT_HEADER the server's in-flight count at arrival, this request included.

Pipelining: responses leave in request order. A connection keeps the responses not yet sent
in a queue; one that is ready waits for those before it. Reading pauses while the transport's
buffer is full or MAX_PIPELINE responses are pending.

Bad requests: 400 and the connection closes, like aiohttp, for anything llhttp refuses and for
a URL or header line over MAX_LINE bytes, more than MAX_HEADERS headers or a head over MAX_HEAD
bytes. 404 for other paths. Control routes: /_harness/health, /_harness/stats."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from http import HTTPStatus
from urllib.parse import unquote_to_bytes

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from harness.core.clock import now_ns
from harness.core.wire import DELAY_HEADER, DELAY_TARGET_HEADER, IN_FLIGHT_HEADER, OWN_ROUTES
from harness.mock.deadlines import Deadlines
from harness.scenario.delays import Fixed
from harness.scenario.server import Endpoint, Server

CONTROL = OWN_ROUTES + "/"
MAX_LINE = 8190  # bytes of the URL, and of one header's name and value: aiohttp's limit
MAX_HEADERS = 128
MAX_HEAD = 64 * 1024  # bytes of one request's head (request line and headers)
MAX_PIPELINE = 256  # responses pending on one connection before it stops reading
SMALL_BODY = 16 * 1024  # up to this, head and body are joined into one bytes for the write



class _LimitExceeded(Exception):
    """A request's head is over one of the limits (raised in a parser callback)."""


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

    def render(self, applied_ns: int, drawn_ns: int, in_flight: int, head_only: bool):
        """The response as bytes, or (head, body) for a large body (written without a copy)."""
        head = self.head % (applied_ns, drawn_ns, in_flight)
        if head_only:
            return head
        return head + self.body if self.small else (head, self.body)


class EngineState:
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

    __slots__ = ("conn", "route", "arrival", "deadline", "drawn", "in_flight", "head_only",
                 "handle", "data")

    def __init__(self, conn, route, arrival, drawn, in_flight, head_only) -> None:
        self.conn, self.route, self.arrival, self.drawn = conn, route, arrival, drawn
        self.deadline = arrival + drawn
        self.in_flight, self.head_only = in_flight, head_only
        self.data = None
        self.handle = conn.app.deadlines.call_at(self.deadline, self.fire)

    def fire(self) -> None:
        now = now_ns()  # past the deadline: Deadlines.call_at is never early
        self.handle = None
        self.data = self.route.render(now - self.arrival, self.drawn, self.in_flight,
                                      self.head_only)
        self.conn.app.counts.depart()
        self.conn.drain()


class ServerConnection(asyncio.Protocol):
    """One client connection: an llhttp parser and the queue of responses not yet sent."""

    __slots__ = ("app", "transport", "parser", "url", "head_size", "headers", "read_head",
                 "in_head", "events", "expect", "queue", "out", "closing", "write_paused",
                 "read_paused")

    def __init__(self, app: EngineState) -> None:
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
        arrival = now_ns()
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
        drawn = route.fixed if route.fixed is not None else route.dist.sample_ns(route.seed, seq)
        if drawn > 0:
            self.queue.append(_Pending(self, route, arrival, drawn, in_flight, head_only))
            if len(self.queue) >= MAX_PIPELINE and not self.read_paused:
                self.read_paused = True
                self.transport.pause_reading()
            return
        response = route.render(now_ns() - arrival, drawn, in_flight, head_only)
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


