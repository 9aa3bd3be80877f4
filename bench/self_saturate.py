"""bench-self's knee ordering: `harness saturate scenarios/saturate.yaml` (the fast mock's 1 ms
endpoint, the standard client, the scenario's 20 ms max_sched_lag) for uvloop and asyncio,
and the target that uvloop's knee is at least asyncio's.

Two searches, one in each order (uvloop then asyncio, asyncio then uvloop), each shortened to
fit the sitting: probes of 2 s from 400/s, doubling up to 12 800/s, bisected to 15 %, no
repeats and no confirmations (about 70 s a search here). A backend's knee is the higher of its
two searches: on a shared machine a probe fails for the machine's sake (a stall only adds lag)
and never passes by luck, so the lower answer is the search the machine got in the way of;
the two orders put each backend first once. Each search's answers are in the notes.
--quick: one search of 1 s probes to 30 %, not judged."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench import ROOT
from bench.self_sitting import Sitting, child_env, kill_tree, say

SCENARIO = ROOT / "scenarios" / "saturate.yaml"
SLO = "p99 < 50ms"
BACKENDS = ("uvloop", "asyncio")
ORDERS = (BACKENDS, BACKENDS[::-1])
OPTIONS = {"--start-rate": "400/s", "--max-rate": "12800/s", "--probe-duration": "2s",
           "--precision": "0.15", "--final-probes": "0", "--confirm": "0"}
QUICK_OPTIONS = {**OPTIONS, "--probe-duration": "1s", "--precision": "0.3"}
SEARCH_S = 150  # one search's bound; about 70 s of probes on the machine it was made on
TARGET = ("≥ 1", lambda ratio: ratio >= 1)


@dataclass(frozen=True)
class Knee:
    backend: str
    rate_per_s: float | None  # None: it failed even at the start rate
    status: str  # found, ceiling, fails_at_start (harness.saturate.search)
    range_per_s: tuple[float | None, float | None]

    def describe(self) -> str:
        if self.rate_per_s is None:
            return f"{self.backend} fails at the start rate"
        low, high = (f"{r:.0f}/s" if r else "?" for r in self.range_per_s)
        return f"{self.backend} {self.rate_per_s:.0f}/s ({low}–{high}, {self.status})"


def command(order: tuple[str, ...], out: Path, quick: bool) -> list[str]:
    """`harness saturate` on the shipped scenario, the backends searched in `order`."""
    options = QUICK_OPTIONS if quick else OPTIONS
    argv = [sys.executable, "-m", "harness", "saturate", str(SCENARIO), "--slo", SLO]
    for backend in order:
        argv += ["-b", backend]
    for option, value in options.items():
        argv += [option, value]
    return argv + ["--out", str(out), "--force"]


def knees_of(search: dict) -> dict[str, Knee]:
    """The standard client's knee per backend from a search's saturate.json."""
    found = {}
    for row in search.get("results", []):
        if row.get("client") in (None, "standard"):
            low, high = row.get("range_per_s") or (None, None)
            found[row["backend"]] = Knee(row["backend"], row.get("max_rate_per_s"),
                                         row.get("status", ""), (low, high))
    return found


def best(searches: list[dict[str, Knee]], backend: str) -> float | None:
    """The highest knee a backend reached over the searches (None: none found one)."""
    rates = [s[backend].rate_per_s for s in searches
             if backend in s and s[backend].rate_per_s is not None]
    return max(rates, default=None)


def ratio(searches: list[dict[str, Knee]]) -> float | None:
    """uvloop's best knee ÷ asyncio's; None when either found none (the target is then
    missed as not measured)."""
    uvloop, asyncio = best(searches, "uvloop"), best(searches, "asyncio")
    return None if uvloop is None or asyncio is None else uvloop / asyncio


def run_search(sitting: Sitting, order: tuple[str, ...], index: int) -> dict[str, Knee]:
    out = sitting.tmp / "saturate" / f"search-{index}"
    proc = subprocess.Popen(command(order, out, sitting.args.quick), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        _, stderr = proc.communicate(timeout=sitting.bounded(SEARCH_S))
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        raise
    if proc.returncode not in (0, 1):  # 1: a backend failed even at the start rate
        raise RuntimeError(f"harness saturate failed ({proc.returncode}): "
                           f"{stderr.strip()[-300:]}")
    return knees_of(json.loads((out / "saturate.json").read_text()))


def saturate(sitting: Sitting) -> None:
    orders = ORDERS[:1] if sitting.args.quick else ORDERS
    say(f"\n== the knee of {SCENARIO.name} ({SLO}), uvloop and asyncio, standard client, "
        f"{len(orders)} search(es)")
    searches: list[dict[str, Knee]] = []
    for index, order in enumerate(orders, 1):
        if searches and sitting.left() < SEARCH_S:
            sitting.notes.append(f"saturate: search {index} left out: the time budget")
            break
        found = run_search(sitting, order, index)
        searches.append(found)
        line = f"saturate search {index} ({' then '.join(order)}): " + "; ".join(
            found[b].describe() if b in found else f"{b}: no result" for b in order)
        sitting.notes.append(line)
        say("  " + line)
    for backend in BACKENDS:
        sitting.add(f"saturate {backend} standard: knee (best of {len(searches)} searches)",
                    best(searches, backend), "req/s")
    sitting.add("saturate: uvloop ÷ asyncio knee (standard client)", ratio(searches), "×",
                *TARGET)
