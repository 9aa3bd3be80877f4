"""`harness run URL -n N -c C`: a one-line run, its scenario made from the options, validated
like a file's and kept in run.json, from which the same cells run again."""

from __future__ import annotations

import json

import pytest

from harness.core.errors import HarnessError
from harness.mock.process import ServerProcess
from harness.scenario.loader import scenario_from_text
from harness.scenario.model import plan_cells
from harness.scenario.quick import Quick, scenario_text
from harness.store.reader import read_run
from tests.conftest import small_scenario


@pytest.fixture(scope="module")
def server():
    with ServerProcess(small_scenario(latency="5ms")) as process:
        yield process.url


def test_the_defaults_are_hey_like():
    loaded = scenario_from_text(scenario_text("http://127.0.0.1:9/api?x=1", Quick()), "url")
    scenario = loaded.scenario
    assert scenario.name == "127.0.0.1" and scenario.target == "http://127.0.0.1:9"
    assert scenario.backends == ("uvloop",) and scenario.workload.client == ("lean",)
    assert scenario.workload.path == ("/api?x=1",)
    (key,) = plan_cells(scenario)
    assert (key.concurrency, scenario.load_for(key).requests) == (50, 200)


def test_an_open_one_line_run():
    quick = Quick(rate="100/s", duration="2s", concurrency=20, method="post",
                  headers=("X-Token: abc",), clients=("standard",))
    scenario = scenario_from_text(scenario_text("http://127.0.0.1:9/", quick), "url").scenario
    (key,) = plan_cells(scenario)
    assert (key.model, key.rate_per_s, key.concurrency) == ("open", 100.0, 20)
    assert scenario.workload.method == "POST" and scenario.workload.headers == {"X-Token": "abc"}


def test_a_one_line_run_is_kept_and_runs_again_to_the_same_cells(cli, server, tmp_path):
    out = tmp_path / "out"
    found = cli("run", f"{server}/api", "-n", "20", "-c", "4", "-b", "asyncio", "-b",
                "threads", "--client", "standard", "-o", out)
    assert found.returncode == 0, found.stderr
    rows = read_run(out)["requests"]
    assert rows.num_rows == 40 and set(rows["backend"].to_pylist()) == {"asyncio", "threads"}
    (entry,) = json.loads((out / "run.json").read_text())["scenarios"]
    assert entry["path"] == f"{server}/api"
    saved = tmp_path / "again.yaml"
    saved.write_text(entry["text"])
    again = cli("run", saved, "-o", tmp_path / "again")
    assert again.returncode == 0, again.stderr
    first = read_run(out)["cells"].select(["backend", "concurrency", "requests"]).to_pylist()
    second = read_run(tmp_path / "again")["cells"].select(
        ["backend", "concurrency", "requests"]).to_pylist()
    assert first == second


@pytest.mark.parametrize(("args", "message"), [
    (["scenarios/gil_io.yaml", "-n", "5"], "--requests: only for a URL"),
    (["http://10.0.0.1/x", "-n", "5"], "not a loopback address; pass --allow-remote"),
    (["http://127.0.0.1:9/x", "--header", "nocolon"], "--header 'nocolon': expected"),
    (["http://127.0.0.1:9/x", "--rate", "fast"], "load.rate"),
])
def test_a_bad_one_line_run_is_one_line(cli, args, message):
    found = cli("run", *args)
    assert found.returncode == 2 and message in found.stderr
    assert len(found.stderr.strip().splitlines()) == 1


def test_a_header_without_a_colon_is_refused_before_any_run():
    with pytest.raises(HarnessError):
        scenario_text("http://127.0.0.1:9/", Quick(headers=("bad",)))
