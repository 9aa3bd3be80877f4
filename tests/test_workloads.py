"""The workloads of the seed's claims, each on each backend (small sizes), checked from the
Parquet files; telemetry (timeline, loop lag, CPU time) and the race's lost updates."""

import asyncio
import time
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from harness.analysis.summary import load_runs, summarize
from harness.core.kernels import KERNELS, calibrate, kernel_ns_per_unit, mean_ns_per_unit
from harness.core.offload import Offload
from harness.core.schema import REQUESTS_SCHEMA, VERSION_KEY
from harness.run.runner import run_scenarios
from harness.scenario.loader import parse_scenario
from harness.scenario.model import LoadedScenario
from harness.store.reader import read_metadata, read_run, read_table
from tests import pool_probe
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
    start = time.thread_time_ns()  # CPU time, as calibrated: a busy machine does not stretch it
    KERNELS[kind](cal["units"])
    elapsed = time.thread_time_ns() - start
    assert 5_000_000 < elapsed < 20_000_000  # within 0.5× to 2× of the target


# Each cell 24 steps of 10 ms of CPU, 0.24 s: CPU time comes in 10 ms clock ticks, so a cell
# has enough of them to be checked on its own.
CPU_STEPS, CPU_STEP = 24, "10ms"


@pytest.fixture(scope="module")
def cpu_runs(tmp_path_factory):
    """Both CPU workloads on every backend at concurrency 1 and 2, strategies on the loops."""
    runs = {}
    for kind in ("cpu", "cpu_release"):
        text = f"""
name: {kind}
workload: {{type: {kind}, duration: {CPU_STEP}}}
load: {{requests: {CPU_STEPS}, concurrency: [1, 2], workers: 2}}
"""
        runs[kind] = run(tmp_path_factory.mktemp(kind), text)
    return runs


@pytest.mark.parametrize("kind", ["cpu", "cpu_release"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_cpu_workloads_on_every_backend(cpu_runs, kind, backend):
    result, out, frames = cpu_runs[kind]
    rows = frames["requests"][frames["requests"]["backend"] == backend]
    assert len(rows) == CPU_STEPS * 2 and rows["ok"].all()
    assert rows["cpu_ns"].notna().all() and (rows["cpu_ns"] > 0).all()
    assert rows["server_delay_ns"].isna().all() and rows["io_ns"].isna().all()
    cells = frames["cells"][frames["cells"]["backend"] == backend]
    meta = read_metadata(out)
    calibration = meta["scenarios"][0]["calibration"]
    assert calibration["kind"] == kind
    units = calibration["units"]
    assert units >= 1
    # Each cell's own CPU time, its process tree's, against its steps' CPU as calibrated
    # (within 0.5x-2x: test_calibration_hits_its_target_roughly), less what the sampler may
    # miss (the start before its first reading, under a 10 ms tick per process). Beside two
    # CPU hogs, 0.83x-1.8x of it was seen, and 0.38x once in CI beside the cluster tests'
    # workers (the calibration, earlier, ran slower than the cell); a backend that reports 0,
    # or misses its slot or pool processes, gets a few ticks at most (under 0.1x).
    steps_cpu_s = CPU_STEPS * calibration["target_ns"] / 1e9
    cpu_s = cells["cpu_user_s"] + cells["cpu_sys_s"]
    assert cpu_s.notna().all() and (cpu_s > 0.25 * steps_cpu_s).all(), cpu_s.tolist()
    assert cells["peak_in_flight_server"].isna().all()  # no server for CPU work
    # Each cell measured its own kernel speed before its clock: ns per *unit*, so one
    # request's worth (units × it) is of the order of the request's own CPU step at 1.
    assert (cells["kernel_ns_per_unit"] > 0).all()
    one = cells[cells["concurrency"] == 1].iloc[0]
    step = rows.loc[rows["concurrency"] == 1, "cpu_ns"].median()
    assert 0.3 < step / (one["kernel_ns_per_unit"] * units) < 3
    # Speedups come from the analysis only, from normalised rates.
    summary = summarize(load_runs([out]))
    mine = summary[summary["backend"] == backend].set_index("concurrency")
    assert mine.loc[1, "speedup"] == 1.0
    assert mine.loc[2, "speedup"] == pytest.approx(
        mine.loc[2, "normalised_rate"] / mine.loc[1, "normalised_rate"])
    assert "speedup" not in cells.columns


def test_process_pools_are_warmed_with_the_real_kernel_in_every_worker():
    """Each worker of a process pool imports and runs the real kernel before the clock (its
    speed comes back, one per worker), so no first task pays for imports with the clock
    running."""
    async def go():
        offload = Offload("process_pool", 3)
        speeds = await offload.start(kernel_ns_per_unit, "cpu", 2000)
        loop = asyncio.get_running_loop()
        seen = await asyncio.gather(*(loop.run_in_executor(
            offload.pool, pool_probe.loaded, "harness.core.kernels") for _ in range(12)))
        offload.close()
        return speeds, seen

    speeds, seen = asyncio.run(go())
    assert len(speeds) == 3 and all(s > 0 for s in speeds)
    assert all(loaded for _, loaded in seen)  # already imported when the first task came
    assert len({pid for pid, _ in seen}) <= 3


def test_pool_workers_measure_their_speed_one_at_a_time():
    """Measured together, 50 workers on 2 cores would each read 25 × slower: the warm-up runs
    in one worker at a time."""
    async def go():
        offload = Offload("process_pool", 3)
        found = await offload.start(pool_probe.interval)
        offload.close()
        return sorted(found)

    spans = asyncio.run(go())
    assert len(spans) == 3
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:], strict=False))


