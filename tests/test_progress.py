"""Progress off a terminal: one plain line per finished cell, one every PLAIN_EVERY_S in a long
cell, nothing under --quiet; on a terminal, a line per running cell: its start-up step, then its
last second."""

from __future__ import annotations

import io
import re

from rich.console import Console

from harness.report.progress import PLAIN_EVERY_S, PlainUI, TerminalUI, terminal_progress
from harness.run.runner import run_scenarios
from harness.scenario.loader import scenario_from_text
from harness.store.live import LiveStats
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


def test_cells_running_at_once_each_end_under_their_own_label(monkeypatch):
    monkeypatch.setattr("harness.report.progress.key_label", lambda key: key)
    ui, out, clock = _ui()
    ui.run_started(3)
    ui.cell_started("lab", "asyncio", 10, cell_id=7)
    ui.cell_started("lab", "uvloop", 10, cell_id=8)
    ui.cell_finished({"requests": 10, "errors": 0, "makespan_ns": 10**9}, cell_id=7)
    ui.cell_started("lab", "threads", 10, cell_id=9)
    ui.cell_finished({"requests": 10, "errors": 1, "makespan_ns": 10**9}, cell_id=9)
    ui.cell_finished({"requests": 10, "errors": 2, "makespan_ns": 10**9}, cell_id=8)
    assert [line.split(":")[0] + line.split(",")[1] for line in out.getvalue().splitlines()] == [
        "cell 1/3 lab asyncio 0 errors", "cell 3/3 lab threads 1 errors",
        "cell 2/3 lab uvloop 2 errors"]


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


def _terminal(width=200):
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=width, color_system=None)
    progress = terminal_progress(console)
    return TerminalUI(progress), console, out


def _screen(ui: TerminalUI, console: Console, out: io.StringIO) -> str:
    """What the view shows now (rendered once, without its refresh thread)."""
    out.seek(0)
    out.truncate()
    console.print(ui.progress.get_renderable())
    return out.getvalue()


def test_the_terminal_shows_the_start_up_step_then_the_last_second(monkeypatch):
    monkeypatch.setattr("harness.report.progress.key_label", lambda key: "threads c=10")
    ui, console, out = _terminal()
    ui.run_started(2)
    ui.cell_phase("calibrating")  # before any cell: on the run's line
    assert "calibrating" in _screen(ui, console, out)
    ui.cell_started("lab", None, 500)
    ui.cell_phase("connecting 10 000")
    screen = _screen(ui, console, out)
    assert "lab threads c=10" in screen and "connecting 10 000" in screen
    assert "calibrating" not in screen
    ui.cell_phase(None)  # the clock started
    assert "connecting" not in _screen(ui, console, out)
    ui.cell_progress(120)
    ui.cell_live(LiveStats(rate_per_s=1412.4, errors={"timeout": 3, "connect": 7},
                           p50_ns=1.2e6, p99_ns=8.44e6, in_flight=10))
    screen = _screen(ui, console, out)
    assert "120/500" in screen
    assert "1 412 req/s  p50 1.2ms  p99 8.4ms  in flight 10  errors connect 7, timeout 3" in screen
    ui.cell_live(LiveStats(rate_per_s=0.0))
    assert "0 req/s  p50 –  p99 –  no errors" in _screen(ui, console, out)


def test_cells_running_at_once_have_a_line_each(monkeypatch):
    monkeypatch.setattr("harness.report.progress.key_label", lambda key: key)
    ui, console, out = _terminal()
    ui.run_started(3)
    ui.cell_started("lab", "c=1", 100, "lab-0000")
    ui.cell_started("lab", "c=2", 100, "lab-0001")
    ui.cell_phase("connecting 2", "lab-0001")
    ui.cell_live(LiveStats(rate_per_s=77), "lab-0000")
    lines = _screen(ui, console, out).splitlines()
    first = next(line for line in lines if "lab c=1" in line)
    second = next(line for line in lines if "lab c=2" in line)
    assert "77 req/s" in first and "connecting 2" not in first
    assert "connecting 2" in second and "req/s" not in second
    ui.cell_finished({"requests": 100, "errors": 0}, "lab-0000")
    screen = _screen(ui, console, out)
    assert "lab c=1" not in screen and "lab c=2" in screen and "1/3" in screen
    ui.cell_progress(5, "lab-0000")  # a late word of a finished cell changes nothing
    assert _screen(ui, console, out) == screen


class _Watching(TerminalUI):
    """The terminal view, with what it showed after each start-up step and live figures."""

    def __init__(self, console: Console, out: io.StringIO) -> None:
        super().__init__(terminal_progress(console))
        self.console, self.out, self.seen = console, out, []

    def cell_phase(self, text, cell_id=None) -> None:
        super().cell_phase(text, cell_id)
        self.seen.append(_screen(self, self.console, self.out))

    def cell_live(self, stats, cell_id=None) -> None:
        super().cell_live(stats, cell_id)
        self.seen.append(_screen(self, self.console, self.out))


def test_a_run_on_a_terminal_shows_its_start_up_and_its_rate(tmp_path):
    text = small_scenario(requests=80, concurrency=4, backends="[threads]",
                          latency="100ms")
    ui = _Watching(*_terminal()[1:])
    result = run_scenarios([scenario_from_text(text, "s.yaml")], out=tmp_path / "out", ui=ui)
    assert not result.failures
    assert any("starting the mock server" in screen for screen in ui.seen)
    assert any("connecting 4" in screen for screen in ui.seen)
    rates = [int(found) for screen in ui.seen
             for found in re.findall(r"(\d+) req/s  p50 \d", screen)]
    assert rates and max(rates) > 0, ui.seen
