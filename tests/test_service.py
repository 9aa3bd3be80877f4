"""`service:`: a system under test the harness starts, measures and stops, with a tiny HTTP
service (tests/data/tiny_service.py) standing in for a real one."""

import re
import socket
from pathlib import Path

import pandas as pd
import psutil
import pytest

from harness.core.errors import ScenarioError
from harness.run.runner import run_scenarios
from harness.scenario.loader import parse_scenario, scenario_from_text
from harness.store.reader import read_run
from tests.conftest import BACKENDS, harness

TINY = Path(__file__).parent / "data" / "tiny_service.py"
SECRET = "s3cret-token-value"


def _scenario(backends=("asyncio",), requests=20, env="", restart="per_cell", server="",
              extra_args="", path="/") -> str:
    return f"""
name: svc
{server}
service:
  command: ["{{python}}", "{TINY}", "{{port}}", "{{cell}}"{extra_args}]
  env: {{TOKEN: {SECRET}{env}}}
  ready: /health
  restart: {restart}
workload: {{path: {path}}}
load: {{requests: {requests}, concurrency: 2}}
backends: [{", ".join(backends)}]
"""


def _run(tmp_path, text):
    result = run_scenarios([scenario_from_text(text, "svc.yaml")], out=tmp_path / "out")
    return result, read_run(tmp_path / "out")


def _ports(out: Path) -> list[int]:
    return [int(m) for f in sorted((out / "service").glob("*.out"))
            for m in re.findall(r"serving on (\d+)", f.read_text())]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_service_is_started_measured_and_stopped_with_nothing_left(tmp_path, backend):
    # enough requests for the service's CPU time to pass the kernel's 10 ms tick
    result, run = _run(tmp_path, _scenario([backend], requests=400))
    assert result.failures == []
    rows, cells = run["requests"].to_pandas(), run["cells"].to_pandas()
    assert len(rows) == 400 and rows["ok"].all() and set(rows["path"]) == {"/"}
    cell = cells.iloc[0]
    assert cell["service_cpu_s"] > 0 and pd.isna(cell["service_exit"])  # it lived on
    (port,) = _ports(tmp_path / "out")
    assert not _listening(port)
    assert not [p for p in psutil.process_iter(["cmdline"])
                if [str(TINY), str(port)] == (p.info["cmdline"] or [])[1:3]]


def test_its_environment_is_never_written(tmp_path):
    _run(tmp_path, _scenario())
    out = tmp_path / "out"
    assert "token ***" in (out / "service" / "cell-0000.err").read_text()
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_each_cell_gets_a_fresh_service_and_mock_server_unless_per_run(tmp_path):
    server = "server: {endpoints: {x: {latency: 1ms}}}"
    text = _scenario(["asyncio", "threads"], server=server, extra_args=', "{mock_url}"')
    _run(tmp_path / "a", text)
    logs = sorted((tmp_path / "a" / "out" / "service").glob("*.out"))
    mocks = [re.search(r"mock \['(http://127\.0\.0\.1:\d+)'\]", f.read_text())[1] for f in logs]
    assert len(logs) == 2 and len(set(mocks)) == 2  # a fresh mock server for each start
    result, run = _run(tmp_path / "b", _scenario(["asyncio", "threads"], server=server,
                                                 restart="per_run"))
    assert result.failures == [] and run["requests"].to_pandas()["ok"].all()
    kept = sorted(f.name for f in (tmp_path / "b" / "out" / "service").iterdir())
    assert kept == ["cell-0000.err", "cell-0000.out"]  # one start served both cells
    assert run["cells"].to_pandas()["service_cpu_s"].notna().all()


