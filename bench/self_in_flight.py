"""bench-self's 10 000 in flight, the synchronised case: 1 s fixed delay, 30 000 requests at
concurrency 10 000 (all 10 000 released together, then again as each ends) on asyncio and uvloop
× lean and standard × generators 1 and 2, side by side in one run (errors, the server's peak in
flight, loop lag p99); then the threads backend's ladder: the highest thread count (500 …
10 000, three requests per thread) it runs with 0 errors. --quick: 3 000 requests at
concurrency 1 000, a shorter ladder."""

from __future__ import annotations

import subprocess
import time

from bench.self_sitting import FAST, Sitting, say
from harness.core.system import raise_fd_limit


def in_flight(sitting: Sitting) -> None:
    quick = sitting.args.quick
    requests, concurrency = (3000, 1000) if quick else (30_000, 10_000)
    say(f"\n== {concurrency:,} in flight: 1 s delay, {requests:,} requests")
    # The cell process inherits the runner's open-file limit, and so this process's: the
    # cell's connections need more than the usual 1 024 (the mock raises its own).
    if note := raise_fd_limit(concurrency + 1000):
        say(f"  note: {note}")
    load = f"requests: {requests}, concurrency: {concurrency}, generators: [1, 2]"
    text = FAST.format(name="self_in_flight", latency="1s", clients="lean, standard",
                       load=load, backends="asyncio, uvloop")
    summary = sitting.run_harness("in_flight", text, timeout_s=480)
    sitting.notes.append(f"{concurrency:,} in flight, failed requests: "
                         f"{sitting.error_counts(sitting.last_run)}")
    peak = round(0.95 * concurrency)
    for row in summary.sort_values(["client", "backend", "generators"]).itertuples():
        cell = f"{concurrency // 1000}k in flight {row.backend} {row.client}" + \
            (f" generators {row.generators}" if row.generators != 1 else "")
        lean = row.client == "lean"
        sitting.add(f"{cell}: errors", row.errors, "", "= 0" if lean else None,
                    lambda v: v == 0)
        sitting.add(f"{cell}: server peak in flight", row.peak_in_flight_server, "",
                    f"≥ {peak:,}".replace(",", " ") if lean else None, lambda v: v >= peak)
        sitting.add(f"{cell}: loop lag p99", row.loop_lag_p99_ms, "ms",
                    "< 50" if lean else None, lambda v: v < 50)
    ladder = [100, 200, 500, 1000] if quick else [500, 1000, 2000, 4000, 8000, 10_000]
    for client in ("lean", "standard"):
        thread_ladder(sitting, client, ladder)


def thread_ladder(sitting: Sitting, client: str, ladder: list[int]) -> None:
    """The highest thread count with 0 errors: 1 s delay, three requests per thread."""
    say(f"   threads backend, client {client}: {ladder}")
    best, failed, stopped, why = 0, None, None, ""
    limit_s = 90 if not sitting.args.quick else 40  # per client, every step included
    t0 = time.monotonic()
    for n in ladder:
        budget = limit_s - (time.monotonic() - t0)
        if budget < 15 or sitting.left() < 45:
            stopped = n
            break
        text = FAST.format(name=f"self_threads_{client}_{n}", latency="1s", clients=client,
                           load=f"requests: {3 * n}, concurrency: {n}", backends="threads")
        try:
            summary = sitting.run_harness(f"threads_{client}_{n}", text, timeout_s=budget)
            row = summary.iloc[0]
            errors, complete = int(row.errors), bool(row.complete)
        except subprocess.TimeoutExpired as exc:
            errors, complete = -1, False
            why = (f"not decided: killed after {exc.timeout:.0f} s, what was left of the "
                   f"ladder's {limit_s} s")
            say(f"   {n} threads: {why}")
        except (RuntimeError, IndexError) as exc:
            errors, complete, why = -1, False, "the run failed"
            say(f"   {n} threads: {exc}")
        say(f"   {n} threads: errors {errors}, complete {complete}")
        if errors != 0 or not complete:
            failed = (n, why if errors < 0 else
                      f"{sitting.error_counts(sitting.last_run)}; complete: {complete}")
            break
        best = n
    name = f"threads backend ({client}): most threads with 0 errors"
    if best == 0 and stopped:
        sitting.skip(name, "threads", None, "the time budget ran out")
    else:
        sitting.add(name, best, "threads")
    if failed:
        sitting.notes.append(f"threads ({client}): {failed[0]} threads: {failed[1]}")
    elif stopped:
        sitting.notes.append(f"threads ({client}): stopped before {stopped} threads "
                             "(time bound)")
    else:
        sitting.notes.append(f"threads ({client}): every step of {ladder} passed")
