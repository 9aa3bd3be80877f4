"""HTTP clients, pluggable: a backend asks for a client by interface, not by library.

Every client answers one request as a schema.Outcome. The server's applied delay (arrival to the
start of the response, measured in the server) comes back in the DELAY_HEADER so the client's
own overhead is end − start − server_delay; the drawn target in the DELAY_TARGET_HEADER. What
to send is one RequestSpec per cell, built before the clock starts."""

from __future__ import annotations

from dataclasses import dataclass

DELAY_HEADER = "X-Harness-Delay-Ns"  # applied: arrival to the start of the response, >= target
DELAY_TARGET_HEADER = "X-Harness-Delay-Target-Ns"  # drawn (+ a `delay` fault's extra)
IN_FLIGHT_HEADER = "X-Harness-In-Flight"
BODY_BYTES_HEADER = "X-Harness-Body-Bytes"  # request-body bytes the server read
OWN_ROUTES = "/_harness"  # the mock server's own routes: /_harness/{health,stats,clock}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")


@dataclass(frozen=True)
class RequestSpec:
    """What every request of a cell sends. `seq_query`: append `?seq=N` (the mock server keys
    its delays and faults by it); never for an external target, whose URL is the user's."""

    path: str = "/"
    seq_query: bool = True
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def target(self, seq: int) -> str:
        if not self.seq_query:
            return self.path
        return f"{self.path}{'&' if '?' in self.path else '?'}seq={seq}"


def endpoint_request(endpoint: str, **kwargs) -> RequestSpec:
    return RequestSpec(path=f"/{endpoint}", **kwargs)


def request_path(endpoint: str, seq: int) -> str:
    return endpoint_request(endpoint).target(seq)


def as_request(what: str | RequestSpec) -> RequestSpec:
    """A client takes an endpoint name (the mock's `/name?seq=N`) or a whole RequestSpec."""
    return what if isinstance(what, RequestSpec) else endpoint_request(what)


def header_int(value) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
