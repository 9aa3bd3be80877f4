"""The command line: parse, call the core, print; errors map to exit codes here only.

Exit status, one rule for `run` and `report`: 130 interrupted (records kept); else 3 when a
cell failed or lost rows (its process died, or released ≠ rows; the run went on); else 1 when a
threshold failed; else 0. `saturate`: 130 interrupted, 1 when a backend fails even at the start
rate, else 0. 2 is bad input (one line on stderr), for every command."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import click
from rich.console import Console

from harness.core.errors import HarnessError
from harness.core.keys import BACKEND_NAMES, BACKENDS
from harness.core.secrets import scrub
from harness.helptext import (
    CLUSTER_HELP,
    NO_LEGEND_HELP,
    PYTHON_HELP,
    WIDE_HELP,
    epilog,
    quick_options,
)
from harness.report.progress import run_view
from harness.saturate.search import DEFAULT_PROBE_NS, SearchOptions
from harness.scenario.loader import load_scenario
from harness.scenario.quick import is_url

_SEARCH = SearchOptions()  # the search's defaults, shown in `saturate --help`

EXIT_INTERRUPTED = 130
# Piped or captured output gets a wide table instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 250)
err_console = Console(stderr=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="harness")
def cli() -> None:
    """Benchmark Python concurrency backends (threads, processes, asyncio, uvloop) with
    declarative YAML scenarios against a local mock server."""


EXIT_THRESHOLDS = 1
EXIT_CELL_FAILED = 3


def _summarize_and_check(dirs: list[Path], fmt: str = "table", html: Path | None = None,
                         wide: bool = False, legend: bool = True, by: str | None = None) -> int:
    """Print the summary of run directories in `fmt` (`by`: the per-entry breakdown instead);
    returns the exit status it implies."""
    from harness.analysis.summary import cells_failed, load_runs, speedups, summarize
    from harness.report.table import (
        print_check_failures,
        print_notes,
        print_summary,
        print_thresholds,
        summary_markdown,
    )
    from harness.scenario.thresholds import evaluate, failed

    runs = load_runs(dirs)
    summary = summarize(runs)
    checks = evaluate(summary, runs.scenarios())
    if by == "request":
        _print_by_request(runs, fmt, legend)
    elif fmt == "table":
        print_summary(summary, console, wide, legend)
        print_check_failures(runs.requests, console)
        print_notes(runs.metadata, console)
        print_thresholds(checks, console)
    elif fmt == "quiet":
        pass  # the exit status says it
    elif fmt == "markdown":
        click.echo(summary_markdown(summary))
    elif fmt == "json":
        click.echo(json.dumps({"cells": json.loads(summary.to_json(orient="records")),
                               "speedups": json.loads(speedups(summary).to_json(
                                   orient="records")),
                               "thresholds": json.loads(checks.to_json(orient="records"))},
                              indent=2))
    else:
        click.echo(summary.to_csv(index=False), nl=False)
    if html is not None:
        from harness.report.html import write_report

        write_report(runs, summary, checks, html)
        err_console.print(f"report: {html}")
    if cells_failed(summary):
        return EXIT_CELL_FAILED
    return EXIT_THRESHOLDS if failed(checks) else 0


def _print_by_request(runs, fmt: str, legend: bool) -> None:
    from harness.analysis.by_request import by_request
    from harness.report.by_request import by_request_markdown, print_by_request

    frame = by_request(runs)
    if fmt == "table":
        print_by_request(frame, console, legend)
    elif fmt == "markdown":
        click.echo(by_request_markdown(frame))
    elif fmt == "json":
        click.echo(json.dumps({"requests": json.loads(frame.to_json(orient="records"))},
                              indent=2))
    else:
        click.echo(frame.to_csv(index=False), nl=False)


@cli.command(epilog=epilog("run"))
@click.argument("scenarios", nargs=-1, required=True, metavar="SCENARIO|URL...")
@click.option("--backend", "-b", "backends", multiple=True, type=click.Choice(BACKEND_NAMES),
              help="Run only these backends (repeatable). Default: the scenario's list.")
@click.option("--out", "-o", type=click.Path(path_type=Path), metavar="DIR",
              help="Write the Parquet files directly into DIR. "
                   "Default: results/<scenario>/<run id>/")
@click.option("--repeat", "-r", type=click.IntRange(min=1), help="Repetitions per cell.")
@click.option("--python", "pythons", multiple=True, metavar="SPEC", help=PYTHON_HELP)
@click.option("--force", is_flag=True, help="Allow writing into a non-empty --out directory.")
@click.option("--allow-remote", is_flag=True,
              help="Allow a `target:` that is not a loopback address.")
@click.option("--cluster", metavar="ADDRESS", help=CLUSTER_HELP)
@click.option("--set", "sets", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override one key of every scenario before it is validated (repeatable; "
                   "VALUE is YAML), e.g. --set load.concurrency=50; run.json keeps the "
                   "effective text and the overrides.")
@click.option("--wide", is_flag=True, help=WIDE_HELP)
@click.option("--no-legend", is_flag=True, help=NO_LEGEND_HELP)
@click.option("--quiet", "-q", is_flag=True,
              help="Print only errors and the final results line (no progress, no tables).")
@quick_options
def run(scenarios, backends, out, repeat, pythons, force, allow_remote, cluster, sets,
        wide, no_legend, quiet, **quick) -> None:
    """Run SCENARIO files and print a summary per cell. Exit 3 when a cell failed or lost
    rows, 1 when a threshold fails, 130 when interrupted."""
    from harness.run.runner import run_scenarios
    from harness.scenario.quick import load

    loaded = [load(text, tuple(sets), tuple(backends), quick) for text in scenarios]
    if any(is_url(text) for text in scenarios):
        backends = ()  # a URL's scenario has them already (the files' are run whole)
    with run_view(err_console, quiet) as ui:
        result = run_scenarios(loaded, backends=backends, repeat=repeat, out=out, force=force,
                               ui=ui, allow_remote=allow_remote, pythons=pythons,
                               cluster=cluster)
    for failure in result.failures:
        err_console.print(f"error: {failure}", highlight=False, markup=False, soft_wrap=True)
    status = _summarize_and_check(result.out_dirs, "quiet" if quiet else "table", wide=wide,
                                  legend=not no_legend)
    for path in result.out_dirs:
        console.print(f"results: {path}")
    if result.interrupted:
        err_console.print("interrupted: every finished cell and every record measured so far "
                          "was written")
        sys.exit(EXIT_INTERRUPTED)
    if result.failures:
        status = EXIT_CELL_FAILED
    sys.exit(status)


@cli.command(epilog=epilog("report"))
@click.argument("dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json", "csv"]),
              default="table", show_default=True)
@click.option("--html", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write a self-contained HTML report with plots to FILE.")
@click.option("--wide", is_flag=True, help=WIDE_HELP)
@click.option("--no-legend", is_flag=True, help=NO_LEGEND_HELP)
@click.option("--by", type=click.Choice(["request"]),
              help="Break each cell down by its workload.requests entry (the `request` "
                   "column) instead of the summary.")
def report(dirs, fmt, html, wide, no_legend, by) -> None:
    """Summarize run directories from their Parquet files alone. Exit 3 when a cell failed or
    lost rows, 1 when a threshold fails."""
    sys.exit(_summarize_and_check(list(dirs), fmt, html, wide, legend=not no_legend, by=by))


@cli.command("compare", epilog=epilog("compare"))
@click.argument("base", type=click.Path(path_type=Path))
@click.argument("new", required=False, type=click.Path(path_type=Path))
@click.option("--between", metavar="A,B",
              help="Compare backend B against backend A inside BASE (no NEW).")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json"]),
              default="table", show_default=True)
@click.option("--fail-on-regression", is_flag=True,
              help="Exit 1 when a configuration is significantly slower (for CI). "
                   "Configurations with too few repetitions never fail.")
def compare_cmd(base, new, between, fmt, fail_on_regression) -> None:
    """Compare NEW against BASE (two run directories), or two backends with --between.
    Exit 0 when compared, whatever the verdict (also when there are too few repetitions to
    test); 2 when the inputs cannot be compared."""
    from harness.analysis.compare import compare, regressed, too_few_note
    from harness.analysis.summary import load_runs
    from harness.report.compare import comparison_markdown, comparison_rows, title
    from harness.report.table import new_table

    pair = None
    if between:
        pair = tuple(part.strip() for part in between.split(","))
        if len(pair) != 2 or not all(p in BACKEND_NAMES for p in pair) or new is not None:
            raise HarnessError(f"--between: needs two backends, A,B (got {between!r}), "
                               "and no NEW")
    elif new is None:
        raise HarnessError("compare: needs BASE and NEW, or BASE with --between A,B")
    table = compare(load_runs([base]), None if pair else load_runs([new]), pair)
    note = too_few_note(table)
    if fmt == "markdown":
        click.echo(comparison_markdown(table))
    elif fmt == "json":
        click.echo(table.to_json(orient="records", indent=2))
        if note:
            err_console.print(note, highlight=False, markup=False, soft_wrap=True)
    else:
        headers, body = comparison_rows(table)
        out = new_table(title(table), headers, text=(headers[0], headers[1], headers[-1]))
        for cells in body:
            out.add_row(*cells)
        console.print(out)
        if note:
            console.print(note, highlight=False, markup=False, soft_wrap=True)
    if fail_on_regression and regressed(table):
        sys.exit(EXIT_THRESHOLDS)


def _option_value(option: str, parse, value):
    """A parsed option value, or bad input (exit 2) in one line."""
    try:
        return parse(value)
    except ValueError as exc:
        raise HarnessError(f"{option}: {exc}") from None


def _rate(value: str) -> float:
    from harness.core.units import parse_rate_per_s

    try:
        return float(value)
    except ValueError:
        return parse_rate_per_s(value)


@cli.command("saturate", epilog=epilog("saturate"))
@click.argument("scenario", type=click.Path(path_type=Path))
@click.option("--slo", "slos", multiple=True, required=True, metavar="SLO",
              help="What must hold at the knee (repeatable): 'p99 < 50ms' (p50, p90, p99, "
                   "p999, max with a duration) or the expect: grammar, 'p99_ms < 50', "
                   "'asyncio: error_rate <= 0.001'.")
@click.option("--backend", "-b", "backends", multiple=True, type=click.Choice(BACKEND_NAMES),
              help="Search only these backends (repeatable). Default: the scenario's list.")
@click.option("--start-rate", metavar="RATE",
              help="Where the doubling starts: 50/s, 3/m or a number per second. Default: the "
                   "scenario's lowest open-model rate, else 10/s.")
@click.option("--max-rate", metavar="RATE", default=f"{_SEARCH.max_rate_per_s:.0f}/s",
              show_default=True,
              help="The doubling stops here (a 'ceiling' result).")
@click.option("--max-error-rate", type=float, default=_SEARCH.max_error_rate, show_default=True,
              help="Most errors ÷ requests a probe may have and pass.")
@click.option("--probe-duration", default=f"{DEFAULT_PROBE_NS / 1e9:g}s", show_default=True,
              help="Each probe's measured length (its warm-up, if the scenario has one, comes "
                   "on top).")
@click.option("--precision", type=float, default=_SEARCH.precision, show_default=True,
              help="Bisect until (first fail − last pass) ÷ last pass is at most this.")
@click.option("--final-probes", "repeats", type=int, default=_SEARCH.repeats,
              show_default=True,
              help="Probes repeated at each end of the final step, for the range.")
@click.option("--repeats", "repeats_old", type=int, hidden=True)  # the old spelling
@click.option("--confirm", type=int, default=_SEARCH.confirm, show_default=True,
              help="Extra tries of a failed probe (start, doubling, bisection) before it counts "
                   "as a failure: a stall of a shared machine is not the backend's.")
@click.option("--out", "-o", type=click.Path(path_type=Path), metavar="DIR",
              help="Write one run folder per probe under DIR (DIR/probe-NNN/) and the search "
                   "to DIR/saturate.json. Default: results/<scenario>/saturate-<run id>/")
@click.option("--python", "pythons", multiple=True, metavar="SPEC",
              help="Search under this interpreter (repeatable; replaces the scenario's "
                   "interpreters:): a version, a path, ft or ft-gil; ? if optional.")
@click.option("--force", is_flag=True, help="Allow writing into a non-empty --out directory.")
@click.option("--allow-remote", is_flag=True,
              help="Allow a `target:` that is not a loopback address.")
@click.option("--cluster", metavar="ADDRESS", help=CLUSTER_HELP)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def saturate_cmd(scenario, slos, backends, start_rate, max_rate, max_error_rate,
                 probe_duration, precision, repeats, repeats_old, confirm, pythons, out,
                 force, allow_remote, cluster, fmt) -> None:
    """Find each backend's knee: the highest open-model rate at which every SLO holds, the
    error rate stays at most --max-error-rate and the generator keeps its schedule (doubling
    from --start-rate, then bisection, a failed probe tried --confirm times more; the final
    step repeated for a range). Progress on
    stderr. Exit 0 when a rate was found for every backend, 1 when one fails even at the
    start rate, 130 when interrupted."""
    from harness.core.units import format_rate, parse_duration_ns
    from harness.report.saturate import results_table, step_line
    from harness.saturate.probes import default_start_rate, run_search
    from harness.saturate.search import describe, exit_code, parse_slo, results_json
    from harness.store.meta import new_run_id

    repeats = repeats if repeats_old is None else repeats_old
    loaded = load_scenario(scenario)
    names = loaded.scenario.backends
    parsed = [_option_value("--slo", lambda text: parse_slo(text, names), text)
              for text in slos]
    duration_ns = _option_value("--probe-duration", parse_duration_ns, probe_duration)
    if duration_ns <= 0:
        raise HarnessError(f"--probe-duration: must be > 0 (got {probe_duration!r})")
    start = (default_start_rate(loaded) if start_rate is None
             else _option_value("--start-rate", _rate, start_rate))
    try:
        options = SearchOptions(start_rate_per_s=start, max_error_rate=max_error_rate,
                                precision=precision, repeats=repeats, confirm=confirm,
                                max_rate_per_s=_option_value("--max-rate", _rate, max_rate))
    except ValueError as exc:
        raise HarnessError(str(exc)) from None
    out = out or Path("results") / loaded.scenario.name / f"saturate-{new_run_id()}"

    status = err_console.status("")

    def on_start(backend, client, rate, folder) -> None:
        status.update(f"{backend} {client}: probing {format_rate(rate)} ({folder.name})")

    def progress(step, folder) -> None:
        err_console.print(step_line(step, folder), highlight=False, markup=False,
                          soft_wrap=True)

    with status:
        results = run_search(loaded, parsed, out, backends, options, duration_ns, force,
                             allow_remote, on_start, progress, pythons=pythons,
                             note=lambda line: err_console.print(
                                 f"note: {line}", highlight=False, markup=False,
                                 soft_wrap=True), cluster=cluster)
    if fmt == "json":  # the results' folder inside the JSON (`results` holds the knees)
        click.echo(json.dumps({**results_json(results), "results_dir": str(out)}, indent=2,
                              allow_nan=False))
    else:
        console.print(results_table(results, f"{loaded.scenario.name}: max sustainable rate "
                                              f"({', '.join(s.text for s in parsed)})"))
        for r in results:
            if r.status == "fails_at_start":
                console.print(describe(r), highlight=False, markup=False, soft_wrap=True)
        console.print(f"results: {out}", highlight=False, markup=False)
    sys.exit(exit_code(results))


@cli.command(epilog=epilog("export"))
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "hgrm"]), default="csv",
              show_default=True,
              help="csv or jsonl: one line per request; hgrm: per cell its response-time "
                   "percentile distribution in HdrHistogram's text format (ms), into --out DIR.")
@click.option("--where", metavar="EXPR",
              help="Keep the rows where EXPR holds: COLUMN OP VALUE terms joined by and, e.g. "
                   "'backend == \"uvloop\" and concurrency >= 10' (OP: == != < <= > >=).")
@click.option("--columns", metavar="A,B,...", help="Only these columns, in this order.")
@click.option("--out", "-o", type=click.Path(path_type=Path), metavar="FILE|DIR",
              help="Write to FILE (csv, jsonl; default: stdout) or into DIR (hgrm).")
def export(run_dir, fmt, where, columns, out) -> None:
    """Write RUN's per-request rows as CSV or JSON lines, streamed file by file; or each
    cell's response-time distribution (--format hgrm)."""
    from harness.report.export import export as write_export

    said = write_export(run_dir, fmt, where, columns, out)
    if said:
        console.print(f"results: {said}", highlight=False, markup=False)