def test_processes_speed_is_their_mean_speed():
    # two processes at 10 and 30 ns/unit do 1/10 + 1/30 units per ns together: 15 ns/unit each
    assert mean_ns_per_unit([10.0, 30.0]) == pytest.approx(15.0)
    assert mean_ns_per_unit([None, 20.0]) == 20.0 and mean_ns_per_unit([None]) is None


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
    rows = lag_run[2]["requests"]
    for backend in ("asyncio", "uvloop"):
        inline = cells.loc[(backend, "inline")]
        # Kernels back to back in the coroutine: the 10 ms probe wakes up to one step late.
        # Against the step as it ran (a run calibrated on a busy machine gets shorter steps
        # than its 20 ms), so a loaded machine cannot make the bound wrong.
        step_ns = rows.loc[(rows["backend"] == backend) & (rows["strategy"] == "inline"),
                           "cpu_ns"].median()
        assert inline["loop_lag_p99_ns"] >= 0.5 * step_ns
        # an inline coroutine never lets a second request start: peak in flight stays 1
        assert inline["peak_in_flight"] == 1
        for pool in ("thread_pool", "process_pool"):  # offloaded: both requests in flight
            assert cells.loc[(backend, pool), "peak_in_flight"] == 2
    # How much lower the pools' lag is, is a timing target: bench/targets.py measures it.
    lag = lag_run[2]["loop_lag"]
    assert len(lag) > 20
    # every cell, process pools included (their workers' mean speed), measured its kernel
    assert lag_run[2]["cells"]["kernel_ns_per_unit"].notna().all()
    others = cpu_runs["cpu"][2]["cells"]
    threads_like = others[~others["backend"].isin(["asyncio", "uvloop"])]
    assert threads_like["loop_lag_p99_ns"].isna().all()


@pytest.mark.parametrize("backend", ["asyncio", "uvloop"])
def test_loop_lag_is_measured_alike_on_both_loops_and_never_clipped(monkeypatch, backend):
    """lag = wake − (sleep start + 10 ms), signed: a timer that fires early shows as a
    negative lag on either loop, not as 0 on one of them."""
    import itertools

    from harness.cell.backends import aio, get_backend

    probe = get_backend(backend)
    clock = itertools.chain([0, 9_500_000, 20_000_000, 35_000_000], itertools.repeat(10**12))
    monkeypatch.setattr(aio, "now_ns", lambda: next(clock))

    async def go():
        task = asyncio.create_task(probe._probe(0))
        while len(probe.lag_samples) < 2:
            await asyncio.sleep(0.001)
        due = probe.lag_due_ns
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return due

    with asyncio.Runner(loop_factory=probe.loop_factory) as runner:
        due = runner.run(go())
    assert probe.lag_samples[:2] == [(9_500_000, -500_000), (35_000_000, 5_000_000)]
    assert due is not None and probe.lag_due_ns is None  # stopped: no lag in progress


def test_timeline_shows_the_lag_in_progress_of_a_blocked_loop(monkeypatch):
    """A loop blocked for longer than a sample interval cannot wake its probe: the timeline
    takes the lag in progress (now − the probe's due time), not 0."""
    from harness.cell import sampler as sampler_module
    from harness.cell.sampler import Sampler

    backend = SimpleNamespace(gauge=SimpleNamespace(in_flight=1, t0_ns=0), completed=0,
                              lag_samples=[(50_000_000, 2_000_000)], lag_due_ns=None)
    sampler = Sampler(backend)
    monkeypatch.setattr(sampler_module, "now_ns", lambda: 1_000_000_000)
    totals = (0.0, 0.0, 0, 0)
    sampler._append(100_000_000, 100_000_000, totals, totals)  # a sample came: 2 ms
    backend.lag_due_ns = 700_000_000  # due 300 ms ago: the loop is blocked
    sampler._append(200_000_000, 100_000_000, totals, totals)
    backend.lag_due_ns = 1_005_000_000  # asleep, not due yet
    sampler._append(300_000_000, 100_000_000, totals, totals)
    assert sampler.columns["loop_lag_max_ns"] == [2_000_000, 300_000_000, 0]


