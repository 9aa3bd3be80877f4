"""bench-self's latency at a fixed 50 ms delay: wrk's p50 and p99 and the harness's on uvloop (lean
and standard), each against a fast mock of its own, and the harness's − wrk's."""

from __future__ import annotations

from bench.self_peers import run_wrk
from bench.self_sitting import CONNECTIONS, FAST, Sitting, say
from harness.mock.process import ServerProcess


def latency(sitting: Sitting) -> None:
    s = sitting.args.seconds
    say(f"\n== latency at a fixed 50 ms delay, {CONNECTIONS} connections, {s} s each")
    wrk = None
    if sitting.wrk:
        with ServerProcess(FAST.format(name="peer", latency="50ms", clients="lean",
                                       load="requests: 1, concurrency: 1",
                                       backends="uvloop")) as server:
            wrk = run_wrk(sitting.wrk, server.url + "/api", s, latency=True)
    text = FAST.format(name="self_latency", latency="50ms", clients="lean, standard",
                       load=f"duration: {s}s, concurrency: {CONNECTIONS}", backends="uvloop")
    summary = sitting.run_harness("latency", text, timeout_s=4 * s + 120)
    if wrk:
        sitting.add("wrk p50 at 50 ms", wrk.get("p50_ms"), "ms")
        sitting.add("wrk p99 at 50 ms", wrk.get("p99_ms"), "ms")
    for row in summary.itertuples():
        cell = f"harness {row.backend} {row.client}"
        sitting.add(f"{cell} p50 at 50 ms", row.p50_ms, "ms")
        sitting.add(f"{cell} p99 at 50 ms", row.p99_ms, "ms")
        for q in ("p50", "p99"):
            if wrk and wrk.get(f"{q}_ms") is not None:
                sitting.add(f"{cell} {q} − wrk {q}", getattr(row, f"{q}_ms") - wrk[f"{q}_ms"],
                            "ms")
            else:
                sitting.skip(f"{cell} {q} − wrk {q}", "ms", None, "no wrk")
