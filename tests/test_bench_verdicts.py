"""The target-bearing scripts in bench/: each one's figures → verdicts → exit status, on
made-up figures (no measurement), and the set-up failures that exit 2 before measuring."""

import math

import pytest

from bench import (
    client_engine_lag,
    delay_precision,
    engines,
    evidence,
    fastapi_inference,
    inference_service,
    kill_flush,
    memory,
    server_abuse,
)

MIB = 2**20


def judged(verdicts) -> dict:
    return {v.name: v.met for v in verdicts if v.met is not None}


def test_engines_fast_against_raw_and_aiohttp():
    cpu = {"raw": 5.0, "fast": 8.0, "aiohttp": 30.0, "fast×2": 9.0}
    met = engines.verdicts({"raw": 100_000, "fast": 50_000, "aiohttp": 16_000,
                            "fast×2": 80_000}, cpu)
    assert judged(met) == {"fast ÷ raw, requests/s": True, "fast ÷ aiohttp, requests/s": True}
    assert evidence.status(met) == evidence.MET
    assert any(v.name == "fast×2 ÷ fast, requests/s" and v.measured == "1.60" for v in met)
    slow = engines.verdicts({"raw": 100_000, "fast": 49_000, "aiohttp": 17_000}, cpu)
    assert judged(slow) == {"fast ÷ raw, requests/s": False, "fast ÷ aiohttp, requests/s": False}
    assert evidence.status(slow) == evidence.MISSED


def test_delay_precision_misses_on_one_early_response_or_a_late_median():
    case = {"engine": "fast", "case": "5 at 1 ms, spread", "n": 2000, "early": 0,
            "p50_us": 60.0, "p99_us": 300.0, "max_us": 900.0}
    assert evidence.status(delay_precision.verdicts([case])) == evidence.MET
    found = delay_precision.verdicts([case, {**case, "engine": "aiohttp", "early": 1}])
    assert judged(found) == {"fast 5 at 1 ms, spread: early responses": True,
                             "fast 5 at 1 ms, spread: applied − target p50": True,
                             "aiohttp 5 at 1 ms, spread: early responses": False,
                             "aiohttp 5 at 1 ms, spread: applied − target p50": True}
    assert evidence.status(found) == evidence.MISSED
    late = delay_precision.verdicts([{**case, "p50_us": 1999.0}, {**case, "p50_us": 2000.0}])
    assert [v.met for v in late] == [True, True, True, False]


def test_server_abuse_loris_against_the_mean_of_the_clean_runs():
    assert evidence.status(server_abuse.verdicts(900, 500, 1100, 1000)) == evidence.MET
    missed = server_abuse.verdicts(900, 499, 1100, 1000)
    assert judged(missed) == {"loris ÷ clean": False}
    assert evidence.status(missed) == evidence.MISSED


def row(mode: str, p99: float, rep: int = 0, backend: str = "asyncio", rate: float = 50.0):
    return {"scenario": f"inference_service_{mode}", "backend": backend, "rate": rate,
            "rep": rep, "p99_ms": p99}


def test_inference_service_inline_against_each_pool_at_the_same_rate():
    rows = [row("inline", 300), row("inline", 900, rep=1), row("inline", 330, rep=2),
            row("thread_pool", 100), row("process_pool", 100), row("process_pool", 120, rep=1),
            row("inline", 50, rate=70.0)]  # no pool at 70/s: nothing judged there
    found = inference_service.verdicts(rows)
    # medians over the repetitions: inline 330 ms, thread pool 100 ms, process pool 110 ms
    assert judged(found) == {"asyncio at 50/s: inline p99 ÷ thread_pool's": True,
                             "asyncio at 50/s: inline p99 ÷ process_pool's": True}
    assert evidence.status(found) == evidence.MET
    slower = inference_service.verdicts(rows + [row("thread_pool", 130, rep=1),
                                                row("thread_pool", 120, rep=2)])
    assert judged(slower)["asyncio at 50/s: inline p99 ÷ thread_pool's"] is False
    assert evidence.status(slower) == evidence.MISSED
    assert inference_service.verdicts([row("inline", 300, rate=70.0)]) == []


def test_inference_service_without_runs_cannot_be_set_up(tmp_path, capsys):
    assert inference_service.main([str(tmp_path / "absent"), "--out",
                                   str(tmp_path / "run")]) == evidence.NO_SETUP
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "absent" in err
    assert not (tmp_path / "run").exists()


