"""The open model's pacing targets, measured from the Parquet rows of real runs. A
benchmark, not a test: it prints what was measured and whether each target was met, writes
RUN/summary.md, and exits 0 when every judged target was met, 1 when one was missed, 2 when
the run could not be set up, 3 when a cell failed, 130 when interrupted.

- Steady rate: 1 000/s (uniform) for 10 s against a 10 ms endpoint (the fast mock server), 1 s
  of warm-up. uvloop and asyncio: judged per one-second window of the measured starts
  (`start_ns`; the windows laid from the first measured intended start), every full window's
  count within 1 % of the rate (1 000 ± 10), and the scheduling-lag p99 < 2 ms. Not the rate
  between the first and the last start: a run that stalls in its middle and catches up keeps
  that one exact. threads and processes: the same figures, reported, not judged (processes
  with max_in_flight 20: the default 2 × cores cannot hold 1 000/s × 10 ms).
- Poisson arrivals at 1 000/s, 10 000 measured requests on uvloop: the coefficient of
  variation of the intended inter-arrival times, and of the gaps between the actual starts,
  within 0.95–1.05 (a stall of the generator shows in the second: one 80 ms gap among 10 000 of
  1 ms weighs 0.6 in CV²).
- A uniform ramp 100/s → 500/s over 10 s on uvloop and asyncio: each second's starts within
  5 % of the line's count for that second (∫ of the rate over it).

    python -m bench.pacing [--out RUN] [--seconds 10]

RUN (default results/pacing/<UTC time>/) holds the runs and summary.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from bench import evidence
from bench.evidence import FAILED, INTERRUPTED, NO_SETUP, Verdict
from harness.analysis.summary import load_runs, measured, summarize
from harness.core.errors import HarnessError
from harness.core.stats import NS_PER_S, achieved_per_s, inter_arrival_cv
from harness.run.runner import run_scenarios
from harness.scenario.arrivals import Ramp, RateCurve
from harness.scenario.loader import parse_scenario
from harness.scenario.model import LoadedScenario

SERVER = """\
server:
  engine: fast
  endpoints:
    api: {latency: 10ms, size: 64}
