"""`harness saturate`, run for real: the knee search of harness.saturate.search (pure) with
probes that are ordinary runs. No Click here (the CLI is thin); usable as a library.

Each probe is one open cell at one rate, run by harness.run.runner.run_scenarios like any
`harness run` — a fresh mock server, a fresh cell process, its Parquet files — into its own run
folder, `OUT/probe-NNN/` (numbered in the order they ran, over every backend and client), and
measured from those files by the analysis (harness.analysis.summary.summarize): the
response-time p99, the error rate over the measured requests, the `lagging` flag, and every
other summary figure for SLOs on them. `harness report OUT` reads all the probes back;
`OUT/saturate.json` holds the search: every probe's backend, client, phase, rate, verdict and
folder, and the results.
"""

from __future__ import annotations

import json
import math
import numbers
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import groupby
from pathlib import Path

import numpy as np

from harness.core.errors import HarnessError
from harness.core.keys import CellKey
from harness.saturate.search import (
    DEFAULT_PROBE_NS,
    KneeResult,
    ProbeResult,
    ProbeStep,
    SearchOptions,
    probe_scenario_text,
    results_json,
    saturate,
)
from harness.scenario.loader import scenario_from_text
from harness.scenario.model import LoadedScenario
from harness.scenario.thresholds import Threshold

SEARCH_FILE = "saturate.json"
PROBE_PREFIX = "probe-"


def default_start_rate(loaded: LoadedScenario) -> float:
    """Where the doubling starts by default: the scenario's lowest open-model rate (its first
    stage's, for a ramp), else the search's default."""
    rates = [rate for block in loaded.scenario.loads if block.model == "open"
             for rate in (block.rate or [s.rate for s in block.stages or () if s.rate > 0])]
    return min(rates) if rates else SearchOptions.start_rate_per_s


def probe_result(row, failures: Sequence[str] = ()) -> ProbeResult:
    """A probe's verdict inputs from its cell's summary row (analysis.summarize): a cell that
    failed or lost rows (or whose run reported a failure) is a failed probe."""
    flags = str(row["flags"]).split()
    problem = failures[0] if failures else next(
        (f for f in flags if f in ("incomplete", "rows_missing", "server_died")), None)
    metrics = {name: float(value) for name, value in row.items()
               if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)}
    return ProbeResult(p99_ms=float(row["p99_ms"]), error_rate=float(row["error_rate"]),
                       lagging="lagging" in flags, achieved_rps=float(row["achieved_rps"]),
                       metrics=metrics, problem=problem)


@dataclass
class CellProbe:
    """The probe the search calls: runs one open cell at a rate, returns what it measured."""

    loaded: LoadedScenario
    out: Path
    duration_ns: int = DEFAULT_PROBE_NS
    allow_remote: bool = False
    on_start: Callable[[str, str, float, Path], None] | None = None
    run: Callable | None = None  # harness.run.runner.run_scenarios, or a stand-in
    folders: list[Path] = field(default_factory=list)  # one per probe, in order
    python: str | None = None  # the interpreter spec its cells run under; None: the scenario's
    cluster: str | None = None  # a Dask scheduler's address: the probes run on its workers

    def __call__(self, backend: str, client: str | None, rate_per_s: float) -> ProbeResult:
        from harness.analysis.summary import load_runs, summarize

        run = self.run
        if run is None:
            from harness.run.runner import run_scenarios as run
        has_client = hasattr(self.loaded.scenario.workload, "client")
        text = probe_scenario_text(self.loaded.text, rate_per_s, self.duration_ns,
                                   client if has_client else None)
        probe = scenario_from_text(text, self.loaded.path)
        folder = self.out / f"{PROBE_PREFIX}{len(self.folders) + 1:03d}"
        self.folders.append(folder)
        if self.on_start is not None:
            self.on_start(backend, client, rate_per_s, folder)
        result = run([probe], backends=(backend,), out=folder, force=True,
                     allow_remote=self.allow_remote,
                     pythons=(self.python,) if self.python else (),
                     **({"cluster": self.cluster} if self.cluster else {}))
        if result.interrupted:
            raise KeyboardInterrupt
        summary = summarize(load_runs([folder]))
        if len(summary) != 1:
            raise HarnessError(f"{folder}: a probe must be one cell (got {len(summary)})")
        return probe_result(summary.iloc[0], result.failures)


def prepare_out(out: Path, force: bool) -> Path:
    """The search's folder: new or empty, or with `force` emptied of the harness files of an
    earlier search or run there (its probe folders' harness files and saturate.json; nothing
    else is touched)."""
    from harness.store.layout import prepare_out_dir
    from harness.store.reader import is_run_dir

    if out.exists() and out.is_dir() and any(out.iterdir()) and force:
        for child in sorted(out.glob(f"{PROBE_PREFIX}*")):
            if child.is_dir() and is_run_dir(child):
                prepare_out_dir(child, force=True)
                if not any(child.iterdir()):
                    child.rmdir()
        (out / SEARCH_FILE).unlink(missing_ok=True)
    return prepare_out_dir(out, force)


