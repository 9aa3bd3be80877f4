"""bench-self's judging, in process and without its peers: figures → verdicts → exit status
(met, missed, not measured, a failed section, --quick, --report-only), bench-self.parquet with
its run metadata read back, summary.md's lines, and a peer that cannot be set up (exit 2)."""

import math
import subprocess
import sys
from argparse import Namespace

import pyarrow.parquet as pq
import pytest

import bench.self as bench_self
from bench import ROOT, evidence, self_peers
from bench.self_report import (
    QUICK,
    Figure,
    finish,
    judge,
    metadata,
    outcome,
    read_metadata,
    verdicts,
    write_parquet,
)
from bench.self_sitting import Sitting

AT_MOST = ("≤ 0.5", lambda v: v <= 0.5)


def test_a_figure_is_judged_against_its_target_and_only_when_it_has_one():
    assert judge("write", 0.4, "s", *AT_MOST, quick=False).met is True
    missed = judge("write", 0.6, "s", *AT_MOST, quick=False)
    assert (missed.met, missed.verdict()) == (False, "missed")
    assert judge("read", 0.6, "s", None, None, quick=False).met is None
    assert judge("read", 0.6, "s", None, None, quick=False).verdict() == "-"


def test_a_target_whose_figure_was_not_measured_is_missed_not_passed():
    figure = judge("write", math.nan, "s", *AT_MOST, quick=False)
    assert (figure.met, figure.verdict()) == (False, "missed (not measured)")


def test_quick_judges_nothing_and_says_so():
    for value in (0.4, 0.6, math.nan):
        figure = judge("write", value, "s", *AT_MOST, quick=True)
        assert (figure.met, figure.verdict()) == (None, QUICK)


@pytest.mark.parametrize("quick", [False, True])
def test_the_sitting_judges_what_it_adds_unless_quick(tmp_path, quick):
    sitting = Sitting(Namespace(quick=quick), tmp_path)
    sitting.add("write", 0.6, "s", *AT_MOST)
    sitting.add("read", 0.2, "s")
    sitting.skip("ratio to wrk", "×", "≥ 0.75", "no wrk")
    write, read, ratio = sitting.figures
    assert write.met is (None if quick else False)
    assert read.met is None and read.target is None
    assert (ratio.met, ratio.verdict()) == (None, "not measured: no wrk")


def figures(*mets):
    return [Figure(f"figure {i}", 1.0, "s", "≤ 2", met) for i, met in enumerate(mets)]


def test_the_exit_status_is_1_on_a_miss_3_on_a_failed_section_0_otherwise():
    assert outcome(figures(True, None, True), [], False, False) == (0, "")
    assert outcome(figures(True, False), [], False, False) == (1, "")
    assert outcome(figures(True, True), ["in_flight"], False, False) == (3, "failed: in_flight")
    assert outcome(figures(False), ["in_flight"], False, False)[0] == 3


def test_report_only_exits_0_and_says_what_it_would_have_been():
    assert outcome(figures(True, False), [], False, True) == (
        0, "--report-only (exit 1 without it)")
    assert outcome(figures(True), ["latency"], False, True) == (
        0, "--report-only (exit 3 without it; failed: latency)")
    assert outcome(figures(True), [], False, True) == (0, "")


def test_quick_exits_0_saying_nothing_was_judged():
    quick = [judge("write", 9.0, "s", *AT_MOST, quick=True)]
    assert outcome(quick, [], True, False) == (0, "--quick: no target judged")


def meta(quick=False, report_only=False):
    args = Namespace(seconds=2, rounds=1, quick=quick, report_only=report_only)
    return metadata(args, "20260101T000000Z")


def test_the_parquet_carries_the_figures_and_the_runs_metadata(tmp_path):
    rows = [judge("write", 0.6, "s", *AT_MOST, quick=False),
            judge("read", 0.2, "s", None, None, quick=False)]
    path = write_parquet(tmp_path, rows, finish(meta(), 12.3, 1, ["a note"]))
    table = pq.read_table(path)
    assert table.column_names == ["name", "value", "unit", "target", "met", "verdict"]
    assert table.column("met").to_pylist() == [False, None]
    assert table.column("verdict").to_pylist() == ["missed", "-"]
    found = read_metadata(path)
    assert (found["table"], found["table_version"]) == ("bench-self", 2)
    assert found["args"] == {"seconds": 2, "rounds": 1, "quick": False, "report_only": False}
    assert found["judged"] is True and found["exit_code"] == 1 and found["notes"] == ["a note"]
    assert found["python"]["version"] and "pyarrow" in found["packages"]
    assert found["git_commit"] and found["git_describe"] != "unknown"
    assert {"started_at", "ended_at", "machine", "cpu_pressure_before",
            "cpu_pressure_after"} <= set(found)


