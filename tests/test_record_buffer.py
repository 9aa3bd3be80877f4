"""RecordBuffer, the hot path's record store, in process: what goes in comes out of a drain,
value for value, null for null, across batch boundaries and while other threads append, by
`append` and by the hot paths' entry `row`."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from harness.cell.buffer import BATCH_ROWS, ROW, ROW_WIDTH, RecordBuffer
from harness.core.schema import RECORD_SCHEMA, Outcome

NULLABLE = ("server_delay_ns", "cpu_ns", "cpu_wait_ns", "io_ns", "db_ns",
            "server_delay_target_ns", "bytes_sent", "bytes_received", "connect_ns")


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
                      values["bytes_received"], "reset" if seq % 6 == 0 else None,
                      values["connect_ns"])
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


def as_row(args: tuple) -> tuple:
    """append's arguments as the one tuple `row` takes."""
    worker, slot, seq, enqueued_ns, scheduled_ns, start_ns, end_ns, outcome, in_flight, \
        warmup = args
    return (worker, slot, seq, enqueued_ns, scheduled_ns, start_ns, end_ns, in_flight,
            warmup) + outcome


@pytest.mark.parametrize("entry", ["append", "row"])
def test_rows_appended_by_threads_while_another_drains_are_all_there_once(entry):
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
            args = (f"worker-{t}", f"slot-{seq % 1000}", seq, seq, seq, seq, seq + 1,
                    Outcome(True, 200, server_delay_ns=seq), 1, False)
            if entry == "row":
                buffer.row(as_row(args))
            else:
                buffer.append(*args)

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


def test_the_fast_entry_is_a_c_method_taking_one_row_tuple_as_append_does():
    buffer = RecordBuffer()
    # a bound built-in: the hot paths call it without a Python frame of the buffer's
    assert type(buffer.row).__name__ == "builtin_function_or_method"
    assert ROW_WIDTH == 23 and ROW[:9] == ("worker", "slot", "seq", "enqueued_ns",
                                           "scheduled_ns", "start_ns", "end_ns", "in_flight",
                                           "warmup")
    assert ROW[9:] == Outcome._fields
    expected = []
    for seq in range(BATCH_ROWS + 10):
        args, want = row(seq)
        if seq % 2:
            buffer.row(as_row(args))
        else:
            buffer.append(*args)
        expected.append(want)
    assert len(buffer) == buffer.appended == BATCH_ROWS + 10
    assert buffer.drain().to_pylist() == expected


