"""One cell split across generator processes (`load.generators`): the key, what is refused,
the shared counter, and small runs on every backend that splits, checked from the Parquet."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest

from harness.cell.tickets import Counter, Shared
from harness.core.stats import sweep_peak
from harness.run.runner import run_scenarios
from harness.scenario.arrivals import schedule_for
from harness.scenario.load import usable_cpus
from harness.scenario.loader import parse_scenario
from harness.scenario.model import LoadedScenario, plan_cells
from harness.store.reader import read_run
from tests.conftest import small_scenario

SPLIT = ["threads", "asyncio", "uvloop"]


# --- the key -------------------------------------------------------------------------------

def test_generators_is_an_axis_with_auto_the_usable_cpus():
    text = small_scenario(extra_load=", generators: [1, auto]", backends="[asyncio]")
    if usable_cpus() == 1:
        pytest.skip("auto is 1 here: the list repeats")
    scenario = parse_scenario(text)
    assert scenario.load.generators == (1, usable_cpus())
    assert [key.generators for key in plan_cells(scenario)] == [1, usable_cpus()]
    assert parse_scenario(small_scenario(backends="[asyncio]")).load.generators == (1,)


@pytest.mark.parametrize(("load", "backends", "problem"), [
    (", generators: 2", "[processes]", "load.generators: 2 on processes"),
    (", generators: 2, workers: 2", "[asyncio]", "the queue and its workers live in one process"),
    (", generators: 8", "[asyncio]", "8 generators need at least as many slots (concurrency 4)"),
    (", generators: [2, 2]", "[asyncio]", "repeat"),
    (", generators: many", "[asyncio]", "must be a process count or auto"),
    (", generators: 0", "[asyncio]", "load.generators: must be >= 1 (got 0)"),
])
def test_what_cannot_be_split_is_refused_in_one_line_with_exit_2(
        write_scenario, cli, load, backends, problem):
    path = write_scenario(small_scenario(extra_load=load, backends=backends))
    result = cli("run", path, "--out", path.parent / "out")
    assert result.returncode == 2
    assert problem in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert str(path) in result.stderr and "Traceback" not in result.stderr


def test_the_race_runs_in_one_process(write_scenario, cli):
    path = write_scenario("name: r\nworkload: {type: race}\n"
                          "load: {requests: 4, concurrency: 2, generators: 2}\n"
                          "backends: [asyncio]\n")
    result = cli("run", path, "--out", path.parent / "out")
    assert result.returncode == 2 and "race workload: its counter lives in one process" in \
        result.stderr


# --- the counters --------------------------------------------------------------------------

def test_a_local_counter_hands_each_seq_once_up_to_its_limit_across_threads():
    counter = Counter(5000)
    taken: list[int] = []

    def take() -> None:
        while (seq := counter.take()) is not None:
            taken.append(seq)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == list(range(5000)) and counter.released() == 5000


_TAKER = """
import sys
from harness.cell.tickets import Shared
counter = Shared(sys.argv[1], 2).counter(int(sys.argv[2]))
print("ready", flush=True)
sys.stdin.readline()  # both start together
seqs = []
while (seq := counter.take()) is not None:
    seqs.append(seq)
print(",".join(map(str, seqs)))
"""


def test_the_shared_counter_hands_each_seq_once_across_processes(tmp_path):
    path = str(tmp_path / "shared")
    shared = Shared(path, 2, create=True)
    procs = [subprocess.Popen([sys.executable, "-c", _TAKER, path, "20000"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    for proc in procs:
        assert proc.stdout.readline() == "ready\n"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = [proc.communicate(timeout=120)[0].strip() for proc in procs]
    seqs = [int(s) for out in outputs for s in out.split(",") if s]
    assert sorted(seqs) == list(range(20000)) and shared.released == 20000
    assert all(outputs)  # both took some: neither waited for the other to finish


# --- small runs ----------------------------------------------------------------------------

RUN = f"""\
name: split
server:
  seed: 7
  endpoints:
    api: {{latency: {{dist: uniform, min: 5ms, max: 15ms}}, size: 64}}
workload: {{endpoint: api}}
load:
  - {{requests: 300, concurrency: 5, generators: 2}}
  - {{rate: 200/s, duration: 1s, warmup: 10, max_in_flight: 9, generators: 2}}
