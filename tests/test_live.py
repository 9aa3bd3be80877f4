"""The live view's window over a running cell's spool (harness.store.live): written with the
cell's own spooler and record buffer, read as it grows."""

from __future__ import annotations

import pyarrow as pa
import pytest

from harness.cell.buffer import RecordBuffer
from harness.core.schema import RECORD_SCHEMA, TIMELINE_RECORD_SCHEMA, Outcome
from harness.store.live import LiveCell
from harness.store.spool import Spooler

MS = 1_000_000


def _spool(folder):
    """A cell's spool as the cell writes it; rows and timeline samples go out at flush()."""
    spooler = Spooler(folder)
    buffer = RecordBuffer()
    samples: list[tuple[int, int]] = []

    def timeline():
        if not samples:
            return None
        t, n = zip(*samples, strict=True)
        samples.clear()
        columns = {"t_ns": t, "in_flight": n, "completed": [0] * len(t),
                   "loop_lag_max_ns": [None] * len(t), "cpu_percent": [0.0] * len(t),
                   "ctx_switches_voluntary": [0] * len(t),
                   "ctx_switches_involuntary": [0] * len(t)}
        return pa.RecordBatch.from_pydict(columns, schema=TIMELINE_RECORD_SCHEMA)

    spooler.add("requests", RECORD_SCHEMA, buffer.drain)
    spooler.add("timeline", TIMELINE_RECORD_SCHEMA, timeline)
    return spooler, buffer, samples


def _row(buffer: RecordBuffer, seq: int, end_ms: float, response_ms: float,
         error: str | None = None) -> None:
    end = int(end_ms * MS)
    scheduled = end - int(response_ms * MS)
    outcome = Outcome(ok=error is None, status=200 if error is None else 0, error=error)
    buffer.append("worker-0", "slot-0", seq, scheduled, scheduled, scheduled + MS, end,
                  outcome, 1)


def test_the_last_second_counts_rate_errors_and_percentiles_once(tmp_path):
    spooler, buffer, samples = _spool(tmp_path)
    live = LiveCell(tmp_path)
    _row(buffer, 0, 1000, 5)  # a second before the newest: out of the window
    _row(buffer, 1, 2200, 10, "timeout")
    samples += [(100 * MS, 3), (200 * MS, 7)]
    spooler.flush()
    first = live.poll()
    assert (first.rows, first.rate_per_s, first.errors) == (2, 1.0, {"timeout": 1})
    assert first.p50_ns == first.p99_ns == 10 * MS
    assert (first.in_flight, first.elapsed_ns) == (7, 200 * MS)

    _row(buffer, 2, 2500, 20)
    _row(buffer, 3, 2900, 30, "connect")
    _row(buffer, 4, 3000, 40)
    _row(buffer, 5, 1900, 50, "timeout")  # came late, ended before the window
    samples.append((300 * MS, 4))
    spooler.flush()
    second = live.poll()
    # window (2.0 s, 3.0 s]: 10, 20, 30, 40 ms; p99 (linear) = 30 + 0.97 × 10
    assert second.rows == 6
    assert second.rate_per_s == 4.0
    assert second.errors == {"timeout": 1, "connect": 1}
    assert second.p50_ns == pytest.approx(25 * MS)
    assert second.p99_ns == pytest.approx(39.7 * MS)
    assert (second.in_flight, second.elapsed_ns) == (4, 300 * MS)

    again = live.poll()  # nothing new: nothing counted twice
    assert (again.rows, again.rate_per_s, again.errors) == (6, 4.0, second.errors)
    spooler.stop()


def test_a_stall_empties_the_last_second_as_the_clock_moves_on(tmp_path):
    spooler, buffer, samples = _spool(tmp_path)
    live = LiveCell(tmp_path)
    _row(buffer, 0, 2500, 10, "timeout")
    _row(buffer, 1, 3000, 20)
    samples.append((3000 * MS, 2))
    spooler.flush()
    assert live.poll().rate_per_s == 2.0
    samples.append((3600 * MS, 10))  # nothing ended since: the window is (2.6 s, 3.6 s]
    spooler.flush()
    stalled = live.poll()
    assert (stalled.rate_per_s, stalled.errors, stalled.in_flight) == (1.0, {}, 10)
    samples.append((5000 * MS, 10))
    spooler.flush()
    stalled = live.poll()
    assert (stalled.rows, stalled.rate_per_s, stalled.errors) == (2, 0.0, {})
    assert stalled.p99_ns != stalled.p99_ns  # none in the window: NaN
    spooler.stop()


def test_a_message_still_being_written_is_read_once_it_is_whole(tmp_path):
    spooler, buffer, _ = _spool(tmp_path)
    live = LiveCell(tmp_path)
    _row(buffer, 0, 200, 10)
    _row(buffer, 1, 400, 30)
    spooler.flush()
    path = tmp_path / "requests.arrows"
    whole = path.read_bytes()
    _row(buffer, 2, 600, 50, "reset")
    spooler.flush()
    grown = path.read_bytes()
    for cut in (len(whole) + 3, len(whole) + 40, len(grown) - 1):  # mid-message, three ways
        path.write_bytes(grown[:cut])
        early = live.poll()
        # the cell's first 0.4 s: its window is 0.4 s long
        assert (early.rows, early.rate_per_s, early.errors) == (2, 5.0, {})
    path.write_bytes(grown)
    done = live.poll()
    assert (done.rows, done.errors) == (3, {"reset": 1})
    assert done.rate_per_s == pytest.approx(3 / 0.6)
    assert done.p50_ns == 30 * MS
    spooler.stop()


def test_a_missing_or_broken_spool_is_no_error(tmp_path):
    assert LiveCell(tmp_path / "absent").poll().rows == 0
    (tmp_path / "requests.arrows").write_bytes(b"\xff\xff\xff\xff\x10\x00\x00\x00garbage")
    stats = LiveCell(tmp_path).poll()
    assert (stats.rows, stats.in_flight, stats.errors) == (0, None, {})
