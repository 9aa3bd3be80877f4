"""Thresholds (`expect:` in a scenario, like k6's): `p99_ms < 50`, `error_rate <= 0.01`, or for
one backend `asyncio: throughput_rps >= 500`. Every cell the threshold applies to must pass.
Evaluated after a run and by `harness report`, from the summary of the Parquet records.

Some metrics mean something only for some cells (loop lag needs an event loop, lost updates
the race): on the others a threshold is "not applicable", never a pass. A threshold that can
apply to no cell of its scenario's full matrix is refused when the scenario is validated; one
whose cells did not run (left out with `-b`, or an interrupted run) is "skipped"."""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

from harness.core.errors import brief
from harness.core.keys import ASYNC_BACKENDS, BACKENDS

METRICS = {
    "requests": "measured requests made", "errors": "measured requests not ok",
    "error_rate": "errors ÷ requests", "throughput_rps": "ok requests per second",
    # Response time, what a user feels: from the scheduled start (the intended one in the
    # open model, getting a slot in the closed) to the end; the service time runs from the
    # actual start. Warm-up requests are left out of every metric.
    "p50_ms": "response time p50", "p90_ms": "response time p90",
    "p99_ms": "response time p99", "p999_ms": "response time p99.9",
    "max_ms": "response time max",
    "overhead_p50_ms": "client overhead p50", "overhead_p99_ms": "client overhead p99",
    "cpu_p50_ms": "CPU step p50", "loop_lag_p99_ms": "event-loop lag p99",
    "server_loop_lag_p99_ms": "the mock server's event-loop lag p99",
    "lost_updates": "race: lost updates", "peak_in_flight": "peak in flight (sweep)",
    "makespan_s": "makespan (from the end of the warm-up)", "efficiency": "bound ÷ makespan",
    "service_p50_ms": "service time p50 (actual start → end)",
    "service_p99_ms": "service time p99 (actual start → end)",
    "sched_lag_p99_ms": "open model: p99 of start − intended start",
    "late_starts": "open model: requests started more than 1 ms after their intended time",
    "achieved_rps": "open model: requests started per second",
    "target_rps": "open model: intended starts per second",
}
# Figures only open cells have: a threshold on one of them does not apply to closed cells.
OPEN_METRICS = frozenset({"sched_lag_p99_ms", "late_starts", "achieved_rps", "target_rps"})
# Figures only the aiohttp mock server measures (not the fast engine, not a `target:`); a cell
# without one (its server died first) is not applicable rather than failed.
SERVER_LAG_METRICS = frozenset({"server_loop_lag_p99_ms"})
# Figures only closed cells have (the bound assumes the slots are the pace, not a schedule).
CLOSED_METRICS = frozenset({"efficiency"})
# metric → (the workload types it is measured for, or None for any; on event loops only?)
_HTTP, _CPU = ("io", "http", "pipeline"), ("cpu", "cpu_release", "pipeline")
_ONLY: dict[str, tuple[tuple[str, ...] | None, bool]] = {
    "overhead_p50_ms": (_HTTP, False), "overhead_p99_ms": (_HTTP, False),
    "cpu_p50_ms": (_CPU, False), "loop_lag_p99_ms": (None, True),
    "server_loop_lag_p99_ms": (_HTTP, False),
    "lost_updates": (("race",), False), "efficiency": (("io", "http"), False),
}
_WHY = {  # what a cell needs for the metric to apply
    "overhead_p50_ms": "a mock-server call (workload io or pipeline)",
    "overhead_p99_ms": "a mock-server call (workload io or pipeline)",
    "cpu_p50_ms": "a CPU step (workload cpu, cpu_release or pipeline)",
    "loop_lag_p99_ms": f"an event loop (backends {', '.join(ASYNC_BACKENDS)})",
    "server_loop_lag_p99_ms": "a mock-server call (workload io, http or pipeline)",
    "lost_updates": "the race workload",
    "efficiency": "a request that is the server call alone (workload io)",
}
PASSED, FAILED, NOT_APPLICABLE, SKIPPED = "passed", "failed", "not applicable", "skipped"


def metric_applies(metric: str, backend: str, workload_type: str) -> bool:
    """Whether `metric` is measured at all for a cell of this backend and workload type."""
    types, loop_only = _ONLY.get(metric, (None, False))
    if loop_only and not BACKENDS[backend].has_loop:
        return False
    return types is None or workload_type in types


_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
        "==": operator.eq, "!=": operator.ne}
