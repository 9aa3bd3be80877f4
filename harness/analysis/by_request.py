"""`report --by request`: each cell's figures per `workload.requests` entry (the `request`
column), from the measured rows with the summary's definitions — response time of the ok
requests, throughput over the cell's measured makespan."""

from __future__ import annotations

import pandas as pd

from harness.analysis.summary import Runs, by_cell, cell_key, measured, measured_span_ns
from harness.core.keys import CELL_KEYS
from harness.core.stats import percentile, response_ns, throughput_per_s

FIGURES = ["requests", "errors", "share", "throughput_rps", "p50_ms", "p99_ms"]


def by_request(runs: Runs) -> pd.DataFrame:
    """One row per cell and entry name, the entries in the scenario's order (an entry no
    measured request sent has no row); a cell without a mix (a single request) is one row
    whose `request` is null."""
    requests, rows = runs.requests, []
    groups = by_cell(requests)
    order = {name: {label: i for i, label in enumerate(_labels(scenario))}
             for name, scenario in runs.scenarios().items()}
    for cell in runs.cells.itertuples(index=False):
        key = cell_key(getattr(cell, k) for k in CELL_KEYS)
        every = groups.get(key, requests.iloc[0:0])
        reqs = measured(every)
        span_ns = measured_span_ns(every, cell.makespan_ns)
        names = reqs["request"] if "request" in reqs else pd.Series(None, index=reqs.index)
        place = order.get(cell.scenario, {})
        for name, mine in sorted(reqs.groupby(names.fillna(""), sort=False),
                                 key=lambda item: place.get(item[0], len(place))):
            ok = mine[mine["ok"].astype(bool)]
            latency_ms = pd.Series(response_ns(ok["scheduled_ns"], ok["end_ns"]) / 1e6)
            rows.append({**dict(zip(CELL_KEYS, key, strict=True)), "request": name or None,
                         "requests": len(mine), "errors": len(mine) - len(ok),
                         "share": len(mine) / len(reqs),
                         "throughput_rps": throughput_per_s(len(ok), span_ns),
                         "p50_ms": percentile(latency_ms, 50),
                         "p99_ms": percentile(latency_ms, 99)})
    return pd.DataFrame(rows, columns=[*CELL_KEYS, "request", *FIGURES])


def _labels(scenario) -> list[str]:
    return [entry.label for entry in getattr(scenario.workload, "mix", ())]
