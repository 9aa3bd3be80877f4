"""Cells on a Dask cluster: a scheduler (a LocalCluster without workers of its own, in this
process) and two single-threaded `dask worker` processes, each in its own working and temporary
folder, so nothing can pass through a shared file. One host: cells are serialised by the
per-host lock. No timing target is asserted here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from harness.core.errors import HarnessError
from harness.run.runner import RunUI, run_scenarios
from harness.scenario.loader import load_scenario
from harness.store.reader import read_run
from tests.conftest import small_scenario

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

WORKER = [sys.executable, "-m", "distributed.cli.dask_worker", "--nworkers", "1",
          "--nthreads", "1", "--resources", "cell=1", "--no-dashboard"]


class Workers:
    """The worker processes (each under its nanny, which restarts a killed one)."""

    def __init__(self, address: str, root: Path) -> None:
        self.address, self.root, self.procs = address, root, []

    def add(self) -> None:
        own = self.root / f"worker-{len(self.procs)}"
        (own / "tmp").mkdir(parents=True)
        # the package of this checkout, whatever the worker's folder (not an installed copy)
        env = dict(os.environ, TMPDIR=str(own / "tmp"),
                   PYTHONPATH=str(Path(__file__).resolve().parent.parent))
        self.procs.append(subprocess.Popen([*WORKER, self.address], cwd=own, env=env,
                                           stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL))

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # The scheduler looks at the locks' leases (10 s, set by the workers) twice a second.
    with dask.config.set({"distributed.scheduler.locks.lease-timeout": "2s",
                          "distributed.scheduler.locks.lease-validation-interval": "0.5s"}):
        local = distributed.LocalCluster(n_workers=0, processes=True, scheduler_port=0,
                                         dashboard_address=":0")
        client = distributed.Client(local)
        workers = Workers(local.scheduler_address, tmp_path_factory.mktemp("workers"))
        try:
            workers.add()
            workers.add()
            client.wait_for_workers(2, timeout=60)
            yield local.scheduler_address, client, workers
        finally:
            client.close()
            workers.stop()
            local.close()


def _scenario(tmp_path, text: str):
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return load_scenario(path)


def test_the_same_scenario_on_the_cluster_gives_the_same_cells_and_rows(tmp_path, cluster):
    address, _, _ = cluster
    text = small_scenario(requests=40, concurrency=4, backends="[threads, processes, asyncio]")
    local = run_scenarios([_scenario(tmp_path, text)], out=tmp_path / "local")
    remote = run_scenarios([_scenario(tmp_path, text)], out=tmp_path / "remote",
                           cluster=address)
    assert not local.failures and not remote.failures
    mine, theirs = read_run(tmp_path / "local"), read_run(tmp_path / "remote")
    keys = ["backend", "concurrency", "repetition", "requests", "complete"]
    assert (theirs["cells"].select(keys).to_pylist() == mine["cells"].select(keys).to_pylist())
    requests = theirs["requests"].to_pandas()
    for _, rows in requests.groupby("backend"):
        assert sorted(rows["seq"]) == list(range(40))  # every seq a row, once
    host = os.uname().nodename
    assert set(requests["host"]) == {host}
    assert set(theirs["cells"].column("host").to_pylist()) == {host}
    # no two cells of one host overlap
    cells = theirs["cells"].to_pandas().sort_values("started_unix_ns")
    starts, ends = cells["started_unix_ns"].to_numpy(), cells["finished_unix_ns"].to_numpy()
    assert np.all(starts[1:] >= ends[:-1])
    meta = (tmp_path / "remote" / "run.json").read_text()
    assert '"cluster"' in meta and host in meta


def test_an_unreachable_scheduler_is_one_line_within_seconds(tmp_path):
    loaded = _scenario(tmp_path, small_scenario(requests=5, backends="[asyncio]"))
    start = time.monotonic()
    with pytest.raises(HarnessError) as caught:
        run_scenarios([loaded], out=tmp_path / "out", cluster="tcp://127.0.0.1:9")
    assert time.monotonic() - start < 15
    message = str(caught.value)
    assert "\n" not in message and "cannot reach the scheduler" in message
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_worker_running_other_harness_sources_is_refused(tmp_path, cluster, monkeypatch):
    from harness.run import remote

    address, _, _ = cluster
    monkeypatch.setattr(remote, "_SOURCES", "another version")
    loaded = _scenario(tmp_path, small_scenario(requests=5, backends="[asyncio]"))
    with pytest.raises(HarnessError, match="runs other harness sources"):
        run_scenarios([loaded], out=tmp_path / "out", cluster=address)
    assert not (tmp_path / "out").exists()


def test_the_address_is_written_without_credentials():
    from harness.run.cluster import shown

    assert shown("tls://alice:s3cret@10.0.0.1:8786") == "tls://10.0.0.1:8786"
    assert shown("tcp://127.0.0.1:8786") == "tcp://127.0.0.1:8786"


def _worker_running_a_cell(client) -> int | None:
    """The pid of the worker process whose child is a cell process, if any."""
    for pid in client.run(os.getpid).values():
        try:
            for child in psutil.Process(pid).children(recursive=True):
                if "harness.cell" in " ".join(child.cmdline()):
                    return pid
        except psutil.Error:
            continue
    return None


class _Killer(RunUI):
    """Kills the worker running a cell once it has shipped some rows, `kills` times."""

    def __init__(self, client, kills: int) -> None:
        self.client, self.kills = client, kills
        self.killed = 0
        self.notes: list[str] = []
        self.started = 0
        self.events: list = []

    def cell_started(self, scenario, key, requests, cell_id=None) -> None:
        self.current = cell_id  # cells run side by side: the one started last is watched
        self.started += 1
        self.events.append((time.monotonic(), f"started rep {key.repetition}"))
        self._armed = key.repetition == 0 and self.killed < self.kills  # the first cell

    def cell_progress(self, completed: int, cell_id=None) -> None:
        if cell_id != self.current:
            return
        if getattr(self, "_armed", False) and completed >= 5:
            pid = _worker_running_a_cell(self.client)
            if pid is not None:
                self._armed = False
                self.killed += 1
                self.events.append((time.monotonic(), f"kill {pid}"))
                os.kill(pid, signal.SIGKILL)

    def note(self, line: str) -> None:
        self.events.append((time.monotonic(), line))
        self.notes.append(line)

    def cell_finished(self, cell: dict, cell_id=None) -> None:
        self.events.append((time.monotonic(), f"finished rep {cell['repetition']}"))


@pytest.mark.parametrize("kills", [1, 2])
def test_a_cell_lost_with_its_worker_is_retried_once_then_written_incomplete(
        tmp_path, cluster, kills):
    address, client, _ = cluster
    client.wait_for_workers(2, timeout=60)
    text = small_scenario(latency="100ms", requests=60, concurrency=2, backends="[asyncio]",
                          extra_load="").replace("backends:", "repeat: 2\nbackends:")
    ui = _Killer(client, kills)
    result = run_scenarios([_scenario(tmp_path, text)], out=tmp_path / "out", ui=ui,
                           cluster=address)
    t0 = ui.events[0][0] if ui.events else 0
    print("\n".join(f"{t - t0:6.1f} {what}" for t, what in ui.events))
    assert ui.killed == kills
    run = read_run(tmp_path / "out")
    cells = run["cells"].to_pandas().sort_values("repetition")
    assert len(cells) == 2  # the lost cell appears once; the run went on to the next
    requests = run["requests"].to_pandas()
    for _, rows in requests.groupby("repetition"):
        assert not rows["seq"].duplicated().any()  # the first attempt's rows were dropped
    assert sorted(requests[requests["repetition"] == 1]["seq"]) == list(range(60))
    first = cells.iloc[0]
    if kills == 1:
        assert bool(first["complete"]) and first["requests"] == 60
        assert not result.failures
    else:
        assert not bool(first["complete"]) and first["requests"] < 60
        assert any("lost with its worker" in f for f in result.failures), (result.failures,
                                                                          ui.notes)
    assert any("was lost" in note for note in ui.notes)
    # the scheduler holds no task of this run afterwards
    tasks = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks))
    assert not [t for t in tasks if result.run_id in str(t)]


def test_nothing_imports_dask_without_cluster():
    code = ("import sys, harness.cli, harness.run.runner, harness.saturate.probes; "
            "sys.exit('distributed' in sys.modules or 'dask' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


class _Interrupter(RunUI):
    """Sends this process SIGINT once the first cell has rows (the runner's handler, in the
    main thread, takes it as a user's Ctrl-C)."""

    sent = False

    def cell_progress(self, completed: int, cell_id=None) -> None:
        if not self.sent and completed >= 10:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)


