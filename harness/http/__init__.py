"""HTTP clients, pluggable: a backend asks for a client by interface, not by library.

Every client answers one request as an `Outcome`. The server's applied delay comes back in the
DELAY_HEADER so the client's own overhead is end − start − server_delay."""

from __future__ import annotations

from typing import NamedTuple

DELAY_HEADER = "X-Harness-Delay-Ns"
IN_FLIGHT_HEADER = "X-Harness-In-Flight"


class Outcome(NamedTuple):
    ok: bool
    status: int  # 0 when no HTTP response arrived
    error: str | None
    server_delay_ns: int | None


def request_path(endpoint: str, seq: int) -> str:
    return f"/{endpoint}?seq={seq}"
