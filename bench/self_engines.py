"""bench-self's look at the mock's engines under wrk (bench/engines.py): the raw floor, fast and
aiohttp, each answering GET /api with a zero delay and a 128-byte body."""

from __future__ import annotations

import argparse

from bench.engines import run_engine, run_raw
from bench.self_sitting import CONNECTIONS, Sitting, say


def engines(sitting: Sitting) -> None:
    s = sitting.args.seconds
    say(f"\n== the mock's engines under wrk -t1 -c{CONNECTIONS} -d{s}s")
    if not sitting.wrk:
        for name in ("raw", "fast", "aiohttp"):
            sitting.skip(f"engine {name} under wrk: requests/s", "req/s", None, "no wrk")
        return
    settings = argparse.Namespace(threads=1, connections=CONNECTIONS, seconds=s)
    found = {"raw": run_raw(settings),
             "fast": run_engine("fast", 1, settings),
             "aiohttp": run_engine("aiohttp", 1, settings)}
    for name, result in found.items():
        sitting.add(f"engine {name} under wrk: requests/s", result["rps"], "req/s")
        sitting.add(f"engine {name}: server CPU per request", result["cpu_us"], "µs")
    sitting.add("engine fast ÷ raw", found["fast"]["rps"] / found["raw"]["rps"], "×", "≥ 0.5",
                lambda v: v >= 0.5)
    sitting.add("engine fast ÷ aiohttp", found["fast"]["rps"] / found["aiohttp"]["rps"], "×",
                "≥ 3", lambda v: v >= 3)