def test_an_interrupt_stops_the_cluster_cells_gracefully_and_keeps_them(tmp_path, cluster):
    address, client, _ = cluster
    client.wait_for_workers(2, timeout=60)
    text = small_scenario(latency="100ms", requests=200, concurrency=2,
                          backends="[threads, asyncio]")
    ui = _Interrupter()
    result = run_scenarios([_scenario(tmp_path, text)], out=tmp_path / "out", ui=ui,
                           cluster=address)
    assert ui.sent and result.interrupted
    cells = read_run(tmp_path / "out")["cells"].to_pandas()
    assert len(cells) == 1  # the running cell kept; the other one never started
    assert 10 <= cells["requests"].iloc[0] < 200
    assert bool(cells["interrupted"].iloc[0])


def test_two_generators_of_one_cell_on_two_workers_make_one_merged_cell(tmp_path, cluster):
    address, client, _ = cluster
    client.wait_for_workers(2, timeout=60)
    text = small_scenario(requests=60, concurrency=4, backends="[asyncio, threads]",
                          extra_load=", generators: 2")
    result = run_scenarios([_scenario(tmp_path, text)], out=tmp_path / "out", cluster=address)
    assert not result.failures
    run = read_run(tmp_path / "out")
    cells = run["cells"].to_pandas()
    assert len(cells) == 2 and cells["complete"].all()
    assert (cells["requests"] == 60).all() and (cells["generators"] == 2).all()
    requests = run["requests"].to_pandas()
    for _, rows in requests.groupby("backend"):
        assert sorted(rows["seq"]) == list(range(60))  # the scenario's total, each seq once
        assert set(rows["generator"]) == {0, 1}
        assert rows["host"].notna().all()
    # one timeline per cell, its in flight the generators' sum: never above the limit
    timeline = run["timeline"].to_pandas()
    for _, rows in timeline.groupby("backend"):
        assert not rows["t_ns"].duplicated().any()
    assert (cells["peak_in_flight_live"] <= 4).all() and (cells["peak_in_flight_live"] > 2).all()
    meta = json.loads((tmp_path / "out" / "run.json").read_text())
    clocks = meta["cluster"]["clocks"]
    assert len(clocks) == 2 and all(len(c) == 2 for c in clocks.values())


