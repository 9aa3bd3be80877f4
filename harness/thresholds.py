"""Thresholds (`expect:` in a scenario, like k6's): `p99_ms < 50`, `error_rate <= 0.01`, or for
one backend `asyncio: throughput_rps >= 500`. Every cell the threshold applies to must pass.
Evaluated after a run and by `harness report`, from the summary of the Parquet records."""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

from harness.errors import brief

METRICS = {
    "requests": "requests made", "errors": "requests not ok",
    "error_rate": "errors ÷ requests", "throughput_rps": "ok requests per second",
    "p50_ms": "latency p50", "p90_ms": "latency p90", "p99_ms": "latency p99",
    "p999_ms": "latency p99.9", "max_ms": "latency max",
    "overhead_p50_ms": "client overhead p50", "overhead_p99_ms": "client overhead p99",
    "cpu_p50_ms": "CPU step p50", "loop_lag_p99_ms": "event-loop lag p99",
    "lost_updates": "race: lost updates", "peak_in_flight": "peak in flight (sweep)",
    "makespan_s": "makespan", "efficiency": "bound ÷ makespan",
    # The open model (load `rate` or `stages`). There the latency (p50_ms, …) runs from each
    # request's intended start, so the time it waited for a free slot counts; the service time
    # runs from its actual start. In the closed model the two are the same.
    "service_p50_ms": "service time p50 (actual start → end)",
    "service_p99_ms": "service time p99 (actual start → end)",
    "sched_lag_p99_ms": "open model: p99 of start − intended start",
    "late_starts": "open model: requests started more than 1 ms after their intended time",
    "achieved_rps": "open model: requests started per second",
    "target_rps": "open model: intended starts per second",
}
# Figures only open cells have: a threshold on one of them does not apply to closed cells.
OPEN_METRICS = frozenset({"sched_lag_p99_ms", "late_starts", "achieved_rps", "target_rps"})
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

    def applies_to(self, backend: str, model: str = "closed") -> bool:
        """To the cells of `backend`; an open-model figure only to open cells."""
        if self.metric in OPEN_METRICS and model != "open":
            return False
        return self.backend is None or self.backend == backend

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


def evaluate(summary, expectations: dict[str, list[Threshold]]):
    """One row per (cell, threshold) that applies: the actual value and whether it passed."""
    import pandas as pd  # the reporting stack stays out of the cell and server processes

    rows = []
    for cell in summary.itertuples(index=False):
        for threshold in expectations.get(cell.scenario, []):
            if threshold.applies_to(cell.backend, getattr(cell, "model", "closed")):
                # A figure the summary does not have yet fails the threshold (NaN), loudly.
                actual = getattr(cell, threshold.metric, float("nan"))
                rows.append({"scenario": cell.scenario, "backend": cell.backend,
                             "strategy": cell.strategy, "variant": cell.variant,
                             "concurrency": cell.concurrency, "repetition": cell.repetition,
                             "threshold": threshold.text, "actual": actual,
                             "passed": threshold.passes(actual)})
    return pd.DataFrame(rows, columns=["scenario", "backend", "strategy", "variant",
                                       "concurrency", "repetition", "threshold", "actual",
                                       "passed"])