def test_memory_growth_judged_except_on_a_quick_run():
    cell, runner = (10, 100 * MIB, 40, 115 * MIB), (200, 80 * MIB, 88 * MIB)
    assert evidence.status(memory.verdicts(cell, runner, quick=False)) == evidence.MET
    grown = memory.verdicts((10, 100 * MIB, 40, 116 * MIB), (200, 80 * MIB, 89 * MIB), False)
    assert judged(grown) == {"cell tree peak RSS, 40 s ÷ 10 s cell": False,
                             "runner RSS, after 200 cells ÷ after 20": False}
    quick = memory.verdicts((2, 100 * MIB, 8, 200 * MIB), (40, 80 * MIB, 160 * MIB), True)
    assert judged(quick) == {} and evidence.status(quick) == evidence.MET
    assert all("--quick" in v.why for v in quick)


def test_kill_flush_worst_loss_at_most_a_second():
    assert evidence.status(kill_flush.verdicts([(488.0, 215), (999.0, 300)])) == evidence.MET
    missed = kill_flush.verdicts([(488.0, 215), (1001.0, 300), (math.nan, 0)])
    assert [(v.met, v.measured.split()[0]) for v in missed] == [(False, "1001")]
    assert "worst of 2 runs" in missed[0].name
    assert kill_flush.verdicts([(math.nan, 0)]) == []


def test_client_engine_lag_judges_standard_fast_against_standard_aiohttp_per_loop():
    runs = [{("standard", "fast", "asyncio"): (50.0, 2.0), ("standard", "aiohttp", "asyncio"):
             (2.5, 0.0), ("standard", "fast", "uvloop"): (6.0, 0.0),
             ("standard", "aiohttp", "uvloop"): (4.0, 0.0),
             ("lean", "fast", "uvloop"): (90.0, 9.0)},
            {("standard", "fast", "asyncio"): (60.0, 3.0), ("standard", "aiohttp", "asyncio"):
             (3.5, 0.0), ("standard", "fast", "uvloop"): (9.0, 0.0),
             ("standard", "aiohttp", "uvloop"): (4.0, 0.0)},
            {("standard", "fast", "asyncio"): (2.0, 0.0), ("standard", "aiohttp", "asyncio"):
             (3.0, 0.0), ("standard", "fast", "uvloop"): (7.0, 0.0),
             ("standard", "aiohttp", "uvloop"): (4.0, 0.0)}]
    figures = client_engine_lag.medians(runs)
    assert figures[("standard", "fast", "asyncio")] == (50.0, 2.0)  # the median of the runs
    found = client_engine_lag.verdicts(figures)
    assert judged(found) == {  # the lean client is shown, not judged
        "asyncio: standard × fast ÷ standard × aiohttp, lag p99": False,  # 50 ÷ 3
        "uvloop: standard × fast ÷ standard × aiohttp, lag p99": True}  # 7 ÷ 4
    assert found[1].measured.startswith("1.75 ")
    assert client_engine_lag.verdicts({("standard", "fast", "uvloop"): (1.0, 0.0)}) == []


@pytest.mark.parametrize("script", [engines, server_abuse])
def test_without_wrk_a_one_line_message_and_exit_2(script, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(script.shutil, "which", lambda name: None)
    assert script.main(["--out", str(tmp_path)]) == evidence.NO_SETUP
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "wrk is not installed" in err
    assert not (tmp_path / "summary.md").exists()


def test_fastapi_inference_judges_inline_against_each_pool_on_both_figures():
    import pandas as pd

    paths = ["/predict/inline", "/predict/thread", "/predict/process", "/predict/sync"]
    rows = pd.DataFrame({  # two repetitions: the second thread cell's tail is an outlier
        "backend": ["asyncio"] * 8, "rate_per_s": [90.0] * 8, "path": paths * 2,
        "p99_ms": [300.0, 90.0, 90.0, 250.0, 320.0, 400.0, 100.0, 250.0],
        "service_loop_lag_p99_ms": [40.0, 5.0, 5.0, 6.0] * 2})
    found = judged(fastapi_inference.verdicts(rows))
    assert len(found) == 4  # two pools × two figures; the sync variant is not judged
    thread, process = (f"asyncio client at 90/s: inline's response-time p99 ÷ {pool}'s "
                       "(medians of 2)" for pool in ("thread", "process"))
    assert found[thread] is False  # medians 310 ÷ 245
    assert found[process] is True  # 310 ÷ 95
    assert all(met for name, met in found.items() if "loop-lag" in name)


def test_fastapi_inference_counts_ok_rows_per_cell_number(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "requests").mkdir()
    for cell, oks in ((0, [True, True, False]), (3, [True])):
        pq.write_table(pa.table({"ok": oks}), tmp_path / "requests" / f"cell-{cell:04d}.parquet")
    assert fastapi_inference.ok_rows(tmp_path) == {0: 2, 3: 1}
