"""Where one cell's per-request time goes: a duration-bound closed cell run in this
process by harness.cell.main.run_cell — the same code a `harness run` cell process runs — against
a fresh mock with the `fast` engine (zero delay, 128-byte body). A measurement, not a test.

Two profilers:

- cProfile (default): deterministic, the event-loop thread only (the spooler and sampler
  threads are not traced), and it slows every Python call, so the shares it shows lean toward
  code with many small calls. Printed: the top functions by own time (tottime) and by
  cumulative time, in ns per request.
- `--py-spy`: the sampling profiler (installed into bench/.venv-locust next to Locust when
  missing), every thread, without slowing the calls it samples. The cell runs in a child
  process; `py-spy record --nonblocking --pid` attaches once its imports are done. Printed:
  the samples' shares by thread, and the functions by own and by inclusive samples, each
  share also as ns per request of the cell process's CPU time. Idle waits are left out; a
  thread that waits for a core is sampled in the frame it waits in.

    python -m bench.profile_cell [--backend uvloop] [--client lean|standard] [--seconds 5]
                                 [--concurrency 50] [--top 25] [--py-spy]
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import json
import pstats
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import ROOT
from bench.self_peers import LOCUST_VENV

PY_SPY = LOCUST_VENV / "bin" / "py-spy"  # beside Locust
RATE = 997  # samples a second (py-spy)
SCENARIO = """\
name: profile_cell
server:
  engine: fast
  endpoints:
    api: {{latency: 0, size: 128}}
