"""The lean HTTP/1.1 clients' shared part: the request template and the response parsed by
httptools.

`LeanAsyncClient` is an asyncio.Protocol per connection, for the event loops (asyncio and
uvloop); `LeanBlockingClient` is one blocking socket, for a thread or process slot. They take
the same settings and have the same methods as AiohttpClient and BlockingHttpClient, and
classify failures into the same categories (schema.CONNECT, TIMEOUT, RESET, PROTOCOL,
HTTP_STATUS), so a workload can swap one for the other.

Why httptools: it wraps llhttp, the C parser of Node.js, and is what uvicorn parses with. The
per-response Python work is a handful of callbacks (one per header, one each for the end of the
headers and of the message); the bytes are scanned in C. The alternatives cost more per
response: h11 is a pure-Python state machine (regular expressions and an event object per
step); http.client reads the status line and headers line by line through a buffered file and
builds an email.message.Message; aiohttp's own parser is C too but comes with the whole client
(request/response objects, cookie jar, connector, timeout contexts) around it. httptools has
no feed_eof, so a body delimited by the connection's close (neither Content-Length nor chunked)
is completed here, in connection_lost. It also cannot be told a response answers a HEAD
request: a HEAD response must be completed at the end of its
headers.

Byte counts: `exchange(seq)` returns an `Exchange` with the bytes sent and received besides the
outcome and slot; `request(seq)` keeps the standard clients' return."""

from __future__ import annotations

from typing import NamedTuple

from httptools import HttpParserError, HttpParserUpgrade

from harness.core.checks import CHECK
from harness.core.schema import CONNECT, HTTP_STATUS, PROTOCOL, RESET, TIMEOUT, Outcome
from harness.core.wire import (
    DELAY_HEADER,
    DELAY_TARGET_HEADER,
    RequestMix,
    RequestSpec,
    as_request,
)

_DELAY = DELAY_HEADER.lower().encode()
_TARGET = DELAY_TARGET_HEADER.lower().encode()
_FRAMING = (b"content-length", b"transfer-encoding")
FAILED = {e: Outcome(False, 0, e, None) for e in (CONNECT, TIMEOUT, RESET, PROTOCOL)}
PARSE_ERRORS = (HttpParserError, HttpParserUpgrade)  # an upgrade is not a response we expect
NO_SLOT = "conn-?"


class Exchange(NamedTuple):
    """One request as the wire saw it: the outcome, the connection, and the bytes each way
    (over all attempts when a stale keep-alive connection made the client retry)."""

    outcome: Outcome
    slot: str
    bytes_sent: int
    bytes_received: int


class RequestTemplate:
    """The request's bytes, precomputed around the sequence number: `prefix + seq + suffix`
    (the whole request when it carries no seq). Method, headers and the spec's body go into
    the prefix and suffix once, here, so the per-request work stays one concatenation; a
    per-request body (the pipeline's tensor) adds its Content-Length."""

    __slots__ = ("prefix", "suffix", "head_end", "seq_query", "body_len", "head", "mock",
                 "checks")

    def __init__(self, host: str, request: RequestSpec | str) -> None:
        request = as_request(request)
        marker = 9_876_543_210_123
        path = request.path_for(marker)
        self.seq_query = str(marker) in path
        before, _, after = path.partition(str(marker))
        lines = "".join(f"{k}: {v}\r\n" for k, v in (("Host", host), *request.headers))
        self.prefix = f"{request.method} {before}".encode("latin-1")
        self.head_end = f"{after} HTTP/1.1\r\n{lines}".encode("latin-1")
        self.suffix = self.head_end + _length(request.body) + request.body
        self.body_len = len(request.body)
        self.head = request.method == "HEAD"
        self.mock = request.mock
        self.checks = request.checks

    def render(self, seq: int, body: bytes | None = None) -> bytes:
        if body is None:
            if not self.seq_query:
                return self.prefix + self.suffix
            return self.prefix + b"%d" % seq + self.suffix
        start = self.prefix + (b"%d" % seq if self.seq_query else b"")
        return start + self.head_end + _length(body) + body


