"""bench-self's throughput rounds: wrk, Locust, the bare loops and `harness run` of every backend
× client, each against a fresh fast mock (50 connections, zero delay, `--seconds` each); ratios
per round, medians over the rounds."""

from __future__ import annotations

import time
from collections.abc import Callable

from bench.self_peers import run_bare, run_locust, run_wrk
from bench.self_sitting import CONNECTIONS, FAST, Sitting, say
from harness.core.stats import median
from harness.mock.process import ServerProcess

Round = dict[str, dict]  # what one round measured: name → {"rps", "errors", "cpu_us", …}
Step = Callable[[], Round]

PEERS = ("wrk", "locust", "bare lean uvloop", "bare aiohttp uvloop", "bare lean asyncio",
         "bare aiohttp asyncio")
CELLS = [f"{b} {c}" for c in ("lean", "standard")
         for b in ("uvloop", "asyncio", "threads", "processes")]
WRAPS = (("lean", "lean"), ("standard", "aiohttp"))  # a harness client, the bare loop under it


def throughput(sitting: Sitting) -> None:
    say(f"\n== throughput: {CONNECTIONS} connections, zero delay, fast engine, "
        f"{sitting.args.seconds} s each")
    per_round = rounds(sitting)
    rates(sitting, per_round)
    peer_ratios(sitting, per_round)
    bare_ratios(sitting, per_round)
    cpu_per_request(sitting, per_round)
    errors = {name: sum(f[name]["errors"] for f in per_round if name in f)
              for name in dict.fromkeys(k for f in per_round for k in f)}
    bad = {k: v for k, v in errors.items() if v}
    if bad:
        sitting.notes.append("throughput errors (all rounds): "
                             + ", ".join(f"{k} {v}" for k, v in bad.items()))


def rounds(sitting: Sitting) -> list[Round]:
    """`--rounds` rounds, fewer when the time budget runs short of the later sections'."""
    args = sitting.args
    reserve = 0 if args.quick else 330  # what the later sections take, at most
    per_round: list[Round] = []
    round_s = 0.0
    for r in range(args.rounds):
        if r and sitting.left() - reserve < round_s * 1.1:
            sitting.notes.append(f"throughput: {r} round(s) of {args.rounds}: the time budget "
                                 "ran short")
            break
        order = steps(sitting, r)
        t0 = time.monotonic()
        found: Round = {}
        for step in order:
            found.update(step())
        per_round.append(found)
        round_s = time.monotonic() - t0
        say(f"  round {r + 1}: " + ", ".join(f"{k} {v['rps']:,.0f}" for k, v in found.items())
            + f"  ({round_s:.0f} s)")
    sitting.notes.append(f"throughput: medians over {len(per_round)} round(s)")
    return per_round


def steps(sitting: Sitting, r: int) -> list[Step]:
    """Round r's measurements in order: the harness's uvloop cells between wrk, the bare uvloop
    loops and Locust, its asyncio cells between the bare asyncio loops."""
    s = sitting.args.seconds
    order = []
    if sitting.wrk:
        order.append(peer("wrk", lambda url: run_wrk(sitting.wrk, url + "/api", s)))
    order += [bare("lean", "uvloop", s), harness(sitting, "uvloop", r),
              bare("aiohttp", "uvloop", s)]
    if sitting.locust:
        order.append(peer("locust", lambda url: run_locust(sitting.locust, sitting.tmp, url, s)))
    order += [bare("lean", "asyncio", s), harness(sitting, "asyncio", r),
              bare("aiohttp", "asyncio", s), harness(sitting, "threads, processes", r)]
    # Every other round in the reverse order, so a drift of the machine's load does not favour
    # either side.
    if r % 2:
        order.reverse()
    return order


def peer(name: str, measure: Callable[[str], dict]) -> Step:
    """A step that measures a peer against a fresh fast mock of its own."""
    def step() -> Round:
        with ServerProcess(FAST.format(name="peer", latency=0, clients="lean",
                                       load="requests: 1, concurrency: 1",
                                       backends="uvloop")) as server:
            return {name: measure(server.url)}
    return step


