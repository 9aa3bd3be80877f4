"""The workloads of the seed's claims, each on each backend (small sizes), checked from the
Parquet files; telemetry (timeline, loop lag, CPU time) and the race's lost updates."""

import time

import pyarrow.parquet as pq
import pytest

from harness.output import read_metadata, read_run, read_table
from harness.runner import run_scenarios
from harness.scenario import LoadedScenario, parse_scenario
from harness.schema import REQUESTS_SCHEMA, VERSION_KEY
from harness.workloads.cpu import KERNELS, calibrate
from tests.conftest import BACKENDS


def run(tmp_path, text, **kwargs):
    out = tmp_path / "out"
    result = run_scenarios([LoadedScenario("w.yaml", text, parse_scenario(text))], out=out,
                           **kwargs)
    frames = {name: table.to_pandas() for name, table in read_run(out).items()}
    return result, out, frames


@pytest.mark.parametrize("kind", ["cpu", "cpu_release"])
def test_calibration_hits_its_target_roughly(kind):
    cal = calibrate(kind, 10_000_000)
    assert cal["units"] >= 1 and cal["target_ns"] == 10_000_000
    start = time.perf_counter_ns()
    KERNELS[kind](cal["units"])
    elapsed = time.perf_counter_ns() - start
    assert 1_000_000 < elapsed < 200_000_000  # a noisy shared machine: the order is what counts


@pytest.fixture(scope="module")
def cpu_runs(tmp_path_factory):
    """Both CPU workloads on every backend at concurrency 1 and 2, strategies on the loops."""
    runs = {}
    for kind in ("cpu", "cpu_release"):
        text = f"""
name: {kind}
workload: {{type: {kind}, duration: 5ms}}
load: {{requests: 12, concurrency: [1, 2], workers: 2}}
"""
        runs[kind] = run(tmp_path_factory.mktemp(kind), text)
    return runs


