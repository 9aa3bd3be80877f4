"""`make bench`'s sitting, with its exact exit status: `harness run` of the scenarios into
ROOT/<UTC time>/, `bench.targets` on that run (its verdicts and RUN/summary.md, dated from the
sitting's start), and the HTML report. Each step runs whatever the others gave; the sitting exits
with the worst status, 130 > 3 > 2 > 1 > 0 (0 every target met, 1 one missed, 2 bad input, 3 a
cell failed). An interrupted run (130) stops it at once: the rows written so far stay.

`make bench` runs this; GNU make then reports `Error N` and exits 2 itself for any failed
recipe, so a CI job that must tell a missed target (1) from a failed run (3) runs this directly:

    .venv/bin/python -m bench.sitting [--root results/bench] [--html results/report.html]
                                      [--repeat N] [--bin .venv/bin] SCENARIO.yaml...
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench import ROOT, evidence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.sitting",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="+", metavar="SCENARIO.yaml")
    parser.add_argument("--root", default="results/bench", help="the run goes to ROOT/<time>/")
    parser.add_argument("--html", default="results/report.html", help="the HTML report")
    parser.add_argument("--repeat", type=int, help="harness run --repeat N")
    parser.add_argument("--bin", type=Path, default=Path(sys.executable).parent,
                        help="where `harness` and `python` are (default: this Python's)")
    parser.add_argument("--command", help="the command shown in summary.md (default: this one)")
    return parser


def step(argv: list[str], quiet: bool = False) -> int:
    """One step's exit status. Ctrl-C reaches the step itself (it shares the terminal's process
    group) and the step decides what to keep; this process only waits for it, then reports 130
    whatever the step made of the interrupt."""
    interrupted = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    try:
        proc = subprocess.Popen(argv, cwd=ROOT,
                                stdout=subprocess.DEVNULL if quiet else None)
        code = proc.wait()
    except OSError as exc:
        print(f"bench.sitting: {argv[0]}: {exc.strerror or exc}", file=sys.stderr)
        return evidence.FAILED
    finally:
        signal.signal(signal.SIGINT, previous)
    return evidence.INTERRUPTED if interrupted or code in (-signal.SIGINT, 130) else code


def sitting(args: argparse.Namespace, out: Path, started: Path) -> list[int]:
    """The three steps' statuses, in order (one when the run was interrupted)."""
    harness, python = str(args.bin / "harness"), str(args.bin / "python")
    repeat = ["--repeat", str(args.repeat)] if args.repeat else []
    run = step([harness, "run", *args.scenarios, *repeat, "--out", str(out)])
    if run == evidence.INTERRUPTED:
        return [run]
    targets = step([python, "-m", "bench.targets", str(out), "--scenarios", *args.scenarios,
                    "--sitting", str(started), "--run-status", str(run)])
    if targets == evidence.INTERRUPTED:
        return [run, targets]
    report = step([harness, "report", str(out), "--html", args.html], quiet=True)
    return [run, targets, report]


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        print("bench.sitting: --repeat: must be at least 1", file=sys.stderr)
        return evidence.NO_SETUP
    out = Path(args.root) / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    command = args.command or " ".join(["python -m bench.sitting", *argv])
    with tempfile.TemporaryDirectory(prefix="sitting-") as tmp:
        started = evidence.Sitting(command).save(Path(tmp) / "sitting.json")
        codes = sitting(args, out, started)
    worst = evidence.worst(*codes)
    names = ("harness run", "targets", "report")
    print(f"bench: {', '.join(f'{n} {c}' for n, c in zip(names, codes, strict=False))}; "
          f"exit {worst} ({out})")
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
