"""bench-self's record buffers side by side: ns per request that recording a row adds, today's
buffer (bench/record_baseline.py, `append` with its ten arguments) against the harness's
(harness/cell/buffer.py, `row`: the fast entry the hot paths call, one tuple), each alone and
with the cell's spooler thread draining it to its Arrow IPC file every FLUSH_S.

Every loop does what a hot path does around its record (distinct timestamps, an Outcome built
per response as the lean client builds it, a slot label from a few), and the loop without a
record is subtracted: for the append alone, the three loops take turns block by block
(FLUSH_ROWS requests, the buffers drained between blocks outside the time); with the spooler,
each buffer's loop runs between two loops without a record, whose mean is the base. Before
each loop the heap is collected and frozen, as a cell does just before its clock. Rounds
alternate which buffer goes first; each figure is the median over the rounds, in wall time
(the judged figures) and in the process's CPU time (both threads).

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


def _recorder(buffer: str | None):
    """The loop for `buffer` (None: no record, "today", "new"), its record call, its store."""
    from bench.record_baseline import BaselineRecordBuffer
    from harness.cell.buffer import RecordBuffer

    if buffer is None:
        return without, None, None
    if buffer == "today":
        store = BaselineRecordBuffer()
        return with_append, store.append, store
    store = RecordBuffer()
    return with_row, store.row, store


def _frozen():
    """The heap collected and frozen, as a cell does just before its clock
    (harness.cell.backends.base.freeze_heap); unfrozen after."""
    import contextlib

    @contextlib.contextmanager
    def frozen():
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
    return frozen()


def _clocks() -> tuple[int, int]:
    return time.perf_counter_ns(), time.process_time_ns()


def alone(n: int, order: tuple) -> dict:
    """One round of the append alone: the loops without a record, with today's buffer and
    with the new one take turns block by block (FLUSH_ROWS requests each, `order` rotating), so
    that a slower moment of the machine falls on all three; both buffers are drained between
    blocks, outside the time (in a cell rows never pile up beyond a flush's). {buffer: (wall
    ns, CPU ns)} over the n requests."""
    loops = {buffer: _recorder(buffer) for buffer in order}
    spent = dict.fromkeys(order, (0, 0))
    with _frozen():
        for i, block in enumerate(range(0, n, FLUSH_ROWS)):
            turn = order[i % len(order):] + order[:i % len(order)]
            for buffer in turn:
                loop, record, _ = loops[buffer]
                wall, cpu = _clocks()
                loop(min(FLUSH_ROWS, n - block), record)
                now = _clocks()
                spent[buffer] = (spent[buffer][0] + now[0] - wall,
                                 spent[buffer][1] + now[1] - cpu)
            for _, _, store in loops.values():
                if store is not None:
                    store.drain()
    for buffer, (_, _, store) in loops.items():
        assert store is None or store.appended == n, buffer
    return spent


def spooled(n: int, buffer: str | None, folder: Path | None = None) -> tuple[int, int]:
    """(wall ns, CPU ns) of n requests' loop with `buffer`, a Spooler thread draining it to its
    IPC file every FLUSH_S as in a cell (its final flush included); None: the loop alone."""
    from harness.core.schema import RECORD_SCHEMA
    from harness.store.spool import Spooler

    loop, record, store = _recorder(buffer)
    spool = spool_dir = None
    if store is not None:
        spool_dir = Path(tempfile.mkdtemp(dir=folder, prefix="spool-"))
        spool = Spooler(spool_dir)
        spool.add("requests", RECORD_SCHEMA, store.drain)
    with _frozen():
        if spool is not None:
            spool.start()
        wall, cpu = _clocks()
        loop(n, record)
        if spool is not None:
            spool.stop()
        now = _clocks()
    if spool_dir is not None:
        shutil.rmtree(spool_dir, ignore_errors=True)
    assert store is None or store.appended == n
    return now[0] - wall, now[1] - cpu


def compare(n: int = ROWS, rounds: int = ROUNDS, folder: Path | None = None) -> dict:
    """ns per request, with − without, median over `rounds`, as {"wall": {(buffer,
    spooled): ns}, "cpu": {…}} (cpu: the process's CPU time, both threads), and the ratios
    new ÷ today's as {"wall": {"append": r, "append+drain": r}, "cpu": {…}}. Each round: the
    append alone (interleaved block by block), then the spooled loops between two loops
    without a record (their mean is the round's base), today's or the new buffer first in
    turn."""
    import pyarrow as pa

    pa.array([0])  # the first conversion of a list imports pandas: not a per-row cost
    per_round: dict = {}
    without: list = []
    for i in range(rounds):
        order = BUFFERS if i % 2 == 0 else BUFFERS[::-1]
        found = alone(n, (None, *order))
        for buffer in BUFFERS:
            per_round.setdefault((buffer, False), []).append(
                [found[buffer][k] - found[None][k] for k in (0, 1)])
        before = spooled(n, None)
        found = {buffer: spooled(n, buffer, folder) for buffer in order}
        after = spooled(n, None)
        base = [(before[k] + after[k]) / 2 for k in (0, 1)]
        without.append(base)
        for buffer in BUFFERS:
            per_round.setdefault((buffer, True), []).append(
                [found[buffer][k] - base[k] for k in (0, 1)])
    ns, ratios = {}, {}
    for k, clock in enumerate(("wall", "cpu")):
        ns[clock] = {key: median([r[k] for r in rows]) / n for key, rows in per_round.items()}
        ratios[clock] = {"append": ns[clock]["new", False] / ns[clock]["today", False],
                         "append+drain": ns[clock]["new", True] / ns[clock]["today", True]}
    return {"ns": ns, "ratios": ratios, "without_ns": median([b[0] for b in without]) / n}


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
