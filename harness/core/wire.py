"""What the clients and the mock server agree on: the headers the server answers with, its own
routes, and what a request sends.

Every client answers one request as a schema.Outcome. The server's applied delay (arrival to the
start of the response, measured in the server) comes back in the DELAY_HEADER so the client's
own overhead is end − start − server_delay; the drawn delay in the DELAY_TARGET_HEADER. What
to send is one RequestSpec per cell, built before the clock starts."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.core.checks import Checks

import functools
import json
from dataclasses import dataclass

from harness.core.mix import Picker

DELAY_HEADER = "X-Harness-Delay-Ns"  # applied: arrival to the start of the response, >= drawn
DELAY_TARGET_HEADER = "X-Harness-Delay-Target-Ns"  # drawn (+ a `delay` fault's extra)
IN_FLIGHT_HEADER = "X-Harness-In-Flight"
BODY_BYTES_HEADER = "X-Harness-Body-Bytes"  # request-body bytes the server read
OWN_ROUTES = "/_harness"  # the mock server's own routes: /_harness/{health,stats,clock}


@dataclass(frozen=True)
class RequestSpec:
    """What every request of a cell sends. `seq_query`: append `?seq=N` (the mock server keys
    its delays and faults by it, a started service its rows); never for an external target,
    whose URL is the user's. `mock`: the mock server answers, so its X-Harness headers and own
    routes mean something."""

    path: str = "/"
    seq_query: bool = True
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    mock: bool = True
    checks: Checks | None = None  # what a response must hold beyond its status

    def path_for(self, seq: int) -> str:
        if not self.seq_query:
            return self.path
        return f"{self.path}{'&' if '?' in self.path else '?'}seq={seq}"


@dataclass(frozen=True)
class RequestMix:
    """What the requests of a cell send with `workload.requests`: request `seq` sends entry
    `picker()(seq)` (core.mix, the same for every backend and client) of `entries`, one
    RequestSpec each (their `mock` and `checks` are the cell's, alike in all)."""

    entries: tuple[RequestSpec, ...]
    weights: tuple[int, ...]
    seed: int

    def picker(self) -> Picker:
        return Picker(self.seed, self.weights)


def endpoint_request(endpoint: str, **kwargs) -> RequestSpec:
    return RequestSpec(path=f"/{endpoint}", **kwargs)


def as_request(what: str | RequestSpec) -> RequestSpec:
    """A client takes an endpoint name (the mock's `/name?seq=N`) or a whole RequestSpec."""
    return what if isinstance(what, RequestSpec) else endpoint_request(what)


def header_int(value) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


@functools.cache
def local_opener():
    """Loopback only: the harness's own control requests never go through an environment
    proxy. Built on first use, so that the clients and the server, which import this module,
    do not load urllib. Over TLS (`server.tls`) the server's certificate is not checked here:
    these are the harness's own routes on the server it started (counts and a clock), and the
    CA that would check it is the cell's business."""
    import ssl
    import urllib.request

    unchecked = ssl._create_unverified_context()
    return urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                       urllib.request.HTTPSHandler(context=unchecked))


def post_t0(url: str, t0_ns: int, quiet: bool = False) -> None:
    """Tell the mock server at `url` when the cell's clock started: its stalls and crash_after
    count from there. The value is absolute (CLOCK_MONOTONIC is one clock for every process), so
    the post may come a little after the clock started without shifting anything. `quiet`: an
    engine without stalls or crashes has no clock, and a dead server is seen anyway."""
    import urllib.request

    request = urllib.request.Request(url + OWN_ROUTES + "/clock", method="POST",
                                     data=json.dumps({"t0_ns": t0_ns}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with local_opener().open(request, timeout=5) as response:
            response.read()
    except OSError:
        if not quiet:
            raise
