"""bench-self's judging, in process and without its peers: figures → verdicts → exit status
(met, missed, not measured, a failed section, --quick, --report-only), bench-self.parquet with
its run metadata read back, summary.md's lines, and a peer that cannot be set up (exit 2); the
throughput figures from made-up rounds (medians of per-round ratios, the targets, the two-core
bound, the note on where the time goes), and the bare thread loop against a mock."""

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



def test_a_script_concludes_with_its_table_notes_summary_and_status(tmp_path, capsys):
    met = [evidence.Verdict("lag ratio", "1.03 ×", "≤ 2", True)]
    sitting = evidence.Sitting("python -m bench.x")
    assert sitting.conclude("x", "X", ["a table line"], met, [], tmp_path / "ok") == evidence.MET
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["a table line", "lag ratio: 1.03 × (target ≤ 2: met)"]
    assert out[2] == f"written: {tmp_path / 'ok' / 'summary.md'}"
    assert "a table line" in (tmp_path / "ok" / "summary.md").read_text()
    code = sitting.conclude("x", "X", [], met, ["the measurement failed: boom"], tmp_path / "f")
    assert code == evidence.FAILED
    assert "bench.x: the measurement failed: boom" in capsys.readouterr().err
    missed = [evidence.Verdict("lag ratio", "3.1 ×", "≤ 2", False)]
    assert sitting.conclude("x", "X", [], missed, [], tmp_path / "m") == evidence.MISSED

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


# The throughput figures: medians of per-round ratios, the targets they are judged against, the
# two-core bound of generator scaling, and the bare thread loop.

def test_the_two_core_bound_is_what_two_cores_allow_over_one():
    from bench.self_scaling import two_core_bound

    assert two_core_bound(10, 10) == pytest.approx(1.0)  # both sides already a core each
    assert two_core_bound(20, 10) == pytest.approx(4 / 3)  # 2 ÷ 30 over 1 ÷ 20
    assert two_core_bound(190, 10) == pytest.approx(1.9)  # the client is all of the cost
    assert two_core_bound(1000, 1) == pytest.approx(2000 / 1001)  # never more than 2
    assert two_core_bound(5, 10) == pytest.approx(1.0)  # the server is the limit already
    for c, s in ((0, 10), (10, 0), (math.nan, 10), (10, -1), (math.inf, 10)):
        assert math.isnan(two_core_bound(c, s))


def cell(rps, cpu_us=20.0, server_us=10.0, user_us=None, csw=0.1):
    user = cpu_us / 2 if user_us is None else user_us
    return {"rps": rps, "errors": 0, "requests": int(rps * 5), "cpu_us": cpu_us,
            "user_us": user, "sys_us": cpu_us - user, "server_us": server_us, "csw": csw}


def a_round(override=None):
    """One round as bench.self_throughput keeps it: every peer, bare loop and harness cell."""
    found = {"wrk": cell(80_000), "locust": cell(7_000),
             "bare lean uvloop": cell(50_000, 18), "bare aiohttp uvloop": cell(9_000, 110),
             "bare lean asyncio": cell(40_000, 24), "bare aiohttp asyncio": cell(6_000, 150),
             "bare lean threads": cell(20_000, 45)}
    for backend in ("uvloop", "asyncio", "threads", "processes"):
        found[f"{backend} lean"] = cell(40_000, 20)
        found[f"{backend} standard"] = cell(8_500, 120)
    found["uvloop lean queue"] = cell(30_000, 30)
    found["threads lean queue"] = cell(12_000, 60)
    found["uvloop lean generators 2"] = cell(50_000, 22)
    found["uvloop standard generators 2"] = cell(15_000, 125)
    found.update(override or {})
    return found


def measured(rounds, quick=False, monkeypatch=None, tmp_path=None):
    from bench import self_diagnose, self_ratios

    monkeypatch.setattr(self_diagnose, "cprofile_top", lambda *a: "f (x.py) 50.0%")
    sitting = Sitting(Namespace(quick=quick, seconds=5), tmp_path)
    sitting.wrk, sitting.locust = "wrk", tmp_path / "locust"
    self_ratios.figures(sitting, rounds)
    return sitting, {f.name: f for f in sitting.figures}


