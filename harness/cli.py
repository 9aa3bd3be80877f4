"""The command line: parse, call the core, print; errors map to exit codes here only.

Exit status: 0 ok, 2 bad input (one line on stderr), 130 interrupted (records kept)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.backends import BACKEND_NAMES, DESCRIPTIONS
from harness.errors import HarnessError
from harness.scenario import load_scenario

EXIT_INTERRUPTED = 130
# Piped or captured output gets a wide table instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 250)
err_console = Console(stderr=True)


class _ProgressUI:
    """Run progress on stderr: cells done overall, requests done in the current cell."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.cells = self.cell = None

    def run_started(self, total_cells: int) -> None:
        self.cells = self.progress.add_task("cells", total=total_cells)

    def cell_started(self, scenario, key, requests) -> None:
        if self.cell is not None:
            self.progress.remove_task(self.cell)
        label = f"{scenario} {key.backend} c={key.concurrency} r={key.repetition}"
        self.cell = self.progress.add_task(label, total=requests)

    def cell_progress(self, completed: int) -> None:
        self.progress.update(self.cell, completed=completed)

    def cell_finished(self, cell: dict) -> None:
        self.progress.update(self.cell, completed=cell["requests"])
        self.progress.advance(self.cells)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="harness")
def cli() -> None:
    """Benchmark Python concurrency backends (threads, processes, asyncio, uvloop) with
    declarative YAML scenarios against a local mock server."""


@cli.command()
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--backend", "-b", "backends", multiple=True, type=click.Choice(BACKEND_NAMES),
              help="Run only these backends (repeatable). Default: the scenario's list.")
@click.option("--out", "-o", type=click.Path(path_type=Path),
              help="Write the Parquet files directly into DIR. "
                   "Default: results/<scenario>/<run id>/")
@click.option("--repeat", "-r", type=click.IntRange(min=1), help="Repetitions per cell.")
@click.option("--force", is_flag=True, help="Allow writing into a non-empty --out directory.")
def run(scenarios, backends, out, repeat, force) -> None:
    """Run SCENARIO files and print a summary per cell."""
    from harness.analysis import load_runs, summarize
    from harness.report import print_summary
    from harness.runner import run_scenarios

    loaded = [load_scenario(path) for path in scenarios]
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn()]
    with Progress(*columns, console=err_console, transient=True) as progress:
        result = run_scenarios(loaded, backends=backends, repeat=repeat, out=out, force=force,
                               ui=_ProgressUI(progress))
    written = [d for d in result.out_dirs if (d / "cells.parquet").exists()]
    if written:
        print_summary(summarize(*load_runs(written)), console)
    for path in result.out_dirs:
        console.print(f"results: {path}")
    if result.interrupted:
        err_console.print("interrupted: every finished cell and every record measured so far "
                          "was written")
        sys.exit(EXIT_INTERRUPTED)


@cli.command()
@click.argument("dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
def report(dirs) -> None:
    """Print the summary table of run directories, from their Parquet files alone."""
    from harness.analysis import load_runs, summarize
    from harness.report import print_summary

    print_summary(summarize(*load_runs(list(dirs))), console)


@cli.command()
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate(scenarios) -> None:
    """Check SCENARIO files without running them."""
    for path in scenarios:
        loaded = load_scenario(path)
        console.print(f"{path}: ok ({loaded.scenario.name})")


@cli.command("list")
@click.option("--dir", "folder", default="scenarios", type=click.Path(path_type=Path),
              show_default=True, help="Where to look for scenarios.")
def list_(folder: Path) -> None:
    """Show the backends and the scenarios in scenarios/."""
    console.print("[bold]backends[/]")
    for name in BACKEND_NAMES:
        console.print(f"  {name:<10} {DESCRIPTIONS[name]}")
    console.print(f"[bold]scenarios[/] ({folder})")
    for path in sorted(folder.glob("*.y*ml")):
        try:
            scenario = load_scenario(path).scenario
            console.print(f"  {path.name:<20} {scenario.description.strip().splitlines()[0]}"
                          if scenario.description else f"  {path.name}")
        except HarnessError as exc:
            console.print(f"  {path.name:<20} [red]invalid: {exc}[/]")


@cli.command()
@click.argument("scenario", type=click.Path(path_type=Path))
@click.option("--port", "-p", default=0, type=click.IntRange(0, 65535),
              help="Port on 127.0.0.1 (0: any free port).")
def serve(scenario: Path, port: int) -> None:
    """Run SCENARIO's mock server in the foreground (e.g. to point wrk at it)."""
    from harness.server import serve as serve_forever

    config = load_scenario(scenario).scenario.server
    if config is None:
        raise HarnessError(f"{scenario}: server: this scenario has no mock server to serve")

    def announce(url: str) -> None:
        console.print(f"mock server on {url} — endpoints: "
                      + ", ".join(f"{url}/{name}" for name in config.endpoints)
                      + f", {url}/stats; Ctrl-C stops")

    try:
        serve_forever(config, port=port, announce=announce)
    except OSError as exc:
        raise HarnessError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except HarnessError as exc:
        err_console.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
