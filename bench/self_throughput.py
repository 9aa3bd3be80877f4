"""bench-self's throughput rounds: wrk, Locust, the bare loops and `harness run` of every backend
× client, each against a fresh fast mock (50 connections, zero delay, `--seconds` each); the
figures (bench/self_ratios.py, self_scaling.py) are medians over the rounds.

The harness's cells, each a duration-bound closed cell: every backend × client as the scenario
leaves `load.workers` out (slots: no queue); uvloop and threads with the lean client again with
`workers: 1` (queue: the producer, the queue and a worker in front of the slots); the uvloop
cells on `generators: [1, 2]`."""

from __future__ import annotations

import time
from collections.abc import Callable

from bench.self_peers import run_bare, run_locust, run_wrk
from bench.self_ratios import figures
from bench.self_sitting import CONNECTIONS, FAST, Sitting, say
from harness.mock.process import ServerProcess

Round = dict[str, dict]  # what one round measured: name → {"rps", "errors", "cpu_us", …}
Step = Callable[[], Round]

QUEUE = "queue"  # a cell's name's suffix when it ran with load.workers: 1
QUEUED = ("uvloop", "threads")  # the backends measured on both paths, with the lean client
# What the later sections take at most, kept from the rounds' share of the budget.
LATER_S = 360


def throughput(sitting: Sitting) -> None:
    say(f"\n== throughput: {CONNECTIONS} connections, zero delay, fast engine, "
        f"{sitting.args.seconds} s each")
    per_round = rounds(sitting)
    figures(sitting, per_round)
    errors = {name: sum(f[name]["errors"] for f in per_round if name in f)
              for name in dict.fromkeys(k for f in per_round for k in f)}
    bad = {k: v for k, v in errors.items() if v}
    if bad:
        sitting.notes.append("throughput errors (all rounds): "
                             + ", ".join(f"{k} {v}" for k, v in bad.items()))


def rounds(sitting: Sitting) -> list[Round]:
    """`--rounds` rounds, fewer when the time budget runs short of the later sections'."""
    args = sitting.args
    reserve = 0 if args.quick else LATER_S
    per_round: list[Round] = []
    round_s = 0.0
    spent: dict[str, float] = {}
    for r in range(args.rounds):
        if r and sitting.left() - reserve < round_s * 1.1:
            sitting.notes.append(f"throughput: {r} round(s) of {args.rounds}: the time budget "
                                 "ran short")
            break
        t0 = time.monotonic()
        found: Round = {}
        for kind, step in steps(sitting, r):
            t = time.monotonic()
            found.update(step())
            spent[kind] = spent.get(kind, 0.0) + time.monotonic() - t
        per_round.append(found)
        round_s = time.monotonic() - t0
        say(f"  round {r + 1}: " + ", ".join(f"{k} {v['rps']:,.0f}" for k, v in found.items())
            + f"  ({round_s:.0f} s)")
    sitting.notes.append(f"throughput: medians over {len(per_round)} round(s); time spent: "
                         + ", ".join(f"{k} {v:.0f} s" for k, v in spent.items()))
    return per_round


def steps(sitting: Sitting, r: int) -> list[tuple[str, Step]]:
    """Round r's measurements in order, each beside what it is compared with: the harness's
    uvloop cells between wrk, the bare uvloop loops and Locust; its asyncio cells between the
    bare asyncio loops; its threads cells after the bare thread loop. Each with its kind (where
    the round's time goes)."""
    s = sitting.args.seconds
    order = []
    if sitting.wrk:
        order.append(("wrk", peer("wrk", lambda url: run_wrk(sitting.wrk, url + "/api", s))))
    order += [("bare loops", bare("lean", "uvloop", s)),
              ("harness", harness(sitting, r, "uvloop", generators=True)),
              ("harness", harness(sitting, r, "uvloop", queue=True)),
              ("bare loops", bare("aiohttp", "uvloop", s))]
    if sitting.locust:
        order.append(("Locust", peer("locust", lambda url: run_locust(sitting.locust,
                                                                      sitting.tmp, url, s))))
    order += [("bare loops", bare("lean", "asyncio", s)),
              ("harness", harness(sitting, r, "asyncio")),
              ("bare loops", bare("aiohttp", "asyncio", s)),
              ("harness", harness(sitting, r, "processes")),
              ("bare loops", bare("lean", "threads", s)),
              ("harness", harness(sitting, r, "threads")),
              ("harness", harness(sitting, r, "threads", queue=True))]
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


def harness(sitting: Sitting, r: int, backend: str, queue: bool = False,
            generators: bool = False) -> Step:
    """A step that runs `harness run` of one backend: both clients as one leaves load.workers
    out (with generators: [1, 2] when asked), or the lean client with workers: 1 (`queue`);
    one duration-bound closed cell each, each with its own fresh fast mock."""
    s = sitting.args.seconds
    load = f"duration: {s}s, concurrency: {CONNECTIONS}"
    if queue:
        load += ", workers: 1"
    if generators:
        load += ", generators: [1, 2]"
    clients = "lean" if queue else "standard, lean"

    def step() -> Round:
        text = FAST.format(name="self_throughput", latency=0, clients=clients, load=load,
                           backends=backend)
        cells = (1 if queue else 2) * (2 if generators else 1)
        name = f"throughput{r}_{backend}" + ("_queue" if queue else "")
        summary = sitting.run_harness(name, text, timeout_s=cells * (3 * s + 60))
        switches = context_switches(sitting.last_run)
        found = {}
        for row in summary.itertuples():
            n = int(getattr(row, "generators", 1))
            key = f"{row.backend} {row.client}" + (f" generators {n}" if n != 1 else "") \
                + (f" {QUEUE}" if queue else "")
            found[key] = per_request(row, switches.get((row.backend, row.client, n), 0))
        return found
    return step


def per_request(row, switches: int) -> dict:
    """A harness cell's figures as a round keeps them: requests/s, errors, and per request its
    CPU (the cell's process tree, from its clock's start), user and system apart, the mock
    server's CPU (since it was ready) and the context switches."""
    n = max(int(row.requests), 1)
    return {"rps": row.throughput_rps, "errors": row.errors, "requests": row.requests,
            "cpu_us": 1e6 * (row.cpu_user_s + row.cpu_sys_s) / n,
            "user_us": 1e6 * row.cpu_user_s / n, "sys_us": 1e6 * row.cpu_sys_s / n,
            "server_us": 1e6 * row.server_cpu_s / n, "csw": switches / n}


def context_switches(run) -> dict[tuple[str, str, int], int]:
    """(backend, client, generators) → the context switches of the cell's process tree over
    its measurement, from the run's timeline."""
    from harness.store.reader import read_run

    timeline = read_run(run)["timeline"].to_pandas()
    if timeline.empty:
        return {}
    timeline["switches"] = (timeline["ctx_switches_voluntary"]
                            + timeline["ctx_switches_involuntary"])
    sums = timeline.groupby(["backend", "client", "generators"])["switches"].sum()
    return {(b, c, int(g)): int(v) for (b, c, g), v in sums.items()}
