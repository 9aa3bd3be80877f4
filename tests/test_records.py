"""No request without its row: exceptions, dying slot processes, a dying cell process, a killed
harness — every released request is a row, what was flushed survives, the run goes on."""

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.cell.buffer import RecordBuffer
from harness.cell.gauge import FileLock, SlotGauge
from harness.core.keys import CellKey, key_dict
from harness.core.schema import RECORD_SCHEMA, Outcome
from harness.run.runner import run_scenarios
from harness.scenario.loader import parse_scenario
from harness.scenario.model import LoadedScenario
from harness.store.layout import ROW_GROUP_ROWS
from harness.store.reader import read_run
from harness.store.spool import Spooler, read_batches
from harness.store.writer import CellRows
from tests.conftest import BACKENDS, harness


def _cmdline(p) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def fake(name="fake", duration="5ms", raise_on=(), exit_on=(), requests=30, concurrency=3,
         backends=BACKENDS, extra="") -> str:
    return (f"name: {name}\n"
            f"workload: {{type: fake, duration: {duration}, raise_on: {list(raise_on)}, "
            f"exit_on: {list(exit_on)}}}\n"
            f"load: {{requests: {requests}, concurrency: {concurrency}, workers: 2{extra}}}\n"
            f"backends: [{', '.join(backends)}]\n")


def run_in_process(tmp_path, text):
    out = tmp_path / "out"
    result = run_scenarios([LoadedScenario("f.yaml", text, parse_scenario(text))], out=out)
    tables = read_run(out)
    return result, tables["requests"].to_pandas(), tables["cells"].to_pandas()


