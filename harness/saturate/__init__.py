"""`harness saturate`: the knee search (search) and the probes that run it (probes).

Rule: imports harness.run, harness.analysis and below; never rich or matplotlib."""
