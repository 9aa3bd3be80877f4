"""Memory stays flat (records are streamed to disk). Two measurements, one sitting:

1. Peak RSS of a cell's whole process tree for a closed-loop cell (uvloop, 50 in flight, 0 ms
   endpoint) of 10 s and of 40 s: target 40 s ≤ 1.15 × 10 s.
2. The runner's RSS after 20 cells and after 200 (small `fake` cells): target ≤ 1.1 ×.

    python -m bench.memory [--quick]

A benchmark, not a test: it prints what it measured and whether each target was met."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

CELL = """name: mem{seconds}
server:
  endpoints:
    api: {{latency: 0, size: 64}}
workload: {{endpoint: api}}
load: {{duration: {seconds}s, concurrency: 50, workers: 1}}
backends: [uvloop]
"""
MANY = """name: many
workload: {{type: fake, duration: 1ms}}
load: {{requests: 20, concurrency: 2}}
backends: [threads, asyncio]
repeat: {repeat}
"""


def _harness(scenario: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", "run", str(scenario), "--out",
                             str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _cell_tree_rss(runner: psutil.Process) -> int:
    """RSS of the cell process and its descendants (not the runner, not the mock server)."""
    total = 0
    for child in runner.children():
        try:
            if "harness.cell" in " ".join(child.cmdline()):
                for p in (child, *child.children(recursive=True)):
                    total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def cell_peak_rss(seconds: int, folder: Path) -> int:
    path = folder / f"mem{seconds}.yaml"
    path.write_text(CELL.format(seconds=seconds))
    proc = _harness(path, folder / f"out{seconds}")
    runner, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        peak = max(peak, _cell_tree_rss(runner))
        time.sleep(0.05)
    if proc.returncode != 0:
        raise SystemExit(f"run failed: {proc.stderr.read().decode()[-500:]}")
    return peak


def runner_rss(cells: int, folder: Path) -> tuple[int, int]:
    path = folder / "many.yaml"
    path.write_text(MANY.format(repeat=cells // 2))
    out = folder / "many"
    proc = _harness(path, out)
    runner, at = psutil.Process(proc.pid), {}
    marks = {f"cell-{cells // 10 - 1:04d}.parquet": "early",
             f"cell-{cells - 1:04d}.parquet": "late"}
    while proc.poll() is None and len(at) < 2:
        for name, label in marks.items():
            if label not in at and (out / "cells" / name).exists():
                at[label] = runner.memory_info().rss
        time.sleep(0.02)
    proc.wait()
    return at["early"], at["late"]


def main() -> None:
    quick = "--quick" in sys.argv
    short, long_ = (2, 8) if quick else (10, 40)
    cells = 40 if quick else 200
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        a, b = cell_peak_rss(short, folder), cell_peak_rss(long_, folder)
        print(f"cell tree peak RSS: {short} s cell {a / 2**20:.1f} MiB, {long_} s cell "
              f"{b / 2**20:.1f} MiB, ratio {b / a:.3f} (target <= 1.15: "
              f"{'met' if b <= 1.15 * a else 'MISSED'})")
        early, late = runner_rss(cells, folder)
        print(f"runner RSS: after {cells // 10} cells {early / 2**20:.1f} MiB, after {cells} "
              f"{late / 2**20:.1f} MiB, ratio {late / early:.3f} (target <= 1.1: "
              f"{'met' if late <= 1.1 * early else 'MISSED'})")


if __name__ == "__main__":
    main()
