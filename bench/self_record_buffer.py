"""bench-self's record buffers side by side: ns per request that recording a row adds, today's
buffer (bench/record_baseline.py, `append` with its ten arguments) against the harness's
(harness/cell/buffer.py, `row`: the fast entry the hot paths call, one tuple), each alone and
with the cell's spooler thread draining it to its Arrow IPC file every FLUSH_S.

Every loop does what a hot path does around its record (distinct timestamps, an Outcome built
per response as the lean client builds it, a slot label from a few), and the loop without a
record is subtracted. Before each loop the heap is collected and frozen, as a cell does just
before its clock. Rounds alternate which buffer goes first; each figure is the median over the
rounds.

    python -m bench.self_record_buffer [ROWS] [ROUNDS]   (defaults 1 000 000 and 3)
"""

from __future__ import annotations

import gc
import shutil
import sys
import tempfile
import time
from pathlib import Path

from harness.core.stats import median

ROWS = 1_000_000
ROUNDS = 3
FLUSH_ROWS = 20_000  # about what a cell holds between two flushes at its usual rates
SLOTS = tuple(f"conn-{40000 + i}" for i in range(50))
T0 = 1_000_000_000  # ns since the cell's clock started, as the rows hold: a second in
BUFFERS = ("today", "new")  # bench/record_baseline.py, harness/cell/buffer.py


def without(n: int, _record) -> None:
    from harness.core.schema import Outcome

    for seq in range(n):
        t = T0 + seq * 1_000
        outcome = Outcome(True, 200, None, 12_000 + seq % 997, server_delay_target_ns=12_000,
                          bytes_sent=0, bytes_received=128)
        slot = SLOTS[seq % 50]
    del t, outcome, slot


def with_append(n: int, append) -> None:
    """Today's hot path: RecordBuffer.append with ten arguments."""
    from harness.core.schema import Outcome

    for seq in range(n):
        t = T0 + seq * 1_000
        outcome = Outcome(True, 200, None, 12_000 + seq % 997, server_delay_target_ns=12_000,
                          bytes_sent=0, bytes_received=128)
        slot = SLOTS[seq % 50]
        append("worker-0", slot, seq, t, t + 1, t + 2, t + 9, outcome, 1 + seq % 50, False)


def with_row(n: int, row) -> None:
    """The new hot path: RecordBuffer.row, a bound list.extend, with one tuple."""
    from harness.core.schema import Outcome

    for seq in range(n):
        t = T0 + seq * 1_000
        outcome = Outcome(True, 200, None, 12_000 + seq % 997, server_delay_target_ns=12_000,
                          bytes_sent=0, bytes_received=128)
        slot = SLOTS[seq % 50]
        row(("worker-0", slot, seq, t, t + 1, t + 2, t + 9, 1 + seq % 50, False) + outcome)


def time_loop(n: int, buffer: str | None, spooled: bool = False,
              folder: Path | None = None) -> int:
    """ns for n requests' loop: `buffer` None (no record), "today" or "new". Alone, the
    buffer is drained between blocks of FLUSH_ROWS requests, outside the time (what the hot
    path pays in a cell, where rows never pile up beyond a flush's); `spooled`: a Spooler
    thread drains it to its IPC file every FLUSH_S as in a cell, inside the time (its final
    flush included)."""
    from bench.record_baseline import BaselineRecordBuffer
    from harness.cell.buffer import RecordBuffer
    from harness.core.schema import RECORD_SCHEMA
    from harness.store.spool import Spooler

    if buffer is None:
        loop, record, store = without, None, None
    elif buffer == "today":
        store = BaselineRecordBuffer()
        loop, record = with_append, store.append
    else:
        store = RecordBuffer()
        loop, record = with_row, store.row
    spool = spool_dir = None
    if spooled:
        spool_dir = Path(tempfile.mkdtemp(dir=folder, prefix="spool-"))
        spool = Spooler(spool_dir)
        spool.add("requests", RECORD_SCHEMA, store.drain)
    gc.collect()
    gc.freeze()  # as a cell before its clock (harness.cell.backends.base.freeze_heap)
    elapsed = cpu = 0
    try:
        if spool is not None:
            spool.start()
            t0, c0 = time.perf_counter_ns(), time.process_time_ns()
            loop(n, record)
            spool.stop()
            elapsed, cpu = time.perf_counter_ns() - t0, time.process_time_ns() - c0
        else:
            for block in range(0, n, FLUSH_ROWS):
                t0, c0 = time.perf_counter_ns(), time.process_time_ns()
                loop(min(FLUSH_ROWS, n - block), record)
                elapsed += time.perf_counter_ns() - t0
                cpu += time.process_time_ns() - c0
                if store is not None:
                    store.drain()
    finally:
        gc.unfreeze()
    if spool_dir is not None:
        shutil.rmtree(spool_dir, ignore_errors=True)
    if store is not None:
        assert store.appended == n
    return elapsed, cpu


def compare(n: int = ROWS, rounds: int = ROUNDS, folder: Path | None = None) -> dict:
    """Medians over `rounds` of ns per request, with − without, as {"wall": {(buffer,
    spooled): ns}, "cpu": {…}} (cpu: the process's CPU time, both threads), and the ratios
    new ÷ today as {"wall": {"append": r, "append+drain": r}, "cpu": {…}}."""
    import pyarrow as pa

    pa.array([0])  # the first conversion of a list imports pandas: not a per-row cost
    found: dict = {(None, False): []}
    for i in range(rounds):
        found[None, False].append(time_loop(n, None))
        for spooled in (False, True):
            for buffer in BUFFERS if i % 2 == 0 else BUFFERS[::-1]:
                found.setdefault((buffer, spooled), []).append(
                    time_loop(n, buffer, spooled, folder))
    without_ns = found.pop((None, False))
    ns, ratios = {}, {}
    for k, clock in enumerate(("wall", "cpu")):
        base = median([t[k] for t in without_ns])
        ns[clock] = {key: (median([t[k] for t in times]) - base) / n
                     for key, times in found.items()}
        ratios[clock] = {"append": ns[clock]["new", False] / ns[clock]["today", False],
                         "append+drain": ns[clock]["new", True] / ns[clock]["today", True]}
    return {"ns": ns, "ratios": ratios,
            "without_ns": median([t[0] for t in without_ns]) / n}


if __name__ == "__main__":
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else ROWS
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else ROUNDS
    result = compare(rows, rounds)
    print(f"{rows:,} requests, median of {rounds} rounds; the loop without a record: "
          f"{result['without_ns']:,.0f} ns a request. ns a request, with − without:")
    for clock in ("wall", "cpu"):
        for (buffer, spooled), value in result["ns"][clock].items():
            print(f"  {clock:4} {buffer:5} {'append + drain' if spooled else 'append':15} "
                  f"{value:7,.0f}")
        for what, ratio in result["ratios"][clock].items():
            print(f"  {clock:4} new ÷ today, {what}: {ratio:.2f}")
