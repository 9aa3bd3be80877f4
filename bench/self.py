"""`make bench-self`: the harness measured against its peers and against itself, side by
side in one sitting, every figure with its target and whether it was met. Exit status
(bench/evidence.py): 0 every judged target met; 1 a judged target missed (a target whose figure
was not measured counts as missed); 2 a peer cannot be set up, or bad arguments; 3 a section
failed (its figures are missing); 130 interrupted. --report-only: measure and write everything,
exit 0 whatever was missed or failed (still 2 on bad arguments or a missing peer).

Peers, set up here: wrk from the distribution's packages (`apt-get install -y wrk` when it is
missing) and Locust from PyPI into bench/.venv-locust (kept between runs). When one cannot be
set up the script exits 2 saying so, unless BENCH_SELF_ALLOW_SKIP=1: then the figures that need
it are reported as not measured, and not judged.

What it measures, all on loopback against the mock server's `fast` engine (GET /api, 128-byte
body), 50 connections, zero delay, `--seconds` each (default 5):

1. Throughput, `--rounds` rounds (default 3; fewer when the time budget runs short), each
   round: wrk -t1; Locust FastHttpUser headless (-u 50 -r 50); the bare lean and aiohttp loops
   (bench/bare_loops.py) on uvloop and on asyncio, and the bare lean thread loop (50 threads,
   a blocking lean connection each); `harness run` of every backend × client (a
   duration-bound closed cell each, its own fresh fast mock; a fresh mock for each peer too):
   the slots path (load.workers left out), the uvloop cells on generators 1 and 2, and uvloop
   and threads with the lean client again on the queue path (workers: 1). The harness's
   uvloop cells run between wrk, the bare uvloop loops and Locust, its asyncio cells between
   the bare asyncio loops, its threads cells after the bare thread loop; every other round in
   the reverse order. Ratios per round, medians over the rounds (bench/self_ratios.py): each
   backend × client ÷ wrk and ÷ Locust; harness ÷ the bare loop it wraps, in requests/s and in
   CPU per request (the cell's process tree; the bare loop's process); queue ÷ slots;
   generators 2 ÷ 1 against the two-core bound (bench/self_scaling.py). A harness ÷ bare-loop
   target outside its bound gets a note on where the time goes (bench/self_diagnose.py: the
   CPU split user/system/context switches beside the bare loop's; on a loop, a 2 s cProfile).
2. The mock's engines under wrk (bench/engines.py): raw floor, fast, aiohttp.
3. Latency p50/p99 at a fixed 50 ms delay: the harness on uvloop (lean, standard) − wrk.
4. Recording: ns per request that recording a row adds, today's buffer (bench/record_baseline.py,
   append) and the harness's (RecordBuffer.row, the hot paths' fast entry) side by side: the
   append alone, and with the cell's spooler thread draining to its Arrow IPC file (1 000 000
   requests minus the same loop without, median of 3 rounds; new ÷ today's ≤ 0.5 for each); and
   Parquet write/read time of 1 000 000 rows (the requests schema; and the cell-end path, the
   spool to Parquet through RunWriter.write_cell_data): each write cold (a fresh process's
   first, as a run's first cell pays it) and warm (as every later cell pays it).
5. 10 000 in flight: 1 s fixed delay, 30 000 requests, concurrency 10 000 (all released
   together), asyncio and uvloop × lean and standard × generators 1 and 2: errors, the
   server's peak in flight, loop lag p99. Then the threads backend: the highest thread count
   (500 … 10 000, three requests per thread) it runs with 0 errors.
6. The knee ordering (bench/self_saturate.py): `harness saturate scenarios/saturate.yaml` for
   uvloop and asyncio on the standard client, two shortened searches in opposite orders; each
   backend's knee the higher of its two; uvloop's ≥ asyncio's.

Results in RUN = results/bench-self/<UTC time>/: bench-self.parquet (name, value, unit, target,
met, verdict; the run's metadata under b"harness" in its key-value metadata) and summary.md
(machine, commit, date, CPU pressure before and after, every figure with its target and
verdict) — names no glob that reads runs picks up; the harness runs made here go to a temporary
folder. At most 15 minutes; where they go (PLAN_S, at the defaults): throughput ~8 min
(3 rounds of ~2.5 min: 12 harness cells ~95 s, 5 bare loops, wrk and Locust ~50 s), 10 000 in
flight ~4 min (8 cells ~1 min, the thread ladders ≤ 3 min), recording, engines and latency
~2 min, the knee ordering ~2 min. Printed at the start, and what each took at the end (also
in summary.md's notes).

    python -m bench.self [--seconds 5] [--rounds 3] [--quick] [--report-only]

--quick (for development): 2-second measurements, one round, a smaller 10 000-in-flight run
(3 000 requests at concurrency 1 000) and thread ladder, one cold Parquet process; its figures
do not answer the targets: `met` is null, the verdict "quick: not judged".

This module runs the sitting; its parts, one job each: bench/self_sitting.py (the time budget,
the figures and notes, a `harness run`), self_peers.py (wrk and Locust: set-up and one
measurement each, and the bare loops), the sections in the order they run (self_recording.py,
self_throughput.py, self_engines.py, self_latency.py, self_in_flight.py, self_saturate.py),
self_report.py (verdicts, the exit status, the files).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import ROOT, evidence
from bench.self_engines import engines
from bench.self_in_flight import in_flight
from bench.self_latency import latency
from bench.self_peers import setup_peers
from bench.self_recording import recording
from bench.self_report import finish, metadata, outcome, verdicts, write_parquet
from bench.self_saturate import saturate
from bench.self_sitting import BUDGET_S, Sitting, say
from bench.self_throughput import throughput

SECTIONS = (recording, throughput, engines, latency, in_flight, saturate)
# Seconds each section takes, about, at --seconds 5 --rounds 3 (sittings of 2026-12): a fixed
# part and a part per second of measurement; throughput's per round.
PLAN_S = {"recording": (40, 0), "throughput": (60, 18), "engines": (10, 3),
          "latency": (10, 2), "in_flight": (240, 0), "saturate": (120, 0)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="development: 2 s each, one round, small in-flight runs; "
                             "not judged")
    parser.add_argument("--report-only", action="store_true",
                        help="measure and write everything; exit 0 whatever was missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds = 2, 1
    if not 1 <= args.seconds <= 10 or not 1 <= args.rounds <= 5:
        parser.error("--seconds must be 1..10 and --rounds 1..5 (the run must fit in 15 min)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    record = evidence.Sitting()  # the start and the CPU pressure before anything runs
    when = f"{record.started:%Y%m%dT%H%M%SZ}"
    meta = metadata(args, when)
    with tempfile.TemporaryDirectory(prefix="bench-self-") as tmp:
        sitting = Sitting(args, Path(tmp))
        say(time_plan(args))
        try:
            setup_peers(sitting)
            spent = run_sections(sitting)
        except KeyboardInterrupt:
            print("bench-self: interrupted; nothing written", file=sys.stderr)
            return evidence.INTERRUPTED
    if args.quick:
        sitting.notes.insert(0, "--quick: 2 s measurements, one round, 1 000 in flight: not "
                                "the targets' conditions, so no figure is judged")
    sitting.notes.append(f"time spent: {time_spent(spent, sitting.elapsed())}")
    code, why = outcome(sitting.figures, sitting.failed, args.quick, args.report_only)
    out = ROOT / "results" / "bench-self" / when
    write_parquet(out, sitting.figures, finish(meta, sitting.elapsed(), code, sitting.notes))
    summary = record.write_summary(out, f"make bench-self ({when})", verdicts(sitting.figures),
                                   sitting.notes, code=code, code_why=why)
    say("\n" + summary.read_text())
    say(f"written: {out.relative_to(ROOT)}/bench-self.parquet, summary.md")
    return code


def run_sections(sitting: Sitting) -> dict[str, float]:
    """Every section in turn; the seconds each took."""
    spent = {}
    for section in SECTIONS:
        t0 = time.monotonic()
        try:
            section(sitting)
        except (subprocess.SubprocessError, RuntimeError, OSError, ValueError) as exc:
            # One section's failure is reported (exit 3); the others' figures still count.
            note = f"{section.__name__}: failed: {str(exc)[:300]}"
            sitting.failed.append(section.__name__)
            sitting.notes.append(note)
            say("  " + note)
        spent[section.__name__] = time.monotonic() - t0
    return spent


def time_plan(args) -> str:
    """Where the sitting's time should go, section by section, at these arguments."""
    parts = []
    for name, (fixed, per_s) in PLAN_S.items():
        rounds = args.rounds if name == "throughput" else 1
        if args.quick and name == "in_flight":
            fixed = 90  # 1 000 in flight and a shorter ladder
        parts.append(f"{name} ~{rounds * (fixed + per_s * args.seconds):.0f} s")
    return f"bench-self: time plan (budget {BUDGET_S} s): " + ", ".join(parts)


def time_spent(spent: dict[str, float], total: float) -> str:
    """What each section took, and the set-up (peers) and writing around them."""
    return ", ".join(f"{name} {s:.0f} s" for name, s in spent.items()) + \
        f", set-up and the rest {total - sum(spent.values()):.0f} s; in all {total:.0f} s"


if __name__ == "__main__":
    sys.exit(main())