workload: {{endpoint: api, client: [{client}]}}
load: {{duration: {seconds}s, concurrency: {concurrency}}}
backends: [{backend}]
"""


def run(args, url: str, profiler: cProfile.Profile | None = None) -> dict:
    from harness.cell.backends.base import StopFlag
    from harness.cell.main import run_cell
    from harness.core.job import CellJob
    from harness.core.keys import CellKey, key_dict

    with tempfile.TemporaryDirectory(prefix="profile-cell-") as tmp:
        spool = Path(tmp) / "spool"
        spool.mkdir()
        key = CellKey(backend=args.backend, concurrency=args.concurrency, repetition=0,
                      client=args.client)
        job = CellJob(SCENARIO.format(**vars(args)), key_dict(key), url, None, tmp, str(spool))
        t0 = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        result = run_cell(job, StopFlag(), report=lambda line: None)
        if profiler is not None:
            profiler.disable()
        wall = time.perf_counter() - t0
    return {"requests": result["released"], "wall_s": wall,
            "cpu_s": (result["cpu_user_s"] or 0) + (result["cpu_sys_s"] or 0)}


def print_cprofile(profiler: cProfile.Profile, requests: int, top: int) -> None:
    stats = pstats.Stats(profiler)
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _) in stats.stats.items():
        name = f"{func} ({Path(file).name}:{line})" if line else func
        rows.append((name, nc, tt, ct))
    total = sum(r[2] for r in rows)
    print(f"\ncProfile, event-loop thread: {total:.2f} s of own time in all, "
          f"{1e9 * total / requests:,.0f} ns per request (profiler overhead included)")
    for title, index in (("own time (tottime)", 2), ("cumulative time", 3)):
        print(f"\ntop {top} by {title}:")
        print(f"{'ns/req':>8} {'share':>6} {'calls/req':>9}  function")
        for name, nc, tt, ct in sorted(rows, key=lambda r: -r[index])[:top]:
            value = tt if index == 2 else ct
            print(f"{1e9 * value / requests:8,.0f} {value / total:6.1%} {nc / requests:9.2f}  "
                  f"{name}")


def py_spy(args, url: str) -> None:
    """The cell in a child process under py-spy; its samples by thread and by function."""
    ensure_py_spy()
    with tempfile.TemporaryDirectory(prefix="profile-cell-") as tmp:
        raw = Path(tmp) / "raw.txt"
        result, err = record(args, url, raw)
        if not raw.exists():
            sys.exit(f"py-spy failed: {err.strip()[-500:]}")
        stacks = raw.read_text().splitlines()
    print_samples(args, result, stacks)


def ensure_py_spy() -> None:
    if not PY_SPY.exists():
        venv = PY_SPY.parent.parent
        if not venv.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", "py-spy"], check=True, timeout=600)


def record(args, url: str, raw: Path) -> tuple[dict, str]:
    """py-spy's raw samples of the child's cell into `raw`; what the cell did, py-spy's stderr."""
    # The child imports everything, says so, and waits: py-spy attaches to it then, so the
    # samples are the cell's, not the start-up's.
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.profile_cell", "--child", url, "--backend",
         args.backend, "--client", args.client, "--seconds", str(args.seconds),
         "--concurrency", str(args.concurrency)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        if child.stdout.readline().strip() != "ready":
            sys.exit("profile_cell: the child did not start")
        spy = subprocess.Popen(
            [str(PY_SPY), "record", "--nonblocking", "--threads", "--format", "raw", "-r",
             str(RATE), "-o", str(raw), "--pid", str(child.pid)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)  # py-spy attaches
        child.stdin.write("go\n")
        child.stdin.flush()
        result = json.loads(child.stdout.readline())
        child.stdin.close()
        child.wait(30)
        _, err = spy.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    return result, err


def count_samples(stacks: list[str]) -> tuple[collections.Counter, ...]:
    """py-spy's raw lines counted by thread, by own function and by inclusive function."""
    own: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    threads: collections.Counter = collections.Counter()
    for line in stacks:
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        thread = re.sub(r"\s*\(0x[0-9a-f]+\)", "", frames[0])
        threads[re.sub(r"thread \(\d+\)(: )?", "", thread) or "MainThread"] += n
        frames = [re.sub(r":\d+\)$", ")", f) for f in frames[1:]]  # by function, not line
        if frames:
            own[frames[-1]] += n
            for frame in set(frames):
                inclusive[frame] += n
    return threads, own, inclusive


def print_samples(args, result: dict, stacks: list[str]) -> None:
    requests = result["requests"]
    cpu_ns = 1e9 * result["cpu_s"] / requests
    print(f"{args.backend} + {args.client}: {requests:,} requests in {result['wall_s']:.2f} s "
          f"({requests / args.seconds:,.0f} requests/s under py-spy); the cell process's CPU "
          f"{result['cpu_s']:.2f} s = {cpu_ns:,.0f} ns per request")
    threads, own, inclusive = count_samples(stacks)
    total = sum(threads.values())
    print(f"\npy-spy: {total:,} samples of running or runnable threads at {RATE}/s; a share "
          f"of them × the CPU per request ≈ ns of CPU per request (a runnable thread waiting "
          f"for a core is sampled too, in the frame it waits in)")
    for thread, n in threads.most_common():
        print(f"  {n / total:6.1%} {n / total * cpu_ns:8,.0f} ns/req  {thread}")
    for title, counter in (("own samples", own), ("inclusive samples", inclusive)):
        print(f"\ntop {args.top} by {title}:")
        for frame, n in counter.most_common(args.top):
            print(f"  {n / total:6.1%} {n / total * cpu_ns:8,.0f} ns/req  {frame}")


def child(args) -> None:
    """Under py-spy: import, say ready, wait for the go, run the cell, print what it did."""
    import harness.cell.backends.aio  # noqa: F401  (the imports before py-spy attaches)
    import harness.cell.main  # noqa: F401
    import harness.cell.workloads.io  # noqa: F401
    import harness.client.lean_async  # noqa: F401
    import harness.client.standard_async  # noqa: F401

    print("ready", flush=True)
    if sys.stdin.readline().strip() == "go":
        print(json.dumps(run(args, args.child)), flush=True)
        sys.stdin.read()  # py-spy ends with this process: once the result is read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="uvloop", choices=("asyncio", "uvloop", "threads"))
    parser.add_argument("--client", default="lean", choices=("lean", "standard"))
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--py-spy", action="store_true")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.seconds <= 30 or not 1 <= args.concurrency <= 1000:
        parser.error("--seconds must be 1..30 and --concurrency 1..1000")
    if args.child:
        return child(args)
    from harness.mock.process import ServerProcess

    with ServerProcess(SCENARIO.format(**vars(args))) as server:
        if args.py_spy:
            py_spy(args, server.url)
            return
        profiler = cProfile.Profile()
        result = run(args, server.url, profiler)
    requests = result["requests"]
    print(f"{args.backend} + {args.client}: {requests:,} requests in {result['wall_s']:.2f} s "
          f"({requests / args.seconds:,.0f} requests/s under cProfile)")
    print_cprofile(profiler, requests, args.top)


if __name__ == "__main__":
    main()