def test_each_ratio_is_the_median_of_the_rounds_ratios(monkeypatch, tmp_path):
    # Round by round the harness is 4, 0.5 and 6 × Locust: the median of the ratios is 4 (met),
    # where the ratio of the medians would be 30 000 ÷ 10 000 = 3 (missed).
    rounds = [a_round(override={"uvloop lean": cell(h), "locust": cell(peer)})
              for h, peer in ((40_000, 10_000), (20_000, 40_000), (30_000, 5_000))]
    _, found = measured(rounds, monkeypatch=monkeypatch, tmp_path=tmp_path)
    locust = found["harness uvloop lean ÷ Locust FastHttpUser"]
    assert (locust.value, locust.target, locust.met) == (4.0, "≥ 4", True)
    assert found["harness uvloop lean: requests/s"].value == 30_000
    assert found["locust: requests/s"].value == 10_000


def test_the_targets_of_the_harness_against_its_bare_loops(monkeypatch, tmp_path):
    rounds = [a_round(), a_round(), a_round()]
    _, found = measured(rounds, monkeypatch=monkeypatch, tmp_path=tmp_path)
    cpu = found["CPU per request: harness uvloop lean ÷ bare lean loop on uvloop"]
    assert (cpu.value, cpu.target, cpu.met) == (pytest.approx(20 / 18), "≤ 1.25", True)
    standard = found["harness uvloop standard ÷ bare aiohttp loop on uvloop"]
    assert (standard.value, standard.target, standard.met) == (
        pytest.approx(8_500 / 9_000), "≥ 0.9", True)
    threads = found["harness threads lean ÷ bare lean loop on threads"]
    assert (threads.value, threads.target, threads.met) == (2.0, "≥ 0.8", True)
    # The lean throughput ÷ its bare loop is shown, judged through CPU per request instead.
    assert found["harness uvloop lean ÷ bare lean loop on uvloop"].target is None
    assert found["harness uvloop lean: queue ÷ slots, requests/s"].value == 0.75
    assert found["harness threads lean: queue ÷ slots, CPU per request"].value == 3.0
    assert found["harness threads lean, queue ÷ bare lean loop on threads"].value == 0.6


def test_a_missed_harness_target_says_where_the_time_goes(monkeypatch, tmp_path):
    slow = {"uvloop lean": cell(30_000, 30, user_us=25), "threads lean": cell(8_000, 90)}
    sitting, found = measured([a_round(override=slow)] * 3, monkeypatch=monkeypatch,
                              tmp_path=tmp_path)
    assert found["CPU per request: harness uvloop lean ÷ bare lean loop on uvloop"].met is False
    assert found["harness threads lean ÷ bare lean loop on threads"].met is False
    (uvloop,) = [n for n in sitting.notes if n.startswith("CPU per request: harness uvloop")]
    assert "harness uvloop lean: user 25.0 + system 5.0 µs, 0.10 context switches" in uvloop
    assert "bare lean uvloop: user 9.0 + system 9.0 µs" in uvloop
    assert "cProfile of the cell's loop thread, own time: f (x.py) 50.0%" in uvloop
    (threads,) = [n for n in sitting.notes if n.startswith("harness threads lean ÷")]
    assert "cProfile" not in threads and "--backend threads --client lean --py-spy" in threads
    assert not any(n.startswith("harness uvloop standard") for n in sitting.notes)  # met


