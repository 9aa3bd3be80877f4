"""The inference service as the system under test: per cell of the
inference_service_* scenarios (or any run given), the response time's p50 and p99 — end −
scheduled of the measured requests, so the time a request waited for the server counts — the
rate it kept up with (ok requests ÷ first intended start to last end: below the arrival rate, a
queue grew), the mock server's own event-loop lag p99 and its CPU time; then the target: at the
same rate, inline's response-time p99 several (≥ 3) times each pool's.

    python -m bench.inference_service [DIR...]     # default: results/inference_service_*/newest
    python -m bench.inference_service --run [--backend asyncio] [--out DIR]

`--run` runs the three scenarios first (`harness run`, into results/inference_service/<time>/).
A benchmark, not a test: it prints what was measured and whether the target was met."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench import ROOT
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", type=Path)
    parser.add_argument("--run", action="store_true", help="run the three scenarios first")
    parser.add_argument("--backend", action="append", help="with --run: only these backends")
    parser.add_argument("--out", type=Path, help="with --run: the run folder")
    args = parser.parse_args(argv)
    if args.run:
        out = args.out or ROOT / "results" / "inference_service" / time.strftime(
            "%Y%m%dT%H%M%SZ", time.gmtime())
        backends = [a for b in args.backend or () for a in ("-b", b)]
        subprocess.run([sys.executable, "-m", "harness", "run", *map(str, SCENARIOS),
                        *backends, "--out", str(out)], check=False, stdout=subprocess.DEVNULL)
        args.dirs = [out]
    run_dirs = find_run_dirs(args.dirs) if args.dirs else newest(ROOT / "results")
    if not run_dirs:
        print("no inference_service run found; try --run", file=sys.stderr)
        return 2
    rows = figures(run_dirs)
    print(f"{'scenario':<32} {'backend':<8} {'rate':>6} {'rep':>3} {'reqs':>5} {'err':>4} "
          f"{'done/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'srv lag p99':>11} {'srv cpu s':>9}")
    for r in rows:
        print(f"{r['scenario']:<32} {r['backend']:<8} {r['rate']:>6.0f} {r['rep']:>3} "
              f"{r['requests']:>5} {r['errors']:>4} {r['done_per_s']:>8.1f} {r['p50_ms']:>8.1f} "
              f"{r['p99_ms']:>8.1f} {r['srv_lag_p99_ms']:>11.1f} {r['srv_cpu_s'] or 0:>9.2f}")
    by = {}  # (backend, rate) → mode → median p99 over repetitions
    for r in rows:
        if (mode := mode_of(r["scenario"])) is not None:
            by.setdefault((r["backend"], r["rate"]), {}).setdefault(mode, []).append(r["p99_ms"])
    for (backend, rate), modes in by.items():
        p99 = {mode: median(values) for mode, values in modes.items()}
        for pool in ("thread_pool", "process_pool"):
            if "inline" in p99 and pool in p99 and not np.isnan(p99[pool]):
                ratio = p99["inline"] / p99[pool]
                verdict = "met" if ratio >= FACTOR else "NOT met"
                print(f"{backend} at {rate:.0f}/s: inline p99 {p99['inline']:.1f} ms = "
                      f"{ratio:.1f} × {pool}'s {p99[pool]:.1f} ms (target ≥ {FACTOR:g} ×): "
                      f"{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
