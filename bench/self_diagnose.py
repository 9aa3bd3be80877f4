"""bench-self's pointer for a harness ÷ bare-loop target outside its bound: where the time goes,
as a note beside the verdict. Per request, medians over the rounds, the cell's CPU split (user,
system, context switches) beside its bare loop's: user time is Python (the harness's own code),
system time and switches are syscalls and thread hand-offs. On the event loops, the top
functions of a short cProfile of the cell (bench/profile_cell.py: the loop thread only, in wall
time, its overhead included, so shares, not times); every thread: bench.profile_cell's
--py-spy."""

from __future__ import annotations

import re
import subprocess
import sys

from bench import ROOT
from bench.self_sitting import Sitting, child_env, say
from harness.core.stats import median

PROFILE_S = 2  # seconds of the profiled cell: a pointer, not a measurement
TOP = 8  # of which the one-off calls are left out


def split(rounds: list[dict], name: str) -> str:
    """`user a + system b µs, k context switches` per request of `name`, medians over rounds."""
    found = [r[name] for r in rounds if name in r]
    if not found:
        return "not measured"

    def mid(key: str) -> float:
        values = [f[key] for f in found if f.get(key) is not None]
        return median(values) if values else float("nan")

    return (f"user {mid('user_us'):.1f} + system {mid('sys_us'):.1f} µs, "
            f"{mid('csw'):.2f} context switches")


def explain(sitting: Sitting, rounds: list[dict], figure: str, cell: str, bare: str) -> None:
    """A note for `figure` outside its bound: the CPU split of the harness `cell` (backend
    client) and of its `bare` loop; a cProfile's top when the backend runs a loop."""
    backend, client = cell.split()[:2]
    parts = [f"{figure} outside its bound; per request: harness {cell}: {split(rounds, cell)}; "
             f"{bare}: {split(rounds, bare)}"]
    if backend in ("asyncio", "uvloop"):
        parts.append("cProfile of the cell's loop thread, own time: "
                     + cprofile_top(sitting, backend, client))
    parts.append(f"every thread: python -m bench.profile_cell --backend {backend} "
                 f"--client {client} --py-spy")
    note = "; ".join(parts)
    sitting.notes.append(note)
    say("  " + note)


def cprofile_top(sitting: Sitting, backend: str, client: str) -> str:
    """The top functions by own time of a PROFILE_S-second cell under cProfile, with their
    shares."""
    cmd = [sys.executable, "-m", "bench.profile_cell", "--backend", backend, "--client", client,
           "--seconds", str(PROFILE_S), "--top", str(TOP)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), cwd=ROOT,
                              timeout=sitting.bounded(PROFILE_S + 60))
    except subprocess.TimeoutExpired:
        return "not measured (timed out)"
    if done.returncode:
        return f"not measured (bench.profile_cell exited {done.returncode})"
    return ", ".join(own_time(done.stdout)) or "not measured (no table)"


def own_time(output: str) -> list[str]:
    """`function share` of the lines of bench.profile_cell's table by own time, its one-off
    calls (fewer than one per 100 requests: imports, gc.collect, TLS set-up — the cell's
    start-up, profiled too) left out. asyncio.Runner.run's own time is the loop's compiled code
    (uvloop's calls are not traced) and its waits: named so."""
    lines = output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if "by own time" in line) + 2
    except StopIteration:
        return []
    found = []
    for line in lines[start:]:
        hit = re.match(r"\s*[\d,]+\s+([\d.]+%)\s+([\d.]+)\s+(.+)$", line)
        if not hit:
            break
        share, calls, function = hit[1], float(hit[2]), hit[3]
        if function.startswith("run (runners.py"):
            found.append(f"the loop's own code and waits {share}")
        elif calls >= 0.01:
            found.append(f"{function} {share}")
    return found
