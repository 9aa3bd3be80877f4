"""HTTP clients, pluggable: a backend asks for a client by interface, not by library.

Every client answers one request as a schema.Outcome. The server's applied delay comes back in the
DELAY_HEADER so the client's own overhead is end − start − server_delay."""

from __future__ import annotations

DELAY_HEADER = "X-Harness-Delay-Ns"
IN_FLIGHT_HEADER = "X-Harness-In-Flight"


def request_path(endpoint: str, seq: int) -> str:
    return f"/{endpoint}?seq={seq}"