@pytest.mark.parametrize("kind", ["cpu", "cpu_release"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_cpu_workloads_on_every_backend(cpu_runs, kind, backend):
    result, out, frames = cpu_runs[kind]
    rows = frames["requests"][frames["requests"]["backend"] == backend]
    assert len(rows) == 12 * 2 and rows["ok"].all()
    assert rows["cpu_ns"].notna().all() and (rows["cpu_ns"] > 0).all()
    assert rows["server_delay_ns"].isna().all() and rows["io_ns"].isna().all()
    cells = frames["cells"][frames["cells"]["backend"] == backend]
    # CPU time comes in 10 ms clock ticks: a 60 ms cell may show one tick or none, so only
    # the presence is checked per cell, the amount over the whole run
    assert cells["cpu_user_s"].notna().all() and cells["cpu_sys_s"].notna().all()
    assert (frames["cells"]["cpu_user_s"] + frames["cells"]["cpu_sys_s"]).sum() > 0.1
    assert cells["peak_in_flight_server"].isna().all()  # no server for CPU work
    assert (cells.loc[cells["concurrency"] == 1, "speedup"] == 1.0).all()
    assert cells.loc[cells["concurrency"] == 2, "speedup"].notna().all()
    meta = read_metadata(out)
    assert meta["scenarios"][0]["calibration"]["kind"] == kind
    assert meta["scenarios"][0]["calibration"]["units"] >= 1


@pytest.fixture(scope="module")
def lag_run(tmp_path_factory):
    """20 ms kernels on the loops: inline (blocks the loop) against both pools."""
    text = """
name: lag
workload: {type: cpu, duration: 20ms}
load: {requests: 24, concurrency: 2}
backends: [asyncio, uvloop]
strategies: [inline, thread_pool, process_pool]
pool_size: 2
"""
    return run(tmp_path_factory.mktemp("lag"), text)


def test_offloaded_cpu_runs_in_a_pool_and_reports_where(lag_run):
    rows = lag_run[2]["requests"]
    loop_rows = rows[rows["backend"] == "asyncio"]
    slots = loop_rows.groupby("strategy")["slot"].agg(set)
    assert all(s.startswith("MainThread@") for s in slots["inline"])
    assert all(s.startswith("pool") for s in slots["thread_pool"])
    pids = {s.split("@")[1] for s in slots["process_pool"]}
    inline_pid = next(iter(slots["inline"])).split("@")[1]
    assert inline_pid not in pids  # other processes did the work
    assert (loop_rows.loc[loop_rows["strategy"] == "inline", "cpu_wait_ns"] == 0).all()


def test_inline_cpu_blocks_the_loop_and_the_probe_sees_it(lag_run, cpu_runs):
    cells = lag_run[2]["cells"].set_index(["backend", "strategy"])
    for backend in ("asyncio", "uvloop"):
        inline = cells.loc[(backend, "inline")]
        # 20 ms kernels back to back in the coroutine: the 10 ms probe wakes up to one late
        assert inline["loop_lag_p99_ns"] >= 10_000_000
        # an inline coroutine never lets a second request start: peak in flight stays 1
        assert inline["peak_in_flight"] == 1
        for pool in ("thread_pool", "process_pool"):  # offloaded: both requests in flight
            assert cells.loc[(backend, pool), "peak_in_flight"] == 2
    # How much lower the pools' lag is, is a timing target: bench/targets.py measures it.
    lag = lag_run[2]["loop_lag"]
    assert (lag["lag_ns"] >= 0).all() and len(lag) > 20
    others = cpu_runs["cpu"][2]["cells"]
    threads_like = others[~others["backend"].isin(["asyncio", "uvloop"])]
    assert threads_like["loop_lag_p99_ns"].isna().all()


def test_timeline_samples_every_cell(cpu_runs):
    _, _, frames = cpu_runs["cpu_release"]
    timeline, cells = frames["timeline"], frames["cells"]
    keys = ["backend", "concurrency", "repetition", "strategy", "variant"]
    assert len(timeline.groupby(keys)) == len(cells)
    for _, rows in timeline.groupby(keys):
        assert rows["t_ns"].is_monotonic_increasing
        assert rows["completed"].is_monotonic_increasing
        assert rows["completed"].iloc[-1] == 12  # the last sample is taken after the cell
        assert (rows["cpu_percent"] >= 0).all()
        assert (rows["ctx_switches_voluntary"] >= 0).all()
    loops = timeline[timeline["backend"].isin(["asyncio", "uvloop"])]
    assert loops["loop_lag_max_ns"].notna().all()
    assert timeline.loc[timeline["backend"] == "threads", "loop_lag_max_ns"].isna().all()


@pytest.fixture(scope="module")
def race_run(tmp_path_factory):
    text = """
name: race
workload: {type: race, variants: [no-lock, lock]}
load: {requests: 300, concurrency: 5, workers: 2}
backends: [threads, asyncio, uvloop]
"""
    return run(tmp_path_factory.mktemp("race"), text)


@pytest.mark.parametrize("backend", ["threads", "asyncio", "uvloop"])
def test_race_loses_updates_without_a_lock_and_none_with_one(race_run, backend):
    cells = race_run[2]["cells"]
    mine = cells[cells["backend"] == backend].set_index("variant")
    assert mine.loc["lock", "lost_updates"] == 0
    assert mine.loc["no-lock", "lost_updates"] >= 0
    if backend != "threads":  # tasks interleave at every await: the loss is deterministic
        assert mine.loc["no-lock", "lost_updates"] > 0
    assert (mine["requests"] == 300).all()


def test_race_rejects_processes():
    from harness.errors import ScenarioError

    with pytest.raises(ScenarioError, match="does not run on 'processes'"):
        parse_scenario("name: r\nworkload: {type: race}\nload: {requests: 5, concurrency: 2}\n")


@pytest.mark.parametrize("backend", BACKENDS)
def test_pipeline_with_sqlite_on_every_backend(tmp_path, backend):
    text = f"""
name: pipe
server:
  endpoints:
    infer: {{latency: 5ms}}
workload: {{type: pipeline, endpoint: infer, image: 64}}
load: {{requests: 16, concurrency: 3}}
backends: [{backend}]
strategies: [inline, thread_pool]
pool_size: 2
"""
    _, _, frames = run(tmp_path, text)
    rows = frames["requests"]
    assert rows["ok"].all() and len(rows) == 16 * (2 if backend in ("asyncio", "uvloop") else 1)
    for step in ("cpu_ns", "cpu_wait_ns", "io_ns", "db_ns"):
        assert rows[step].notna().all(), step
    assert (rows["io_ns"] >= rows["server_delay_ns"]).all()
    assert (rows["end_ns"] - rows["start_ns"] >= rows["cpu_ns"] + rows["io_ns"]).all()


def test_version_1_files_are_read_with_new_columns_filled(tmp_path):
    import pyarrow as pa

    v1 = ("run_id", "scenario", "backend", "concurrency", "repetition", "worker", "slot", "seq",
          "enqueued_ns", "scheduled_ns", "start_ns", "end_ns", "server_delay_ns", "ok", "status",
          "error", "in_flight")  # the columns of schema version 1
    v1_fields = [f for f in REQUESTS_SCHEMA if f.name in v1]
    schema = pa.schema(v1_fields).with_metadata({VERSION_KEY: b"1"})
    row = {f.name: [0] for f in v1_fields}
    row.update(run_id=["r"], scenario=["s"], backend=["threads"], worker=["w"], slot=["t"],
               ok=[True], error=[None])
    pq.write_table(pa.table(row, schema=schema), tmp_path / "requests.parquet")
    table = read_table(tmp_path / "requests.parquet", "requests")
    assert table.schema.names == REQUESTS_SCHEMA.names
    assert table.column("strategy").to_pylist() == ["inline"]
    assert table.column("variant").to_pylist() == ["default"]
    assert table.column("cpu_ns").null_count == 1
    assert table.column("error_detail").null_count == 1
    assert table.column("client").to_pylist() == ["standard"]


def test_a_dsn_password_never_reaches_the_results(tmp_path):
    import json

    from harness.meta import run_metadata

    text = ("name: pg\nserver: {endpoints: {infer: {}}}\n"
            "workload: {type: pipeline, endpoint: infer, database: postgres,\n"
            "           dsn: 'postgresql://bench:s3cr3t@127.0.0.1:5432/db'}\n"
            "load: {requests: 1, concurrency: 1}\n")
    other = text.replace("'postgresql://bench:s3cr3t@127.0.0.1:5432/db'",
                         "'host=127.0.0.1 user=bench password=s3cr3t dbname=db'")
    for source in (text, other):
        loaded = LoadedScenario("pg.yaml", source, parse_scenario(source))
        meta = json.dumps(run_metadata("r", [loaded]))
        assert "s3cr3t" not in meta and "***" in meta
        kept = json.loads(meta)["scenarios"][0]
        assert parse_scenario(kept["text"]).workload.dsn.count("***") == 1  # still readable
        assert kept["sha256"] == loaded.sha256