def test_constant_null_and_mixed_columns_change_from_one_batch_to_the_next():
    """Each batch is judged on its own: a column constant (or null) in one batch and mixed,
    or holding a new label, in the next comes out value for value; equal values that are
    distinct objects count as the same; a column equal at its ends and middle but not
    elsewhere is not taken for a constant."""
    buffer = RecordBuffer()
    n = BATCH_ROWS * 3
    expected = []
    for seq in range(n):
        block = seq // BATCH_ROWS
        if block == 0:  # constant everywhere, the big ints distinct objects of one value
            big = int("5000000000")
            outcome = Outcome(True, 200, None, big, bytes_sent=0, fault=None)
            worker, in_flight, warmup = "worker-0", 3, False
        elif block == 1:  # mixed: nulls among values, a new label mid-batch, both phases
            outcome = Outcome(seq % 2 == 0, 200 + seq % 2, "timeout" if seq % 2 else None,
                              None if seq % 3 else seq, bytes_sent=None if seq % 5 else 0,
                              fault="reset" if seq > BATCH_ROWS + 100 else None)
            worker, in_flight, warmup = f"worker-{seq % 3}", seq % 7, seq % 4 == 0
        else:  # equal at the first, middle and last row only
            odd = seq not in (2 * BATCH_ROWS, 2 * BATCH_ROWS + BATCH_ROWS // 2, n - 1)
            outcome = Outcome(True, 200 + odd, None, 7, bytes_sent=1)
            worker, in_flight, warmup = "worker-9" if odd else "worker-0", 1 + odd, False
        args = (worker, "slot", seq, seq, seq, seq, seq + 1, outcome, in_flight, warmup)
        buffer.row(as_row(args))
        expected.append({"worker": worker, "slot": "slot", "seq": seq, "enqueued_ns": seq,
                         "scheduled_ns": seq, "start_ns": seq, "end_ns": seq + 1,
                         "server_delay_ns": outcome.server_delay_ns,
                         "server_delay_target_ns": None, "ok": outcome.ok,
                         "status": outcome.status, "error": outcome.error,
                         "error_detail": None, "in_flight": in_flight, "cpu_ns": None,
                         "cpu_wait_ns": None, "io_ns": None, "db_ns": None,
                         "fault": outcome.fault, "bytes_sent": outcome.bytes_sent,
                         "bytes_received": None, "connect_ns": None,
                         "phase": "warmup" if warmup else "measure"})
    table = buffer.drain()
    assert table.schema == RECORD_SCHEMA
    assert [b.num_rows for b in table.to_batches()] == [BATCH_ROWS] * 3
    assert table.to_pylist() == expected


def test_a_batch_all_in_the_warm_up_or_all_failed_says_so_in_every_row():
    buffer = RecordBuffer()
    for seq in range(10):
        buffer.append("w", "s", seq, 0, 0, 1, 2, Outcome(False, 0, "timeout"), 1, warmup=True)
    table = buffer.drain()
    assert table.column("phase").to_pylist() == ["warmup"] * 10
    assert table.column("ok").to_pylist() == [False] * 10
    assert table.column("error").to_pylist() == ["timeout"] * 10


def test_truth_values_that_are_not_bools_count_by_their_truth():
    buffer = RecordBuffer()
    for seq in range(4):
        buffer.row(("w", "s", seq, 0, 0, 1, 2, 1, seq % 2, seq % 2, 200, None, None, None,
                    None, None, None, None, None, None, None, None, None))
    table = buffer.drain()
    assert table.column("ok").to_pylist() == [False, True, False, True]
    assert table.column("phase").to_pylist() == ["measure", "warmup", "measure", "warmup"]


@pytest.mark.parametrize("bad", ["a str timestamp", "a float timestamp", "None as seq"])
def test_a_value_of_the_wrong_type_fails_the_drain_naming_its_column(bad):
    buffer = RecordBuffer()
    good = ("w", "s", 1, 0, 0, 1, 2, 1, False) + Outcome(True, 200)
    buffer.row(good)
    value = {"a str timestamp": "3", "a float timestamp": 2.5, "None as seq": None}[bad]
    column = "seq" if bad == "None as seq" else "end_ns"
    buffer.row(tuple(value if name == column else v for name, v in zip(ROW, good, strict=True)))
    with pytest.raises(ValueError, match=column):
        buffer.drain()
    assert buffer.appended == 2 and len(buffer) == 0  # those rows are gone …
    buffer.row(good)  # … and the buffer goes on
    assert buffer.drain().to_pylist()[0]["seq"] == 1


def test_a_row_of_the_wrong_width_fails_the_drain_and_the_buffer_goes_on():
    buffer = RecordBuffer()
    good = ("w", "s", 1, 0, 0, 1, 2, 1, False) + Outcome(True, 200)
    buffer.row(good)
    buffer.row(good[:-1])
    buffer.row(good)
    with pytest.raises(ValueError, match="23 values"):
        buffer.drain()
    assert len(buffer) == 0 and buffer.drain() is None
    buffer.row(good)
    assert buffer.drain().num_rows == 1 and buffer.appended == 3


def test_append_refuses_an_outcome_of_the_wrong_length():
    with pytest.raises(ValueError, match="14 fields"):
        RecordBuffer().append("w", "s", 0, 0, 0, 1, 2, (True, 200), 1)


def test_bench_self_baseline_buffer_gives_the_same_table_as_the_harness_buffer():
    """bench-self compares the old packed buffer (bench/record_baseline.py) with this one:
    both must take today's Outcome and give the same rows, or the comparison measures
    nothing (it once failed at its first append when the Outcome grew)."""
    from bench.record_baseline import BaselineRecordBuffer

    outcomes = [Outcome(True, 200, None, 12_000, bytes_sent=0, bytes_received=128),
                Outcome(False, 0, "connect", error_detail="refused", connect_ns=3_000_000),
                Outcome(True, 200, None, None, 5, 6, 7, 8, None, 9, 10, 11, "reset", 12)]
    old, new = BaselineRecordBuffer(), RecordBuffer()
    for seq, outcome in enumerate(outcomes):
        args = ("worker-0", f"conn-{seq}", seq, seq * 10, seq * 10 + 1, seq * 10 + 2,
                seq * 10 + 9, outcome, 1 + seq, seq == 0)
        old.append(*args)
        new.append(*args)
    assert old.drain().to_pylist() == new.drain().to_pylist()
