"""What HTTPS costs each backend and client: scenarios/tls.yaml with the mock server over TLS
and without (`--set server.tls=false`), alternating in one sitting so that both face the same
machine, then per backend × client the mean req/s of each, their ratio, and the median
connect_ns (TCP connect, plus the TLS handshake when on) of the connections the cells opened.

    python -m bench.tls_cost [--rounds 3] [--out DIR] [--markdown]

Each round runs the scenario twice (16 cells of 2 000 requests each, a minute or two).
Bounded: loopback only, every cell bounded by the scenario's request count."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from harness.core.stats import percentile, throughput_per_s
from harness.store.reader import read_run

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "tls.yaml"


def run(out: Path, tls: bool) -> None:
    subprocess.run([sys.executable, "-m", "harness", "run", str(SCENARIO), "-o", str(out),
                    "--force", "--quiet", "--set", f"server.tls={str(tls).lower()}"],
                   check=True, stdout=subprocess.DEVNULL)


def figures(folder: Path, tls: bool) -> pd.DataFrame:
    tables = read_run(folder)
    cells, rows = tables["cells"].to_pandas(), tables["requests"].to_pandas()
    connect = rows.groupby(["backend", "client"])["connect_ns"].agg(
        lambda ns: percentile(ns.dropna(), 50))
    found = []
    for cell in cells.itertuples():
        ok = cell.requests - cell.errors
        found.append({"backend": cell.backend, "client": cell.client, "tls": tls,
                      "rps": throughput_per_s(ok, cell.makespan_ns), "errors": cell.errors,
                      "connect_ms": connect[(cell.backend, cell.client)] / 1e6})
    return pd.DataFrame(found)


def table(found: pd.DataFrame) -> pd.DataFrame:
    mean = found.groupby(["backend", "client", "tls"]).agg(
        rps=("rps", "mean"), connect_ms=("connect_ms", lambda ms: percentile(ms, 50)),
        errors=("errors", "sum"))
    wide = mean.unstack("tls")
    result = pd.DataFrame({
        "req/s http": wide[("rps", False)], "req/s https": wide[("rps", True)],
        "https ÷ http": wide[("rps", True)] / wide[("rps", False)],
        "connect ms http": wide[("connect_ms", False)],
        "connect ms https": wide[("connect_ms", True)],
        "errors": wide[("errors", False)] + wide[("errors", True)]})
    return result.round(2)


def markdown(result: pd.DataFrame) -> str:
    lines = ["| backend | client | " + " | ".join(result.columns) + " |",
             "| --- | --- |" + " ---: |" * len(result.columns)]
    for (backend, client), row in result.iterrows():
        lines.append(f"| {backend} | {client} | " + " | ".join(f"{v:g}" for v in row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="tls-cost-"))
    found = []
    for i in range(args.rounds):
        for tls in (True, False) if i % 2 == 0 else (False, True):  # neither always first
            folder = root / f"{'https' if tls else 'http'}-{i}"
            run(folder, tls)
            found.append(figures(folder, tls))
    result = table(pd.concat(found))
    print(markdown(result) if args.markdown else result.to_string())
    print(f"runs: {root}")


if __name__ == "__main__":
    main()