_EXPR = re.compile(r"\s*(?:(?P<backend>[a-z0-9_]+)\s*:\s*)?(?P<metric>[a-z0-9_]+)\s*"
                   r"(?P<op><=|>=|==|!=|<|>)\s*(?P<value>-?\d+(?:\.\d*)?(?:[eE]-?\d+)?)\s*")


@dataclass(frozen=True)
class Threshold:
    text: str
    backend: str | None
    metric: str
    op: str
    value: float

    def applies_to(self, backend: str) -> bool:
        """To the cells of `backend` (an open-model figure is not applicable to closed ones)."""
        return self.backend is None or self.backend == backend

    def measured(self, backend: str, workload_type: str) -> bool:
        return metric_applies(self.metric, backend, workload_type)

    def passes(self, actual: float) -> bool:
        try:
            value = float(actual)
        except (TypeError, ValueError):
            return False
        return not math.isnan(value) and _OPS[self.op](value, self.value)


def parse_threshold(text: str, backends: tuple[str, ...]) -> Threshold:
    """Raises ValueError with a one-line reason."""
    match = _EXPR.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError("must look like 'p99_ms < 50' or 'asyncio: p99_ms < 50' "
                         f"(got {brief(text)})")
    if match["metric"] not in METRICS:
        raise ValueError(f"unknown metric {brief(match['metric'])} in {brief(text)} "
                         f"(known: {', '.join(METRICS)})")
    if match["backend"] is not None and match["backend"] not in backends:
        raise ValueError(f"backend {brief(match['backend'])} in {brief(text)} is not one of this "
                         f"scenario's backends ({', '.join(backends)})")
    return Threshold(text.strip(), match["backend"], match["metric"], match["op"],
                     float(match["value"]))


def check_matrix(threshold: Threshold, backends: tuple[str, ...], workload_type: str) -> None:
    """Raises ValueError when the threshold applies to no cell of a scenario with these
    backends and this workload (its full matrix: strategies, variants and levels change
    nothing here)."""
    if threshold.metric in OPEN_METRICS:  # measured on open cells: the scenario checks them
        return
    mine = [b for b in backends if threshold.applies_to(b)]
    if not any(threshold.measured(b, workload_type) for b in mine):
        raise ValueError(f"{brief(threshold.text)} applies to no cell of this scenario: "
                         f"{threshold.metric} needs {_WHY[threshold.metric]}")


COLUMNS = ["scenario", "backend", "strategy", "variant", "concurrency", "repetition",
           "threshold", "actual", "status", "passed"]


def evaluate(summary, scenarios: dict):
    """One row per (cell, threshold) whose backend it names (or any): the actual value and
    its status — passed, failed, or not applicable (the metric is not measured for that
    cell) — and one "skipped" row per threshold that applied to no cell of the summary (its
    cells did not run). `scenarios`: name → the parsed Scenario (its thresholds and
    workload). `passed` is True for passed rows only."""
    import pandas as pd  # the reporting stack stays out of the cell and server processes

    rows = []
    for name, scenario in scenarios.items():
        cells = summary[summary["scenario"] == name] if len(summary) else summary
        kind = scenario.workload.type
        for threshold in scenario.thresholds():
            evaluated = False
            for cell in cells.itertuples(index=False):
                if not threshold.applies_to(cell.backend):
                    continue
                model = getattr(cell, "model", "closed")
                row = {"scenario": name, "backend": cell.backend, "strategy": cell.strategy,
                       "variant": cell.variant, "concurrency": cell.concurrency,
                       "repetition": cell.repetition, "threshold": threshold.text}
                if not threshold.measured(cell.backend, kind) or (
                        threshold.metric in OPEN_METRICS and model != "open") or (
                        threshold.metric in CLOSED_METRICS and model == "open"):
                    rows.append({**row, "actual": None, "status": NOT_APPLICABLE})
                    continue
                actual = getattr(cell, threshold.metric)
                if threshold.metric in SERVER_LAG_METRICS and pd.isna(actual):
                    rows.append({**row, "actual": None, "status": NOT_APPLICABLE})
                    continue
                evaluated = True
                rows.append({**row, "actual": actual,
                             "status": PASSED if threshold.passes(actual) else FAILED})
            if not evaluated:
                rows.append({"scenario": name, "backend": threshold.backend,
                             "threshold": threshold.text, "status": SKIPPED})
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["passed"] = table["status"] == PASSED
    return table


def failed(checks) -> bool:
    """Some threshold failed on some cell (exit status 1)."""
    return bool(len(checks)) and bool((checks["status"] == FAILED).any())
