"""CPU time of another process, for the mock servers' stats (pool workers, server processes)."""

from __future__ import annotations


def process_cpu_s(pid: int) -> float:
    """User and system CPU time of process `pid`, 0 when it is gone."""
    import psutil  # only when asked: the servers' start-up stays lean

    try:
        times = psutil.Process(pid).cpu_times()
    except (psutil.Error, ValueError):
        return 0.0
    return times.user + times.system
