"""The interpreter axis: specs, finding interpreters (probed, never trusted), worker
environments, the `python` key and `gil_enabled`, cells skipped where a library has no wheel,
and runs across interpreters end to end (pyenv's 3.12 and the project's free-threaded build
where this machine has them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from harness.analysis.summary import interpreters, summarize
from harness.core.errors import HarnessError
from harness.core.keys import CellKey, key_label, running_python
from harness.run import workers
from harness.run.lineup import Lineup
from harness.run.pythons import Finder, Interpreter, resolve_all, running
from harness.scenario.interpreters import parse_spec, parse_specs
from harness.scenario.loader import parse_wire, scenario_from_text, wire_text
from harness.store.reader import legacy_pythons
from tests import synthetic
from tests.conftest import harness

ROOT = Path(__file__).resolve().parents[1]
CPU = textwrap.dedent("""\
    name: interp
    workload: {type: cpu, duration: 2ms}
    load: {requests: 6, concurrency: [1, 2]}
    backends: [threads, asyncio]
    """)


# ---- specs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text, fields", [
    ("3.12", {"version": "3.12", "free_threaded": False}),
    ("3.14t", {"version": "3.14", "free_threaded": True}),
    ("ft", {"own": True, "free_threaded": True, "gil": False}),
    ("ft-gil?", {"own": True, "gil": True, "optional": True}),
    ("/opt/py/bin/python3", {"path": "/opt/py/bin/python3"}),
    ("current", {"current": True}),
])
def test_a_spec_is_a_version_a_path_current_ft_or_ft_gil(text, fields):
    spec = parse_spec(text)
    assert {k: getattr(spec, k) for k in fields} == fields
    assert spec.name == text.removesuffix("?")


@pytest.mark.parametrize("text", ["python", "3", "3.9", "2.7", "ft-nogil", "", 3.12])
def test_anything_else_is_refused_in_one_line(text):
    with pytest.raises(ValueError) as info:
        parse_spec(text)
    assert "\n" not in str(info.value)


def test_the_same_spec_twice_is_refused():
    with pytest.raises(ValueError, match="named twice"):
        parse_specs(["3.12", "3.12?"])


def test_a_scenario_with_a_bad_interpreter_names_the_field(write_scenario):
    path = write_scenario(CPU + "interpreters: [3.12, pypy]\n")
    result = harness("validate", path)
    assert result.returncode == 2
    assert "interpreters" in result.stderr and "pypy" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# ---- finding interpreters ------------------------------------------------------------------


def _fake_python(path: Path, minor: int, free: bool, status: int = 0) -> Path:
    """An executable that answers the probe as CPython 3.<minor> would (or fails, as a pyenv
    shim without that version exits 127)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    facts = json.dumps({"version": f"3.{minor}.1", "implementation": "CPython", "minor": minor,
                        "major": 3, "free_threaded": free, "config_args": "--disable-gil"
                        if free else "", "compiler": "GCC"})
    path.write_text(f"#!/bin/sh\necho '{facts}'\nexit {status}\n")
    path.chmod(0o755)
    return path


def test_ft_is_the_projects_own_free_threaded_build(tmp_path):
    built = _fake_python(tmp_path / ".pythons" / "cpython-3.13.2t" / "bin" / "python3.13t", 13,
                         True)
    found, notes = resolve_all(("ft", "ft-gil"), "--python {text}", Finder(tmp_path))
    assert [(i.tag, i.executable, i.gil) for i in found] == [
        ("3.13t", str(built), False), ("3.13t-gil", str(built), True)]
    assert notes == []


def test_an_absent_optional_interpreter_is_a_note_and_a_required_one_exit_2(tmp_path):
    found, notes = resolve_all(("current", "ft?"), "--python {text}", Finder(tmp_path))
    assert [i.tag for i in found] == [running_python()] and len(notes) == 1
    assert "ft" in notes[0]
    with pytest.raises(HarnessError, match="make python-ft"):
        resolve_all(("ft",), "--python {text}", Finder(tmp_path))


def test_a_candidate_that_fails_its_probe_is_skipped(tmp_path):
    """A pyenv shim for a version it does not have exits 127: never trusted."""
    shim = _fake_python(tmp_path / "shim" / "python3.12", 12, False, status=127)
    with pytest.raises(HarnessError, match="does not run"):
        resolve_all((str(shim),), "--python {text}", Finder(tmp_path))