workload: {type: io, endpoint: api}
"""
RATE = 1000  # the steady cells' rate, per second
WINDOW_TOLERANCE = 0.01  # each one-second window's starts within this share of the rate
LAG_P99_MS = 2.0
JUDGED = ("uvloop", "asyncio")  # the event loops are judged; threads and processes reported
STEADY = {"pacing": ("uvloop", "asyncio", "threads"), "pacing_processes": ("processes",)}


def scenarios(seconds: int) -> list[LoadedScenario]:
    texts = {
        "pacing": f"load: {{rate: {RATE}/s, duration: {seconds}s, warmup: 1s}}\n"
                  "backends: [uvloop, asyncio, threads]\n",
        "pacing_processes": f"load: {{rate: {RATE}/s, duration: {seconds}s, warmup: 1s, "
                            "max_in_flight: 20}\nbackends: [processes]\n",
        "pacing_poisson": f"load: {{rate: {RATE}/s, requests: 10000, arrivals: poisson, "
                          "warmup: 1s}\nbackends: [uvloop]\n",
        "pacing_ramp": f"load: {{start_rate: 100/s, stages: [{{rate: 500/s, duration: "
                       f"{seconds}s}}]}}\nbackends: [uvloop, asyncio]\n",
    }
    loaded = []
    for name, body in texts.items():
        text = f"name: {name}\n{SERVER}{body}"
        loaded.append(LoadedScenario(f"{name}.yaml", text, parse_scenario(text)))
    return loaded


@dataclass(frozen=True)
class Windows:
    """The starts in each full window of a steady run, against what the rate gives one."""
    counts: np.ndarray  # starts in each full window, in time order
    expected: float  # the rate × the window
    tolerance: float  # a window may be off by at most this many starts

    @property
    def off(self) -> np.ndarray:
        return np.abs(self.counts - self.expected)

    @property
    def missed(self) -> int:
        """Windows whose count is off by more than the tolerance."""
        return int((self.off > self.tolerance).sum())

    @property
    def worst(self) -> int:
        """The index of the window furthest from the rate (the first of equals); −1 for none."""
        return int(np.argmax(self.off)) if len(self.counts) else -1

    @property
    def met(self) -> bool:
        """Every full window within the tolerance, and at least one full window."""
        return len(self.counts) > 0 and self.missed == 0


def per_window(start_ns, rate_per_s: float, begin_ns: int, end_ns: int,
               window_ns: int = NS_PER_S, tolerance: float = WINDOW_TOLERANCE) -> Windows:
    """Count the starts in each full window [begin + k·window, begin + (k + 1)·window) that
    ends by `end_ns` (a partial last window is left out; so are starts outside them), against
    rate × window ± `tolerance` of it."""
    starts = np.sort(np.asarray(start_ns, dtype=np.int64))
    full = max(int((end_ns - begin_ns) // window_ns), 0)
    edges = begin_ns + np.arange(full + 1, dtype=np.int64) * window_ns
    counts = np.diff(np.searchsorted(starts, edges, side="left"))
    expected = rate_per_s * window_ns / NS_PER_S
    return Windows(counts, expected, tolerance * expected)


def steady_windows(rows: pd.DataFrame, rate_per_s: float = RATE) -> Windows:
    """A steady cell's measured rows, in one-second windows laid on its schedule: from the
    first measured intended start to one interval after the last."""
    scheduled = rows["scheduled_ns"]
    return per_window(rows["start_ns"], rate_per_s, int(scheduled.min()),
                      int(scheduled.max()) + round(NS_PER_S / rate_per_s))


def window_verdict(backend: str, windows: Windows, end_points_per_s: float) -> Verdict:
    judged = backend in JUDGED
    low, high = windows.expected - windows.tolerance, windows.expected + windows.tolerance
    target = f"every 1 s window {low:.0f}–{high:.0f} starts"
    if not len(windows.counts):
        return Verdict(f"{RATE}/s: {backend} starts per window", "no full window", target,
                       False if judged else None)
    worst = windows.worst
    count = int(windows.counts[worst])
    return Verdict(f"{RATE}/s: {backend} starts per window",
                   f"worst window {worst}: {count} ({count / windows.expected - 1:+.1%}); "
                   f"{windows.missed} of {len(windows.counts)} windows outside; "
                   f"first→last start {end_points_per_s:.1f}/s",
                   target, windows.met if judged else None, "" if judged else "reported")


def steady_verdicts(summary: pd.DataFrame, requests: pd.DataFrame
                    ) -> tuple[list[Verdict], dict[str, Windows]]:
    """1000/s: each backend's windows and scheduling lag, judged on the event loops only."""
    verdicts, found = [], {}
    for scenario, backends in STEADY.items():
        for backend in backends:
            judged = backend in JUDGED
            rows = requests[(requests["scenario"] == scenario) & (requests["backend"] == backend)]
            cell = summary[(summary["scenario"] == scenario) & (summary["backend"] == backend)]
            if rows.empty or cell.empty:
                verdicts.append(Verdict(f"{RATE}/s: {backend}", "no rows (the cell failed)",
                                        "a measured cell", False if judged else None))
                continue
            cell = next(cell.itertuples(index=False))
            found[backend] = windows = steady_windows(rows)
            verdicts.append(window_verdict(backend, windows, achieved_per_s(rows["start_ns"])))
            lag = cell.sched_lag_p99_ms
            verdicts.append(Verdict(
                f"{RATE}/s: {backend} scheduling-lag p99",
                f"{lag:.2f} ms; late {cell.late_starts} of {cell.requests}; response p99 "
                f"{cell.p99_ms:.1f} ms, service p50 {cell.service_p50_ms:.1f} ms"
                + (" (lagging)" if "lagging" in cell.flags else ""),
                f"< {LAG_P99_MS:g} ms", bool(lag < LAG_P99_MS) if judged else None,
                "" if judged else "reported"))
    return verdicts, found


def poisson_verdicts(summary: pd.DataFrame, requests: pd.DataFrame) -> list[Verdict]:
    """Poisson 1000/s: the CV of the intended inter-arrival times and of the actual starts."""
    poisson = requests[requests["scenario"] == "pacing_poisson"]
    if poisson.empty:
        return [Verdict("poisson 1000/s", "no rows (the cell failed)", "a measured cell", False)]
    actual = inter_arrival_cv(poisson["start_ns"])
    intended = inter_arrival_cv(poisson["scheduled_ns"])
    cell = next(summary[summary["scenario"] == "pacing_poisson"].itertuples(index=False))
    lag_max_ms = (poisson["start_ns"] - poisson["scheduled_ns"]).max() / 1e6
    return [Verdict(f"poisson 1000/s: CV of the intended inter-arrival times ({len(poisson)} "
                    "arrivals)", f"{intended:.4f}", "0.95–1.05", 0.95 <= intended <= 1.05),
            Verdict("poisson 1000/s: CV of the gaps between actual starts",
                    f"{actual:.4f} (scheduling-lag p99 {cell.sched_lag_p99_ms:.2f} ms, max "
                    f"{lag_max_ms:.1f} ms)", "0.95–1.05", 0.95 <= actual <= 1.05)]


