"""The one clock: CLOCK_MONOTONIC in nanoseconds. It is one clock for every process on the
machine, so the cell, its slot processes and the mock server stamp times on one axis."""

from __future__ import annotations

import time

now_ns = time.monotonic_ns