def test_two_names_for_one_interpreter_are_refused(tmp_path):
    with pytest.raises(HarnessError, match="same interpreter"):
        resolve_all(("current", sys.executable), "--python {text}", Finder(tmp_path))


def test_two_interpreters_with_one_python_key_are_refused(tmp_path):
    a = _fake_python(tmp_path / "a" / "python3.12", 12, False)
    b = _fake_python(tmp_path / "b" / "python3.12", 12, False)
    with pytest.raises(HarnessError, match="two interpreters of Python 3.12"):
        resolve_all((str(a), str(b)), "--python {text}", Finder(tmp_path))


def test_the_gil_is_what_the_spec_says_whatever_the_shell_has():
    base = {"PYTHON_GIL": "0", "KEEP": "1"}
    plain = running()
    assert "PYTHON_GIL" not in plain.environ(base) and plain.environ(base)["KEEP"] == "1"
    forced = Interpreter("ft-gil", "3.13t-gil", "x", "3.13.1", True, True, "", "", False)
    assert forced.environ(base)["PYTHON_GIL"] == "1"


# ---- worker environments and what they can run -----------------------------------------------


def test_the_cells_requirements_are_split_into_required_and_optional():
    required, optional = workers.requirements()
    assert {r.split(">")[0] for r in required} == {"numpy", "pyarrow", "pydantic", "psutil"}
    assert "uvloop>=0.19" in optional and not any("pandas" in r for r in required + optional)


def test_a_cell_needs_its_loop_its_client_and_its_driver():
    scenario = scenario_from_text(textwrap.dedent("""\
        name: n
        server: {endpoints: {api: {latency: 1ms}}}
        workload: {endpoint: api, client: [standard, lean]}
        load: {requests: 1, concurrency: 1}
        """)).scenario

    def needs(backend, client):
        return workers.needs(CellKey(backend, 1, 0, client=client), scenario)

    assert needs("uvloop", "standard") == ("uvloop", "aiohttp")
    assert needs("asyncio", "lean") == ("httptools",)
    assert needs("threads", "standard") == ()


def test_cells_whose_library_is_missing_are_skipped_with_a_note():
    item = scenario_from_text(CPU.replace("[threads, asyncio]", "[threads, uvloop]"))
    here = running()
    bare = Interpreter("ft", "3.13t", "x", "3.13.1", True, False, "", "", False)
    lineup = Lineup({here.tag: workers.Worker(here, sys.executable),
                     "3.13t": workers.Worker(bare, "x", frozenset())})
    notes = []
    cells = lineup.plan(item, note=notes.append)
    assert {(k.python, k.backend) for k in cells} == {
        (here.tag, "threads"), (here.tag, "uvloop"), ("3.13t", "threads")}
    assert len(notes) == 1 and "uvloop" in notes[0] and "3.13t" in notes[0]
    assert lineup.notes == [notes[0].split(": ", 1)[1]]


def test_a_failed_install_is_one_line_naming_its_log(tmp_path, monkeypatch):
    python312 = _pyenv("3.12")
    bad = tmp_path / "requirements.txt"
    bad.write_text("harness-no-such-package-anywhere==0.0.1\n")
    monkeypatch.setattr(workers, "REQUIREMENTS", bad)
    interpreter = resolve_all((python312,), "--python {text}", Finder(tmp_path))[0][0]
    with pytest.raises(HarnessError) as info:
        workers.prepare(interpreter, tmp_path)
    message = str(info.value)
    assert "\n" not in message and "no wheels" in message and ".log" in message
    assert Path(message.rsplit("see ", 1)[1].rstrip(")")).exists()


def _pyenv(version: str) -> str:
    """pyenv's interpreter of that version, probed; the test skips where it is absent."""
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        root = os.environ.get("PYENV_ROOT", "")
    found = sorted(Path(root or "/nonexistent", "versions").glob(f"{version}.*/bin/python"
                                                                  f"{version}"))
    for path in reversed(found):
        probe = subprocess.run([str(path), "-c", "pass"], capture_output=True)
        if probe.returncode == 0:
            return str(path)
    pytest.skip(f"no Python {version} under pyenv on this machine")


