"""RecordBuffer, the hot path's record store, in process: what goes in comes out of a drain,
value for value, null for null, across batch boundaries and while other threads append."""

from __future__ import annotations

import threading

import pyarrow as pa

from harness.cell.buffer import BATCH_ROWS, RecordBuffer
from harness.core.schema import RECORD_SCHEMA, Outcome

NULLABLE = ("server_delay_ns", "cpu_ns", "cpu_wait_ns", "io_ns", "db_ns",
            "server_delay_target_ns", "bytes_sent", "bytes_received")


def row(seq: int) -> tuple[tuple, dict]:
    """The append arguments for one request, and the row the drain must give back; every
    nullable field is null in some rows and a value (0 included) in others."""
    values = {name: None if (seq + i) % 3 == 0 else (seq * 7 + i) % 5 * 1000
              for i, name in enumerate(NULLABLE)}
    failed = seq % 4 == 0
    outcome = Outcome(not failed, 0 if failed else 200, "timeout" if failed else None,
                      values["server_delay_ns"], values["cpu_ns"], values["cpu_wait_ns"],
                      values["io_ns"], values["db_ns"], f"E{seq % 3}" if seq % 5 == 0 else None,
                      values["server_delay_target_ns"], values["bytes_sent"],
                      values["bytes_received"], "reset" if seq % 6 == 0 else None)
    worker, slot = f"worker-{seq % 2}", f"conn-{seq % 37}"
    args = (worker, slot, seq, seq * 10, seq * 10 + 1, seq * 10 + 2, seq * 10 + 9, outcome,
            1 + seq % 50, seq % 9 == 0)
    expected = {"worker": worker, "slot": slot, "seq": seq, "enqueued_ns": seq * 10,
                "scheduled_ns": seq * 10 + 1, "start_ns": seq * 10 + 2, "end_ns": seq * 10 + 9,
                "ok": outcome.ok, "status": outcome.status, "error": outcome.error,
                "error_detail": outcome.error_detail, "in_flight": 1 + seq % 50,
                "fault": outcome.fault, "phase": "warmup" if seq % 9 == 0 else "measure",
                **values}
    return args, expected


def test_a_drain_gives_back_every_row_as_appended_across_batches():
    buffer = RecordBuffer()
    assert buffer.drain() is None
    n = BATCH_ROWS * 2 + 123
    expected = []
    for seq in range(n):
        args, want = row(seq)
        buffer.append(*args)
        expected.append(want)
    assert len(buffer) == n and buffer.appended == n
    table = buffer.drain()
    assert table.schema == RECORD_SCHEMA
    assert [b.num_rows for b in table.to_batches()] == [BATCH_ROWS, BATCH_ROWS, 123]
    assert table.to_pylist() == expected
    assert len(buffer) == 0 and buffer.appended == n and buffer.drain() is None
    args, want = row(n)  # the codes of earlier labels still hold after a drain
    buffer.append(*args)
    assert buffer.drain().to_pylist() == [want] and buffer.appended == n + 1


def test_all_null_and_no_null_columns_keep_their_types():
    buffer = RecordBuffer()
    for seq in range(5):
        buffer.append("w", "s", seq, 0, 0, 1, 2, Outcome(True, 200, bytes_sent=0), 1)
    table = buffer.drain()
    assert table.column("cpu_ns").null_count == 5 and table.column("error").null_count == 5
    assert table.column("bytes_sent").to_pylist() == [0] * 5
    assert table.schema.field("error").type == pa.string()


def test_rows_appended_by_threads_while_another_drains_are_all_there_once():
    buffer = RecordBuffer()
    threads, per_thread = 4, 20_000
    drained: list[pa.Table] = []
    done = threading.Event()

    def drainer():
        while not done.is_set():
            if (table := buffer.drain()) is not None:
                drained.append(table)

    def appender(t):  # new labels keep arriving mid-run, from every thread
        for i in range(per_thread):
            seq = t * per_thread + i
            buffer.append(f"worker-{t}", f"slot-{seq % 1000}", seq, seq, seq, seq, seq + 1,
                          Outcome(True, 200, server_delay_ns=seq), 1)

    reader = threading.Thread(target=drainer)
    reader.start()
    writers = [threading.Thread(target=appender, args=(t,)) for t in range(threads)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    done.set()
    reader.join()
    if (rest := buffer.drain()) is not None:
        drained.append(rest)
    rows = pa.concat_tables(drained).to_pylist()
    assert sorted(r["seq"] for r in rows) == list(range(threads * per_thread))
    for r in rows:  # no row torn or mislabelled
        assert r["slot"] == f"slot-{r['seq'] % 1000}"
        assert r["worker"] == f"worker-{r['seq'] // per_thread}"
        assert r["server_delay_ns"] == r["seq"] and r["end_ns"] == r["seq"] + 1


def test_appended_never_goes_back_while_a_drain_takes_rows():
    buffer = RecordBuffer()
    for seq in range(200_000):
        buffer.append("w", "s", seq, seq, seq, seq, seq + 1, Outcome(True, 200), 1)
    seen, stop = [], threading.Event()

    def poll():
        while not stop.is_set():
            seen.append(buffer.appended)

    poller = threading.Thread(target=poll)
    poller.start()
    buffer.drain()
    stop.set()
    poller.join()
    assert seen and min(seen) == 200_000 == buffer.appended


def test_a_label_that_is_not_a_string_is_written_as_one():
    buffer = RecordBuffer()
    buffer.append("w", 7, 0, 0, 0, 1, 2, Outcome(False, 0, "internal", error_detail=None), 1)
    assert buffer.drain().to_pylist()[0]["slot"] == "7"