def test_under_quick_the_parquets_met_is_null_and_its_metadata_says_not_judged(tmp_path):
    rows = [judge("write", 9.0, "s", *AT_MOST, quick=True)]
    path = write_parquet(tmp_path, rows, finish(meta(quick=True), 1.0, 0, []))
    table = pq.read_table(path)
    assert table.column("met").null_count == 1
    assert table.column("verdict").to_pylist() == [QUICK]
    assert read_metadata(path)["judged"] is False


def test_summary_md_has_the_machine_commit_date_pressure_and_every_figure(tmp_path):
    rows = [judge("Parquet write, cold", 0.6, "s", *AT_MOST, quick=False),
            judge("Parquet read", 0.2, "s", None, None, quick=False),
            Figure("engine fast ÷ raw", math.nan, "×", "≥ 0.5", None, "not measured: no wrk")]
    code, why = outcome(rows, [], False, True)
    summary = evidence.Sitting("make bench-self ARGS=--report-only").write_summary(
        tmp_path, "make bench-self", verdicts(rows), ["peers: wrk 4.1.0"], code=code,
        code_why=why)
    lines = summary.read_text().splitlines()
    for head in ("- machine: ", "- commit: ", "- date: 20", "- CPU pressure ", "- wall time: "):
        assert any(line.startswith(head) for line in lines), head
    assert "- verdict: missed: Parquet write, cold (exit 0: --report-only (exit 1 without " \
           "it))" in lines
    assert "- peers: wrk 4.1.0" in lines
    assert "| Parquet write, cold | 0.600 s | ≤ 0.5 | **missed** |" in lines
    assert "| Parquet read | 0.200 s | - | - |" in lines
    assert "| engine fast ÷ raw | not measured | ≥ 0.5 | - (not measured: no wrk) |" in lines


def test_quick_summary_shows_quick_not_judged(tmp_path):
    rows = [judge("Parquet write, cold", 0.6, "s", *AT_MOST, quick=True)]
    summary = evidence.Sitting().write_summary(tmp_path, "t", verdicts(rows))
    assert f"| Parquet write, cold | 0.600 s | ≤ 0.5 | - ({QUICK}) |" in summary.read_text()


@pytest.fixture
def no_peers(monkeypatch):
    monkeypatch.setattr(self_peers, "ensure_wrk", lambda: None)
    monkeypatch.setattr(self_peers, "ensure_locust", lambda: None)


def test_a_peer_that_cannot_be_set_up_exits_2_in_one_line(tmp_path, no_peers, monkeypatch,
                                                          capsys):
    monkeypatch.delenv("BENCH_SELF_ALLOW_SKIP", raising=False)
    with pytest.raises(SystemExit) as exited:
        self_peers.setup_peers(Sitting(Namespace(quick=False), tmp_path))
    assert exited.value.code == evidence.NO_SETUP
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("bench-self: cannot set up wrk")


def test_allow_skip_runs_without_the_peer_and_notes_it(tmp_path, no_peers, monkeypatch):
    monkeypatch.setenv("BENCH_SELF_ALLOW_SKIP", "1")
    sitting = Sitting(Namespace(quick=False), tmp_path)
    self_peers.setup_peers(sitting)
    assert sitting.wrk is None and any("cannot set up wrk" in n for n in sitting.notes)


def run_main(monkeypatch, tmp_path, argv, *sections):
    """bench.self.main with its peers found and these sections in place of the real ones;
    its results under tmp_path."""
    monkeypatch.setattr(bench_self, "ROOT", tmp_path)
    monkeypatch.setattr(bench_self, "setup_peers", lambda sitting: None)
    monkeypatch.setattr(bench_self, "SECTIONS", sections)
    code = bench_self.main(argv)
    (run,) = (tmp_path / "results" / "bench-self").iterdir()
    return code, run


def slow_write(sitting):
    sitting.add("Parquet write", 0.6, "s", *AT_MOST)


def fast_write(sitting):
    sitting.add("Parquet write", 0.4, "s", *AT_MOST)


def broken(sitting):
    raise RuntimeError("harness run in_flight failed (1)")


@pytest.mark.parametrize(("argv", "sections", "code"), [
    ([], (fast_write,), 0),
    ([], (slow_write,), 1),
    ([], (fast_write, broken), 3),
    (["--report-only"], (slow_write, broken), 0),
    (["--quick"], (slow_write,), 0),
])
def test_main_writes_its_files_and_exits_as_judged(monkeypatch, tmp_path, argv, sections,
                                                    code):
    found, run = run_main(monkeypatch, tmp_path, argv, *sections)
    assert found == code
    assert sorted(p.name for p in run.iterdir()) == ["bench-self.parquet", "summary.md"]
    assert read_metadata(run / "bench-self.parquet")["exit_code"] == code
    assert f"(exit {code}" in (run / "summary.md").read_text()


def test_bad_arguments_exit_2():
    with pytest.raises(SystemExit) as exited:
        bench_self.parse_args(["--seconds", "60"])
    assert exited.value.code == 2


def test_the_cold_write_child_refuses_bad_arguments_in_one_line():
    done = subprocess.run([sys.executable, "-m", "bench.self_recording", "warm"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
