"""bench-self's generator scaling: one closed uvloop cell split over `generators: 2` against the
same cell on one generator, each client, and the most two cores allow it.

The bound: one generator process with client CPU c per request and a single-process server with
CPU s per request do at most min(1 ÷ c, 1 ÷ s) requests a second (each on a core of its own).
Two generators share the two cores with the server: at most 2 ÷ (c + s) a second, and never
more than the server's 1 ÷ s. The most generators: 2 can give over generators: 1 is the ratio
of the two, computed from the c and s measured in the generators: 1 cell of the same round."""

from __future__ import annotations

import math

from bench.self_sitting import Sitting
from harness.core.stats import median

CLIENTS = ("standard", "lean")
STANDARD_AT_LEAST = 1.6  # the standard client costs ~190 µs a request: the mock is not the limit
OF_BOUND_AT_LEAST = 0.9


def two_core_bound(c: float, s: float) -> float:
    """min(2 ÷ (c + s), 1 ÷ s) ÷ min(1 ÷ c, 1 ÷ s): the most `generators: 2` can give over
    `generators: 1` on two cores, from the client CPU c and server CPU s per request (any one
    unit); NaN when either is not a positive number."""
    if not (c > 0 and s > 0) or math.isinf(c) or math.isinf(s):
        return math.nan
    return min(2 / (c + s), 1 / s) / min(1 / c, 1 / s)


def cell(client: str, generators: int = 1) -> str:
    """A round's name for the uvloop cell of `client` on `generators` processes."""
    return f"uvloop {client}" + (f" generators {generators}" if generators != 1 else "")


def per_round(rounds: list[dict], client: str) -> list[dict]:
    """Each round's scaling (generators 2 ÷ 1, requests/s), the bound from that round's
    generators: 1 cell, and the one over the other; rounds without both cells left out."""
    one, two = cell(client), cell(client, 2)
    found = []
    for r in rounds:
        if one not in r or two not in r or not r[one]["rps"]:
            continue
        scaling = r[two]["rps"] / r[one]["rps"]
        bound = two_core_bound(r[one]["cpu_us"], r[one]["server_us"])
        found.append({"scaling": scaling, "bound": bound, "of_bound": scaling / bound})
    return found


def cores_busy(values: dict) -> float:
    """The cores a cell kept busy: (client + server CPU per request) × requests/s."""
    return (values["cpu_us"] + values["server_us"]) * values["rps"] / 1e6


def generator_scaling(sitting: Sitting, rounds: list[dict]) -> None:
    """Each client's figures: generators 2's requests/s, c and s, the scaling, the bound and
    the scaling ÷ the bound; judged: standard's scaling, lean's scaling ÷ its bound."""
    judged = {("standard", "scaling"): (f"≥ {STANDARD_AT_LEAST}",
                                        lambda v: v >= STANDARD_AT_LEAST),
              ("lean", "of_bound"): (f"≥ {OF_BOUND_AT_LEAST}",
                                     lambda v: v >= OF_BOUND_AT_LEAST)}
    for client in CLIENTS:
        two = [r[cell(client, 2)]["rps"] for r in rounds if cell(client, 2) in r]
        sitting.add(f"harness uvloop {client} generators 2: requests/s",
                    median(two) if two else None, "req/s")
        for key, what in (("cpu_us", "c: client"), ("server_us", "s: server")):
            values = [r[cell(client)][key] for r in rounds if cell(client) in r]
            sitting.add(f"harness uvloop {client} (generators 1), {what} CPU per request",
                        median(values) if values else None, "µs")
        found = per_round(rounds, client)
        for key, name in (
                ("scaling", f"generators 2 ÷ 1: harness uvloop {client}, requests/s"),
                ("bound", "two-core bound min(2 ÷ (c + s), 1 ÷ s) ÷ min(1 ÷ c, 1 ÷ s): "
                          f"uvloop {client}"),
                ("of_bound", f"generators 2 ÷ 1 ÷ the two-core bound: uvloop {client}")):
            sitting.add(name, pick(found, key), "×", *judged.get((client, key), (None, None)))


def pick(found: list[dict], key: str) -> float | None:
    values = [f[key] for f in found if not math.isnan(f[key])]
    return median(values) if values else None