@pytest.mark.parametrize("kind", ["cpu", "cpu_release"])
def test_timeline_samples_every_cell(cpu_runs, kind):
    _, _, frames = cpu_runs[kind]
    timeline, cells = frames["timeline"], frames["cells"]
    keys = ["backend", "concurrency", "repetition", "strategy", "variant"]
    assert len(timeline.groupby(keys)) == len(cells)
    for _, rows in timeline.groupby(keys):
        assert rows["t_ns"].is_monotonic_increasing
        assert rows["completed"].is_monotonic_increasing
        assert rows["completed"].iloc[-1] == CPU_STEPS  # the last sample is after the cell
        # Per sample a tick may or may not fall in its 100 ms; over a cell of 0.24 s of work,
        # some must.
        assert (rows["cpu_percent"] >= 0).all() and rows["cpu_percent"].sum() > 0
        switches = rows[["ctx_switches_voluntary", "ctx_switches_involuntary"]]
        assert (switches >= 0).all().all() and switches.sum().sum() > 0
        # The sampler's thread sleeps once per sample (its last wait may find the cell over):
        # every thread of the cell's process counts, not its main thread alone, which on a
        # loop running CPU inline never sleeps.
        assert rows["ctx_switches_voluntary"].sum() >= len(rows) - 1
    loops = timeline[timeline["backend"].isin(["asyncio", "uvloop"])]
    assert loops["loop_lag_max_ns"].notna().all()
    assert timeline.loc[timeline["backend"] == "threads", "loop_lag_max_ns"].isna().all()


@pytest.fixture(scope="module")
def race_run(tmp_path_factory):
    text = """
name: race
workload: {type: race, variants: [no-lock, lock]}
load: {requests: 300, concurrency: [1, 5], workers: 2}
backends: [threads, asyncio, uvloop]
"""
    return run(tmp_path_factory.mktemp("race"), text)


@pytest.mark.parametrize("backend", ["threads", "asyncio", "uvloop"])
def test_race_loses_updates_without_a_lock_and_none_with_one(race_run, backend):
    cells = race_run[2]["cells"]
    mine = cells[cells["backend"] == backend].set_index(["concurrency", "variant"])
    assert mine.loc[(5, "lock"), "lost_updates"] == 0
    # one request at a time has nobody to race: nothing is lost even without a lock
    assert mine.loc[(1, "no-lock"), "lost_updates"] == 0
    if backend != "threads":  # tasks interleave at every await: the loss is deterministic
        assert mine.loc[(5, "no-lock"), "lost_updates"] > 0
    assert (mine["requests"] == 300).all()


def test_race_rejects_processes():
    from harness.core.errors import ScenarioError

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

    from harness.store.meta import run_metadata

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


def test_version_3_cells_lose_their_speedup_and_gain_a_null_kernel_speed(tmp_path):
    import pyarrow as pa

    from harness.core.schema import CELLS_SCHEMA

    v3_fields = [f for f in CELLS_SCHEMA if f.name != "kernel_ns_per_unit"]
    v3_fields.insert(v3_fields.index(CELLS_SCHEMA.field("server_cpu_s")),
                     pa.field("speedup", pa.float64()))
    schema = pa.schema(v3_fields).with_metadata({VERSION_KEY: b"3"})
    zero = {pa.string(): "x", pa.bool_(): False, pa.float64(): 0.0}
    row = {f.name: [zero.get(f.type, 0)] for f in v3_fields}
    row.update(run_id=["r"], scenario=["s"], backend=["threads"], strategy=["inline"],
               variant=["default"], speedup=[1.6], interrupted=[False], complete=[True],
               cpu_user_s=[0.0], cpu_sys_s=[0.0], server_cpu_s=[None])
    pq.write_table(pa.table(row, schema=schema), tmp_path / "cells.parquet")
    table = read_table(tmp_path / "cells.parquet", "cells")
    assert table.schema.names == CELLS_SCHEMA.names and "speedup" not in table.schema.names
    assert table.column("kernel_ns_per_unit").null_count == 1


def test_a_process_pool_warms_up_with_a_full_size_tensor(tmp_path):
    """The pipeline's warm-up result (its tensor, ~190 KB at 256 px) outgrows a pipe's buffer:
    the pool must still start (it once deadlocked at its barrier)."""
    text = ("name: pp\nserver: {endpoints: {infer: {latency: 2ms}}}\n"
            "workload: {type: pipeline, endpoint: infer, image: 256}\n"
            "load: {requests: 8, concurrency: 2}\nbackends: [asyncio]\n"
            "strategies: [process_pool]\n")
    _, _, frames = run(tmp_path, text)
    assert len(frames["requests"]) == 8 and frames["requests"]["ok"].all()