def test_generator_scaling_is_judged_against_16_and_the_two_core_bound(monkeypatch, tmp_path):
    _, found = measured([a_round()] * 3, monkeypatch=monkeypatch, tmp_path=tmp_path)
    standard = found["generators 2 ÷ 1: harness uvloop standard, requests/s"]
    assert (standard.value, standard.target, standard.met) == (
        pytest.approx(15_000 / 8_500), "≥ 1.6", True)
    # lean: c 20 µs, s 10 µs: the bound is (2 ÷ 30) ÷ (1 ÷ 20) = 4/3; 1.25 × is 0.94 of it.
    bound = "two-core bound min(2 ÷ (c + s), 1 ÷ s) ÷ min(1 ÷ c, 1 ÷ s): uvloop lean"
    assert found[bound].value == pytest.approx(4 / 3)
    of_bound = found["generators 2 ÷ 1 ÷ the two-core bound: uvloop lean"]
    assert (of_bound.value, of_bound.target, of_bound.met) == (
        pytest.approx(1.25 / (4 / 3)), "≥ 0.9", True)
    assert found["harness uvloop lean (generators 1), s: server CPU per request"].value == 10


def test_generator_scaling_short_of_the_bound_is_missed(monkeypatch, tmp_path):
    rounds = [a_round(override={"uvloop lean generators 2": cell(44_000, 25)})] * 3
    sitting, found = measured(rounds, monkeypatch=monkeypatch, tmp_path=tmp_path)
    assert found["generators 2 ÷ 1 ÷ the two-core bound: uvloop lean"].met is False
    (busy,) = [n for n in sitting.notes if n.startswith("generator scaling, cores busy")]
    assert "uvloop lean generators 2 1.54 (client 25.0 + server 10.0 µs/request)" in busy


def test_quick_judges_none_of_the_throughput_figures(monkeypatch, tmp_path):
    _, found = measured([a_round()], quick=True, monkeypatch=monkeypatch, tmp_path=tmp_path)
    assert all(f.met is None for f in found.values())
    assert found["harness threads lean ÷ bare lean loop on threads"].verdict() == QUICK


def test_profile_cells_table_is_read_by_own_time():
    from bench.self_diagnose import own_time

    output = """uvloop + lean: 31,000 requests in 2.01 s

top 4 by own time (tottime):
  ns/req  share calls/req  function
  34,141  20.3%      1.00  start (lean_async.py:99)
  18,075  10.8%      0.00  run (runners.py:86)
   6,490   3.9%      0.00  <built-in method gc.collect>
   6,441   3.8%      1.00  data_received (lean_async.py:64)

top 2 by cumulative time:
  ns/req  share calls/req  function
 168,873 100.6%      0.00  run_cell (main.py:34)
"""
    assert own_time(output) == ["start (lean_async.py:99) 20.3%",
                                "the loop's own code and waits 10.8%",
                                "data_received (lean_async.py:64) 3.8%"]
    assert own_time("no table") == []


def test_the_time_plan_and_what_was_spent_name_every_section():
    plan = bench_self.time_plan(Namespace(seconds=5, rounds=3, quick=False))
    assert plan.startswith("bench-self: time plan (budget 900 s): recording ~40 s, "
                           "throughput ~450 s")
    spent = bench_self.time_spent({"recording": 30.4, "throughput": 400.0}, 450.0)
    assert spent == "recording 30 s, throughput 400 s, set-up and the rest 20 s; in all 450 s"


def test_the_bare_thread_loop_counts_every_request_of_its_threads():
    from bench.bare_loops import run
    from bench.self_sitting import FAST
    from harness.mock.process import ServerProcess

    with ServerProcess(FAST.format(name="t", latency=0, clients="lean",
                                   load="requests: 1, concurrency: 1",
                                   backends="uvloop")) as server:
        found = run("lean", server.url + "/api", 4, 0.3, "threads")
        stats = server.stats()
    assert found["loop"] == "threads" and found["errors"] == 0
    assert found["requests"] > 0 and found["requests"] == stats["requests"]
    assert found["cpu_s"] == pytest.approx(found["cpu_user_s"] + found["cpu_sys_s"])
    with pytest.raises(ValueError):
        run("aiohttp", server.url + "/api", 4, 0.3, "threads")
