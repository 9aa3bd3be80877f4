"""HTTP clients, pluggable: a backend asks for a client by interface, not by library.

Every client answers one request as a schema.Outcome. The server's applied delay (arrival to the
start of the response, measured in the server) comes back in the DELAY_HEADER so the client's
own overhead is end − start − server_delay; the drawn target in the DELAY_TARGET_HEADER."""

from __future__ import annotations

DELAY_HEADER = "X-Harness-Delay-Ns"  # applied: arrival to the start of the response, >= target
DELAY_TARGET_HEADER = "X-Harness-Delay-Target-Ns"  # drawn (+ a `delay` fault's extra)
IN_FLIGHT_HEADER = "X-Harness-In-Flight"
BODY_BYTES_HEADER = "X-Harness-Body-Bytes"  # request-body bytes the server read
OWN_ROUTES = "/_harness"  # the mock server's own routes: /_harness/{health,stats,clock}


def request_path(endpoint: str, seq: int) -> str:
    return f"/{endpoint}?seq={seq}"
