"""Scheduling lag of an open cell per client × mock engine × event loop, side by side.

One scenario per engine (400/s, a 1 ms endpoint of 64 bytes, 4 s after a 500 ms warm-up, both
clients, asyncio and uvloop), run --runs times, the engines interleaved so each pair of runs
shares the machine's moment. Per cell: the scheduling-lag p99 (start − intended start of the
measured rows) and the share of starts more than 20 ms late; per client × engine × loop, the
median over the runs. A shared 2-core machine makes single figures noisy: the target is a
ratio measured side by side, the standard client against the fast engine at most 2 × its lag
against the aiohttp engine on each loop (a stall of the standard client against the fast engine
once read ~50 ms against ~3–6 ms).

    python -m bench.client_engine_lag [--runs 3] [--out RUN]

Writes RUN/summary.md (default results/client_engine_lag/<UTC time>/); exits 0 when the target
holds on both loops, 1 when it is missed, 3 when a run failed."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench import evidence
from bench.evidence import Verdict
from harness.core.errors import HarnessError
from harness.core.stats import median, percentile
from harness.store.reader import read_run

SCENARIO = """name: lag_{engine}
server:
  engine: {engine}
  endpoints:
    api: {{latency: 1ms, size: 64}}
workload: {{type: io, endpoint: api, client: [standard, lean]}}
load: {{rate: 400/s, duration: 4s, warmup: 500ms}}
backends: [asyncio, uvloop]
"""
ENGINES = ("fast", "aiohttp")
LOOPS = ("asyncio", "uvloop")
CLIENTS = ("lean", "standard")
LATE_NS = 20_000_000
MAX_RATIO = 2.0  # standard × fast ÷ standard × aiohttp, per loop


def run_once(engine: str, folder: Path, index: int) -> dict[tuple, tuple[float, float]]:
    """(client, engine, loop) → (scheduling-lag p99 ms, % of starts over 20 ms late)."""
    path = folder / f"{engine}.yaml"
    path.write_text(SCENARIO.format(engine=engine))
    out = folder / f"{engine}-{index}"
    subprocess.run([sys.executable, "-m", "harness", "run", str(path), "--out", str(out),
                    "--force", "-q"], capture_output=True, timeout=300, check=True)
    rows = read_run(out)["requests"].select(
        ["backend", "client", "phase", "scheduled_ns", "start_ns"]).to_pandas()
    found = {}
    for (loop, client), cell in rows[rows["phase"] == "measure"].groupby(["backend", "client"]):
        lag = (cell["start_ns"] - cell["scheduled_ns"]).to_numpy()
        found[(client, engine, loop)] = (percentile(np.maximum(lag, 0), 99) / 1e6,
                                         100 * float((lag > LATE_NS).mean()))
    return found


def medians(runs: list[dict]) -> dict[tuple, tuple[float, float]]:
    """Each cell's median lag p99 and late share over the runs that have it."""
    keys = {key for run in runs for key in run}
    return {key: (median([run[key][0] for run in runs if key in run]),
                  median([run[key][1] for run in runs if key in run])) for key in sorted(keys)}


def verdicts(figures: dict[tuple, tuple[float, float]]) -> list[Verdict]:
    found = []
    for loop in LOOPS:
        fast, aiohttp = figures.get(("standard", "fast", loop)), figures.get(
            ("standard", "aiohttp", loop))
        if fast is None or aiohttp is None:
            continue
        ratio = fast[0] / aiohttp[0] if aiohttp[0] > 0 else float("inf")
        found.append(Verdict(f"{loop}: standard × fast ÷ standard × aiohttp, lag p99",
                             f"{ratio:.2f} ({fast[0]:.1f} ms ÷ {aiohttp[0]:.1f} ms)",
                             f"≤ {MAX_RATIO:g}", ratio <= MAX_RATIO))
    return found


def table(figures: dict[tuple, tuple[float, float]], runs: int) -> list[str]:
    lines = [f"scheduling-lag p99 ms (% of starts > 20 ms late), median of {runs} runs",
             f"{'client × engine':18}" + "".join(f"{loop:>18}" for loop in LOOPS)]
    for client in CLIENTS:
        for engine in ENGINES:
            cells = [figures.get((client, engine, loop)) for loop in LOOPS]
            lines.append(f"{client + ' × ' + engine:18}" + "".join(
                f"{'-':>18}" if c is None else f"{c[0]:9.2f} ({c[1]:.1f} %)".rjust(18)
                for c in cells))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each engine (default 3)")
    parser.add_argument("--out", type=Path, help="RUN: where summary.md goes (default: "
                                                 "results/client_engine_lag/<UTC time>/)")
    args = parser.parse_args(argv)
    sitting = evidence.Sitting()
    notes, runs = [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for index in range(args.runs):
                found = {}
                for engine in ENGINES:  # interleaved: each pair shares the machine's moment
                    found |= run_once(engine, Path(tmp), index)
                runs.append(found)
    except (subprocess.SubprocessError, OSError, HarnessError) as exc:
        notes.append(f"the measurement failed: {str(exc)[:300]}")
    figures = medians(runs) if runs else {}
    lines = table(figures, len(runs))
    found = verdicts(figures)
    return sitting.conclude("client_engine_lag", "Scheduling lag per client × engine × loop",
                            lines, found, notes, args.out)


if __name__ == "__main__":
    sys.exit(main())
