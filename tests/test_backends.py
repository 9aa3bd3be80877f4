"""Every backend, written once and parametrized: one small run of all four, checked from the
Parquet files alone."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from harness.core.schema import CELLS_SCHEMA, META_KEY, REQUESTS_SCHEMA, SCHEMA_VERSION
from harness.core.stats import sweep_peak
from harness.run.runner import run_scenarios
from harness.scenario.loader import parse_scenario
from harness.scenario.model import LoadedScenario
from harness.store.reader import read_metadata, read_run
from tests.conftest import BACKENDS, small_scenario

REQUESTS, CONCURRENCY, WORKERS = 60, 4, 3


@pytest.fixture(scope="module", params=["slots", "queue"])
def run(tmp_path_factory, request):
    """Slots taking requests themselves (no load.workers), and the producer, queue and
    workers (load.workers: 3)."""
    workers = WORKERS if request.param == "queue" else None
    text = small_scenario(requests=REQUESTS, concurrency=CONCURRENCY, workers=workers)
    out = tmp_path_factory.mktemp("run")
    result = run_scenarios([LoadedScenario("small.yaml", text, parse_scenario(text))], out=out)
    tables = read_run(out)
    requests, cells = tables["requests"], tables["cells"]
    return result, text, requests, cells, out, request.param


def cell_rows(run, backend):
    df = run[2].to_pandas()
    return df[df["backend"] == backend]


def cell(run, backend):
    df = run[3].to_pandas()
    return df[df["backend"] == backend].iloc[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_completes_within_the_concurrency_limit(run, backend):
    rows = cell_rows(run, backend)
    assert len(rows) == REQUESTS and rows["ok"].all()
    assert sorted(rows["seq"]) == list(range(REQUESTS))
    assert (rows["status"] == 200).all() and rows["error"].isna().all()
    # the limit is never exceeded, and it is used
    assert sweep_peak(rows["start_ns"], rows["end_ns"]) == CONCURRENCY
    assert rows["in_flight"].max() == CONCURRENCY and rows["in_flight"].min() >= 1
    if run[5] == "queue" or backend == "processes":  # slot processes always dispatch
        assert rows["worker"].str.startswith("worker-").all()
        assert rows["worker"].nunique() == (WORKERS if run[5] == "queue" else 1)
    else:  # each slot took its own: the row's worker is the slot
        prefix = "thread-" if backend == "threads" else "slot-"
        assert rows["worker"].str.startswith(prefix).all()
        assert rows["worker"].nunique() == CONCURRENCY
        assert (rows["enqueued_ns"] == rows["scheduled_ns"]).all()
        assert (rows["scheduled_ns"] == rows["start_ns"]).all()
    assert (rows["enqueued_ns"] <= rows["scheduled_ns"]).all()
    assert (rows["scheduled_ns"] <= rows["start_ns"]).all()
    assert (rows["start_ns"] < rows["end_ns"]).all()
    # the client's interval contains the server's, so latency >= applied delay
    assert (rows["end_ns"] - rows["start_ns"] >= rows["server_delay_ns"]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_sweep_and_live_peaks_equal_server_not_above(run, backend):
    c = cell(run, backend)
    assert c["peak_in_flight"] == c["peak_in_flight_live"] == CONCURRENCY
    assert 1 <= c["peak_in_flight_server"] <= c["peak_in_flight"]
    assert c["requests"] == REQUESTS and c["errors"] == 0 and not c["interrupted"]
    assert c["released"] == REQUESTS and c["complete"] and c["slots_lost"] == 0
    assert c["makespan_ns"] == cell_rows(run, backend)["end_ns"].max()


@pytest.mark.parametrize("backend", BACKENDS)
def test_slots_name_what_executed_the_request(run, backend):
    slots = cell_rows(run, backend)["slot"]
    prefix = {"threads": "thread-", "processes": "process-"}.get(backend, "conn-")
    assert slots.str.startswith(prefix).all()
    assert 1 <= slots.nunique() <= CONCURRENCY


def test_every_backend_faces_the_same_server_delays(run):
    latency = parse_scenario(run[1]).server.endpoints["api"].latency
    expected = [latency.sample_ns(7, seq) for seq in range(REQUESTS)]
    for backend in BACKENDS:
        rows = cell_rows(run, backend).sort_values("seq")
        assert rows["server_delay_target_ns"].tolist() == expected, backend
        # the delay applied is never below the one drawn
        assert (rows["server_delay_ns"] >= rows["server_delay_target_ns"]).all(), backend


def test_schema_columns_and_types(run):
    _, _, requests, cells, out, _ = run
    assert requests.schema.remove_metadata() == REQUESTS_SCHEMA.remove_metadata()
    assert cells.schema.remove_metadata() == CELLS_SCHEMA.remove_metadata()
    assert requests.num_rows == REQUESTS * len(BACKENDS)
    assert cells.num_rows == len(BACKENDS)
    for name in ("enqueued_ns", "scheduled_ns", "start_ns", "end_ns"):
        assert requests.column(name).null_count == 0
    # one file per cell and kind, written once; the spool is gone
    for kind in ("requests", "cells", "loop_lag", "timeline"):
        assert len(list((out / kind).glob("cell-*.parquet"))) == len(BACKENDS), kind
    assert not (out / ".spool").exists()


def test_run_metadata(run):
    result, text, _, _, out, _ = run
    for meta in (read_metadata(out), *(
            json.loads(pq.read_schema(path).metadata[META_KEY])
            for path in (out / "requests").glob("*.parquet"))):
        assert meta["schema_version"] == SCHEMA_VERSION
        assert meta["run_id"] == result.run_id
        assert meta["scenarios"][0]["text"] == text
        assert len(meta["scenarios"][0]["sha256"]) == 64
        assert meta["python"]["version"] and "gil_enabled" in meta["python"]
        assert meta["packages"]["aiohttp"] and meta["cpu_count"] >= 1
    assert result.run_id[:8].isdigit() and result.run_id[8] == "T"


def test_sweep_peak_counts_touching_intervals_as_disjoint():
    assert sweep_peak([0, 10], [10, 20]) == 1
    assert sweep_peak([0, 5, 6], [10, 20, 7]) == 3
    assert sweep_peak([], []) == 0
    rng = np.random.default_rng(1)
    start = rng.integers(0, 1000, 500)
    end = start + rng.integers(1, 50, 500)
    brute = max(((start <= t) & (t < end)).sum() for t in range(1100))
    assert sweep_peak(start, end) == brute


@pytest.mark.parametrize("backend", BACKENDS)
def test_duration_bounds_a_cell_without_a_request_count(tmp_path, backend):
    text = small_scenario(latency="10ms", requests="null", concurrency=2,
                          backends=f"[{backend}]", extra_load=", duration: 1s")
    run_scenarios([LoadedScenario("d.yaml", text, parse_scenario(text))], out=tmp_path)
    tables = read_run(tmp_path)
    rows = tables["requests"].to_pandas()
    assert len(rows) > 20 and rows["ok"].all()
    # released = rows: the producer's look-ahead left in the queue was never released
    assert tables["cells"].column("released").to_pylist() == [len(rows)]
    assert sorted(rows["seq"]) == list(range(len(rows)))
    assert rows["scheduled_ns"].max() < 1.0e9  # nothing is scheduled after the duration …
    assert rows["end_ns"].max() < 3.0e9  # … and what was in flight finishes (loaded machine)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cell_freezes_its_heap_just_before_its_clock(tmp_path, monkeypatch, backend):
    """What was made before the clock (imports, sessions, the schedule) is out of the
    collector's way during the cell: the backend freezes the heap once, after its set-up and
    before its clock starts (a full collection of the imported heap stopped a loop 20-80 ms)."""
    import importlib

    from harness.cell.backends import backend_module
    from harness.cell.backends.base import StopFlag
    from harness.cell.main import run_cell
    from harness.core.job import CellJob
    from harness.core.keys import key_dict
    from harness.scenario.model import plan_cells

    text = ("name: frozen\nworkload: {type: fake, duration: 1ms}\n"
            f"load: {{requests: 6, concurrency: 2, workers: 2}}\nbackends: [{backend}]\n")
    key = plan_cells(parse_scenario(text))[0]
    module = importlib.import_module(backend_module(backend))
    calls = []

    def freeze() -> None:  # records whether the clock had started; frees nothing
        calls.append(getattr(instance[0], "gauge", None) is None)

    instance = []
    monkeypatch.setattr(module, "freeze_heap", freeze)
    from harness.cell import main as cell_main

    original = cell_main.get_backend
    monkeypatch.setattr(cell_main, "get_backend",
                        lambda name: instance.append(original(name)) or instance[0])
    spool = tmp_path / "spool"
    spool.mkdir()
    job = CellJob(text, key_dict(key), "", None, str(tmp_path), str(spool))
    result = run_cell(job, StopFlag(), report=lambda line: None)
    assert result["done"] and result["released"] == 6
    assert calls == [True]  # once, before the clock


def test_freeze_heap_moves_what_exists_to_the_permanent_generation():
    import gc

    from harness.cell.backends.base import freeze_heap

    try:
        freeze_heap()
        assert gc.get_freeze_count() > 1000  # the test process's imported heap
    finally:
        gc.unfreeze()
