"""A run's progress as it goes: a live view on a terminal, plain lines elsewhere (a CI log, a
pipe, `nohup`), where a redrawn bar is noise and a line per cell is what a log wants."""

from __future__ import annotations

import contextlib
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.core.keys import key_label
from harness.core.stats import throughput_per_s
from harness.core.units import format_duration_ns, grouped
from harness.run.runner import RunUI
from harness.store.live import LiveStats

PLAIN_EVERY_S = 10.0  # a long cell's plain progress line, at most this often


@contextlib.contextmanager
def run_view(console: Console, quiet: bool):
    """The run's progress UI on `console`: the live view on a terminal (unless `quiet`), plain
    lines elsewhere."""
    if quiet or not console.is_terminal:
        yield PlainUI(console, quiet)
        return
    with terminal_progress(console) as progress:
        yield TerminalUI(progress)


def terminal_progress(console: Console) -> Progress:
    """The terminal's lines: the run's cells done, then one per running cell (its requests done
    of planned, the time since its clock started, and its live figures or start-up step)."""
    columns = [TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[live]}")]
    return Progress(*columns, console=console, transient=True)


def live_text(stats: LiveStats) -> str:
    """A running cell's last second: `412 req/s  p50 1.2ms  p99 8.4ms  in flight 10  errors
    timeout 3, connect 1`."""
    def took(ns: float) -> str:
        return "–" if ns != ns else format_duration_ns(ns)  # NaN: nothing ended yet

    parts = [f"{grouped(round(stats.rate_per_s))} req/s", f"p50 {took(stats.p50_ns)}",
             f"p99 {took(stats.p99_ns)}"]
    if stats.in_flight is not None:
        parts.append(f"in flight {grouped(stats.in_flight)}")
    errors = sorted(stats.errors.items(), key=lambda item: (-item[1], item[0]))
    parts.append("errors " + ", ".join(f"{name} {grouped(n)}" for name, n in errors)
                 if errors else "no errors")
    return "  ".join(parts)


def _print(console: Console, line: str) -> None:
    console.print(line, highlight=False, markup=False, soft_wrap=True)


class TerminalUI(RunUI):
    """Run progress on a terminal: cells done overall, and a line for each running cell (a
    cluster runs several at once): its start-up step until its clock starts, then its requests
    done of planned and its last second (rate, p50/p99, in flight, errors)."""

    wants_live = True

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.cells = None
        self.lines: dict = {}  # cell_id → its task

    def run_started(self, total_cells: int) -> None:
        self.cells = self.progress.add_task("cells", total=total_cells, live="")

    def cell_started(self, scenario, key, requests, cell_id=None) -> None:
        self._drop(cell_id)  # a cell tried again
        label = f"{scenario} {key_label(key)}"  # e.g. `x threads c=100 r=0 open 200/s`
        self.lines[cell_id] = self.progress.add_task(label, total=requests, live="")
        if self.cells is not None:
            self.progress.update(self.cells, live="")

    def cell_phase(self, text: str | None, cell_id=None) -> None:
        task = self.lines.get(cell_id)
        if task is None:  # the run's own step, before its cells (calibrating)
            if self.cells is not None:
                self.progress.update(self.cells, live=text or "")
        elif text is None:  # the clock started: the elapsed time counts from now
            self.progress.reset(task, live="")
        else:
            self.progress.update(task, live=text)

    def cell_progress(self, completed: int, cell_id=None) -> None:
        if cell_id in self.lines:
            self.progress.update(self.lines[cell_id], completed=completed)

    def cell_live(self, stats: LiveStats, cell_id=None) -> None:
        if cell_id in self.lines:
            self.progress.update(self.lines[cell_id], live=live_text(stats))

    def cell_finished(self, cell: dict, cell_id=None) -> None:
        self._drop(cell_id)
        if self.cells is not None:
            self.progress.advance(self.cells)

    def _drop(self, cell_id) -> None:
        task = self.lines.pop(cell_id, None)
        if task is not None:
            self.progress.remove_task(task)

    def note(self, line: str) -> None:
        _print(self.progress.console, f"note: {line}")


class PlainUI(RunUI):
    """Run progress as plain lines: one per finished cell, and one every PLAIN_EVERY_S in a
    long cell (the one started last, when several run at once). `quiet`: notes and progress
    stay unsaid (errors and the results line only). Start-up steps are not said."""

    def __init__(self, console: Console, quiet: bool = False,
                 clock=time.monotonic) -> None:
        self.console = console
        self.quiet = quiet
        self._clock = clock
        self.total = self.begun = 0
        self.label = ""
        self.labels: dict = {}  # cell_id → label, for cells that run at once (the cluster)
        self.planned: int | None = None
        self.started = self.said = 0.0
        self.current = None  # the cell_id of the cell whose progress is said

    def run_started(self, total_cells: int) -> None:
        self.total = total_cells

    def cell_started(self, scenario, key, requests, cell_id=None) -> None:
        self.current = cell_id
        self.begun += 1
        self.label = f"cell {self.begun}/{self.total} {scenario} {key_label(key)}"
        self.labels[cell_id] = self.label
        self.planned = requests
        self.started = self.said = self._clock()

    def cell_progress(self, completed: int, cell_id=None) -> None:
        now = self._clock()
        if cell_id != self.current or now - self.said < PLAIN_EVERY_S:
            return
        self.said = now
        of = f"/{self.planned}" if self.planned else ""
        self._say(f"{self.label}: {completed}{of} requests, {now - self.started:.0f} s")

    def cell_finished(self, cell: dict, cell_id=None) -> None:
        seconds = (cell.get("makespan_ns") or 0) / 1e9
        rate = throughput_per_s(cell["requests"] - cell["errors"], cell.get("makespan_ns"))
        rate = f", {rate:.1f} req/s" if seconds > 0 else ""  # the summary's figure
        state = "" if cell.get("complete", True) else " (incomplete)"
        label = self.labels.pop(cell_id, self.label)  # the finished cell's, not the last begun
        self._say(f"{label}: {cell['requests']} requests, {cell['errors']} errors"
                  f"{rate} over {seconds:.2f} s{state}")

    def note(self, line: str) -> None:
        self._say(f"note: {line}")

    def _say(self, line: str) -> None:
        if not self.quiet:
            _print(self.console, line)
