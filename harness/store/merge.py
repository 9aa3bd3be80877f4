"""One cell's figures from its spread generators: N standalone `python -m harness.cell`
processes (CellJob.spread), each with its own `done` report and its own spool files, gathered
in one folder. `merge_spread` returns what a one-process cell's `done` message says, leaves one
summed timeline in the folder, and writes `lost` rows for a dead generator's share.

Each generator's timeline is sampled every 100 ms from its own t0; the generators started on
one wall-clock instant, so samples are aligned by rounding their times to the interval."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from harness.core.schema import LOST, RECORD_SCHEMA, TIMELINE_RECORD_SCHEMA
from harness.core.tls import pooled_connects
from harness.store.spool import read_batches, spool_files, spool_name, write_table

SAMPLE_NS = 100_000_000  # the cell's sampler's interval (harness.cell.sampler.INTERVAL_S)


def merge_spread(reports: list[dict | None], spool: Path, limit: int | None,
                 generators: int) -> dict:
    """`reports[g]`: generator g's `done` message, None when it died. `limit`: the closed
    model's requests (warm-up included), None when no count bounds the cell (then a dead
    generator's share counts up to the furthest any generator got)."""
    spool = Path(spool)
    alive = [r for r in reports if r is not None]
    dead = [g for g in range(generators) if g >= len(reports) or reports[g] is None]
    released = sum(r["released"] for r in alive)
    for g in dead:  # every seq of its share is a row: the ones it wrote, the rest lost
        released += _write_lost(spool, g, generators, limit)
    peak = merge_timeline(spool)
    extras = dict(alive[0]["extras"]) if alive else {}
    speeds = [r["extras"].get("kernel_ns_per_unit") for r in alive]
    if speeds and all(s is not None for s in speeds):
        extras["kernel_ns_per_unit"] = float(np.mean(speeds))
    extras.update(pooled_connects([r["extras"] for r in alive]))
    t0s = [r["t0_unix_ns"] for r in alive if r.get("t0_unix_ns") is not None]
    gils = [r.get("gil_enabled") for r in alive]
    return {
        "done": True, "released": released,
        "peak_live": max([peak, *(r["peak_live"] for r in alive)]),
        "t0_unix_ns": min(t0s) if t0s else None,
        "interrupted": any(r["interrupted"] for r in alive),
        "extras": extras,
        "slots_lost": sum(r["slots_lost"] for r in alive) + len(dead),
        "has_loop": any(r.get("has_loop") for r in alive),
        "cpu_user_s": _total(r.get("cpu_user_s") for r in alive),
        "cpu_sys_s": _total(r.get("cpu_sys_s") for r in alive),
        "spool_error": next((r["spool_error"] for r in alive if r.get("spool_error")), None),
        "gil_enabled": (False if False in gils else True if gils and all(gils) else None),
    }


def _total(values) -> float | None:
    known = [v for v in values if v is not None]
    return float(sum(known)) if known else None


# --- the timeline --------------------------------------------------------------------------

def merge_timeline(spool: Path, sample_ns: int = SAMPLE_NS) -> int:
    """Replace the generators' timeline spool files with one, a row per sample time: in flight,
    completed, CPU and context switches summed, loop lag the worst. Returns the peak of the
    summed in flight. A generator with no sample at a time counts its last level (in flight,
    completed, CPU) inside its span — its sampler drifted past a slot — and after it, nothing
    in flight; its per-interval counts are not repeated."""
    files = spool_files(spool, "timeline")
    if not files:
        return 0
    tables = [_by_slot(_read(path), sample_ns) for _, path in files]
    slots = np.unique(np.concatenate([t["slot"] for t in tables]))
    n = len(slots)
    in_flight, completed = np.zeros(n, np.int64), np.zeros(n, np.int64)
    cpu = np.zeros(n, np.float64)
    voluntary, involuntary = np.zeros(n, np.int64), np.zeros(n, np.int64)
    lag, has_lag = np.zeros(n, np.int64), np.zeros(n, bool)
    for t in tables:
        if not len(t["slot"]):
            continue
        last = np.searchsorted(t["slot"], slots, side="right") - 1  # its sample at or before
        seen = last >= 0
        at = np.where(seen, last, 0)
        exact = seen & (t["slot"][at] == slots)
        inside = seen & (slots <= t["slot"][-1])
        in_flight += np.where(inside, t["in_flight"][at], 0)
        completed += np.where(seen, t["completed"][at], 0)
        cpu += np.where(inside, t["cpu_percent"][at], 0.0)
        voluntary += np.where(exact, t["ctx_switches_voluntary"][at], 0)
        involuntary += np.where(exact, t["ctx_switches_involuntary"][at], 0)
        mine = exact & t["has_lag"][at]
        lag = np.where(mine, np.maximum(lag, t["lag"][at]), lag)
        has_lag |= mine
    merged = pa.table({
        "t_ns": pa.array(slots * sample_ns, pa.int64()),
        "in_flight": in_flight, "completed": completed,
        "loop_lag_max_ns": pa.array(lag, pa.int64(), mask=~has_lag),
        "cpu_percent": cpu,
        "ctx_switches_voluntary": voluntary, "ctx_switches_involuntary": involuntary,
    }, schema=TIMELINE_RECORD_SCHEMA)
    tmp = spool / ".timeline.merged"  # not a spool file's name until it is whole
    write_table(tmp, TIMELINE_RECORD_SCHEMA, merged)
    os.replace(tmp, spool / spool_name("timeline"))
    for _, path in files:
        if path.name != spool_name("timeline"):
            path.unlink(missing_ok=True)
    return int(in_flight.max()) if n else 0