def test_more_generators_than_workers_is_bad_input(tmp_path, cluster):
    address, _, _ = cluster
    text = small_scenario(requests=8, concurrency=4, backends="[asyncio]",
                          extra_load=", generators: 3")
    with pytest.raises(HarnessError, match="load.generators: 3 needs 3 workers"):
        run_scenarios([_scenario(tmp_path, text)], out=tmp_path / "out", cluster=address)
    assert not (tmp_path / "out").exists()


def test_a_body_file_travels_with_its_cell(tmp_path, cluster):
    address, _, _ = cluster
    body = tmp_path / "body.bin"
    body.write_bytes(bytes(range(256)) * 40)
    text = small_scenario(requests=10, concurrency=2, backends="[asyncio, threads]").replace(
        "workload: {endpoint: api}",
        f"workload: {{endpoint: api, method: POST, body: {{file: {body}}}}}")
    result = run_scenarios([_scenario(tmp_path, text)], out=tmp_path / "out", cluster=address)
    assert not result.failures
    requests = read_run(tmp_path / "out")["requests"].to_pandas()
    assert len(requests) == 20 and (requests["bytes_sent"] == 10240).all()


def test_the_analysis_takes_each_cells_host_cores_and_units():
    from harness.analysis.summary import _run_facts

    calibration = {"kind": "cpu", "target_ns": 5_000_000, "units": 10}
    meta = {"run_id": "r", "cpu_count": 2,
            "scenarios": [{"name": "s", "calibration": calibration}],
            "cluster": {"hosts": {
                "a": {"usable_cores": 2, "calibration": {"cpu:5000000": calibration}},
                "b": {"usable_cores": 8, "calibration": {"cpu:5000000": {"units": 30}}}}}}
    cores, units = _run_facts([meta])
    assert (cores["r"], cores["r", "a"], cores["r", "b"]) == (2, 2, 8)
    assert (units["r", "s"], units["r", "s", "a"], units["r", "s", "b"]) == (10, 10, 30)


def test_https_on_the_cluster_one_cell_spread_over_two_workers(tmp_path, cluster):
    """server.tls: the CA is made where the mock server starts (a worker) and reaches the
    generator on the other worker with the server's URL."""
    address, client, _ = cluster
    client.wait_for_workers(2, timeout=60)
    text = small_scenario(requests=40, concurrency=4, backends="[asyncio, threads]",
                          extra_load=", generators: 2, connect_rate: 0").replace(
        "  seed: 7\n", "  seed: 7\n  tls: true\n")
    result = run_scenarios([_scenario(tmp_path, text)], out=tmp_path / "out", cluster=address)
    assert not result.failures
    requests = read_run(tmp_path / "out")["requests"].to_pandas()
    assert len(requests) == 80 and requests["ok"].all(), requests["error"].value_counts()
    for _, rows in requests.groupby("backend"):  # each generator's connections, opened once
        connections = rows.groupby(["generator", "slot"]).ngroups
        assert rows["connect_ns"].notna().sum() == connections