@cli.command(epilog=epilog("schema"))
def schema() -> None:
    """Print the JSON Schema of scenario files (for editor completion and checks)."""
    from harness.scenario.model import json_schema

    click.echo(json.dumps(json_schema(), indent=2, ensure_ascii=False))


@cli.command(epilog=epilog("validate"))
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--allow-remote", is_flag=True,
              help="Allow a `target:` that is not a loopback address (as run does).")
def validate(scenarios, allow_remote) -> None:
    """Check SCENARIO files without running them: every check `run` makes of them before it
    starts (a remote target, a body file, a service's python); whether a PostgreSQL they
    need is running is looked at by `run`."""
    from harness.run.runner import preflight

    for path in scenarios:
        loaded = load_scenario(path)
        preflight(loaded, allow_remote, services=False)
        console.print(f"{path}: ok ({loaded.scenario.name})")


@cli.command("list", epilog=epilog("list"))
@click.option("--dir", "folder", default="scenarios", type=click.Path(path_type=Path),
              show_default=True, help="Where to look for scenarios.")
def list_(folder: Path) -> None:
    """Show the backends and the scenarios in scenarios/."""
    console.print("[bold]backends[/]")
    for name in BACKEND_NAMES:
        console.print(f"  {name:<10} {BACKENDS[name].description}")
    console.print(f"[bold]scenarios[/] ({folder})")
    found = sorted(folder.glob("*.y*ml"))
    if not found:
        console.print(f"  none: no *.yaml file in {folder} (--dir names another folder)",
                      highlight=False, markup=False)
    width = min(console.width, 100)
    for path in found:
        try:
            scenario = load_scenario(path).scenario
        except HarnessError as exc:
            console.print(f"  {path.name:<24} invalid: {exc}", style="red", highlight=False,
                          markup=False, soft_wrap=True)
            continue
        text = " ".join((scenario.description or "").split())  # the whole description
        lines = textwrap.wrap(text, width - 27) or [""]
        console.print(f"  {path.name:<24} {lines[0]}", highlight=False, markup=False)
        for line in lines[1:]:
            console.print(f"  {'':<24} {line}", highlight=False, markup=False)