class MixTemplate:
    """The requests of `workload.requests`: one RequestTemplate per entry, encoded once;
    `render` sends request `seq`'s entry (core.mix) and leaves that entry's `body_len` and
    `head` here, for what reads them next: the blocking client right after, in the same
    request; on a loop, other requests render in between, so a MixConnection takes the entry's
    `head` from the request line it sends instead. The entries share `mock` and `checks`."""

    __slots__ = ("templates", "pick", "body_len", "head", "mock", "checks", "by_head")

    def __init__(self, host: str, mix: RequestMix) -> None:
        self.templates = [RequestTemplate(host, entry) for entry in mix.entries]
        self.pick = mix.picker()
        first = self.templates[0]
        self.body_len, self.head, self.mock, self.checks = (first.body_len, first.head,
                                                            first.mock, first.checks)
        # a template whose `head` is False and one whose is True, for a response's reader
        self.by_head = {t.head: t for t in reversed(self.templates)}

    def render(self, seq: int, body: bytes | None = None) -> bytes:
        template = self.templates[self.pick(seq)]
        self.body_len, self.head = template.body_len, template.head
        return template.render(seq, body)


def request_template(host: str, request: RequestSpec | RequestMix | str
                     ) -> RequestTemplate | MixTemplate:
    if isinstance(request, RequestMix):
        return MixTemplate(host, request)
    return RequestTemplate(host, request)


def _int(value: bytes) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _length(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) if body else b"\r\n"


class ResponseReader:
    """httptools callbacks for one response at a time on one connection. The parser lives as
    long as the connection (llhttp resets itself between keep-alive messages)."""

    def _reset(self) -> None:
        self.status = 0
        self.delay_ns: int | None = None
        self.framed = False  # Content-Length or Transfer-Encoding seen: the body has an end
        self.headers_done = False
        self.complete = False
        self.received = 0
        self.body_bytes = 0
        self.drawn_ns: int | None = None
        self.stale_parser = False
        if self._template.checks is not None:  # kept only for checks: the rest counts bytes
            self.kept_headers: dict[str, str] = {}
            self.kept_body: list[bytes] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if self._template.checks is not None:
            self.kept_headers[name.decode("latin-1")] = value.decode("latin-1")
        if not self._template.mock:  # a target or a service: its headers are its own
            if name in _FRAMING:
                self.framed = True
        elif name == _DELAY:
            self.delay_ns = _int(value)
        elif name == _TARGET:
            self.drawn_ns = _int(value)
        elif name in _FRAMING:
            self.framed = True

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self._template.checks is not None:
            self.kept_body.append(bytes(body))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.headers_done = True
        if self._template.head and not (100 <= self.status < 200):
            # A response to HEAD has no body whatever its Content-Length says; httptools cannot
            # be told so: the message ends here and the connection gets a fresh parser.
            self.stale_parser = True
            self.on_message_complete()

    def on_message_begin(self) -> None:
        if self.complete:  # a second response to one request: do not trust this connection
            self.reusable = False

    def _interim(self) -> bool:
        """A 1xx response (not 101) precedes the real one: start over and keep reading."""
        if 100 <= self.status < 200 and self.status != 101:
            received = self.received
            self._reset()
            self.received = received
            return True
        return False

    def _outcome(self, ok_status: frozenset[int]) -> Outcome:
        status = self.status
        ok = status in ok_status
        error, failed = None if ok else HTTP_STATUS, None
        checks = self._template.checks
        if ok and checks is not None:
            failed = checks.failed(self.kept_headers.get, b"".join(self.kept_body))
            if failed is not None:
                ok, error = False, CHECK
        return Outcome(ok, status, error, self.delay_ns,
                       server_delay_target_ns=self.drawn_ns, bytes_sent=self.body_sent,
                       bytes_received=self.body_bytes, error_detail=failed)

    def _eof_outcome(self, ok_status: frozenset[int], clean: bool = True) -> Outcome:
        """The connection closed before the message completed (`clean`: by a FIN, not a
        reset or an error)."""
        if clean and self.headers_done and not self.framed:
            self.complete = True  # the body was delimited by the close: a whole response
            return self._outcome(ok_status)
        return FAILED[RESET if self.received == 0 else PROTOCOL]


