"""A run's progress as it goes: a live bar on a terminal, plain lines elsewhere (a CI log, a
pipe, `nohup`), where a redrawn bar is noise and a line per cell is what a log wants."""

from __future__ import annotations

import contextlib
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.core.keys import key_label
from harness.core.stats import throughput_per_s

PLAIN_EVERY_S = 10.0  # a long cell's plain progress line, at most this often


@contextlib.contextmanager
def run_view(console: Console, quiet: bool):
    """The run's progress UI on `console`: the live bar on a terminal (unless `quiet`), plain
    lines elsewhere."""
    if quiet or not console.is_terminal:
        yield PlainUI(console, quiet)
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True) as progress:
        yield TerminalUI(progress)


def _print(console: Console, line: str) -> None:
    console.print(line, highlight=False, markup=False, soft_wrap=True)


class TerminalUI:
    """Run progress on a terminal: cells done overall, requests done in the current cell."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.cells = self.cell = None

    def run_started(self, total_cells: int) -> None:
        self.cells = self.progress.add_task("cells", total=total_cells)

    def cell_started(self, scenario, key, requests) -> None:
        if self.cell is not None:
            self.progress.remove_task(self.cell)
        label = f"{scenario} {key_label(key)}"  # e.g. `x threads c=100 r=0 open 200/s`
        self.cell = self.progress.add_task(label, total=requests)

    def cell_progress(self, completed: int) -> None:
        self.progress.update(self.cell, completed=completed)

    def cell_finished(self, cell: dict) -> None:
        self.progress.update(self.cell, completed=cell["requests"])
        self.progress.advance(self.cells)

    def note(self, line: str) -> None:
        _print(self.progress.console, f"note: {line}")


class PlainUI:
    """Run progress as plain lines: one per finished cell, and one every PLAIN_EVERY_S in a
    long cell. `quiet`: notes and progress stay unsaid (errors and the results line only)."""

    def __init__(self, console: Console, quiet: bool = False,
                 clock=time.monotonic) -> None:
        self.console = console
        self.quiet = quiet
        self._clock = clock
        self.total = self.done = 0
        self.label = ""
        self.planned: int | None = None
        self.started = self.said = 0.0

    def run_started(self, total_cells: int) -> None:
        self.total = total_cells

    def cell_started(self, scenario, key, requests) -> None:
        self.label = f"cell {self.done + 1}/{self.total} {scenario} {key_label(key)}"
        self.planned = requests
        self.started = self.said = self._clock()

    def cell_progress(self, completed: int) -> None:
        now = self._clock()
        if now - self.said < PLAIN_EVERY_S:
            return
        self.said = now
        of = f"/{self.planned}" if self.planned else ""
        self._say(f"{self.label}: {completed}{of} requests, {now - self.started:.0f} s")

    def cell_finished(self, cell: dict) -> None:
        self.done += 1
        seconds = (cell.get("makespan_ns") or 0) / 1e9
        rate = throughput_per_s(cell["requests"] - cell["errors"], cell.get("makespan_ns"))
        rate = f", {rate:.1f} req/s" if seconds > 0 else ""  # the summary's figure
        state = "" if cell.get("complete", True) else " (incomplete)"
        self._say(f"{self.label}: {cell['requests']} requests, {cell['errors']} errors"
                  f"{rate} over {seconds:.2f} s{state}")

    def note(self, line: str) -> None:
        self._say(f"note: {line}")

    def _say(self, line: str) -> None:
        if not self.quiet:
            _print(self.console, line)