@pytest.fixture(scope="module")
def raising(tmp_path_factory):
    return run_in_process(tmp_path_factory.mktemp("raise"), fake(raise_on=(3, 7)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_exception_in_a_request_is_an_internal_row_and_the_slot_goes_on(raising, backend):
    result, rows, cells = raising
    rows = rows[rows.backend == backend]
    cell = cells[cells.backend == backend].iloc[0]
    assert sorted(rows.seq) == list(range(30))  # every released request, no gaps
    failed = rows[~rows.ok].sort_values("seq")
    assert failed.seq.tolist() == [3, 7]
    assert (failed.error == "internal").all() and (failed.error_detail == "FakeError").all()
    assert rows[rows.ok].error_detail.isna().all()
    assert cell.released == cell.requests == 30 and cell.errors == 2 and cell.complete
    assert cell.peak_in_flight == cell.peak_in_flight_live == 3  # no slot left counted
    assert not result.failures
    if backend == "threads":  # the slots that raised kept working
        late = rows[rows.seq > 10]
        assert late.slot.nunique() == 3


def test_a_slot_process_killed_mid_cell_gives_a_lost_row_and_no_stall(tmp_path):
    started = time.monotonic()
    result, rows, cells = run_in_process(
        tmp_path, fake(duration="20ms", exit_on=(5,), requests=40, backends=["processes"]))
    assert time.monotonic() - started < 60
    cell = cells.iloc[0]
    assert sorted(rows.seq) == list(range(40))
    lost = rows[rows.error == "lost"]
    assert lost.seq.tolist() == [5] and not lost.ok.any()
    assert (lost.start_ns >= lost.scheduled_ns).all() and (lost.end_ns > lost.start_ns).all()
    assert cell.released == cell.requests == 40 and cell.slots_lost == 1 and cell.complete
    assert cell.peak_in_flight == cell.peak_in_flight_live == 3
    # the cell went on with the two slots left
    assert rows[rows.seq > 10].slot.nunique() == 2


def _die_inside_the_gauge(lock, state, slot, partial):
    """Take the gauge's lock and die halfway through `enter`, as a SIGKILL may strike."""
    with lock:
        state[0] += 1  # in_flight counted …
        state[1] = max(state[1], state[0])
        if partial == "stamped":
            state[3 + slot] = 1  # … and the slot's own word written
        os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("partial", ["counted", "stamped"])
def test_a_slot_killed_holding_the_gauge_lock_neither_stalls_nor_leaves_the_count_high(
        tmp_path, partial):
    ctx = mp.get_context("spawn")
    lock = FileLock(str(tmp_path / "gauge.lock"))
    state = ctx.RawArray("q", SlotGauge.initial_state(2))
    gauge = SlotGauge(0, lock=lock, state=state)
    start, _ = gauge.enter(0)  # slot 0 is busy; slot 1 dies inside its critical section
    child = ctx.Process(target=_die_inside_the_gauge, args=(lock, state, 1, partial))
    child.start()
    child.join(30)
    assert child.exitcode == -signal.SIGKILL
    assert gauge.in_flight == 2  # the dead slot's increment is still there …
    recovered = {}

    def recover():
        recovered["value"] = gauge.recover(1)

    import threading

    waiter = threading.Thread(target=recover, daemon=True)
    waiter.start()
    waiter.join(10)
    assert "value" in recovered, "the lock died with its holder and was never freed"
    dead_start, end = recovered["value"]
    assert (dead_start is not None) == (partial == "stamped")
    assert end > start
    assert gauge.in_flight == 1  # … and the recount removed it; slot 0 is still counted
    gauge.exit(0)
    assert gauge.in_flight == 0


def test_spool_reads_a_stream_cut_short_up_to_its_last_whole_batch(tmp_path):
    buffer = RecordBuffer()
    spool = Spooler(tmp_path, interval_s=3600)  # flushed by hand here
    spool.add("requests", RECORD_SCHEMA, buffer.drain)
    for batch in range(3):
        for i in range(100):
            buffer.append("w", "s", batch * 100 + i, 0, 0, 1, 2, Outcome(True, 200), 1)
        spool.flush()
    path = tmp_path / "requests.arrows"
    whole = path.read_bytes()
    path.write_bytes(whole[:-40])  # a kill in the middle of the last batch
    assert sum(b.num_rows for b in read_batches(path)) == 200
    path.write_bytes(b"")
    assert list(read_batches(path)) == []
    spool.stop()


def test_a_cell_is_written_in_row_groups_of_at_most_64_ki_rows(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    n = ROW_GROUP_ROWS * 2 + 1000
    with pa.OSFile(str(spool / "requests.arrows"), "wb") as sink, \
            pa.ipc.new_stream(sink, RECORD_SCHEMA) as writer:
        for chunk in range(0, n, 10_000):
            buffer = RecordBuffer()
            for seq in range(chunk, min(n, chunk + 10_000)):
                buffer.append("w", "s", seq, 0, 0, seq, seq + 1, Outcome(True, 200), 1)
            writer.write(buffer.drain())
    constants = {"run_id": "r", "scenario": "s", **key_dict(CellKey("threads", 1, 0))}
    rows = CellRows(constants)
    with pq.ParquetWriter(tmp_path / "r.parquet", read_run.__globals__["KINDS"]["requests"]) as w:
        for table in rows.read(spool, "requests"):
            w.write_table(table, row_group_size=ROW_GROUP_ROWS)
    meta = pq.ParquetFile(tmp_path / "r.parquet").metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sum(sizes) == n and max(sizes) <= ROW_GROUP_ROWS
    assert rows.cell_row({"done": True, "released": n}, {})["requests"] == n


def test_a_killed_cell_process_keeps_its_flushed_rows_and_the_run_goes_on(tmp_path):
    # asyncio runs requests in the cell process itself: seq 150 kills it about 0.75 s in; on
    # processes the same seq kills one slot process only, and that cell completes.
    path = tmp_path / "s.yaml"
    path.write_text(fake(duration="10ms", exit_on=(150,), requests=400, concurrency=2,
                         backends=["asyncio", "processes"]))
    out = tmp_path / "out"
    result = harness("run", path, "--out", out)
    assert result.returncode == 3, result.stderr
    assert "asyncio c=2 r=0 failed: killed by SIGKILL" in result.stderr
    assert "Traceback" not in result.stderr
    tables = read_run(out)
    rows, cells = tables["requests"].to_pandas(), tables["cells"].to_pandas()
    killed = cells[cells.backend == "asyncio"].iloc[0]
    assert not killed.complete and killed.requests > 0 and pd.isna(killed.released)
    # up to its last flush: seqs 0-149 at most (a flush just before the kill keeps them all)
    asyncio_rows = rows[rows.backend == "asyncio"]
    assert 0 < len(asyncio_rows) <= 150 and asyncio_rows["seq"].max() < 150
    after = cells[cells.backend == "processes"].iloc[0]  # the next cell ran in full
    assert after.complete and after.requests == after.released == 400 and after.slots_lost == 1
    report = harness("report", out, "--format", "json")
    assert report.returncode == 3
    summary = {c["backend"]: c for c in json.loads(report.stdout)["cells"]}
    assert summary["asyncio"]["complete"] is False
    assert "incomplete" in summary["asyncio"]["flags"].split()
    assert summary["processes"]["complete"] is True
    assert "incomplete" not in summary["processes"]["flags"]


def test_a_harness_killed_mid_run_leaves_every_finished_cell_readable(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(fake(duration="10ms", requests=300, concurrency=2,
                         backends=["asyncio", "threads", "uvloop"]))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(path), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    spooled = out / ".spool" / "cell-0002" / "requests.arrows"
    while not (spooled.exists() and spooled.stat().st_size > 4000):  # the third cell flushed
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    tree = [proc, *psutil.Process(proc.pid).children(recursive=True)]
    for p in tree:  # the whole process tree at once, as an OOM killer or a power cut would
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(10)
    report = harness("report", out, "--format", "json")
    assert report.returncode == 3, report.stderr
    cells = json.loads(report.stdout)["cells"]
    assert [c["backend"] for c in cells] == ["asyncio", "threads", "uvloop"]
    assert [c["complete"] for c in cells] == [True, True, False]
    assert cells[0]["requests"] == cells[1]["requests"] == 300
    assert 0 < cells[2]["requests"] < 300
    # no half-written file passes for a cell: only whole files under their final names
    for kind in ("requests", "cells", "loop_lag", "timeline"):
        names = sorted(p.name for p in (out / kind).glob("*.parquet"))
        assert names == ["cell-0000.parquet", "cell-0001.parquet"], kind


def test_force_on_an_earlier_run_never_shows_its_rows(tmp_path):
    out = tmp_path / "out"
    first = tmp_path / "a.yaml"
    first.write_text(fake(name="first", requests=20, backends=["threads", "asyncio"]))
    assert harness("run", first, "--out", out).returncode == 0
    second = tmp_path / "b.yaml"
    second.write_text(fake(name="second", requests=10, backends=["uvloop"]))
    assert harness("run", second, "--out", out, "--force").returncode == 0
    tables = read_run(out)
    assert set(tables["requests"].column("scenario").to_pylist()) == {"second"}
    assert tables["cells"].num_rows == 1 and tables["requests"].num_rows == 10


def test_a_full_disk_is_one_line_and_keeps_what_was_flushed(tmp_path):
    """RLIMIT_FSIZE makes every file over 400 KiB fail to grow, as a full disk would."""
    import resource

    path = tmp_path / "s.yaml"
    path.write_text(fake(duration="1ms", requests=20000, concurrency=4, backends=["asyncio"]))
    out = tmp_path / "out"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (400 * 1024, 400 * 1024))

    result = subprocess.run([sys.executable, "-m", "harness", "run", str(path), "--out", str(out)],
                            capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr
    assert str(out) in lines[0] and "File too large" in lines[0]
    report = harness("report", out, "--format", "json")
    cells = json.loads(report.stdout)["cells"]
    assert 0 < cells[0]["requests"] < 20000


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_dead_mock_server_is_recorded_and_the_run_exits_3(tmp_path, backend):
    from tests.conftest import small_scenario

    path = tmp_path / "s.yaml"
    path.write_text(small_scenario(latency="20ms", requests=100000, concurrency=2,
                                   backends=f"[{backend}]"))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(path), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    spooled = out / ".spool" / "cell-0000" / "requests.arrows"
    while not (spooled.exists() and spooled.stat().st_size > 4000):  # requests are flowing
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    server = next(p for p in psutil.Process(proc.pid).children(recursive=True)
                  if "harness.mock" in " ".join(_cmdline(p)))
    server.kill()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 3, stderr
    tables = read_run(out)
    cell = tables["cells"].to_pandas().iloc[0]
    assert cell.server_exit == -signal.SIGKILL and cell.released == cell.requests
    assert not cell.interrupted and cell.requests < 100000
    rows = tables["requests"].to_pandas()
    failed = rows[~rows.ok]
    assert len(failed) and set(failed.error) <= {"connect", "reset", "protocol"}
    # within 1 s of the first failure, nothing more was released
    assert rows.scheduled_ns.max() - failed.start_ns.min() < 1e9
    report = harness("report", out, "--format", "json")
    assert report.returncode == 3
    assert "server_died" in json.loads(report.stdout)["cells"][0]["flags"]


def test_a_run_written_by_schema_version_2_still_reads(tmp_path):
    """tests/data/v2_run: a run written by the release before this layout (one file per kind
    per run, schema version 2), read and summarised by today's code."""
    from pathlib import Path

    old = Path(__file__).parent / "data" / "v2_run"
    tables = read_run(old)
    cells = tables["cells"].to_pandas()
    assert list(cells.backend) == ["threads", "asyncio"] and cells.complete.all()
    assert set(tables["requests"].column("client").to_pylist()) == {"standard"}
    assert tables["requests"].num_rows == 40
    report = harness("report", old, "--format", "json")
    assert report.returncode == 0, report.stderr
    summary = json.loads(report.stdout)
    assert [c["requests"] for c in summary["cells"]] == [20, 20]


def test_threads_sharing_a_file_lock_exclude_each_other_from_its_first_use(tmp_path):
    """flock excludes open files, not threads: threads of one process sharing one FileLock
    (a generator's slots on its seq counter) still take turns, and their first entries, all at
    once, open the file once (two opens: the second would wait on the first's lock forever)."""
    import threading
    import time

    for trial in range(20):
        lock = FileLock(str(tmp_path / f"counter-{trial}.lock"))
        counter = [0]
        start = threading.Barrier(8)

        def add(lock=lock, counter=counter, start=start):
            start.wait()
            for _ in range(20):
                with lock:
                    seen = counter[0]
                    time.sleep(0)  # let another thread in, if the lock would
                    counter[0] = seen + 1

        threads = [threading.Thread(target=add, daemon=True) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert not any(t.is_alive() for t in threads), "deadlocked on first use"
        assert counter[0] == 8 * 20
