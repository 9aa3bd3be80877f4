"""bench-self's recording costs: ns per request that RecordBuffer.append adds (1 000 000 appends
with the cell's spooler thread draining them to its Arrow IPC file, minus the same loop without),
and Parquet write and read times of 1 000 000 rows (the requests schema; and the cell-end path,
the spool to Parquet through RunWriter.write_cell_data)."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from bench.self_sitting import Sitting, say
from harness.core.stats import median

ROWS = 1_000_000


def recording(sitting: Sitting) -> None:
    say(f"\n== recording: {ROWS:,} rows")
    with_ns, without_ns, append_ns = [], [], []
    for _ in range(3):
        without_ns.append(time_loop(ROWS, record=None))
        append_ns.append(time_loop(ROWS, record="buffer"))
        with_ns.append(time_loop(ROWS, record="spooled", folder=sitting.tmp))
    base = median(without_ns)
    sitting.add("recording: RecordBuffer.append per request (with − without)",
                (median(append_ns) - base) / ROWS, "ns")
    sitting.add("recording: append + the spooler draining to its IPC file, per request",
                (median(with_ns) - base) / ROWS, "ns", "≤ 300", lambda v: v <= 300)
    # medians of 3 rounds, each in a fresh folder: the first write of a process also pays
    # for first-use set-up and page faults, as only a run's first cell does
    rounds = []
    for i in range(3):
        folder = sitting.tmp / f"parquet-{i}"
        folder.mkdir()
        rounds.append(parquet_times(folder))
        shutil.rmtree(folder, ignore_errors=True)
    times = {key: median([r[key] for r in rounds]) for key in rounds[0]}
    sitting.add("RecordBuffer.drain of 1 000 000 rows (to Arrow)", times["drain"], "s")
    sitting.add("Parquet write, 1 000 000 rows (requests schema, 64 Ki row groups)",
                times["write"], "s", "≤ 0.5", lambda v: v <= 0.5)
    sitting.add("Parquet read, 1 000 000 rows (harness.store.reader.read_table)",
                times["read"], "s")
    sitting.add("cell end: spool → Parquet, 1 000 000 rows (RunWriter.write_cell_data)",
                times["cell_end"], "s", "≤ 0.5", lambda v: v <= 0.5)


def time_loop(n: int, record: str | None, folder: Path | None = None) -> int:
    """ns for n iterations of a request-shaped loop body; `record`: None (no recording),
    "buffer" (RecordBuffer.append), "spooled" (append, with a Spooler thread draining the
    buffer to its IPC file every FLUSH_S as in a cell; its final flush included)."""
    from harness.cell.buffer import RecordBuffer
    from harness.core.schema import RECORD_SCHEMA, Outcome
    from harness.store.spool import Spooler

    outcome = Outcome(True, 200, None, 12_345, server_delay_target_ns=12_000, bytes_sent=0,
                      bytes_received=128)
    buffer = RecordBuffer()
    append = buffer.append
    spool = None
    if record == "spooled":
        spool_dir = Path(tempfile.mkdtemp(dir=folder, prefix="spool-"))
        spool = Spooler(spool_dir)
        spool.add("requests", RECORD_SCHEMA, buffer.drain)
        spool.start()
    t0 = time.perf_counter_ns()
    if record is None:
        for _seq in range(n):
            pass
    else:
        for seq in range(n):
            append("worker-0", "conn-40000", seq, seq, seq, seq, seq + 1, outcome, 50, False)
    if spool is not None:
        spool.stop()
    elapsed = time.perf_counter_ns() - t0
    if spool is not None:
        shutil.rmtree(spool_dir, ignore_errors=True)
    return elapsed


def parquet_times(folder: Path) -> dict:
    import pyarrow as pa

    from harness.cell.buffer import RecordBuffer
    from harness.core.keys import CellKey, key_dict
    from harness.core.schema import Outcome
    from harness.store.layout import KINDS, ROW_GROUP_ROWS
    from harness.store.reader import read_table
    from harness.store.writer import RunWriter, _file_meta, _with_keys, parquet_writer

    buffer = RecordBuffer()
    ok = Outcome(True, 200, None, 12_345, server_delay_target_ns=12_000, bytes_sent=0,
                 bytes_received=128)
    for seq in range(ROWS):
        buffer.append("worker-0", f"conn-{40000 + seq % 50}", seq, seq * 10, seq * 10 + 1,
                      seq * 10 + 2, seq * 10 + 9, ok, 1 + seq % 50, False)
    constants = {"run_id": "bench-self", "scenario": "bench_self",
                 **key_dict(CellKey(backend="uvloop", concurrency=50, repetition=0,
                                    client="lean"))}
    t0 = time.perf_counter()
    batch = buffer.drain()
    t1 = time.perf_counter()
    path = folder / "rows.parquet"
    schema = KINDS["requests"].with_metadata(_file_meta({"bench": "self"}))
    t2 = time.perf_counter()
    with parquet_writer(path, schema) as writer:
        writer.write_table(_with_keys(batch, constants, schema), row_group_size=ROW_GROUP_ROWS)
    t3 = time.perf_counter()
    table = read_table(path, "requests")
    t4 = time.perf_counter()
    assert table.num_rows == ROWS
    # The cell-end path: the spool as a cell leaves it (a batch per half second; here 20 of
    # 50 000 rows), streamed to the cell's Parquet files.
    run_dir = folder / "cell-end"
    run_dir.mkdir()
    writer = RunWriter(run_dir, {"bench": "self"})
    index, spool = writer.open_cell(constants)
    with pa.OSFile(str(spool / "requests.arrows"), "wb") as sink, \
            pa.ipc.new_stream(sink, batch.schema) as stream:
        for start in range(0, ROWS, 50_000):
            stream.write(batch.slice(start, 50_000))
    t5 = time.perf_counter()
    rows = writer.write_cell_data(index, spool, constants)
    t6 = time.perf_counter()
    assert rows.rows == ROWS
    return {"drain": t1 - t0, "write": t3 - t2, "read": t4 - t3, "cell_end": t6 - t5}
