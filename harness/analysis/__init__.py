"""Every figure shown, computed from the Parquet alone: the summary per cell and configuration,
speedups, self-checks, and the comparison statistics.

Rule: imports harness.core, harness.scenario and harness.store; pandas and SciPy, never rich or
matplotlib."""
