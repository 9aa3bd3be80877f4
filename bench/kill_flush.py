"""How much a killed cell loses: the time between the last row that reached the spool and the
moment the cell process died (SIGKILL), on asyncio, where requests run in the cell process.

A `fake` cell of back-to-back 2 ms requests (one slot) kills itself at the end of request S;
rows end at a steady period, so the death is at about (S + 1) periods and the loss is
(S − last flushed seq) periods. Several S spread the kill over the flush interval.

    python -m bench.kill_flush"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from harness.core.stats import median
from harness.store.reader import read_run

SCENARIO = """name: kill{seq}
workload: {{type: fake, duration: 2ms, exit_on: [{seq}]}}
load: {{requests: 100000, concurrency: 1}}
backends: [asyncio]
"""


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


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = [lost_ms(seq, Path(tmp)) for seq in (300, 370, 440, 510, 580, 650, 720, 790)]
    for ms, rows in results:
        print(f"kept {rows:5d} rows; lost the last {ms:6.1f} ms of requests")
    worst = max(ms for ms, _ in results)
    print(f"worst loss {worst:.0f} ms (flush interval 500 ms; target: at most 1 s)")


if __name__ == "__main__":
    main()
