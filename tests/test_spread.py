"""A cell spread over standalone generator processes (CellJob.spread: machines apart, nothing
shared): the strided counter, the synchronised start, two real `python -m harness.cell`
processes on one spool folder merged by harness.store.merge, and a generator that dies."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest

from harness.cell.backends.base import StopFlag
from harness.cell.main import spread_start
from harness.cell.tickets import Counter
from harness.core.job import CellJob
from harness.core.keys import key_dict
from harness.core.schema import TIMELINE_RECORD_SCHEMA
from harness.mock.process import ServerProcess
from harness.scenario.arrivals import schedule_for
from harness.scenario.loader import parse_scenario
from harness.scenario.model import plan_cells
from harness.store.merge import merge_spread, merge_timeline
from harness.store.spool import read_batches, spool_files, spool_name, write_table
from tests.conftest import small_scenario

# --- the strided counter -------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "n"), [(60, 2), (61, 3), (7, 4), (2, 3), (0, 2), (1000, 7)])
def test_strided_counters_together_hand_out_every_seq_below_the_limit_once(limit, n):
    taken, released = [], 0
    for g in range(n):
        counter = Counter(limit, g, n)
        mine = []
        threads = [threading.Thread(target=_drain, args=(counter, mine)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(seq % n == g for seq in mine)
        taken += mine
        released += counter.released()
    assert sorted(taken) == list(range(limit)) and released == limit


def _drain(counter: Counter, into: list) -> None:
    while (seq := counter.take()) is not None:
        into.append(seq)


def test_a_strided_counter_stopped_early_counts_what_it_handed_out():
    counter = Counter(None, 2, 3)
    assert [counter.take() for _ in range(4)] == [2, 5, 8, 11]
    assert counter.released() == 4
    assert Counter(10, 1, 3).released() == 0  # nothing taken


# --- the start -----------------------------------------------------------------------------


def test_a_spread_generator_says_ready_then_starts_at_the_time_it_is_given():
    said, stop = [], StopFlag()
    at = time.time_ns() + 300_000_000
    start = spread_start(stop, said.append, read=lambda: f"{at}\n")
    start()
    assert said == ['{"ready": true}'] and not stop.is_set()
    assert 0 <= time.time_ns() - at < 100_000_000


def test_a_spread_generator_told_nothing_stops_and_waits_at_most_the_cap(monkeypatch):
    stop = StopFlag()
    spread_start(stop, lambda line: None, read=lambda: "")()
    assert stop.is_set() and stop.reason == "signal"
    from harness.cell import main

    monkeypatch.setattr(main, "MAX_START_WAIT_S", 0.2)
    begun = time.monotonic()
    spread_start(StopFlag(), lambda line: None, read=lambda: f"{time.time_ns() + 10**12}")()
    assert 0.15 < time.monotonic() - begun < 1.0


# --- two generator processes, merged -------------------------------------------------------

CONCURRENCY, REQUESTS = 4, 60


def _jobs(tmp_path, text: str, server_url: str) -> list[CellJob]:
    key = plan_cells(parse_scenario(text))[0]
    assert key.generators == 2
    spool = tmp_path / "spool"
    spool.mkdir()
    jobs = []
    for g in range(2):
        work = tmp_path / f"work{g}"
        work.mkdir()
        jobs.append(CellJob(text, key_dict(key), server_url, None, str(work), str(spool),
                            generator=g, spread=True))
    return jobs


def _start(job: CellJob) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "harness.cell"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    proc.stdin.write(job.to_json() + "\n")
    proc.stdin.flush()
    return proc


def _until_ready(proc: subprocess.Popen) -> None:
    for line in proc.stdout:
        if json.loads(line).get("ready"):
            return
    raise AssertionError("the generator ended before it was ready")


def _done(proc: subprocess.Popen) -> dict | None:
    report = None
    for line in proc.stdout:
        message = json.loads(line)
        if message.get("done"):
            report = message
    proc.wait(60)
    return report


def _run(jobs: list[CellJob], kill: int | None = None) -> tuple[list, int]:
    procs = [_start(job) for job in jobs]
    try:
        for proc in procs:
            _until_ready(proc)
        if kill is not None:
            procs[kill].kill()
            procs[kill].wait()
        at = time.time_ns() + 300_000_000  # one start for both, a little ahead
        for g, proc in enumerate(procs):
            if g != kill:
                proc.stdin.write(f"{at}\n")
                proc.stdin.flush()
        return [_done(proc) if g != kill else None for g, proc in enumerate(procs)], at
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _rows(spool) -> pa.Table:
    tables = []
    for generator, path in spool_files(spool, "requests"):
        for batch in read_batches(path):
            table = pa.Table.from_batches([batch])
            tables.append(table.append_column(
                "generator", pa.array([generator] * table.num_rows, pa.int64())))
    return pa.concat_tables(tables)


@pytest.mark.parametrize("backend", ["threads", "asyncio", "uvloop"])
def test_two_spread_generators_take_every_seq_once_and_merge_into_one_cell(tmp_path, backend):
    text = small_scenario(latency="20ms", requests=REQUESTS, concurrency=CONCURRENCY,
                          backends=f"[{backend}]", extra_load=", generators: 2")
    with ServerProcess(text) as server:
        jobs = _jobs(tmp_path, text, server.url)
        reports, at = _run(jobs)
    assert all(r is not None for r in reports)
    for report in reports:  # each started on the instant it was given
        assert abs(report["t0_unix_ns"] - at) < 150_000_000
        assert report["peak_live"] <= CONCURRENCY // 2
    spool = tmp_path / "spool"
    cell = merge_spread(reports, spool, REQUESTS, 2)
    rows = _rows(spool)
    assert sorted(rows["seq"].to_pylist()) == list(range(REQUESTS))
    assert set(rows["generator"].to_pylist()) == {0, 1} and all(rows["ok"].to_pylist())
    assert cell["released"] == REQUESTS and cell["slots_lost"] == 0
    assert 1 <= cell["peak_live"] <= CONCURRENCY
    assert cell["t0_unix_ns"] == min(r["t0_unix_ns"] for r in reports)
    assert cell["cpu_user_s"] == pytest.approx(sum(r["cpu_user_s"] for r in reports))
    assert cell["has_loop"] == (backend != "threads") and not cell["interrupted"]
    # one timeline, one row per sample time, completed summed up to every request
    assert [p.name for _, p in spool_files(spool, "timeline")] == ["timeline.arrows"]
    timeline = pa.Table.from_batches(list(read_batches(spool / "timeline.arrows")))
    t = timeline["t_ns"].to_numpy()
    assert len(np.unique(t)) == len(t) and (t % 100_000_000 == 0).all()
    assert timeline["completed"].to_numpy()[-1] == REQUESTS
    assert timeline["in_flight"].to_numpy().max() <= CONCURRENCY


def test_a_lone_spread_generator_on_processes_also_waits_for_its_start(tmp_path):
    """The processes backend takes its t0 from start_clock too: an executor that spreads a
    one-generator cell gets its ready line."""
    text = small_scenario(latency="5ms", requests=8, concurrency=2, backends="[processes]")
    key = plan_cells(parse_scenario(text))[0]
    with ServerProcess(text) as server:
        job = CellJob(text, key_dict(key), server.url, None, str(tmp_path), str(tmp_path),
                      spread=True)
        (report,), at = _run([job])
    assert report["released"] == 8 and abs(report["t0_unix_ns"] - at) < 150_000_000
    assert merge_spread([report], tmp_path, 8, 1)["released"] == 8


def test_spread_open_model_generators_split_the_arrivals_with_seq_their_index(tmp_path):
    text = small_scenario(latency="5ms", backends="[asyncio]").replace(
        "requests: 60, concurrency: 4", "rate: 100/s, duration: 500ms, max_in_flight: 4, "
        "generators: 2")
    scenario = parse_scenario(text)
    key = plan_cells(scenario)[0]
    arrivals = len(schedule_for(scenario.load_for(key), scenario.arrival_seed, key).take().at_ns)
    with ServerProcess(text) as server:
        reports, _ = _run(_jobs(tmp_path, text, server.url))
    cell = merge_spread(reports, tmp_path / "spool", None, 2)
    rows = _rows(tmp_path / "spool")
    assert sorted(rows["seq"].to_pylist()) == list(range(arrivals))
    assert cell["released"] == arrivals > 10
    assert all(s % 2 == g for s, g in zip(rows["seq"].to_pylist(),
                                          rows["generator"].to_pylist(), strict=True))


def test_a_dead_spread_generator_leaves_its_share_as_lost_rows(tmp_path):
    text = small_scenario(latency="5ms", requests=REQUESTS, concurrency=CONCURRENCY,
                          backends="[asyncio]", extra_load=", generators: 2")
    with ServerProcess(text) as server:
        reports, _ = _run(_jobs(tmp_path, text, server.url), kill=1)
    assert reports[1] is None and reports[0] is not None
    spool = tmp_path / "spool"
    cell = merge_spread(reports, spool, REQUESTS, 2)
    rows = _rows(spool)
    assert sorted(rows["seq"].to_pylist()) == list(range(REQUESTS))
    lost = rows.filter(pa.compute.equal(rows["error"], "lost"))
    assert sorted(lost["seq"].to_pylist()) == list(range(1, REQUESTS, 2))
    assert set(lost["generator"].to_pylist()) == {1} and set(lost["phase"].to_pylist()) == {
        "measure"}
    assert cell["released"] == REQUESTS and cell["slots_lost"] == 1
    assert (spool / spool_name("requests", 1, "lost")).exists()
    again = merge_spread(reports, spool, REQUESTS, 2)  # merged twice: nothing more
    assert again["released"] == REQUESTS and _rows(spool).num_rows == REQUESTS


# --- the timeline, merged ------------------------------------------------------------------


def _timeline(spool, generator: int, t_ms, in_flight, completed, lag=None) -> None:
    n = len(t_ms)
    table = pa.table({
        "t_ns": pa.array([int(t * 1e6) for t in t_ms], pa.int64()),
        "in_flight": pa.array(in_flight, pa.int64()),
        "completed": pa.array(completed, pa.int64()),
        "loop_lag_max_ns": pa.array(lag or [None] * n, pa.int64()),
        "cpu_percent": pa.array([50.0] * n), "ctx_switches_voluntary": pa.array([1] * n),
        "ctx_switches_involuntary": pa.array([0] * n)}, schema=TIMELINE_RECORD_SCHEMA)
    write_table(spool / spool_name("timeline", generator), TIMELINE_RECORD_SCHEMA, table)


def test_the_timelines_are_summed_on_their_rounded_sample_times(tmp_path):
    # generator 1's sampler drifted: no sample near 300 ms; it ended after 400 ms
    _timeline(tmp_path, 0, [101, 199, 302, 401, 498], [2, 2, 1, 2, 0], [0, 3, 6, 9, 12],
              lag=[5, 7, 1, 1, 1])
    _timeline(tmp_path, 1, [98, 204, 449], [1, 2, 1], [0, 2, 5])
    peak = merge_timeline(tmp_path)
    merged = pa.Table.from_batches(list(read_batches(tmp_path / "timeline.arrows")))
    assert [p.name for _, p in spool_files(tmp_path, "timeline")] == ["timeline.arrows"]
    assert merged["t_ns"].to_pylist() == [n * 100_000_000 for n in range(1, 6)]
    assert merged["in_flight"].to_pylist() == [3, 4, 3, 3, 0]  # 300 ms: its last level
    assert merged["completed"].to_pylist() == [0, 5, 8, 14, 17]
    assert merged["ctx_switches_voluntary"].to_pylist() == [2, 2, 1, 2, 1]
    assert merged["loop_lag_max_ns"].to_pylist() == [5, 7, 1, 1, 1]
    assert merged["cpu_percent"].to_pylist() == [100.0, 100.0, 100.0, 100.0, 50.0]
    assert peak == 4


def test_reports_merge_as_one_cells(tmp_path):
    base = {"done": True, "released": 3, "peak_live": 2, "t0_unix_ns": 10,
            "interrupted": False, "extras": {"kernel_ns_per_unit": 4.0}, "slots_lost": 0,
            "has_loop": True, "cpu_user_s": 1.0, "cpu_sys_s": 0.5, "spool_error": None,
            "gil_enabled": True}
    other = {**base, "released": 4, "t0_unix_ns": 8, "interrupted": True,
             "extras": {"kernel_ns_per_unit": 6.0}, "slots_lost": 1, "has_loop": False,
             "cpu_sys_s": None, "spool_error": "disk full", "gil_enabled": False}
    cell = merge_spread([base, other], tmp_path, 7, 2)
    assert cell == {"done": True, "released": 7, "peak_live": 2, "t0_unix_ns": 8,
                    "interrupted": True, "extras": {"kernel_ns_per_unit": 5.0},
                    "slots_lost": 1, "has_loop": True, "cpu_user_s": 2.0, "cpu_sys_s": 0.5,
                    "spool_error": "disk full", "gil_enabled": False}
    assert merge_spread([base, replace_gil(base, None)], tmp_path, 6, 2)["gil_enabled"] is None
    assert merge_spread([base, base], tmp_path, 6, 2)["gil_enabled"] is True


def replace_gil(report: dict, value) -> dict:
    return {**report, "gil_enabled": value}


def test_a_queued_cell_cannot_be_spread():
    from harness.cell.backends.base import CellSpec, Producer

    text = small_scenario(backends="[asyncio]", workers=2)
    scenario = parse_scenario(text)
    key = plan_cells(scenario)[0]
    spec = CellSpec(scenario, replace(key, generators=2), generator=1, spread=True)
    spec.__dict__["load"] = scenario.load_for(key)  # the scenario itself refuses the split
    with pytest.raises(ValueError, match="cannot share one queue"):
        Producer(spec, StopFlag())
