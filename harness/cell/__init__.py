"""One measured cell, in its own process (`python -m harness.cell`): the job from stdin, the
backends and workloads that make the load, the in-flight gauge, the sampler and the record
buffer; rows go to the store's spool as they come.

Rule: imports harness.core, harness.scenario, harness.client and harness.store.spool; never the
mock server, the runner, the analysis or the report."""
