"""The inference service as the system under test: per cell of the
inference_service_* scenarios (or any run given), the response time's p50 and p99 — end −
scheduled of the measured requests, so the time a request waited for the server counts — the
rate it kept up with (ok requests ÷ first intended start to last end: below the arrival rate, a
queue grew), the mock server's own event-loop lag p99 and its CPU time; then the target: at the
same rate, inline's response-time p99 several (≥ 3) times each pool's.

    python -m bench.inference_service [DIR...] [--out RUN]  # default: the newest of each
    python -m bench.inference_service --run [--backend asyncio] [--out RUN]

`--run` runs the three scenarios first (`harness run`, into RUN). RUN (default
results/inference_service/<UTC time>/) gets summary.md. A benchmark, not a test: it prints what
was measured and whether the target was met, and exits 0 when every inline/pool pair met it, 1
when one missed, 2 without runs or without a pair to judge, 3 when a cell of --run failed."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench import ROOT, evidence
from bench.evidence import MET, MISSED, NO_SETUP, Verdict
from harness.core.errors import HarnessError
from harness.core.stats import median, percentile
from harness.store.reader import find_run_dirs, read_run

MODES = ("inline", "thread_pool", "process_pool")
SCENARIOS = [ROOT / "scenarios" / f"inference_service_{mode}.yaml" for mode in MODES]
FACTOR = 3.0  # inline's response-time p99 ≥ this × each pool's


def newest(root: Path) -> list[Path]:
    runs = []
    for folder in sorted(root.glob("inference_service_*")):
        done = sorted(p for p in folder.iterdir() if (p / "run.json").exists())
        runs.extend(done[-1:])
    return runs


def figures(run_dirs: list[Path]) -> list[dict]:
    rows = []
    for run_dir in run_dirs:
        tables = read_run(run_dir)
        requests = tables["requests"].to_pandas()
        for cell in tables["cells"].to_pylist():
            mine = requests[(requests.run_id == cell["run_id"])
                            & (requests.scenario == cell["scenario"])
                            & (requests.backend == cell["backend"])
                            & (requests.repetition == cell["repetition"])
                            & (requests.rate_per_s == cell["rate_per_s"])
                            & (requests.phase == "measure")]
            ok = mine[mine.ok]
            response = (ok.end_ns - ok.scheduled_ns).to_numpy() / 1e6
            # completions per second over the measured stretch: below the rate, a queue grew
            span_s = (ok.end_ns.max() - mine.scheduled_ns.min()) / 1e9 if len(ok) else 0
            lag = cell.get("server_loop_lag_p99_ns")
            rows.append({
                "scenario": cell["scenario"], "backend": cell["backend"],
                "rate": cell["rate_per_s"], "rep": cell["repetition"],
                "requests": len(mine), "errors": int((~mine.ok).sum()),
                "done_per_s": len(ok) / span_s if span_s else float("nan"),
                "p50_ms": percentile(response, 50), "p99_ms": percentile(response, 99),
                "srv_lag_p99_ms": lag / 1e6 if lag is not None else float("nan"),
                "srv_cpu_s": cell.get("server_cpu_s"),
            })
    return rows


def mode_of(scenario: str) -> str | None:
    return next((m for m in MODES if scenario.endswith(m)), None)


def verdicts(rows: list[dict]) -> list[Verdict]:
    """Per backend and rate: inline's response-time p99 (median over repetitions) ÷ each
    pool's, judged against FACTOR."""
    by: dict = {}  # (backend, rate) → mode → p99 of each repetition
    for r in rows:
        if (mode := mode_of(r["scenario"])) is not None:
            by.setdefault((r["backend"], r["rate"]), {}).setdefault(mode, []).append(r["p99_ms"])
    found = []
    for (backend, rate), modes in by.items():
        p99 = {mode: median(values) for mode, values in modes.items()}
        for pool in ("thread_pool", "process_pool"):
            if "inline" in p99 and pool in p99 and not np.isnan(p99[pool]):
                ratio = p99["inline"] / p99[pool]
                found.append(Verdict(f"{backend} at {rate:.0f}/s: inline p99 ÷ {pool}'s",
                                     f"{ratio:.1f} ({p99['inline']:.1f} ms ÷ {p99[pool]:.1f} ms)",
                                     f"≥ {FACTOR:g}", bool(ratio >= FACTOR)))
    return found


def table(rows: list[dict]) -> list[str]:
    lines = [f"{'scenario':<32} {'backend':<8} {'rate':>6} {'rep':>3} {'reqs':>5} {'err':>4} "
             f"{'done/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'srv lag p99':>11} {'srv cpu s':>9}"]
    lines += [f"{r['scenario']:<32} {r['backend']:<8} {r['rate']:>6.0f} {r['rep']:>3} "
              f"{r['requests']:>5} {r['errors']:>4} {r['done_per_s']:>8.1f} "
              f"{r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['srv_lag_p99_ms']:>11.1f} "
              f"{r['srv_cpu_s'] or 0:>9.2f}" for r in rows]
    return lines


def run(out: Path, backends: list[str] | None) -> int:
    """`harness run` of the three scenarios into `out`: its exit status as ours (a scenario's
    own threshold failing, its 1, is not this benchmark's target: 0)."""
    flags = [a for b in backends or () for a in ("-b", b)]
    done = subprocess.run([sys.executable, "-m", "harness", "run", *map(str, SCENARIOS),
                           *flags, "--out", str(out)], check=False, stdout=subprocess.DEVNULL)
    return MET if done.returncode in (MET, MISSED) else done.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", type=Path)
    parser.add_argument("--run", action="store_true", help="run the three scenarios first")
    parser.add_argument("--backend", action="append", help="with --run: only these backends")
    parser.add_argument("--out", type=Path, help="RUN: summary.md, and with --run the runs "
                                                 "(default: results/inference_service/<time>/)")
    args = parser.parse_args(argv)
    sitting = evidence.Sitting()
    out = evidence.run_folder("inference_service", args.out)
    ran = MET
    if args.run:
        ran = run(out, args.backend)
        args.dirs = [out]
    try:
        run_dirs = find_run_dirs(args.dirs) if args.dirs else newest(ROOT / "results")
    except HarnessError as exc:
        run_dirs, message = [], str(exc)
    else:
        message = "no inference_service run found; try --run"
    if not run_dirs:
        print(f"bench.inference_service: {message}", file=sys.stderr)
        return evidence.worst(ran, NO_SETUP)
    rows = figures(run_dirs)
    lines = table(rows)
    found = verdicts(rows)
    for v in found:
        lines.append(f"{v.name}: {v.measured} (target {v.target}): {v.shown()}")
    print("\n".join(lines))
    notes = [f"runs: {', '.join(map(str, run_dirs))}"]
    code = evidence.worst(evidence.status(found), ran)
    if ran != MET:
        notes.append(f"harness run exited {ran}")
    if not found:
        notes.append("no inline and pool cells at the same backend and rate: nothing to judge")
        print(f"bench.inference_service: {notes[-1]}", file=sys.stderr)
        code = evidence.worst(code, NO_SETUP)
    path = sitting.write_summary(out, "The inference service", found, notes,
                                 evidence.printed(lines), code=code)
    print(f"written: {path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
