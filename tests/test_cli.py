"""The CLI as users meet it: exit codes, one-line errors, run → report from Parquet alone."""

from pathlib import Path

from tests.conftest import BACKENDS, harness, small_scenario

ROOT = Path(__file__).resolve().parent.parent


def test_validate_ok_and_bad(write_scenario):
    good = write_scenario(small_scenario(), "good.yaml")
    bad = write_scenario(small_scenario(concurrency=0), "bad.yaml")
    ok = harness("validate", good)
    assert ok.returncode == 0 and "ok" in ok.stdout
    result = harness("validate", good, bad)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {bad}: load.concurrency: must be >= 1 (got 0)"
    assert "Traceback" not in result.stderr


def test_shipped_scenarios_validate():
    result = harness("validate", *sorted((ROOT / "scenarios").glob("*.yaml")))
    assert result.returncode == 0, result.stderr


def test_run_bad_scenario_writes_nothing(write_scenario, tmp_path):
    bad = write_scenario(small_scenario(latency="{dist: uniform, min: 2s, max: 1s}"))
    result = harness("run", bad, "--out", tmp_path / "out")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "server.endpoints.api.latency: max must be >= min" in result.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_backend_option_and_missing_file(tmp_path):
    result = harness("run", ROOT / "scenarios" / "lab.yaml", "--backend", "trio")
    assert result.returncode == 2 and "trio" in result.stderr
    missing = harness("run", tmp_path / "nope.yaml")
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: {tmp_path / 'nope.yaml'}: no such file"


def test_run_then_report_from_parquet_alone(write_scenario, tmp_path):
    path = write_scenario(small_scenario(requests=30, concurrency=3))
    out = tmp_path / "out"
    result = harness("run", path, "--backend", "asyncio", "--backend", "threads", "--out", out)
    assert result.returncode == 0, result.stderr
    assert list((out / "requests").glob("cell-*.parquet")) and (out / "run.json").exists()
    assert not list(out.glob(".*.tmp"))
    lines = table_rows(result.stdout)
    assert sorted(line.split()[0] for line in lines) == ["asyncio", "threads"]
    report = harness("report", out)
    assert report.returncode == 0
    assert table_rows(report.stdout) == lines  # same numbers, same code
    assert max(len(line) for line in report.stdout.splitlines()) <= 100  # legend wrapped too
    wide = harness("report", out, "--wide")
    assert all("3/3/" in line for line in table_rows(wide.stdout))  # peak sweep/live/server
    assert "p90 ms" in wide.stdout and "p90 ms" not in report.stdout

    # a run never overwrites another
    again = harness("run", path, "--backend", "asyncio", "--out", out)
    assert again.returncode == 2 and "not empty" in again.stderr and "--force" in again.stderr
    forced = harness("run", path, "--backend", "asyncio", "--out", out, "--force", "--wide")
    assert forced.returncode == 0, forced.stderr
    assert "p90 ms" in forced.stdout and len(table_rows(forced.stdout)) == 1


def table_rows(text: str) -> list[str]:
    """The summary table's rows: the lines that start with a backend's name."""
    return [line for line in text.splitlines() if line.split(" ", 1)[0] in BACKENDS]


def test_default_output_dir_is_results_scenario_run_id(write_scenario, tmp_path):
    path = write_scenario(small_scenario(name="tiny", requests=10, concurrency=2))
    result = harness("run", path, "-b", "uvloop", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "results" / "tiny").iterdir()
    assert run_dir.name[:15].replace("T", "").isdigit() and run_dir.name[15] == "Z"
    assert (run_dir / "requests" / "cell-0000.parquet").exists()


def test_report_errors(tmp_path):
    result = harness("report", tmp_path / "none")
    assert result.returncode == 2 and "no such results directory" in result.stderr
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "cells.parquet").write_text("not parquet")
    (tmp_path / "junk" / "requests.parquet").write_text("not parquet")
    junk = harness("report", tmp_path / "junk")
    assert junk.returncode == 2 and "not a readable Parquet file" in junk.stderr
    assert "Traceback" not in junk.stderr


def test_list_shows_backends_and_scenarios():
    result = harness("list", cwd=ROOT)
    assert result.returncode == 0
    for name in ("threads", "processes", "asyncio", "uvloop", "lab.yaml"):
        assert name in result.stdout