# ---- the scenario on the wire, the key, the figures ----------------------------------------


def test_a_cell_reads_the_scenario_as_json_without_pyyaml():
    item = scenario_from_text(CPU + "interpreters: [current]\n")
    text = wire_text(item)
    assert parse_wire(text) == item.scenario
    code = ("import sys; sys.modules['yaml'] = None; from harness.scenario.loader import "
            f"parse_wire; print(parse_wire({text!r}).name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "interp"


def test_the_label_leaves_out_this_interpreter_only():
    assert "3." not in key_label(CellKey("threads", 1, 0, python=running_python()))
    assert key_label(CellKey("threads", 1, 0, python="3.13t")).endswith(" 3.13t")


def test_older_runs_get_the_python_of_their_runner():
    meta = {"python": {"version": "3.13.1", "free_threaded_build": True},
            "scenarios": [{"name": "a"}, {"name": "b"}]}
    assert legacy_pythons(meta) == {"a": "3.13t", "b": "3.13t"}
    assert legacy_pythons({"python": {"version": "3.11.7"}, "scenarios": [{"name": "a"}]}) == {
        "a": "3.11"}


def test_gil_on_flags_a_free_threaded_build_that_ran_with_the_gil():
    runs = synthetic.runs(
        synthetic.cell("threads", 1, python="3.13t", gil_enabled=True),
        synthetic.cell("threads", 1, python="3.13t-gil", gil_enabled=True),
        synthetic.cell("threads", 1, python="3.12", gil_enabled=True),
        synthetic.cell("threads", 1, python="3.13", gil_enabled=False))
    flags = dict(zip(summarize(runs)["python"], summarize(runs)["flags"], strict=True))
    assert "gil-on" in flags["3.13t"]
    assert not any("gil-on" in flags[p] for p in ("3.13t-gil", "3.12", "3.13"))


def test_the_interpreter_table_has_each_ones_cost_and_scaling():
    cells = []
    for python, kernel, at_2 in (("3.11", 20.0, 1.0), ("3.13t", 30.0, 2.0)):
        for rep in range(3):
            cells.append(synthetic.cell("threads", 1, rep, latency_ms=20, duration_s=1,
                                        server=False, kernel=kernel, python=python,
                                        gil_enabled=python == "3.11"))
            # at 2, the same kernel: busy cores at_2 → speedup at_2
            cells.append(synthetic.cell("threads", 2, rep, latency_ms=20 * 2 / at_2,
                                        duration_s=1, server=False, kernel=kernel,
                                        python=python, gil_enabled=python == "3.11"))
    table = interpreters(summarize(synthetic.runs(*cells, units=int(20e6 / 20))))
    rows = table.set_index("python")
    assert rows.loc["3.13t", "relative_cost"] == pytest.approx(1.5)
    assert rows.loc["3.11", "speedup:threads"] == pytest.approx(1.0, rel=0.05)
    assert rows.loc["3.13t", "speedup:threads"] == pytest.approx(2.0, rel=0.05)
    assert list(rows["gil"]) == ["on", "off"]


# ---- end to end ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_interpreters(tmp_path_factory):
    """One run under the running interpreter and pyenv's 3.12, then a second one."""
    python312 = _pyenv("3.12")
    folder = tmp_path_factory.mktemp("interp")
    path = folder / "interp.yaml"
    path.write_text(CPU)
    first = harness("run", path, "--python", "current", "--python", python312,
                    "-o", folder / "one", timeout=900)
    second = harness("run", path, "--python", "current", "--python", "3.12",
                     "-o", folder / "two", timeout=900)
    return folder, first, second


def test_cells_run_under_each_interpreter(two_interpreters):
    folder, first, _ = two_interpreters
    assert first.returncode == 0, first.stderr
    cells = pd.concat(pq.read_table(p).to_pandas() for p in (folder / "one" / "cells").glob("*"))
    assert sorted(set(cells["python"])) == sorted({running_python(), "3.12"})
    assert len(cells) == 2 * 2 * 2 and cells["gil_enabled"].all()
    requests = pd.concat(pq.read_table(p).to_pandas()
                         for p in (folder / "one" / "requests").glob("*"))
    assert set(requests["python"]) == set(cells["python"])
    meta = json.loads((folder / "one" / "run.json").read_text())
    found = {i["tag"]: i for i in meta["scenarios"][0]["interpreters"]}
    assert found["3.12"]["version"].startswith("3.12.") and "numpy" in found["3.12"]["packages"]


def test_the_worker_environment_is_reused_and_holds_no_pandas(two_interpreters):
    _, first, second = two_interpreters
    assert second.returncode == 0, second.stderr
    assert "creating its worker environment" not in second.stderr
    python = ROOT / workers.FOLDER / "3.12" / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import pandas"], capture_output=True,
                           cwd="/")
    assert probe.returncode != 0
    probe = subprocess.run([str(python), "-c", "import harness.cell, numpy, pyarrow"],
                           capture_output=True, text=True, cwd="/")
    assert probe.returncode == 0, probe.stderr


