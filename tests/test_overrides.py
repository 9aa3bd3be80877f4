"""`run --set KEY.PATH=VALUE`: one key changed before validation, with the same one-line
errors; run.json keeps the effective text, which runs again to the same cells."""

from __future__ import annotations

import json

import pytest

from harness.core.errors import HarnessError
from harness.scenario.loader import load_scenario, scenario_from_text
from harness.scenario.model import plan_cells
from tests.conftest import small_scenario


@pytest.fixture
def path(tmp_path):
    found = tmp_path / "s.yaml"
    found.write_text(small_scenario(requests=20, concurrency=4))
    return found


def test_an_override_changes_the_scenario_and_its_kept_text(path):
    loaded = load_scenario(path, ("load.concurrency=[2, 8]", "backends=[asyncio]",
                                  "server.endpoints.api.size=64", "repeat=2"))
    scenario = loaded.scenario
    assert scenario.backends == ("asyncio",) and scenario.repeat == 2
    assert scenario.server.endpoints["api"].size == 64
    assert loaded.overrides == ("load.concurrency=[2, 8]", "backends=[asyncio]",
                                "server.endpoints.api.size=64", "repeat=2")
    again = scenario_from_text(loaded.text, str(path))  # what run.json keeps runs again
    assert plan_cells(again.scenario) == plan_cells(scenario)
    assert [k.concurrency for k in plan_cells(scenario)] == [2, 8, 2, 8]


def test_without_overrides_the_text_is_the_files(path):
    loaded = load_scenario(path)
    assert loaded.text == path.read_text() and loaded.overrides == ()


@pytest.mark.parametrize(("item", "message"), [
    ("load", "--set 'load': expected KEY.PATH=VALUE"),
    ("load..x=1", "expected KEY.PATH=VALUE"),
    ("load.requests=[1", "--set load.requests: the value is not YAML"),
    ("name.x=1", "s.yaml: name: is not a mapping: --set name.x cannot set a key in it"),
    ("load.concurency=5", "s.yaml: load.concurency: unknown key (got 5); did you mean "
                          "'concurrency'?"),
    ("load.requests=-1", "s.yaml: load.requests: must be >= 1"),
])
def test_a_bad_override_is_one_line(path, item, message):
    with pytest.raises(HarnessError) as caught:
        load_scenario(path, (item,))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_run_keeps_the_effective_text_and_the_overrides(cli, path, tmp_path):
    out = tmp_path / "out"
    result = cli("run", path, "--set", "load.requests=6", "--set", "backends=[asyncio]",
                 "-o", out)
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "run.json").read_text())
    (entry,) = meta["scenarios"]
    assert entry["overrides"] == ["load.requests=6", "backends=[asyncio]"]
    again = scenario_from_text(entry["text"], "run.json")
    assert again.scenario.load.requests == 6 and again.scenario.backends == ("asyncio",)
    cells = [line for line in result.stdout.splitlines() if line.startswith("asyncio")]
    assert len(cells) == 1 and " 6 " in cells[0]