def ramp_verdicts(requests: pd.DataFrame, seconds: int) -> list[Verdict]:
    """The ramp 100→500/s: each second's starts against the line's count for that second."""
    ramp = requests[requests["scenario"] == "pacing_ramp"]
    curve = RateCurve.ramps([Ramp(500, seconds * NS_PER_S)], start_rate_per_s=100)
    edges = np.arange(seconds + 1) * NS_PER_S
    line = np.diff(curve.count(edges))
    verdicts = []
    for backend in ("uvloop", "asyncio"):
        starts = ramp.loc[ramp["backend"] == backend, "start_ns"].to_numpy()
        name = f"ramp 100→500/s: {backend} each second"
        if not len(starts):
            verdicts.append(Verdict(name, "no rows (the cell failed)", "within 5 % of its line",
                                    False))
            continue
        counts, _ = np.histogram(starts, bins=edges)
        error = np.abs(counts - line) / line
        worst = int(np.argmax(error))
        verdicts.append(Verdict(name, f"worst second {worst}: {counts[worst]} vs "
                                      f"{line[worst]:.0f} ({error[worst]:.1%}); max |Δ| "
                                      f"{int(np.abs(counts - line).max())} starts",
                                "within 5 % of its line", bool((error <= 0.05).all())))
    return verdicts


def window_table(found: dict[str, Windows]) -> str:
    """The steady cells' counts per window, as Markdown."""
    lines = [f"Starts per one-second window at {RATE}/s (from the first measured intended "
             "start):", "", "| backend | starts per window | outside |", "| --- | --- | --- |"]
    lines += [f"| {backend} | {' '.join(map(str, w.counts))} | {w.missed} |"
              for backend, w in found.items()]
    return "\n".join(lines)


def print_table(verdicts: list[Verdict], title: str) -> None:
    table = Table(title=title, title_justify="left")
    for header in ("target", "measured", "bound", "met"):
        table.add_column(header)
    marks = {True: "[green]met[/]", False: "[red]missed[/]", None: "-"}
    for v in verdicts:
        table.add_row(v.name, v.measured, v.target,
                      marks[v.met] + (f" ({v.why})" if v.why else ""))
    Console(width=None if sys.stdout.isatty() else 200).print(table)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="RUN: the runs and summary.md "
                                                 "(default: results/pacing/<UTC time>/)")
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 3600:
        parser.error("--seconds must be 1..3600")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = evidence.run_folder("pacing", args.out)
    sitting = evidence.Sitting()
    load_before = os.getloadavg()[0]
    try:
        result = run_scenarios(scenarios(args.seconds), results_root=out)
    except HarnessError as exc:
        print(f"bench.pacing: {exc}", file=sys.stderr)
        return NO_SETUP
    notes = [f"cell failed: {failure}" for failure in result.failures]
    for note in notes:
        print(note, file=sys.stderr)
    verdicts, found = judge(result.out_dirs, args.seconds)
    notes.append(f"1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} "
                 "after")
    notes.append("runs: " + ", ".join(str(d.relative_to(out)) for d in result.out_dirs))
    code = evidence.worst(evidence.status(verdicts), FAILED if result.failures else 0,
                          INTERRUPTED if result.interrupted else 0)
    path = sitting.write_summary(out, "Open-model pacing", verdicts, notes, window_table(found),
                                 code=code)
    print_table(verdicts, f"pacing targets ({os.cpu_count()} cores; CPU pressure before "
                          f"{sitting.pressure_before}, after {evidence.pressure()})")
    print(f"written: {path}")
    return code


def judge(out_dirs: list[Path], seconds: int) -> tuple[list[Verdict], dict[str, Windows]]:
    """Every verdict, from the runs' rows."""
    runs = load_runs(out_dirs)
    summary, requests = summarize(runs), measured(runs.requests)
    verdicts, found = steady_verdicts(summary, requests)
    verdicts += poisson_verdicts(summary, requests) + ramp_verdicts(requests, seconds)
    return verdicts, found


if __name__ == "__main__":
    sys.exit(main())
