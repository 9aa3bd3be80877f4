"""Review of the Dask executor: cases test_cluster.py does not reach (a package version that
differs on a worker, a retry aimed at a host that has no worker left, a spread cell whose
generators were all lost)."""

from __future__ import annotations

import copy
import signal
from types import SimpleNamespace

import pytest

from harness.core.errors import HarnessError
from harness.run.runner import run_scenarios
from tests.conftest import small_scenario
from tests.test_cluster import _Killer, _scenario, cluster  # noqa: F401  (the fixture)

distributed = pytest.importorskip("distributed")


def test_a_package_version_that_differs_on_a_worker_is_one_line_exit_2(
        tmp_path, cluster, monkeypatch):  # noqa: F811
    """`get_versions(check=True)` only warns in current distributed: the mismatch must still
    end the run before anything is written."""
    from distributed import versions

    address, _, _ = cluster
    real = versions.get_versions

    def other_numpy(packages=None):  # the runner's side (and the in-process scheduler's)
        found = copy.deepcopy(real(packages))
        found["packages"]["numpy"] = "0.0-review"
        return found

    monkeypatch.setattr(versions, "get_versions", other_numpy)
    loaded = _scenario(tmp_path, small_scenario(requests=5, backends="[asyncio]"))
    with pytest.raises(HarnessError, match="packages differ") as caught:
        run_scenarios([loaded], out=tmp_path / "out", cluster=address)
    assert "\n" not in str(caught.value) and "numpy" in str(caught.value)
    assert not (tmp_path / "out").exists()


class _Hung(Exception):
    pass


def test_a_retry_aimed_at_a_host_without_workers_still_runs(tmp_path, cluster, monkeypatch):  # noqa: F811
    """The workers known at connect time include one on another machine that has gone since:
    the retry of a lost cell is aimed at that machine's address only and, with no worker
    there, must still run somewhere instead of waiting for ever."""
    from harness.run.cluster import Cluster

    address, client, _ = cluster
    client.wait_for_workers(2, timeout=60)
    checked = Cluster._check

    def with_a_gone_host(self, where):
        checked(self, where)
        self.workers["tcp://10.255.255.1:40000"] = "a-machine-gone-since"

    monkeypatch.setattr(Cluster, "_check", with_a_gone_host)

    def hung(signum, frame):
        raise _Hung("the retry never ran")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    try:
        text = small_scenario(latency="100ms", requests=60, concurrency=2, backends="[asyncio]")
        ui = _Killer(client, 1)
        result = run_scenarios([_scenario(tmp_path, text)], out=tmp_path / "out", ui=ui,
                               cluster=address)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert ui.killed == 1
    assert not result.failures


def test_a_spread_cell_whose_generators_were_all_lost_is_said(tmp_path):
    """Both generators' workers vanished before either started: the cell is neither written
    nor given up silently (the run would exit 0 with a cell missing)."""
    from harness.run.cluster import Attempt, Executor, Spread

    calls = []
    sink = SimpleNamespace(started=lambda *a: calls.append(("started", a)),
                           spread=lambda *a: calls.append(("spread", a)),
                           finished=lambda *a: calls.append(("finished", a)),
                           lost=lambda *a: None, progress=lambda *a: None)
    executor = Executor.__new__(Executor)
    executor.sink = sink
    order = SimpleNamespace(label="x-0000")
    group = Spread(order, 2)
    group.lost = True  # as Executor._lost marks it
    for g in range(2):
        executor._gather(Attempt(order, 1, f"t-g{g}", group=group, generator=g), None)
    assert calls, "the lost spread cell reached neither the writer nor the failures"
    assert calls[0][0] == "spread" and "lost" in calls[0][1][1][0]["failure"]
    # skipped by an interrupt before it started (nothing lost): nothing to say or write
    calls.clear()
    group = Spread(order, 2)
    for g in range(2):
        executor._gather(Attempt(order, 1, f"t-g{g}", group=group, generator=g), None)
    assert calls == []