def _read(path: Path) -> pa.Table:
    batches = list(read_batches(path))
    return (pa.Table.from_batches(batches) if batches
            else TIMELINE_RECORD_SCHEMA.empty_table())


def _by_slot(table: pa.Table, sample_ns: int) -> dict[str, np.ndarray]:
    """One generator's samples keyed by their slot (t_ns rounded to the interval); two samples
    in one slot: the later's levels, the counts added, the worse lag."""
    t = table.column("t_ns").to_numpy()
    if not len(t):  # e.g. a generator killed before its first sample
        return {"slot": t}
    slot = (t + sample_ns // 2) // sample_ns
    order = np.argsort(slot, kind="stable")
    slot = slot[order]
    cols = {name: table.column(name).to_numpy(zero_copy_only=False)[order] for name in (
        "in_flight", "completed", "cpu_percent", "ctx_switches_voluntary",
        "ctx_switches_involuntary")}
    lag_col = table.column("loop_lag_max_ns")
    has_lag = lag_col.is_valid().to_numpy(zero_copy_only=False)[order]
    lag = lag_col.fill_null(0).to_numpy()[order]
    keys, first = np.unique(slot, return_index=True)
    last = np.append(first[1:], len(slot)) - 1
    return {
        "slot": keys,
        "in_flight": cols["in_flight"][last], "completed": cols["completed"][last],
        "cpu_percent": cols["cpu_percent"][last],
        "ctx_switches_voluntary": np.add.reduceat(cols["ctx_switches_voluntary"], first),
        "ctx_switches_involuntary": np.add.reduceat(cols["ctx_switches_involuntary"], first),
        "lag": np.maximum.reduceat(lag, first),
        "has_lag": np.logical_or.reduceat(has_lag, first),
    }


# --- a dead generator's share --------------------------------------------------------------

def _write_lost(spool: Path, generator: int, generators: int, limit: int | None) -> int:
    """`lost` rows, in a file of that generator's, for the seqs of its share (g, g+N, …) with
    no row: below `limit`, or without one up to the furthest index any generator reached.
    They end when the cell's last row ended. Returns the rows of its share (written + lost)."""
    seen: set[int] = set()
    furthest, end = -1, 0
    for g, path in spool_files(spool, "requests"):
        for batch in read_batches(path):
            if not batch.num_rows:
                continue
            seqs = batch.column("seq").to_numpy()
            furthest = max(furthest, int(seqs.max()) // generators)
            end = max(end, int(batch.column("end_ns").to_numpy().max()))
            if g == generator:
                seen.update(seqs.tolist())
    bound = limit if limit is not None else (furthest + 1) * generators
    share = range(generator, bound, generators)
    missing = [seq for seq in share if seq not in seen]
    if missing:
        n, label = len(missing), f"generator-{generator}"
        times = pa.array([end] * n, pa.int64())
        nulls_int, nulls_str = pa.nulls(n, pa.int64()), pa.nulls(n, pa.string())
        columns = {
            "worker": pa.array([label] * n), "slot": pa.array([label] * n),
            "seq": pa.array(missing, pa.int64()),
            "enqueued_ns": times, "scheduled_ns": times, "start_ns": times, "end_ns": times,
            "ok": pa.array([False] * n), "status": pa.array([0] * n, pa.int64()),
            "error": pa.array([LOST] * n), "in_flight": pa.array([0] * n, pa.int64()),
            "phase": pa.array(["measure"] * n),
        }
        table = pa.table([columns.get(f.name, nulls_str if pa.types.is_string(f.type)
                                      else nulls_int) for f in RECORD_SCHEMA],
                         schema=RECORD_SCHEMA)
        write_table(spool / spool_name("requests", generator, "lost"), RECORD_SCHEMA, table)
    return len(seen & set(share)) + len(missing)