def bare(client: str, loop: str, seconds: int) -> Step:
    return peer(f"bare {client} {loop}", lambda url: run_bare(client, url + "/api", seconds, loop))


def harness(sitting: Sitting, backends: str, r: int) -> Step:
    """A step that runs `harness run` of the backends × both clients: one duration-bound closed
    cell each, each with its own fresh fast mock."""
    s = sitting.args.seconds

    def step() -> Round:
        text = FAST.format(name="self_throughput", latency=0, clients="standard, lean",
                           load=f"duration: {s}s, concurrency: {CONNECTIONS}",
                           backends=backends)
        cells = backends.count(",") + 1
        summary = sitting.run_harness(f"throughput{r}_{backends.replace(', ', '_')}",
                                      text, timeout_s=cells * (3 * s + 60))
        return {f"{row.backend} {row.client}": {
            "rps": row.throughput_rps, "errors": row.errors,
            "cpu_us": 1e6 * (row.cpu_user_s + row.cpu_sys_s) / row.requests}
            for row in summary.itertuples()}
    return step


def med(per_round: list[Round], name: str, key: str = "rps") -> float | None:
    values = [f[name][key] for f in per_round if name in f]
    return median(values) if values else None


def ratio(per_round: list[Round], a: str, b: str, key: str = "rps") -> float | None:
    """The median over the rounds of a ÷ b, each round's a over the same round's b."""
    values = [f[a][key] / f[b][key] for f in per_round if a in f and b in f]
    return median(values) if values else None


def rates(sitting: Sitting, per_round: list[Round]) -> None:
    for name in PEERS:
        sitting.add(f"{name}: requests/s", med(per_round, name), "req/s")
    for cell in CELLS:
        sitting.add(f"harness {cell}: requests/s", med(per_round, cell), "req/s")


def peer_ratios(sitting: Sitting, per_round: list[Round]) -> None:
    for cell in CELLS:
        target = ok = None
        if cell == "uvloop lean":
            target, ok = "≥ 0.75", lambda v: v >= 0.75
        if sitting.wrk:
            sitting.add(f"harness {cell} ÷ wrk", ratio(per_round, cell, "wrk"), "×", target, ok)
        else:
            sitting.skip(f"harness {cell} ÷ wrk", "×", target, "no wrk")
    for cell in CELLS:
        target = ok = None
        if cell == "uvloop lean":
            target, ok = "≥ 4", lambda v: v >= 4
        if sitting.locust:
            sitting.add(f"harness {cell} ÷ Locust FastHttpUser", ratio(per_round, cell, "locust"),
                        "×", target, ok)
        else:
            sitting.skip(f"harness {cell} ÷ Locust FastHttpUser", "×", target, "no Locust")


def bare_ratios(sitting: Sitting, per_round: list[Round]) -> None:
    for loop in ("uvloop", "asyncio"):
        for cell, plain in WRAPS:
            target = ok = None
            if loop == "uvloop":
                target, ok = "≥ 0.9", lambda v: v >= 0.9
            sitting.add(f"harness {loop} {cell} ÷ bare {plain} loop on {loop}",
                        ratio(per_round, f"{loop} {cell}", f"bare {plain} {loop}"), "×", target,
                        ok)


def cpu_per_request(sitting: Sitting, per_round: list[Round]) -> None:
    """Steadier than requests/s on a shared machine: the cell's process tree; the bare loop's
    process, its start-up left out."""
    for name in ("bare lean uvloop", "bare aiohttp uvloop", "bare lean asyncio",
                 "bare aiohttp asyncio", *(f"harness {cell}" for cell in CELLS)):
        key = name.removeprefix("harness ")
        sitting.add(f"{name}: CPU per request", med(per_round, key, "cpu_us"), "µs")
    for loop in ("uvloop", "asyncio"):
        for cell, plain in WRAPS:
            sitting.add(f"CPU per request: harness {loop} {cell} ÷ bare {plain} loop",
                        ratio(per_round, f"{loop} {cell}", f"bare {plain} {loop}", "cpu_us"),
                        "×")
