"""Progress off a terminal: one plain line per finished cell, one every PLAIN_EVERY_S in a long
cell, nothing under --quiet; on a terminal, the live bar."""

from __future__ import annotations

import io

from rich.console import Console

from harness.report.progress import PLAIN_EVERY_S, PlainUI
from tests.conftest import small_scenario


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _ui(quiet=False):
    out = io.StringIO()
    clock = _Clock()
    ui = PlainUI(Console(file=out, width=250), quiet, clock)
    return ui, out, clock


def test_a_cell_says_one_line_at_its_end_and_one_every_ten_seconds(monkeypatch):
    monkeypatch.setattr("harness.report.progress.key_label", lambda key: "threads c=10")
    ui, out, clock = _ui()
    ui.run_started(2)
    ui.cell_started("lab", None, 500)
    for _ in range(50):  # a progress message every 0.5 s for 25 s
        clock.now += 0.5
        ui.cell_progress(int((clock.now - 100) * 10))
    ui.cell_finished({"requests": 500, "errors": 3, "makespan_ns": 25_000_000_000,
                      "complete": True})
    lines = out.getvalue().splitlines()  # req/s: ok requests ÷ makespan
    assert lines == ["cell 1/2 lab threads c=10: 100/500 requests, 10 s",
                     "cell 1/2 lab threads c=10: 200/500 requests, 20 s",
                     "cell 1/2 lab threads c=10: 500 requests, 3 errors, 19.9 req/s over 25.00 s"]
    ui.cell_started("lab", None, None)
    clock.now += PLAIN_EVERY_S - 1
    ui.cell_progress(7)  # under ten seconds in: nothing
    ui.cell_finished({"requests": 7, "errors": 7, "makespan_ns": 0, "complete": False})
    assert out.getvalue().splitlines()[3:] == [
        "cell 2/2 lab threads c=10: 7 requests, 7 errors over 0.00 s (incomplete)"]


def test_quiet_says_nothing(monkeypatch):
    monkeypatch.setattr("harness.report.progress.key_label", lambda key: "k")
    ui, out, clock = _ui(quiet=True)
    ui.run_started(1)
    ui.note("skipped")
    ui.cell_started("lab", None, 10)
    clock.now += 60
    ui.cell_progress(5)
    ui.cell_finished({"requests": 10, "errors": 0, "makespan_ns": 10**9})
    assert out.getvalue() == ""


def test_a_run_off_a_terminal_prints_a_plain_line_per_cell(cli, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(small_scenario(requests=6, backends="[asyncio, threads]"))
    result = cli("run", path, "-o", tmp_path / "out", "--no-legend")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("cell ")]
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("cell 1/2 ") and lines[1].startswith("cell 2/2 ")
    assert all(": 6 requests, 0 errors, " in line and " req/s over " in line for line in lines)
    assert "\x1b[" not in result.stderr  # no bar redrawn into a log
