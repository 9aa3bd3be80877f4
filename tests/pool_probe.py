"""Run in pool workers by the tests: it imports nothing of the harness, so what a worker has
loaded is what its warm-up loaded."""

import os
import sys


def loaded(module: str) -> tuple[int, bool]:
    return os.getpid(), module in sys.modules
