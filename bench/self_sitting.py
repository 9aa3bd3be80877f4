"""One sitting of bench-self: its time budget, the figures and notes so far, the peers it found,
and the `harness run`s it makes into its temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench import ROOT
from bench.self_report import Figure, judge

BUDGET_S = 15 * 60
CONNECTIONS = 50

FAST = """\
name: {name}
server:
  engine: fast
  endpoints:
    api: {{latency: {latency}, size: 128}}
workload: {{endpoint: api, client: [{clients}]}}
load: {{{load}}}
backends: [{backends}]
"""


class Sitting:
    def __init__(self, args, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        self.started = time.monotonic()
        self.figures: list[Figure] = []
        self.notes: list[str] = []
        self.failed: list[str] = []  # sections that failed: their figures are missing
        self.wrk: str | None = None
        self.locust: Path | None = None
        self.last_run: Path | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return BUDGET_S - self.elapsed()

    def bounded(self, timeout_s: float) -> float:
        """A child's timeout, cut so that the whole run ends within the budget."""
        return max(20.0, min(timeout_s, self.left() - 20))

    def error_counts(self, run: Path) -> str:
        """`backend client: category n, …` of a harness run's failed requests."""
        from harness.store.reader import read_run

        rows = read_run(run)["requests"].to_pandas()
        bad = rows[~rows["ok"]]
        counts = bad.groupby(["backend", "client", "error"]).size()
        return "; ".join(f"{b} {c}: {e} {n}" for (b, c, e), n in counts.items()) or "none"

    def add(self, name: str, value, unit: str, target: str | None = None,
            ok=None) -> None:
        """A figure, judged against its target (`ok`: value → met) unless --quick."""
        value = float("nan") if value is None else float(value)
        figure = judge(name, value, unit, target, ok, self.args.quick)
        self.figures.append(figure)
        say(f"  {name}: {figure.shown()} {unit}"
            + (f"  (target {target}: {figure.verdict()})" if target else ""))

    def skip(self, name: str, unit: str, target: str | None, why: str) -> None:
        """A figure not measured for a reason of the sitting's (a peer allowed to be missing,
        the time budget): not judged."""
        self.figures.append(Figure(name, float("nan"), unit, target, None,
                                   f"not measured: {why}"))
        say(f"  {name}: not measured ({why})")

    def run_harness(self, name: str, text: str, timeout_s: float):
        """One `harness run` into the temporary folder; its cells' summary (a DataFrame)."""
        from harness.analysis.summary import load_runs, summarize

        path = self.tmp / f"{name}.yaml"
        path.write_text(text)
        out = self.last_run = self.tmp / "runs" / name
        proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(path), "--out",
                                 str(out), "--force"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=child_env())
        try:
            _, stderr = proc.communicate(timeout=self.bounded(timeout_s))
        except subprocess.TimeoutExpired:
            kill_tree(proc)
            raise
        done = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
        if done.returncode not in (0, 3):  # 3: cells with failures; their rows still count
            raise RuntimeError(f"harness run {name} failed ({done.returncode}): "
                               f"{done.stderr.strip()[-300:]}")
        return summarize(load_runs([out]))


def say(line: str) -> None:
    print(line, flush=True)


def child_env() -> dict:
    """The harness and the bare loops from this source tree, whatever the caller's path."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


def kill_tree(proc: subprocess.Popen) -> None:
    """A `harness run` that ran out of time, with its cell and mock server: they live in
    sessions of their own, so its process group would not reach them; its descendants do."""
    import psutil

    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        family = []
    proc.kill()
    for child in family:
        try:
            child.kill()
        except psutil.Error:
            pass
    proc.communicate()
    psutil.wait_procs(family, timeout=10)
