"""Memory stays flat (records are streamed to disk). Two measurements, one sitting:

1. Peak RSS of a cell's whole process tree for a closed-loop cell (uvloop, 50 in flight, 0 ms
   endpoint) of 10 s and of 40 s: target 40 s ≤ 1.15 × 10 s.
2. The runner's RSS after 20 cells and after 200 (small `fake` cells): target ≤ 1.1 ×.

    python -m bench.memory [--quick] [--out RUN]

A benchmark, not a test: it prints what it measured and whether each target was met, writes
RUN/summary.md (default results/memory/<UTC time>/), and exits 0 when both were met, 1 when one
was missed, 3 when a run failed. --quick (2 s and 8 s cells, 40 small cells) is a smoke run:
its figures are shown, not judged."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench import evidence
from bench.evidence import FAILED, Verdict

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
CELL_GROWTH, RUNNER_GROWTH = 1.15, 1.1  # targets: long ÷ short cell, late ÷ early runner RSS


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
        raise RuntimeError(f"the {seconds} s cell's run failed: "
                           f"{proc.stderr.read().decode()[-300:]}")
    if peak == 0:
        raise RuntimeError(f"the {seconds} s cell's process was never seen")
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
    if len(at) < 2:
        raise RuntimeError(f"the run of {cells} cells ended (exit {proc.returncode}) before "
                           "all its cells were written")
    return at["early"], at["late"]


def verdicts(cell: tuple[int, int, int, int], runner: tuple[int, int, int],
             quick: bool) -> list[Verdict]:
    """cell: (short s, its peak RSS, long s, its peak RSS); runner: (cells, RSS after a tenth
    of them, RSS after all). Not judged on a --quick run."""
    short, a, long_, b = cell
    cells, early, late = runner
    why = "--quick: not the targets' conditions" if quick else ""
    return [Verdict(f"cell tree peak RSS, {long_} s ÷ {short} s cell",
                    f"{b / a:.3f} ({b / 2**20:.1f} MiB ÷ {a / 2**20:.1f} MiB)",
                    f"≤ {CELL_GROWTH:g}", None if quick else b / a <= CELL_GROWTH, why),
            Verdict(f"runner RSS, after {cells} cells ÷ after {cells // 10}",
                    f"{late / early:.3f} ({late / 2**20:.1f} MiB ÷ {early / 2**20:.1f} MiB)",
                    f"≤ {RUNNER_GROWTH:g}", None if quick else late / early <= RUNNER_GROWTH,
                    why)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, not judged")
    parser.add_argument("--out", type=Path, help="RUN: where summary.md goes (default: "
                                                 "results/memory/<UTC time>/)")
    args = parser.parse_args(argv)
    short, long_ = (2, 8) if args.quick else (10, 40)
    cells = 40 if args.quick else 200
    sitting = evidence.Sitting()
    found, notes, code = [], [], evidence.MET
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            a, b = cell_peak_rss(short, folder), cell_peak_rss(long_, folder)
            found = verdicts((short, a, long_, b), (cells, *runner_rss(cells, folder)),
                             args.quick)
    except (RuntimeError, OSError, psutil.Error) as exc:
        notes.append(f"the measurement failed: {str(exc)[:300]}")
        print(f"bench.memory: {notes[-1]}", file=sys.stderr)
        code = FAILED
    for v in found:
        print(f"{v.name}: {v.measured} (target {v.target}: {v.shown()})")
    code = evidence.worst(evidence.status(found), code)
    path = sitting.write_summary(evidence.run_folder("memory", args.out), "Memory stays flat",
                                 found, notes, code=code)
    print(f"written: {path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
