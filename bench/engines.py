"""wrk against the mock server's engines, one after the other in one sitting: the raw
canned-response floor (bench/raw_server.py), the fast engine and the aiohttp engine, each
answering GET /api with a zero delay and a 128-byte body; with --processes N, the fast engine
on N processes too. Printed per server: requests/s, the server's CPU (% of one core, its whole
process tree) and CPU per request, wrk's errors; then the ratios fast ÷ raw (target ≥ 0.5) and
fast ÷ aiohttp (target ≥ 3), of requests/s and of CPU per request. A measurement, not a test:
wrk and the server share the machine's cores (and the machine may be shared too: CPU per
request is the steadier figure).

    python -m bench.engines [--seconds 5] [--connections 50] [--threads 1] [--processes 2]
                            [--rounds 1] [--out RUN]

With --rounds R the sequence runs R times and the medians are compared. Writes RUN/summary.md
(default results/engines/<UTC time>/); exits 0 when both targets are met, 1 when one is
missed, 2 without wrk, 3 when a server or wrk failed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psutil

from bench import ROOT, evidence
from bench.evidence import FAILED, NO_SETUP, Verdict
from harness.core.errors import HarnessError
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
FAST_RAW, FAST_AIOHTTP = 0.5, 3.0  # targets: fast ≥ 0.5 × raw and ≥ 3 × aiohttp, requests/s


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
    rps = float(_found(r"Requests/sec:\s*([\d.]+)", done.stdout))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)",
                                            done.stdout))
    bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", done.stdout)
    total = int(_found(r"(\d+) requests in", done.stdout))
    return {"rps": rps, "cpu_pct": 100 * cpu / args.seconds, "cpu_us": 1e6 * cpu / max(total, 1),
            "errors": errors + (int(bad.group(1)) if bad else 0)}


def _found(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    if found is None:
        raise ValueError(f"wrk's output has no /{pattern}/: {text[-300:]!r}")
    return found.group(1)


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


def verdicts(rps: dict[str, float], cpu: dict[str, float]) -> list[Verdict]:
    """Each server's figures, reported, and the two ratios, judged."""
    found = [Verdict(f"{name}: requests/s", f"{rps[name]:,.0f}/s, {cpu[name]:.1f} µs "
                     "server CPU/request") for name in rps]
    for other, factor in (("raw", FAST_RAW), ("aiohttp", FAST_AIOHTTP)):
        ratio = rps["fast"] / rps[other]
        found.append(Verdict(f"fast ÷ {other}, requests/s",
                             f"{ratio:.2f} (CPU/request {other} ÷ fast "
                             f"{cpu[other] / cpu['fast']:.2f})", f"≥ {factor:g}",
                             bool(ratio >= factor)))
    for name in rps:
        if name.startswith("fast×"):
            found.append(Verdict(f"{name} ÷ fast, requests/s",
                                 f"{rps[name] / rps['fast']:.2f}"))
    return found


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--processes", type=int, default=1,
                        help="also run the fast engine on this many processes (> 1)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path,
                        help="RUN: where summary.md goes (default: results/engines/<UTC time>/)")
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 60 or not 1 <= args.rounds <= 10:
        parser.error("--seconds must be 1..60 and --rounds 1..10")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench.engines: wrk is not installed (it loads every server)", file=sys.stderr)
        return NO_SETUP
    sitting = evidence.Sitting()
    out = evidence.run_folder("engines", args.out)
    servers = {"raw": lambda: run_raw(args), "fast": lambda: run_engine("fast", 1, args),
               "aiohttp": lambda: run_engine("aiohttp", 1, args)}
    if args.processes > 1:
        servers[f"fast×{args.processes}"] = lambda: run_engine("fast", args.processes, args)
    lines = [f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s, GET /api, zero "
             f"delay, 128-byte body; {psutil.cpu_count()} cores"]
    print(lines[0])
    try:
        results = measure(servers, args.rounds, lines)
    except (subprocess.SubprocessError, OSError, ValueError, HarnessError) as exc:
        note = f"the measurement failed: {str(exc)[:300]}"
        print(f"bench.engines: {note}", file=sys.stderr)
        sitting.write_summary(out, "Mock server engines", [], [note], evidence.printed(lines),
                              code=FAILED)
        return FAILED
    rps = {name: median([r["rps"] for r in runs]) for name, runs in results.items()}
    cpu = {name: median([r["cpu_us"] for r in runs]) for name, runs in results.items()}
    found = verdicts(rps, cpu)
    for v in found:
        lines.append(f"{v.name:<26} {v.measured}"
                     + (f"  (target {v.target}: {v.shown()})" if v.met is not None else ""))
        print(lines[-1])
    notes = [f"medians over {args.rounds} rounds"] if args.rounds > 1 else []
    path = sitting.write_summary(out, "Mock server engines", found, notes,
                                 evidence.printed(lines))
    print(f"written: {path}")
    return evidence.status(found)


def measure(servers: dict, rounds: int, lines: list[str]) -> dict[str, list[dict]]:
    """Each server under wrk, `rounds` times over, printed (and kept in `lines`) as it goes."""
    results: dict[str, list[dict]] = {name: [] for name in servers}
    for round_ in range(rounds):
        for name, run in servers.items():
            result = run()
            results[name].append(result)
            lines.append(f"  round {round_ + 1}  {name:<9} {result['rps']:>10,.0f} req/s   "
                         f"server CPU {result['cpu_pct']:>4.0f}%, {result['cpu_us']:5.1f} "
                         f"µs/request   errors {result['errors']}")
            print(lines[-1], flush=True)
    return results


if __name__ == "__main__":
    sys.exit(main())
