"""The runner: plans a scenario's cells and, for each, starts a fresh mock server and a fresh cell
as processes, sends the job, watches both, and has the store write the cell.

Rule: imports harness.core, harness.scenario, harness.store and harness.mock.process only: the
server and the cell are processes, never imported."""
