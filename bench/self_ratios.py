"""bench-self's throughput figures from its rounds: requests/s of every peer, bare loop and
harness cell; the harness ÷ wrk, ÷ Locust and ÷ the bare loop it wraps; CPU per request; the
queue path ÷ the slots path; generator scaling (bench/self_scaling.py). Every figure a median
over the rounds; every ratio the median of each round's ratio (a round's a over the same
round's b). A harness ÷ bare-loop target outside its bound gets a note on where the time goes
(bench/self_diagnose.py).

A round names what it measured: `wrk`, `locust`, `bare <client> <loop>`, and the harness's
cells `<backend> <client>` (the slots path: load.workers left out), `<backend> lean queue`
(load.workers: 1) and `uvloop <client> generators 2`."""

from __future__ import annotations

from bench.self_diagnose import explain
from bench.self_scaling import cores_busy, generator_scaling
from bench.self_sitting import Sitting
from harness.core.stats import median

BACKENDS = ("uvloop", "asyncio", "threads", "processes")
CELLS = [f"{b} {c}" for c in ("lean", "standard") for b in BACKENDS]
QUEUE_CELLS = ("uvloop lean", "threads lean")  # measured on the queue path too
BARES = ("bare lean uvloop", "bare aiohttp uvloop", "bare lean asyncio", "bare aiohttp asyncio",
         "bare lean threads")
# (harness backend, harness client, the bare loop under it): the loop a cell wraps.
WRAPS = (("uvloop", "lean", "bare lean uvloop"), ("uvloop", "standard", "bare aiohttp uvloop"),
         ("asyncio", "lean", "bare lean asyncio"), ("asyncio", "standard", "bare aiohttp asyncio"),
         ("threads", "lean", "bare lean threads"))
# Throughput ÷ the bare loop, and CPU per request ÷ the bare loop's: (bound text, met).
THROUGHPUT_TARGETS = {"uvloop standard": ("≥ 0.9", lambda v: v >= 0.9),
                      "threads lean": ("≥ 0.8", lambda v: v >= 0.8)}
CPU_TARGETS = {"uvloop lean": ("≤ 1.25", lambda v: v <= 1.25)}
WRK_TARGETS = {"uvloop lean": ("≥ 0.75", lambda v: v >= 0.75)}
LOCUST_TARGETS = {"uvloop lean": ("≥ 4", lambda v: v >= 4)}


def med(per_round: list[dict], name: str, key: str = "rps") -> float | None:
    values = [f[name][key] for f in per_round if name in f]
    return median(values) if values else None


def ratio(per_round: list[dict], a: str, b: str, key: str = "rps") -> float | None:
    """The median over the rounds of a ÷ b, each round's a over the same round's b."""
    values = [f[a][key] / f[b][key] for f in per_round if a in f and b in f and f[b][key]]
    return median(values) if values else None


def figures(sitting: Sitting, per_round: list[dict]) -> None:
    rates(sitting, per_round)
    peer_ratios(sitting, per_round)
    bare_ratios(sitting, per_round)
    cpu_per_request(sitting, per_round)
    slots_and_queue(sitting, per_round)
    generator_scaling(sitting, per_round)
    busy(sitting, per_round)


def queued(cell: str) -> str:
    return f"{cell} queue"


def rates(sitting: Sitting, per_round: list[dict]) -> None:
    for name in ("wrk", "locust", *BARES):
        sitting.add(f"{name}: requests/s", med(per_round, name), "req/s")
    for cell in CELLS:
        sitting.add(f"harness {cell}: requests/s", med(per_round, cell), "req/s")
    for cell in QUEUE_CELLS:
        sitting.add(f"harness {cell}, queue (workers: 1): requests/s",
                    med(per_round, queued(cell)), "req/s")


def peer_ratios(sitting: Sitting, per_round: list[dict]) -> None:
    for peer, label, found, targets in (("wrk", "wrk", sitting.wrk, WRK_TARGETS),
                                        ("locust", "Locust FastHttpUser", sitting.locust,
                                         LOCUST_TARGETS)):
        for cell in CELLS:
            target, ok = targets.get(cell, (None, None))
            name = f"harness {cell} ÷ {label}"
            if found:
                sitting.add(name, ratio(per_round, cell, peer), "×", target, ok)
            else:
                sitting.skip(name, "×", target, f"no {label.split()[0]}")


def bare_ratios(sitting: Sitting, per_round: list[dict]) -> None:
    for backend, client, plain in WRAPS:
        cell = f"{backend} {client}"
        target, ok = THROUGHPUT_TARGETS.get(cell, (None, None))
        name = f"harness {cell} ÷ bare {plain.split()[1]} loop on {backend}"
        value = ratio(per_round, cell, plain)
        sitting.add(name, value, "×", target, ok)
        if ok is not None and value is not None and not ok(value):
            explain(sitting, per_round, name, cell, plain)
    for cell in QUEUE_CELLS:
        plain = next(p for b, c, p in WRAPS if f"{b} {c}" == cell)
        sitting.add(f"harness {cell}, queue ÷ bare {plain.split()[1]} loop on {cell.split()[0]}",
                    ratio(per_round, queued(cell), plain), "×")


def cpu_per_request(sitting: Sitting, per_round: list[dict]) -> None:
    """Steadier than requests/s on a shared machine: the cell's process tree from its clock's
    start; the bare loop's process, its start-up left out."""
    for name in BARES:
        sitting.add(f"{name}: CPU per request", med(per_round, name, "cpu_us"), "µs")
    for cell in CELLS:
        sitting.add(f"harness {cell}: CPU per request", med(per_round, cell, "cpu_us"), "µs")
    for backend, client, plain in WRAPS:
        cell = f"{backend} {client}"
        target, ok = CPU_TARGETS.get(cell, (None, None))
        name = f"CPU per request: harness {cell} ÷ bare {plain.split()[1]} loop on {backend}"
        value = ratio(per_round, cell, plain, "cpu_us")
        sitting.add(name, value, "×", target, ok)
        if ok is not None and value is not None and not ok(value):
            explain(sitting, per_round, name, cell, plain)


def slots_and_queue(sitting: Sitting, per_round: list[dict]) -> None:
    """The closed model with load.workers left out (slots: each slot starts its next request)
    against workers: 1 (a producer, a queue and a worker hand each request to a slot)."""
    for cell in QUEUE_CELLS:
        sitting.add(f"harness {cell}, queue (workers: 1): CPU per request",
                    med(per_round, queued(cell), "cpu_us"), "µs")
        sitting.add(f"harness {cell}: queue ÷ slots, requests/s",
                    ratio(per_round, queued(cell), cell), "×")
        sitting.add(f"harness {cell}: queue ÷ slots, CPU per request",
                    ratio(per_round, queued(cell), cell, "cpu_us"), "×")


def busy(sitting: Sitting, per_round: list[dict]) -> None:
    """The cores the uvloop cells kept busy, client and server (of the machine's two): a scaling
    short of its bound with both cores busy is CPU per request that grew; with a core idle, a
    wait (the server's one core, a hand-off)."""
    parts = []
    for client in ("standard", "lean"):
        for n in (1, 2):
            cell = f"uvloop {client}" + (" generators 2" if n == 2 else "")
            values = [cores_busy(r[cell]) for r in per_round if cell in r]
            if values:
                parts.append(f"{cell} {median(values):.2f} (client "
                             f"{med(per_round, cell, 'cpu_us'):.1f} + server "
                             f"{med(per_round, cell, 'server_us'):.1f} µs/request)")
    if parts:
        sitting.notes.append("generator scaling, cores busy: " + "; ".join(parts))