@cli.command(epilog=epilog("serve"))
@click.argument("scenario", type=click.Path(path_type=Path))
@click.option("--port", "-p", default=0, type=click.IntRange(0, 65535),
              help="Port on 127.0.0.1 (0: any free port).")
@click.option("--python", "python", metavar="SPEC",
              help="Serve under this interpreter (sets server.python): a version (3.12, "
                   "3.14t), a path, ft or ft-gil.")
def serve(scenario: Path, port: int, python: str | None) -> None:
    """Run SCENARIO's mock server in the foreground (e.g. to point wrk at it)."""
    from harness.core.wire import OWN_ROUTES
    from harness.mock.serve import fds_wanted
    from harness.mock.serve import serve as serve_forever

    item = load_scenario(scenario)
    loaded = item.scenario
    config = loaded.server
    if config is None:
        raise HarnessError(f"{scenario}: server: this scenario has no mock server to serve")
    if python is not None:
        from harness.scenario.interpreters import parse_spec

        _option_value("--python", parse_spec, python)
        config = config.model_copy(update={"python": python.removesuffix("?")})

    def announce(url: str) -> None:
        processes = f", {config.processes} processes" if config.processes > 1 else ""
        processes += f", python {config.python}" if config.python else ""
        console.print(f"mock server ({config.engine} engine{processes}) on {url} — endpoints "
                      "(any method): "
                      + ", ".join(f"{url}/{name}" for name in config.endpoints)
                      + f"; its own: {url}{OWN_ROUTES}/stats, {OWN_ROUTES}/health, "
                      f"POST {OWN_ROUTES}/clock; Ctrl-C stops", soft_wrap=True)

    if config.python is not None:
        from harness.run.foreground import serve_under

        where = "--python" if python is not None else f"{scenario}: server.python"
        sys.exit(serve_under(item, config.python, port, announce, where))
    try:
        serve_forever(config, port=port, announce=announce, fds=fds_wanted(loaded))
    except OSError as exc:
        raise HarnessError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except HarnessError as exc:
        err_console.print(f"error: {scrub(str(exc))}", highlight=False, markup=False,
                          soft_wrap=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
