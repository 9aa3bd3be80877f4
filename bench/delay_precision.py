"""How precisely the mock server applies its delays. A measurement, not a test.

One ServerProcess per engine (aiohttp, fast) with two fixed-latency endpoints; an aiohttp client
on uvloop fires each case's requests from `concurrency` loops: 50 in flight at 50 ms (1 000
requests) and 5 in flight at 1 ms (2 000), each twice: the loops started together, as a cell's
slots start (their deadlines then come in bursts, and a response waits for those ahead of it in
the burst), and spread one target ÷ concurrency apart. From the headers of every response:
applied − target (X-Harness-Delay-Ns − X-Harness-Delay-Target-Ns), its p50/p99/max, and how many
were early (applied < target: must be 0); from the client: the latency p50 − target (what the
client sees on top, loopback and both event loops included), the server's CPU in % of one core
and how often the kernel preempted it (involuntary context switches): on a shared machine, a
server that is not running when its deadline comes is late by the time it waits for a core,
which no timer can help; the machine's CPU pressure (/proc/pressure/cpu, share of time some task
waited for a core) is printed for the same reason.

    python -m bench.delay_precision [--scale 1.0] [--engine fast] [--out RUN]

--scale multiplies the request counts. Writes RUN/summary.md (default
results/delay_precision/<UTC time>/); exits 0 when no response was early and every case's
applied − target p50 is under 2 ms, 1 when one was early or a median later, 3 when the server or
a request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from pathlib import Path

import aiohttp
import psutil
import uvloop

from bench import evidence
from bench.evidence import FAILED, Verdict
from harness.core.errors import HarnessError
from harness.core.wire import DELAY_HEADER, DELAY_TARGET_HEADER
from harness.mock.process import ServerProcess

SCENARIO = """\
name: delay_precision
server:
  engine: {engine}
  endpoints:
    slow: {{latency: 50ms, size: 128}}
    fast: {{latency: 1ms, size: 128}}
workload: {{endpoint: fast}}
load: {{requests: 1, concurrency: 50}}
backends: [uvloop]
"""
CASES = [("slow", 50, 1000, 50_000_000), ("fast", 5, 2000, 1_000_000)]
# aiohttp: the default engine; fast: the raw-protocol one, whose cheaper responses matter when
# deadlines come in bursts (each response of a burst waits for those ahead of it)
ENGINES = ("aiohttp", "fast")


def pct(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_case(url: str, endpoint: str, concurrency: int, requests: int, spread_ns: int):
    slack, latency = [], []
    next_seq = 0
    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def one(seq: int, record: bool) -> None:
            start = time.monotonic_ns()
            async with session.get(f"{url}/{endpoint}?seq={seq}") as resp:
                await resp.read()
                end = time.monotonic_ns()
                target = int(resp.headers[DELAY_TARGET_HEADER])
                if record:
                    slack.append(int(resp.headers[DELAY_HEADER]) - target)
                    latency.append(end - start - target)

        await asyncio.gather(*(one(10**9 + i, False) for i in range(concurrency)))  # warm-up

        async def loop(i: int) -> None:
            nonlocal next_seq
            await asyncio.sleep(i * spread_ns / concurrency / 1e9)
            while next_seq < requests:
                seq, next_seq = next_seq, next_seq + 1
                await one(seq, True)

        await asyncio.gather(*(loop(i) for i in range(concurrency)))
    return slack, latency


HEADER = (f"{'engine':7s} {'case':30s} {'n':>5s} {'applied−target p50':>19s} {'p99':>7s} "
          f"{'max':>7s} {'early':>5s} {'client p50−target':>18s} {'server CPU':>10s} "
          f"{'preempted':>9s}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--engine", action="append", choices=ENGINES,
                        help="the mock server's engine (repeatable; default: both)")
    parser.add_argument("--out", type=Path, help="RUN: where summary.md goes (default: "
                                                 "results/delay_precision/<UTC time>/)")
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 100:
        parser.error("--scale must be in (0, 100]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sitting = evidence.Sitting()
    lines = [HEADER]
    print(HEADER)
    cases: list[dict] = []
    code, notes = evidence.MET, []
    try:
        for engine in args.engine or ENGINES:
            measure(engine, args.scale, cases, lines)
    except (aiohttp.ClientError, KeyError, ValueError, OSError, HarnessError) as exc:
        # (TimeoutError is an OSError)
        notes.append(f"the measurement failed: {type(exc).__name__}: {str(exc)[:300]}")
        print(f"bench.delay_precision: {notes[-1]}", file=sys.stderr)
        code = FAILED
    found = verdicts(cases)
    code = evidence.worst(evidence.status(found), code)
    path = sitting.write_summary(evidence.run_folder("delay_precision", args.out),
                                 "Mock server delay precision", found, notes,
                                 evidence.printed(lines), code=code)
    print(f"CPU pressure of the machine: {evidence.pressure()}")
    print(f"written: {path}")
    return code


P50_LATE_US = 2000  # the deadline test's tight figure: a loaded CI machine cannot hold it


def verdicts(cases: list[dict]) -> list[Verdict]:
    """Per engine and case: no response early (applied < target), and the median response
    less than 2 ms late (applied − target p50 < 2 ms)."""
    found = []
    for c in cases:
        found.append(Verdict(f"{c['engine']} {c['case']}: early responses",
                             f"{c['early']} of {c['n']}", "0", c["early"] == 0))
        found.append(Verdict(f"{c['engine']} {c['case']}: applied − target p50",
                             f"{c['p50_us']:.0f} µs (p99 {c['p99_us']:.0f} µs, max "
                             f"{c['max_us']:.0f} µs)", f"< {P50_LATE_US} µs",
                             c["p50_us"] < P50_LATE_US))
    return found


def measure(engine: str, scale: float, cases: list[dict], lines: list[str]) -> None:
    """Each case against one engine's server, appended to `cases` and printed (kept in
    `lines`) as it ends."""
    with ServerProcess(SCENARIO.format(engine=engine)) as server:
        proc = psutil.Process(server.proc.pid)
        for (endpoint, concurrency, requests, target), spread in itertools.product(
                CASES, (False, True)):
            n = max(1, round(requests * scale))
            cpu0, t0 = server.stats()["cpu_s"], time.monotonic()
            switches = proc.num_ctx_switches().involuntary
            slack, latency = uvloop.run(run_case(server.url, endpoint, concurrency, n,
                                                 target if spread else 0))
            cpu = (server.stats()["cpu_s"] - cpu0) / (time.monotonic() - t0)
            switches = proc.num_ctx_switches().involuntary - switches
            name = f"{concurrency} at {target / 1e6:g} ms, {'spread' if spread else 'together'}"
            case = {"engine": engine, "case": name, "n": len(slack),
                    "early": sum(s < 0 for s in slack), "p50_us": pct(slack, 0.5) / 1e3,
                    "p99_us": pct(slack, 0.99) / 1e3, "max_us": max(slack) / 1e3}
            cases.append(case)
            lines.append(f"{engine:7s} {name:30s} {case['n']:5d} {case['p50_us']:16.0f} µs "
                         f"{case['p99_us']:4.0f} µs {case['max_us']:4.0f} µs "
                         f"{case['early']:5d} {pct(latency, 0.5) / 1e3:15.0f} µs "
                         f"{cpu:9.0%} {switches:9d}")
            print(lines[-1], flush=True)


if __name__ == "__main__":
    sys.exit(main())