def step_record(step: ProbeStep, folder: Path | None) -> dict:
    result = step.result
    return {"backend": step.backend, "client": step.client, "python": step.python,
            "phase": step.phase,
            "rate_per_s": step.rate_per_s, "passed": step.passed, "failed": step.failed,
            "p99_ms": _finite(result.p99_ms), "error_rate": _finite(result.error_rate),
            "lagging": result.lagging, "achieved_rps": _finite(result.achieved_rps),
            "sched_lag_p99_ms": _finite(result.metrics.get("sched_lag_p99_ms", math.nan)),
            "run": None if folder is None else folder.name}


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _interpreters(loaded: LoadedScenario, specs: tuple[str, ...], note) -> list[tuple]:
    """(python key, spec, backend → the clients that run there) per interpreter; one with the
    scenario's own interpreter when none is named. Found (and their environments made)
    before any probe."""
    clients = loaded.scenario.clients()
    if not specs:
        return [(None, None, lambda backend: clients)]
    from harness.run.lineup import line_up
    from harness.run.workers import needs

    lineup = line_up([loaded], specs, note)[loaded.scenario.name]
    chosen = []
    for tag, worker in lineup.workers.items():
        def runnable(backend: str, worker=worker, tag=tag) -> tuple[str, ...]:
            found = []
            for client in clients:
                key = CellKey(backend=backend, concurrency=1, repetition=0, client=client,
                              python=tag)
                lacking = worker.missing(needs(key, loaded.scenario))
                if lacking:
                    note(f"python {tag}: {lacking[0]} is not installed under it: {backend} "
                         f"with the {client} client skipped")
                else:
                    found.append(client)
            return tuple(found)
        chosen.append((tag, worker.interpreter.spec or sys.executable, runnable))
    return chosen


def run_search(loaded: LoadedScenario, slos: Sequence[Threshold], out: Path,
               backends: Sequence[str] = (), options: SearchOptions = SearchOptions(),
               duration_ns: int = DEFAULT_PROBE_NS, force: bool = False,
               allow_remote: bool = False,
               on_start: Callable[[str, str, float, Path], None] | None = None,
               progress: Callable[[ProbeStep, Path], None] | None = None,
               run: Callable | None = None, pythons: Sequence[str] = (),
               note: Callable[[str], None] = lambda line: None,
               cluster: str | None = None) -> list[KneeResult]:
    """The knee of every interpreter (`pythons`, else the scenario's), backend (the
    scenario's, or `backends`) and client of the scenario, each probe an ordinary run under
    `out`; writes `out/saturate.json` (also after an interrupt, with the probes done so far).
    `on_start(backend, client, rate, folder)` before each probe, `progress(step, folder)`
    after it; `note(line)`: an interpreter or backend skipped."""
    scenario = loaded.scenario
    for name in backends:
        if name not in scenario.backends:
            raise HarnessError(f"--backend: {name} is not one of the scenario's backends "
                               f"({', '.join(scenario.backends)})")
    chosen = _interpreters(loaded, tuple(pythons or scenario.interpreters), note)
    prepare_out(out, force)
    probe = CellProbe(loaded, out, duration_ns, allow_remote, on_start, run, cluster=cluster)
    steps: list[ProbeStep] = []
    current: list[str | None] = [None]

    def done(step: ProbeStep) -> None:
        steps.append(replace(step, python=current[0]))
        if progress is not None:
            progress(steps[-1], probe.folders[len(steps) - 1])

    results: list[KneeResult] = []
    try:
        for tag, spec, runnable in chosen:
            current[0], probe.python = tag, spec
            # backends that run the same clients searched in one call, in their order
            for clients, names in groupby(((b, runnable(b)) for b in
                                           backends or scenario.backends),
                                          key=lambda pair: pair[1]):
                if clients:
                    results += [replace(r, python=tag) for r in saturate(
                        probe, [b for b, _ in names], slos, clients=clients,
                        options=options, progress=done)]
    finally:
        record = {"scenario": scenario.name, "slos": [slo.text for slo in slos],
                  "probe_duration_s": duration_ns / 1e9,
                  "options": {"start_rate_per_s": options.start_rate_per_s,
                              "max_error_rate": options.max_error_rate,
                              "precision": options.precision, "repeats": options.repeats,
                              "confirm": options.confirm,
                              "max_rate_per_s": options.max_rate_per_s},
                  "probes": [step_record(s, probe.folders[i]) for i, s in enumerate(steps)],
                  **results_json(results)}
        (out / SEARCH_FILE).write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    return results
