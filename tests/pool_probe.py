"""Run in pool workers by the tests: it imports nothing of the harness, so what a worker has
loaded is what its warm-up loaded."""

import os
import sys


def loaded(module: str) -> tuple[int, bool]:
    return os.getpid(), module in sys.modules


def interval(seconds: float = 0.05) -> tuple[int, int]:
    """Busy for `seconds`; returns when it started and ended (monotonic ns)."""
    import time

    start = time.monotonic_ns()
    time.sleep(seconds)
    return start, time.monotonic_ns()
