"""The project's benchmarks: scripts that measure the harness (its targets, its peers wrk and
Locust, its own parts), each run from the repository root as `python -m bench.NAME`; bench/ is
not installed with the harness, it runs from the clone beside it. A benchmark reports what it
measured and whether each target was met; it is not a test. bench/README.md lists them."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the clone: child scripts run from here
