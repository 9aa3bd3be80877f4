"""How much a killed cell loses: the time between the last row that reached the spool and the
moment the cell process died (SIGKILL), on asyncio, where requests run in the cell process.

A `fake` cell of back-to-back 2 ms requests (one slot) kills itself at the end of request S;
rows end at a steady period, so the death is at about (S + 1) periods and the loss is
(S − last flushed seq) periods. Several S spread the kill over the flush interval.

    python -m bench.kill_flush [--out RUN]

Writes RUN/summary.md (default results/kill_flush/<UTC time>/); exits 0 when the worst loss is
at most 1 s, 1 when it is more, 3 when a run kept no rows or did not end."""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench import evidence
from bench.evidence import Verdict
from harness.core.errors import HarnessError
from harness.core.stats import median
from harness.store.reader import read_run

SCENARIO = """name: kill{seq}
workload: {{type: fake, duration: 2ms, exit_on: [{seq}]}}
load: {{requests: 100000, concurrency: 1}}
backends: [asyncio]
"""
KILLED_AT = (300, 370, 440, 510, 580, 650, 720, 790)  # the seq each run kills itself after
MAX_LOSS_MS = 1000.0  # target: at most 1 s of requests lost


def lost_ms(seq: int, folder: Path) -> tuple[float, int]:
    path = folder / f"kill{seq}.yaml"
    path.write_text(SCENARIO.format(seq=seq))
    out = folder / f"out{seq}"
    subprocess.run([sys.executable, "-m", "harness", "run", str(path), "--out", str(out)],
                   capture_output=True, timeout=120)
    rows = read_run(out)["requests"].to_pandas().sort_values("seq")
    if rows.empty:
        return float("nan"), 0
    period_ns = median(np.diff(rows["end_ns"].to_numpy()))
    last = int(rows["seq"].max())
    return (seq - last) * period_ns / 1e6, len(rows)


def verdicts(results: list[tuple[float, int]]) -> list[Verdict]:
    """The worst loss over the runs (ms, rows kept), judged; NaN (a run without rows) is
    not judged here: the run failed."""
    losses = [ms for ms, _ in results if not math.isnan(ms)]
    if not losses:
        return []
    return [Verdict(f"loss at SIGKILL, worst of {len(losses)} runs",
                    f"{max(losses):.0f} ms (median {median(losses):.0f} ms; flush interval "
                    "500 ms)", f"≤ {MAX_LOSS_MS:g} ms", bool(max(losses) <= MAX_LOSS_MS))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="RUN: where summary.md goes (default: "
                                                 "results/kill_flush/<UTC time>/)")
    args = parser.parse_args(argv)
    sitting = evidence.Sitting()
    notes, lines = [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = [lost_ms(seq, Path(tmp)) for seq in KILLED_AT]
    except (subprocess.SubprocessError, OSError, HarnessError) as exc:
        results = []
        notes.append(f"the measurement failed: {str(exc)[:300]}")
    for seq, (ms, rows) in zip(KILLED_AT, results, strict=False):
        lines.append(f"killed after request {seq}: kept {rows:5d} rows; lost the last "
                     f"{ms:6.1f} ms of requests")
        if math.isnan(ms):
            notes.append(f"the run killed after request {seq} kept {rows} rows: too few to "
                         "measure")
    found = verdicts(results)
    return sitting.conclude("kill_flush", "Rows lost by a SIGKILLed cell", lines, found, notes,
                            args.out)


if __name__ == "__main__":
    sys.exit(main())
