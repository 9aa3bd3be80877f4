"""Scenario files: the typed, validated models (limits, server, workload, load, model), the YAML
loader with its one-line errors, and what the models need to mean something: delay
distributions, faults, thresholds, the external target, arrival schedules.

Rule: imports harness.core only; never aiohttp, never a backend."""
