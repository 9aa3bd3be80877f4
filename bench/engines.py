"""wrk against the mock server's engines, one after the other in one sitting: the raw
canned-response floor (bench/raw_server.py), the fast engine and the aiohttp engine, each
answering GET /api with a zero delay and a 128-byte body; with --processes N, the fast engine
on N processes too. Printed per server: requests/s, the server's CPU (% of one core, its whole
process tree) and CPU per request, wrk's errors; then the ratios fast ÷ raw (target ≥ 0.5) and
fast ÷ aiohttp (target ≥ 3), of requests/s and of CPU per request. A measurement, not a test:
wrk and the server share the machine's cores (and the machine may be shared too: CPU per
request is the steadier figure).

    python -m bench.engines [--seconds 5] [--connections 50] [--threads 1] [--processes 2]
                            [--rounds 1]

With --rounds R the sequence runs R times and the medians are compared.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys

import psutil

from bench import ROOT
from harness.core.stats import median
from harness.mock.process import ServerProcess

SCENARIO = """\
name: engines_bench
server:
  engine: {engine}
  processes: {processes}
  endpoints:
    api: {{latency: 0, size: 128}}
workload: {{endpoint: api}}
load: {{requests: 1, concurrency: 1}}
backends: [uvloop]
"""


def tree_cpu_s(pid: int) -> float:
    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    return sum(p.cpu_times().user + p.cpu_times().system for p in procs)


def wrk(url: str, args, pid: int) -> dict:
    cpu0 = tree_cpu_s(pid)
    done = subprocess.run(
        ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s", url],
        capture_output=True, text=True, timeout=args.seconds + 60, check=True)
    cpu = tree_cpu_s(pid) - cpu0
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", done.stdout).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)",
                                            done.stdout))
    bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", done.stdout)
    total = int(re.search(r"(\d+) requests in", done.stdout).group(1))
    return {"rps": rps, "cpu_pct": 100 * cpu / args.seconds, "cpu_us": 1e6 * cpu / max(total, 1),
            "errors": errors + (int(bad.group(1)) if bad else 0)}


def run_raw(args) -> dict:
    proc = subprocess.Popen([sys.executable, "-m", "bench.raw_server"], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        port = int(proc.stdout.readline())
        return wrk(f"http://127.0.0.1:{port}/api", args, proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def run_engine(engine: str, processes: int, args) -> dict:
    with ServerProcess(SCENARIO.format(engine=engine, processes=processes)) as server:
        return wrk(server.url + "/api", args, server.proc.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--processes", type=int, default=1,
                        help="also run the fast engine on this many processes (> 1)")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    if not 1 <= args.seconds <= 60 or not 1 <= args.rounds <= 10:
        parser.error("--seconds must be 1..60 and --rounds 1..10")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed")
    servers = {"raw": lambda: run_raw(args), "fast": lambda: run_engine("fast", 1, args),
               "aiohttp": lambda: run_engine("aiohttp", 1, args)}
    if args.processes > 1:
        servers[f"fast×{args.processes}"] = lambda: run_engine("fast", args.processes, args)
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s, GET /api, zero delay, "
          f"128-byte body; {psutil.cpu_count()} cores")
    results: dict[str, list[dict]] = {name: [] for name in servers}
    for round_ in range(args.rounds):
        for name, run in servers.items():
            result = run()
            results[name].append(result)
            print(f"  round {round_ + 1}  {name:<9} {result['rps']:>10,.0f} req/s   server CPU "
                  f"{result['cpu_pct']:>4.0f}%, {result['cpu_us']:5.1f} µs/request   errors "
                  f"{result['errors']}", flush=True)
    rps = {name: median([r["rps"] for r in runs]) for name, runs in results.items()}
    cpu = {name: median([r["cpu_us"] for r in runs]) for name, runs in results.items()}
    label = "median " if args.rounds > 1 else ""
    for name, value in rps.items():
        print(f"{label}{name:<9} {value:>10,.0f} req/s   {cpu[name]:5.1f} µs CPU/request")
    print(f"fast ÷ raw     {rps['fast'] / rps['raw']:.2f} req/s (target ≥ 0.5), "
          f"CPU/request raw ÷ fast {cpu['raw'] / cpu['fast']:.2f}")
    print(f"fast ÷ aiohttp {rps['fast'] / rps['aiohttp']:.2f} req/s (target ≥ 3), "
          f"CPU/request aiohttp ÷ fast {cpu['aiohttp'] / cpu['fast']:.2f}")
    if args.processes > 1:
        name = f"fast×{args.processes}"
        print(f"{name} ÷ fast {rps[name] / rps['fast']:.2f} req/s")


if __name__ == "__main__":
    main()
