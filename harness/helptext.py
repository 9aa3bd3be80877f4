"""The CLI's words that several commands share: option help, and each command's exit codes
(printed under its --help)."""

from __future__ import annotations

BAD_INPUT = "2 bad input (a scenario, an option, a folder: one line says which)"
EXITS = {
    "run": ["0 every cell ran and every threshold held", "1 a threshold failed", BAD_INPUT,
            "3 a cell failed or lost rows", "130 interrupted (what was measured is kept)"],
    "report": ["0 read", "1 a threshold failed", BAD_INPUT, "3 a cell failed or lost rows"],
    "compare": ["0 compared, whatever the verdict", "1 a significant regression, with "
                "--fail-on-regression", BAD_INPUT],
    "saturate": ["0 a rate was found for every backend", "1 one fails even at the start rate",
                 BAD_INPUT, "130 interrupted (the probes done are kept)"],
    "validate": ["0 every file is valid", BAD_INPUT],
    "schema": ["0 printed"],
    "list": ["0 listed"],
    "serve": ["0 stopped by Ctrl-C", BAD_INPUT],
    "export": ["0 written (also when a reader such as head stops early)", BAD_INPUT],
}


def epilog(command: str) -> str:
    r"""The exit codes, for a command's --help (\b: click keeps the lines as they are)."""
    return "\b\nExit codes:\n" + "\n".join(f"  {line}" for line in EXITS[command])


PYTHON_HELP = ("Run the cells under this interpreter (repeatable; replaces the scenario's "
               "interpreters:): a version (3.12, 3.14t), a path, ft (make python-ft's "
               "free-threaded build) or ft-gil (it with PYTHON_GIL=1); a trailing ? skips "
               "an absent one.")
CLUSTER_HELP = ("Run the cells on a Dask cluster: its scheduler's address, e.g. "
                "tcp://HOST:8786 (one cell per machine at a time; needs the cluster extra).")
NO_LEGEND_HELP = "Leave out the legends under the tables."
WIDE_HELP = ("Show every column of the summary table (the default fits 100 columns; "
             "markdown, json and csv always have every column).")


def quick_options(command):
    """`run URL`'s options (hey's): the scenario made from them (harness.scenario.quick)."""
    import click

    for option in reversed([
        click.option("-n", "--requests", type=click.IntRange(min=1),
                     help="URL runs: requests in the cell (default 200)."),
        click.option("-c", "--concurrency", type=click.IntRange(min=1),
                     help="URL runs: in flight at most (default 50; with --rate, "
                          "max_in_flight)."),
        click.option("--rate", metavar="R/s", help="URL runs: an open model at this rate."),
        click.option("--duration", metavar="D", help="URL runs: how long, e.g. 10s."),
        click.option("--client", "clients", multiple=True, type=click.Choice(["lean",
                                                                              "standard"]),
                     help="URL runs: the HTTP client (default lean; repeatable)."),
        click.option("--method", help="URL runs: the HTTP method (default GET)."),
        click.option("--header", "headers", multiple=True, metavar="'NAME: VALUE'",
                     help="URL runs: a request header (repeatable)."),
        click.option("--body", metavar="FILE", help="URL runs: the request body's file."),
        click.option("--tls-ca", metavar="FILE",
                     help="URL runs: https: trust this CA's PEM file (e.g. the one `harness "
                          "serve` prints for server.tls) instead of the system's."),
        click.option("--insecure", is_flag=True, default=None,
                     help="URL runs: https: do not verify the server's certificate."),
    ]):
        command = option(command)
    return command