def test_a_service_that_cannot_start_is_one_line_and_exit_2_with_nothing_measured(tmp_path):
    path = tmp_path / "svc.yaml"
    path.write_text(_scenario(env=", FAIL_CELL: '0'"))
    result = harness("run", path, "-o", tmp_path / "out")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "svc.yaml" in lines[0] and "exit status 4" in lines[0]
    assert "refusing to start for this cell" in lines[0] and SECRET not in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_later_cell_whose_service_fails_fails_alone_and_the_run_goes_on(tmp_path):
    text = _scenario(["asyncio", "threads", "uvloop"], env=", FAIL_CELL: '1'")
    result, run = _run(tmp_path, text)
    assert len(result.failures) == 1 and "exit status 4" in result.failures[0]
    cells = run["cells"].to_pandas().set_index("backend")
    assert cells.loc["threads", "service_exit"] == 4 and cells.loc["threads", "requests"] == 0
    assert cells.loc[["asyncio", "uvloop"], "requests"].tolist() == [20, 20]


def test_a_service_that_dies_mid_cell_flags_it_and_the_next_cell_runs(tmp_path):
    path = tmp_path / "svc.yaml"
    path.write_text(_scenario(["asyncio", "threads"], requests=40,
                              env=", DIE_CELL: '0', DIE_AFTER: '10'"))
    result = harness("run", path, "-o", tmp_path / "out")
    assert result.returncode == 3, result.stderr
    run = read_run(tmp_path / "out")
    cells = run["cells"].to_pandas().set_index("backend")
    assert cells.loc["asyncio", "service_exit"] == 5
    assert pd.isna(cells.loc["threads", "service_exit"])
    rows = run["requests"].to_pandas()
    first = rows[rows["backend"] == "asyncio"]
    assert len(first) == 40 and 0 < first["ok"].sum() < 40  # every request a row
    assert rows[rows["backend"] == "threads"]["ok"].all()
    assert "service_died" in result.stdout


def test_path_lists_are_an_axis_with_a_path_key(tmp_path):
    result, run = _run(tmp_path, _scenario(path="[/a, /b]"))
    rows = run["requests"].to_pandas()
    assert sorted(run["cells"].to_pandas()["path"]) == ["/a", "/b"]
    assert rows.groupby("path").size().to_dict() == {"/a": 20, "/b": 20}


@pytest.mark.parametrize("change, problem", [
    ("target: http://127.0.0.1:9\n", "not both"),
    ("", "workload.path: required"),
    ("bad-placeholder", "unknown placeholder {nope}"),
    ("no-port", "must pass {port}"),
    ("mock", "server: required by the service's {mock_url}"),
])
def test_bad_service_blocks_are_one_line_naming_the_field(change, problem):
    text = _scenario()
    if change == "":
        text = text.replace("workload: {path: /}", "workload: {type: io}")
    elif change == "bad-placeholder":
        text = text.replace('"{cell}"', '"{nope}"')
    elif change == "no-port":
        text = text.replace('"{port}", ', "")
    elif change == "mock":
        text = text.replace('"{cell}"', '"{mock_url}"')
    else:
        text = change + text
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "svc.yaml")
    assert problem in str(info.value) and "\n" not in str(info.value)
    assert SECRET not in str(info.value)


def test_a_bad_env_placeholder_does_not_quote_the_secret_value():
    text = _scenario().replace(f"TOKEN: {SECRET}", f"TOKEN: '{SECRET}{{oops}}'")
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "svc.yaml")
    assert "service.env" in str(info.value) and "TOKEN" in str(info.value)
    assert SECRET not in str(info.value)


def test_an_image_body_is_the_same_seeded_jpeg_on_every_backend(tmp_path):
    pytest.importorskip("cv2")
    from harness.core.image import jpeg

    text = f"""
name: img
server: {{endpoints: {{up: {{latency: 1ms}}}}, seed: 7}}
workload: {{endpoint: up, method: POST, body: {{image: 64}}}}
load: {{requests: 6, concurrency: 2}}
backends: [{", ".join(BACKENDS)}]
"""
    _, run = _run(tmp_path, text)
    rows = run["requests"].to_pandas()
    size = len(jpeg(64, 7))
    assert size > 500 and rows["ok"].all() and (rows["bytes_sent"] == size).all()
    assert set(rows["backend"]) == set(BACKENDS)