def test_the_summary_shows_the_interpreters_side_by_side(two_interpreters):
    folder, first, _ = two_interpreters
    assert "by interpreter" in first.stdout and "3.12" in first.stdout


def test_a_missing_interpreter_is_exit_2_before_anything_runs(write_scenario, tmp_path):
    path = write_scenario(CPU)
    out = tmp_path / "out"
    result = harness("run", path, "--python", "3.19", "-o", out)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: --python 3.19: no Python 3.19 found")
    assert not out.exists()
    result = harness("run", path, "--python", "current", "--python", "3.19?", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "3.19: absent" in result.stderr  # said before the run, and under its summary
    assert "note: interp: 3.19: absent" in result.stdout


def _own_build() -> str:
    found = Finder().own()
    if not found:
        pytest.skip("no free-threaded build in .pythons/ (make python-ft)")
    return found[0]


def test_the_free_threaded_build_runs_without_the_gil_and_ft_gil_with_it(write_scenario,
                                                                         tmp_path):
    _own_build()
    path = write_scenario(CPU)
    result = harness("run", path, "--python", "ft", "--python", "ft-gil", "-o", tmp_path / "o",
                     timeout=900)
    assert result.returncode == 0, result.stderr
    cells = pd.concat(pq.read_table(p).to_pandas()
                      for p in (tmp_path / "o" / "cells").glob("*"))
    gil = cells.groupby("python")["gil_enabled"].agg(set).to_dict()
    tags = sorted(gil)
    assert tags[0].endswith("t") and tags[1] == tags[0] + "-gil"
    assert gil == {tags[0]: {False}, tags[1]: {True}}


def test_saturate_searches_each_interpreter_and_skips_what_cannot_run_there(tmp_path,
                                                                            monkeypatch):
    """The search runs once per interpreter with its spec handed to every probe; a backend
    whose library has no wheel under one is skipped there with a note."""
    from harness.run import lineup
    from harness.saturate import probes
    from harness.saturate.search import KneeResult, parse_slo

    fake = _fake_python(tmp_path / "bin" / "python3.13t", 13, True)
    monkeypatch.setattr(lineup, "prepare", lambda i, root, note: workers.Worker(
        i, sys.executable if i.running else "x", None if i.running else frozenset({"aiohttp"})))
    searched = []

    def saturate(probe, backends, slos, clients, options, progress):
        searched.append((probe.python, tuple(backends)))
        return [KneeResult(b, None, "found", 100.0, 1.0, (100.0, 110.0), None, ())
                for b in backends]

    monkeypatch.setattr(probes, "saturate", saturate)
    item = scenario_from_text(textwrap.dedent("""\
        name: knee
        server: {endpoints: {api: {latency: 1ms}}}
        workload: {endpoint: api}
        load: {rate: 10/s, duration: 1s}
        backends: [asyncio, uvloop]
        """))
    notes = []
    results = probes.run_search(item, [parse_slo("p99 < 50ms")], tmp_path / "out",
                                pythons=("current", str(fake)), note=notes.append)
    assert searched == [("current", ("asyncio", "uvloop")), (str(fake), ("asyncio",))]
    assert [(r.python, r.backend) for r in results] == [
        (running_python(), "asyncio"), (running_python(), "uvloop"), ("3.13t", "asyncio")]
    assert any("uvloop" in n and "3.13t" in n for n in notes)
    saved = json.loads((tmp_path / "out" / "saturate.json").read_text())
    assert [r["python"] for r in saved["results"]] == [r.python for r in results]


def test_compare_matches_configurations_by_interpreter_and_says_which():
    from harness.analysis.compare import compare
    from harness.report.compare import comparison_rows

    def run(run_id, slower):
        return synthetic.runs(*(synthetic.cell("threads", 2, rep, run_id=run_id, python=python,
                                               latency_ms=100 * (2 if python == slower else 1))
                                for python in ("3.11", "3.13t") for rep in range(3)))

    table = compare(run("base", None), run("new", "3.13t"))
    assert list(table["python"]) == ["3.11", "3.13t"]
    assert list(table["verdict"]) == ["no significant difference", "slower"]
    cells = [cells[1] for cells in comparison_rows(table)[1]]
    assert cells[0].endswith("python=3.11") and cells[1].endswith("python=3.13t")


def test_a_flow_style_yaml_scenario_still_reads_on_the_wire():
    text = ("{name: flow, workload: {type: cpu, duration: 1ms}, "
            "load: {requests: 1, concurrency: 1}}")
    assert parse_wire(text).name == "flow"  # YAML, not JSON: read as YAML


def test_an_optional_spec_for_an_interpreter_already_named_is_a_note(tmp_path):
    found, notes = resolve_all(("current", f"{sys.executable}?"), "--python {text}",
                               Finder(tmp_path))
    assert len(found) == 1 and "same interpreter" in notes[0]


def test_a_requirements_name_gives_its_module_and_the_reason_it_is_missing():
    assert workers._module("psycopg[binary]>=3.1") == "psycopg"
    assert workers._module("uvloop>=0.19") == "uvloop"
    worker = workers.Worker(running(), "x", frozenset(), failed={"uvloop": "ERROR: none"})
    assert worker.why("uvloop") == "ERROR: none" and worker.why("httptools") == "not installed"


def test_a_cell_refuses_to_run_under_another_interpreter():
    from harness.cell.main import run_cell
    from harness.core.job import CellJob

    job = CellJob(wire_text(scenario_from_text(CPU)),
                  {"backend": "threads", "concurrency": 1, "repetition": 0, "python": "3.99"},
                  "", 1, "", "")
    with pytest.raises(RuntimeError, match="for python 3.99 but runs under"):
        run_cell(job, stop=None)


def test_nothing_to_run_is_exit_2_and_a_spec_read_from_the_environment_stays_secret(
        tmp_path):
    path = tmp_path / "odd{name}.yaml"  # braces in a path are no template
    path.write_text(CPU.replace("[threads, asyncio]", "[threads]")
                    + 'interpreters: ["${PYX}"]\n')
    out = tmp_path / "out"
    secret = os.path.realpath(sys.executable)  # the running interpreter, by another name
    result = harness("run", path, "-o", out, "-r", "1", env={**os.environ, "PYX": secret})
    assert result.returncode == 0, result.stderr
    assert secret not in (out / "run.json").read_text()
    result = harness("run", path, "--python", "3.19?", "-o", tmp_path / "none",
                     env={**os.environ, "PYX": secret})
    assert result.returncode == 2
    assert "nothing to run" in result.stderr and not (tmp_path / "none").exists()


def test_one_python_key_names_one_interpreter_across_a_runs_scenarios(tmp_path, monkeypatch):
    """Each key names a worker environment: two interpreters with one key in one run (in two
    scenarios) would share it, and one's cells would run under the other."""
    from harness.run import lineup

    a = _fake_python(tmp_path / "a" / "python3.12", 12, False)
    b = _fake_python(tmp_path / "b" / "python3.12", 12, False)
    monkeypatch.setattr(lineup, "prepare", lambda i, root, note: workers.Worker(i, "x"))
    one = scenario_from_text(CPU + f"interpreters: ['{a}']\n", "one.yaml")
    two = scenario_from_text(CPU.replace("name: interp", "name: two")
                             + f"interpreters: ['{b}']\n", "two.yaml")
    with pytest.raises(HarnessError, match="python 3.12 names two interpreters"):
        lineup.line_up([one, two], finder=Finder(tmp_path))
