"""bench-self's knee ordering (bench/self_saturate.py), without running a probe: the command is
one `harness saturate` accepts (the CLI run with a stand-in for the probes' cells), its
saturate.json read back into knees, the higher of two searches kept, and the target judged:
uvloop's knee ≥ asyncio's, missed when either has none, not judged under --quick."""

import json
import math
from argparse import Namespace

import pytest
from click.testing import CliRunner

from bench import self_saturate
from bench.self_saturate import ORDERS, Knee, best, command, knees_of, ratio
from bench.self_sitting import Sitting
from harness.cli import cli
from harness.saturate import probes
from harness.saturate.search import ProbeResult, search_knee


def run_cli(tmp_path, monkeypatch, knees: dict[str, float], order, quick=False) -> dict:
    """`harness saturate` as bench-self calls it, each probe answered from `knees` (a rate
    passes up to its backend's knee) instead of a cell; the saturate.json it writes."""
    asked = []

    def search(probe, backends, slos, clients, options, progress):
        asked.append((list(backends), options))

        def answer(backend, client, rate):
            return ProbeResult(p99_ms=5.0, error_rate=0.0, lagging=rate > knees[backend])

        return [search_knee(answer, b, c, slos, options) for b in backends for c in clients]

    monkeypatch.setattr(probes, "saturate", search)
    out = tmp_path / "search"
    argv = command(order, out, quick)
    assert argv[1:4] == ["-m", "harness", "saturate"]
    result = CliRunner().invoke(cli, argv[3:])
    assert result.exit_code == 0, result.output
    (backends, options), = asked
    assert backends == list(order)
    assert (options.start_rate_per_s, options.max_rate_per_s) == (400, 12800)
    assert (options.repeats, options.confirm) == (0, 0)
    assert options.precision == (0.3 if quick else 0.15)
    return json.loads((out / "saturate.json").read_text())


def test_the_command_runs_the_shipped_scenario_in_the_given_order(tmp_path, monkeypatch):
    search = run_cli(tmp_path, monkeypatch, {"uvloop": 4500, "asyncio": 3000}, ORDERS[1])
    assert search["scenario"] == "saturate" and search["slos"] == ["p99 < 50ms"]
    assert search["probe_duration_s"] == 2.0
    found = knees_of(search)
    assert [r["backend"] for r in search["results"]] == ["asyncio", "uvloop"]
    # doubling from 400/s, bisected until within 15 %
    assert found["uvloop"] == Knee("uvloop", 4400.0, "found", (4400.0, 4800.0))
    assert found["asyncio"] == Knee("asyncio", 2800.0, "found", (2800.0, 3200.0))
    assert found["uvloop"].describe() == "uvloop 4400/s (4400/s–4800/s, found)"


def test_quick_probes_shorter_to_a_coarser_precision(tmp_path, monkeypatch):
    search = run_cli(tmp_path, monkeypatch, {"uvloop": 4500, "asyncio": 3000}, ORDERS[0],
                     quick=True)
    assert search["probe_duration_s"] == 1.0


def test_a_backend_that_fails_at_the_start_rate_has_no_knee():
    search = {"results": [
        {"backend": "uvloop", "client": "standard", "max_rate_per_s": None,
         "range_per_s": [None, None], "status": "fails_at_start"},
        {"backend": "asyncio", "client": "standard", "max_rate_per_s": 800.0,
         "range_per_s": [800.0, 900.0], "status": "found"}]}
    found = knees_of(search)
    assert found["uvloop"].rate_per_s is None
    assert found["uvloop"].describe() == "uvloop fails at the start rate"
    assert ratio([found]) is None


def knee(backend, rate):
    return Knee(backend, rate, "found", (rate, None))


def test_each_backend_keeps_the_higher_of_its_searches():
    searches = [{"uvloop": knee("uvloop", 1400.0), "asyncio": knee("asyncio", 2800.0)},
                {"uvloop": knee("uvloop", 4800.0), "asyncio": knee("asyncio", 2400.0)}]
    assert (best(searches, "uvloop"), best(searches, "asyncio")) == (4800.0, 2800.0)
    assert ratio(searches) == pytest.approx(4800 / 2800)
    assert best([{"uvloop": knee("uvloop", None)}], "uvloop") is None
    assert best([], "asyncio") is None


@pytest.mark.parametrize("uvloop, asyncio, met", [
    (4800.0, 4400.0, True), (4400.0, 4400.0, True), (4000.0, 4400.0, False),
    (None, 4400.0, False)])
def test_the_section_judges_uvloop_at_least_asyncio(tmp_path, monkeypatch, uvloop, asyncio, met):
    calls = []

    def search(sitting, order, index):
        calls.append(order)
        return {"uvloop": knee("uvloop", uvloop), "asyncio": knee("asyncio", asyncio)}

    monkeypatch.setattr(self_saturate, "run_search", search)
    sitting = Sitting(Namespace(quick=False), tmp_path)
    self_saturate.saturate(sitting)
    assert calls == list(ORDERS)  # each backend first once
    uv, aio, judged = sitting.figures
    assert (uv.met, aio.met) == (None, None)  # the knees are reported
    assert judged.target == "≥ 1" and judged.met is met
    if uvloop is None:
        assert math.isnan(judged.value) and judged.verdict() == "missed (not measured)"
    assert len([n for n in sitting.notes if n.startswith("saturate search")]) == 2


def test_quick_runs_one_search_and_judges_nothing(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(self_saturate, "run_search", lambda sitting, order, index: calls.append(
        order) or {"uvloop": knee("uvloop", 100.0), "asyncio": knee("asyncio", 200.0)})
    sitting = Sitting(Namespace(quick=True), tmp_path)
    self_saturate.saturate(sitting)
    assert calls == [ORDERS[0]]
    assert [f.met for f in sitting.figures] == [None, None, None]


def test_the_second_search_is_left_out_when_the_budget_runs_short(tmp_path, monkeypatch):
    monkeypatch.setattr(self_saturate, "run_search", lambda sitting, order, index: {
        "uvloop": knee("uvloop", 4800.0), "asyncio": knee("asyncio", 4400.0)})
    sitting = Sitting(Namespace(quick=False), tmp_path)
    monkeypatch.setattr(sitting, "left", lambda: 60.0)
    self_saturate.saturate(sitting)
    assert "saturate: search 2 left out: the time budget" in sitting.notes
    assert sitting.figures[0].name == "saturate uvloop standard: knee (best of 1 searches)"
    assert sitting.figures[2].met is True
