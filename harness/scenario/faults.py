"""Which fault, if any, an endpoint's request `seq` gets: a pure function of (seed, endpoint,
seq), so the mock server and the client that records the `fault` column agree on every
backend. The draw is a hash, a stream apart from the delays' (harness.scenario.delays): adding
faults never changes a delay. Imports neither aiohttp nor the server."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.scenario.server import Endpoint, Fault, Server

_PERSON = b"harness.faults"  # domain separation: not the bytes any other stream hashes
_SCALE = 2.0**-64


def draw(seed: int, name: str, seq: int) -> float:
    """A uniform number in [0, 1) for (seed, endpoint name, seq)."""
    key = f"{seed}\0{name}\0{seq}".encode()
    digest = hashlib.blake2b(key, digest_size=8, person=_PERSON).digest()
    return int.from_bytes(digest, "big") * _SCALE


def fault_for(endpoint: Endpoint, seed: int, seq: int, *, name: str) -> Fault | None:
    """The fault scheduled for request `seq` of endpoint `name` (None: it is served normally).
    Faults take consecutive slices of [0, 1) by share, in the order they are written."""
    if not endpoint.faults:
        return None
    u, edge = draw(seed, name, seq), 0.0
    for fault in endpoint.faults:
        edge += fault.share
        if u < edge:
            return fault
    return None


def scheduled_fault(server: Server, name: str, seq: int) -> str | None:
    """The `fault` column: the effect (status, reset, hang, trickle, truncate, delay) that
    endpoint `name` applies to request `seq`, or None."""
    fault = fault_for(server.endpoints[name], server.seed_of(name), seq, name=name)
    return None if fault is None else fault.effect