backends: [{", ".join(SPLIT)}]
seed: 5
"""


@pytest.fixture(scope="module")
def split_run(tmp_path_factory):
    scenario = parse_scenario(RUN)
    out = tmp_path_factory.mktemp("split")
    result = run_scenarios([LoadedScenario("split.yaml", RUN, scenario)], out=out)
    assert not result.failures
    tables = read_run(out)
    return scenario, tables["requests"].to_pandas(), tables["cells"].to_pandas(), \
        tables["loop_lag"].to_pandas()


@pytest.mark.parametrize("backend", SPLIT)
def test_a_closed_cell_split_in_two_takes_every_seq_once_from_one_counter(split_run, backend):
    _, requests, cells, lag = split_run
    rows = requests[(requests["backend"] == backend) & (requests["model"] == "closed")]
    cell = cells[(cells["backend"] == backend) & (cells["model"] == "closed")].iloc[0]
    assert sorted(rows["seq"]) == list(range(300)) and rows["ok"].all()
    assert (rows["generators"] == 2).all() and set(rows["generator"]) == {0, 1}
    assert cell["released"] == cell["requests"] == 300 and cell["generators"] == 2
    # concurrency 5 split 3 + 2: each generator's own gauge never saw more than its share
    for generator, share in ((0, 3), (1, 2)):
        mine = rows[rows["generator"] == generator]
        assert sweep_peak(mine["start_ns"], mine["end_ns"]) == share
        assert mine["in_flight"].max() == share
    assert cell["peak_in_flight"] == 5
    assert 1 <= cell["peak_in_flight_live"] <= cell["peak_in_flight"]
    if backend != "threads":  # each generator's loop was probed
        mine = lag[(lag["backend"] == backend) & (lag["model"] == "closed")]
        assert set(mine["generator"]) == {0, 1}


@pytest.mark.parametrize("backend", SPLIT)
def test_an_open_cell_split_in_two_keeps_the_scenarios_arrivals_exactly(split_run, backend):
    scenario, requests, cells, _ = split_run
    rows = requests[(requests["backend"] == backend) & (requests["model"] == "open")]
    key = next(k for k in plan_cells(scenario) if (k.backend, k.model) == (backend, "open"))
    schedule = schedule_for(scenario.load_for(key), scenario.arrival_seed, key).take()
    assert np.array_equal(np.sort(rows["scheduled_ns"].to_numpy()), schedule.at_ns)
    assert sorted(rows["seq"]) == list(range(len(schedule.at_ns)))
    # arrival k went to generator k mod 2
    order = np.argsort(schedule.at_ns, kind="stable")
    expected = dict(zip(schedule.at_ns[order], order % 2, strict=True))
    assert all(expected[at] == g for at, g in zip(rows["scheduled_ns"], rows["generator"],
                                                 strict=True))
    assert (rows["start_ns"] >= rows["scheduled_ns"]).all()


def test_a_generator_that_dies_leaves_its_requests_as_lost_rows_and_the_cell_goes_on(
        write_scenario):
    text = small_scenario(latency="50ms", requests=400, concurrency=4, backends="[asyncio]",
                          extra_load=", generators: 2")
    path = write_scenario(text)
    out = path.parent / "out"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(path), "--out",
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    victim = _second_generator(proc)
    spooled = out / ".spool" / "cell-0000" / "requests.g1.arrows"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (spooled.exists() and spooled.stat().st_size
                                               > 4096):
        time.sleep(0.05)  # until generator 1 has flushed rows: it is well into the cell
    victim.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    tables = read_run(out)
    rows, cell = tables["requests"].to_pandas(), tables["cells"].to_pandas().iloc[0]
    assert sorted(rows["seq"]) == list(range(cell["released"]))  # a row for every release
    lost = rows[rows["error"] == "lost"]
    assert len(lost) >= 1 and (lost["generator"] == 1).all()
    assert cell["released"] == 400 and cell["slots_lost"] == 1  # the others took the rest
    assert (rows[rows["generator"] == 0]["ok"]).all()


def _second_generator(proc: subprocess.Popen) -> psutil.Process:
    """The cell's child `python -m harness.cell` (generator 1), once it runs."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for child in psutil.Process(proc.pid).children(recursive=True):
            try:
                cmd = child.cmdline()
                parent = child.parent()
            except psutil.Error:
                continue
            if "harness.cell" in cmd and parent is not None and "harness.cell" in \
                    parent.cmdline():
                return child
        time.sleep(0.05)
    raise AssertionError("no generator process appeared")
